// Decode GEMV variants against the one in kernels.cu (included here, so the baseline is the real
// kernel), timed by scripts/gpu/gemv_lab.py on the GPU machine. Built here:
//   source ../shared/tools/cuda-toolchain.sh
//   nvcc -cubin -O3 -std=c++17 -arch=sm_90 -o scripts/gpu/gemv_lab.cubin scripts/gpu/gemv_lab.cu
#include "../../crates/models/src/cuda/kernels.cu"

// Read ceiling: every thread streams 16-byte chunks (grid-stride), the sum is kept live.
extern "C" __global__ void __launch_bounds__(256) lab_read(const uint4* __restrict__ p, size_t n, float* sink) {
  pdl_trigger();
  pdl_wait();
  uint32_t s = 0;
  for (size_t i = blockIdx.x * 256 + threadIdx.x; i < n; i += (size_t)gridDim.x * 256) {
    const uint4 v = ld_stream(p + i);
    s ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (s == 0x12345678u) sink[0] = 1.f;
}

// WPR warps share one output row (split K in contiguous segments), 8 / WPR rows a CTA; the
// partial sums meet in shared memory in a fixed order. GATED as in kernels.cu's gemv.
template <typename T, int WPR, bool GATED>
__device__ void gemv_kw(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int N, int K) {
  constexpr int RPC = GEMV_WARPS / WPR;
  constexpr int NR = GATED ? 2 : 1;
  constexpr int UNROLL = 8 / NR;
  __shared__ float part[GEMV_WARPS][NR];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = blockIdx.x * RPC + warp / WPR, s = warp % WPR;
  pdl_trigger();
  const int kc = K / 8, seg = kc / WPR;
  const int c0 = s * seg, c1 = s == WPR - 1 ? kc : c0 + seg;
  const uint4* wr[NR];
#pragma unroll
  for (int r = 0; r < NR; r++) wr[r] = reinterpret_cast<const uint4*>(w) + ((size_t)r * N + min(n, N - 1)) * kc;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  float acc[NR][1];
#pragma unroll
  for (int r = 0; r < NR; r++) acc[r][0] = 0.f;
  int c = c0 + lane;
#pragma unroll
  for (int r = 0; r < NR; r++)
#pragma unroll
    for (int u = 0; u < UNROLL; u++)
      if (c + 32 * u < c1) asm volatile("prefetch.global.L2 [%0];" ::"l"(wr[r] + c + 32 * u));
  pdl_wait();
  if (n < N) {
    for (; c + 32 * (UNROLL - 1) < c1; c += 32 * UNROLL) {
      uint4 wv[NR][UNROLL];
#pragma unroll
      for (int r = 0; r < NR; r++)
#pragma unroll
        for (int u = 0; u < UNROLL; u++) wv[r][u] = ld_stream(wr[r] + c + 32 * u);
#pragma unroll
      for (int r = 0; r < NR; r++)
#pragma unroll
        for (int u = 0; u < UNROLL; u++) dot8<T, 1>(wv[r][u], xr, c + 32 * u, kc, acc[r]);
    }
    for (; c < c1; c += 32)
#pragma unroll
      for (int r = 0; r < NR; r++) dot8<T, 1>(ld_stream(wr[r] + c), xr, c, kc, acc[r]);
  }
#pragma unroll
  for (int r = 0; r < NR; r++) {
    const float v = warp_sum(acc[r][0]);
    if (lane == 0) part[warp][r] = v;
  }
  __syncthreads();
  if (s != 0 || lane != 0 || n >= N) return;
  float v[NR];
#pragma unroll
  for (int r = 0; r < NR; r++) {
    v[r] = 0.f;
    for (int i = 0; i < WPR; i++) v[r] += part[warp + i][r];
  }
  if (GATED) {
    const float g = to_f(from_f<T>(v[0]));
    const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
    y[n] = from_f<T>(a * to_f(from_f<T>(v[NR - 1])));
  } else {
    y[n] = from_f<T>(v[0]);
  }
}

// Persistent: a grid of a few CTAs an SM; each warp walks rows n, n + total warps, ...
template <typename T>
__device__ void gemv_persist(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int N, int K) {
  constexpr int UNROLL = 8;
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * GEMV_WARPS;
  int n = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
  pdl_trigger();
  const int kc = K / 8;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  if (n < N)
    for (int u = 0; u < UNROLL; u++)
      if (lane + 32 * u < kc)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const uint4*>(w) + (size_t)n * kc + lane + 32 * u));
  pdl_wait();
  for (; n < N; n += warps) {
    const uint4* wr = reinterpret_cast<const uint4*>(w) + (size_t)n * kc;
    float acc[1] = {0.f};
    int c = lane;
    for (; c + 32 * (UNROLL - 1) < kc; c += 32 * UNROLL) {
      uint4 wv[UNROLL];
#pragma unroll
      for (int u = 0; u < UNROLL; u++) wv[u] = ld_stream(wr + c + 32 * u);
#pragma unroll
      for (int u = 0; u < UNROLL; u++) dot8<T, 1>(wv[u], xr, c + 32 * u, kc, acc);
    }
    for (; c < kc; c += 32) dot8<T, 1>(ld_stream(wr + c), xr, c, kc, acc);
    const float v = warp_sum(acc[0]);
    if (lane == 0) y[n] = from_f<T>(v);
  }
}

#define LAB_KW(WPR)                                                                               \
  extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)                                  \
      lab_kw##WPR(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K) { \
    gemv_kw<__nv_bfloat16, WPR, false>(x, w, y, N, K);                                            \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)                                  \
      lab_kw_silu##WPR(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K) { \
    gemv_kw<__nv_bfloat16, WPR, true>(x, w, y, N, K);                                             \
  }
LAB_KW(1)
LAB_KW(2)
LAB_KW(4)
LAB_KW(8)

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_persist(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K) {
  gemv_persist<__nv_bfloat16>(x, w, y, N, K);
}

// A latency-bound stand-in for attention: `ctas` CTAs that wait (after their predecessor) for
// `ns` nanoseconds of the global timer.
extern "C" __global__ void __launch_bounds__(256) lab_spin(unsigned long long ns) {
  pdl_trigger();
  pdl_wait();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// kernels.cu's gemv with its whole weight rows asked into L2 (one bulk prefetch a row, issued
// by lane 0) before the wait on its predecessor.
template <typename T, bool GATED>
__device__ void gemv_bulk(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int N, int K) {
  constexpr int UNROLL = 8 / (GATED ? 2 : 1);
  constexpr int NR = GATED ? 2 : 1;
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
  pdl_trigger();
  const int kc = K / 8;
  const uint4* wr[NR];
#pragma unroll
  for (int r = 0; r < NR; r++) wr[r] = reinterpret_cast<const uint4*>(w) + ((size_t)r * N + min(n, N - 1)) * kc;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  if (lane == 0 && n < N)
#pragma unroll
    for (int r = 0; r < NR; r++)
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(wr[r]), "r"(K * 2) : "memory");
  float acc[NR][1];
#pragma unroll
  for (int r = 0; r < NR; r++) acc[r][0] = 0.f;
  pdl_wait();
  if (n >= N) return;
  int c = lane;
  for (; c + 32 * (UNROLL - 1) < kc; c += 32 * UNROLL) {
    uint4 wv[NR][UNROLL];
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
      for (int u = 0; u < UNROLL; u++) wv[r][u] = ld_stream(wr[r] + c + 32 * u);
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
      for (int u = 0; u < UNROLL; u++) dot8<T, 1>(wv[r][u], xr, c + 32 * u, kc, acc[r]);
  }
  for (; c < kc; c += 32)
#pragma unroll
    for (int r = 0; r < NR; r++) dot8<T, 1>(ld_stream(wr[r] + c), xr, c, kc, acc[r]);
  const float v = warp_sum(acc[0][0]);
  if (GATED) {
    const float up = warp_sum(acc[NR - 1][0]);
    const float g = to_f(from_f<T>(v));
    const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
    if (lane == 0) y[n] = from_f<T>(a * to_f(from_f<T>(up)));
  } else if (lane == 0) {
    y[n] = from_f<T>(v);
  }
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_bulk(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K) {
  gemv_bulk<__nv_bfloat16, false>(x, w, y, N, K);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_bulk_silu(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K) {
  gemv_bulk<__nv_bfloat16, true>(x, w, y, N, K);
}

// A stand-in for a small kernel that asks the next GEMV's weights into L2 (bulk prefetches of
// `chunk` bytes, spread over its CTAs' lane 0s) and then spins `ns`.
extern "C" __global__ void __launch_bounds__(256)
    lab_spin_prefetch(unsigned long long ns, const char* p, unsigned long long bytes, unsigned int chunk) {
  pdl_trigger();
  if (threadIdx.x % 32 == 0) {
    const unsigned long long stride = (unsigned long long)gridDim.x * (blockDim.x / 32) * chunk;
    for (unsigned long long o = ((unsigned long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * chunk;
         o < bytes; o += stride) {
      const unsigned int len = (unsigned int)min((unsigned long long)chunk, bytes - o);
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + o), "r"(len) : "memory");
    }
  }
  pdl_wait();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// Diagnostic: CTA 0 stamps the global timer at its start and after its wait, then all spin `ns`.
extern "C" __global__ void __launch_bounds__(256) lab_stamp(unsigned long long* buf, int idx, unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  pdl_trigger();
  pdl_wait();
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    buf[3 * idx] = t0;
    buf[3 * idx + 1] = t;
  }
  const unsigned long long t1 = t;
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t1 < ns);
  if (blockIdx.x == 0 && threadIdx.x == 0) buf[3 * idx + 2] = t;
}

// lab_spin_prefetch with the prefetches issued after the wait (while the spin runs).
extern "C" __global__ void __launch_bounds__(256)
    lab_spin_prefetch_after(unsigned long long ns, const char* p, unsigned long long bytes, unsigned int chunk) {
  pdl_trigger();
  pdl_wait();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  if (threadIdx.x % 32 == 0) {
    const unsigned long long stride = (unsigned long long)gridDim.x * (blockDim.x / 32) * chunk;
    for (unsigned long long o = ((unsigned long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * chunk;
         o < bytes; o += stride) {
      const unsigned int len = (unsigned int)min((unsigned long long)chunk, bytes - o);
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + o), "r"(len) : "memory");
    }
  }
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// Prefetch by plain loads: every thread reads its 16-byte chunks (grid-stride) into L2 only.
extern "C" __global__ void __launch_bounds__(256)
    lab_spin_touch_after(unsigned long long ns, const uint4* p, unsigned long long n16) {
  pdl_trigger();
  pdl_wait();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  for (size_t i = blockIdx.x * 256 + threadIdx.x; i < n16; i += (size_t)gridDim.x * 256 * 8)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p + i));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// kernels.cu's gemv with the serial tail of the lab kernels instead of a predicated round.
template <typename T, int M, bool GATED>
__device__ void gemv_serial(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int N, int K, int wpr) {
  // Loads in flight a lane: 8 at one or two rows, 4 beyond; a gated warp splits them over its rows.
  constexpr int UNROLL = (M <= 2 ? 8 : 4) / (GATED ? 2 : 1);
  constexpr int NR = GATED ? 2 : 1;
  __shared__ float part[GEMV_WARPS][NR][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n = blockIdx.x * (GEMV_WARPS / wpr) + warp / wpr, s = warp % wpr;
  const bool live = n < N;
  pdl_trigger();
  const int kc = K / 8;  // 16-byte chunks per row
  const int seg = kc / wpr, c0 = s * seg, c1 = s == wpr - 1 ? kc : c0 + seg;
  const uint4* wr[NR];
#pragma unroll
  for (int r = 0; r < NR; r++) wr[r] = reinterpret_cast<const uint4*>(w) + ((size_t)r * N + min(n, N - 1)) * kc;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  float acc[NR][M];
#pragma unroll
  for (int r = 0; r < NR; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = 0.f;
  int c = c0 + lane;
  // The first UNROLL chunks of the weight rows are asked into L2 before the wait: under
  // programmatic launch that overlaps the kernel before this one (which only writes
  // activations), without holding registers across the wait.
  if (live)
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
      for (int u = 0; u < UNROLL; u++)
        if (c + 32 * u < c1) asm volatile("prefetch.global.L2 [%0];" ::"l"(wr[r] + c + 32 * u));
  pdl_wait();
  if (live) {
    for (; c + 32 * (UNROLL - 1) < c1; c += 32 * UNROLL) {
      uint4 wv[NR][UNROLL];
#pragma unroll
      for (int r = 0; r < NR; r++)
#pragma unroll
        for (int u = 0; u < UNROLL; u++) wv[r][u] = ld_stream(wr[r] + c + 32 * u);
#pragma unroll
      for (int r = 0; r < NR; r++)
#pragma unroll
        for (int u = 0; u < UNROLL; u++) dot8<T, M>(wv[r][u], xr, c + 32 * u, kc, acc[r]);
    }
    for (; c < c1; c += 32)
#pragma unroll
      for (int r = 0; r < NR; r++) dot8<T, M>(ld_stream(wr[r] + c), xr, c, kc, acc[r]);
  }
#pragma unroll
  for (int r = 0; r < NR; r++)
#pragma unroll
    for (int m = 0; m < M; m++) {
      const float v = warp_sum(acc[r][m]);
      if (lane == 0) part[warp][r][m] = v;
    }
  __syncthreads();
  if (!live || s != 0 || lane >= M) return;
  const int m = lane;
  float v[NR];
#pragma unroll
  for (int r = 0; r < NR; r++) {
    v[r] = part[warp][r][m];
    for (int i = 1; i < wpr; i++) v[r] += part[warp + i][r][m];
  }
  if (GATED) {
    const float g = to_f(from_f<T>(v[0]));
    const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
    y[(size_t)m * N + n] = from_f<T>(a * to_f(from_f<T>(v[NR - 1])));
  } else {
    y[(size_t)m * N + n] = from_f<T>(v[0]);
  }
}


extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_serial(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr) {
  gemv_serial<__nv_bfloat16, 1, false>(x, w, y, N, K, wpr);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_serial_silu(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr) {
  gemv_serial<__nv_bfloat16, 1, true>(x, w, y, N, K, wpr);
}

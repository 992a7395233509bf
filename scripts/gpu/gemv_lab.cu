// Decode GEMV experiments around the kernel in kernels.cu (included here, so what is timed is the
// real kernel), run by scripts/gpu/gemv_lab.py on the GPU machine. Built here:
//   source ../shared/tools/cuda-toolchain.sh
//   nvcc -cubin -O3 -std=c++17 -arch=sm_90 -o scripts/gpu/gemv_lab.cubin scripts/gpu/gemv_lab.cu
// Variants that lost (a serial tail for split rows, a whole-row bulk L2 prefetch before the wait)
// were measured with earlier versions of this file: bench/RESULTS.md has their figures.
#include "../../crates/models/src/cuda/kernels.cu"

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

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

// Persistent: a grid of a few CTAs an SM; each warp walks rows n, n + total warps, ...
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_persist(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K) {
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
      for (int u = 0; u < UNROLL; u++) dot8<__nv_bfloat16, 1>(wv[u], xr, c + 32 * u, kc, acc);
    }
    for (; c < kc; c += 32) dot8<__nv_bfloat16, 1>(ld_stream(wr + c), xr, c, kc, acc);
    const float v = warp_sum(acc[0]);
    if (lane == 0) y[n] = from_f<__nv_bfloat16>(v);
  }
}

// The staged form (one row, bf16, non-gated or gated): the same sums as `gemv` in the same order,
// over `stage` consecutive groups of its features (a group: the GEMV_WARPS / wpr features a CTA
// of `gemv` takes). Before its wait, thread 0 asks the copy engine for the CTA's whole weight
// slice (one bulk copy per row range) into shared memory; after it, the warps read the weights
// from there. Dynamic shared memory: stage · NR · (GEMV_WARPS / wpr) · K · 2 bytes.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

template <bool GATED>
__device__ void lab_staged(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                           __nv_bfloat16* __restrict__ y, int N, int K, int wpr, int stage) {
  using T = __nv_bfloat16;
  constexpr int NR = GATED ? 2 : 1, UNROLL = 8 / NR;
  extern __shared__ uint4 staged[];
  __shared__ float part[GEMV_WARPS][NR];
  __shared__ __align__(8) unsigned long long bar;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int fpc = GEMV_WARPS / wpr, kc = K / 8, s = warp % wpr;
  const int first = blockIdx.x * stage * fpc;
  const int rows = max(0, min(stage * fpc, N - first));
  pdl_trigger();
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar)));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    const uint32_t bytes = (uint32_t)rows * K * sizeof(T);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(&bar)), "r"(NR * bytes)
                 : "memory");
    for (int r = 0; r < NR; r++)
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                       smem_addr(staged + (size_t)r * stage * fpc * kc)),
                   "l"(w + ((size_t)r * N + first) * K), "r"(bytes), "r"(smem_addr(&bar))
                   : "memory");
  }
  __syncthreads();
  pdl_wait();
  asm volatile(
      "{\n.reg .pred done;\nwait:\nmbarrier.try_wait.parity.shared::cta.b64 done, [%0], 0;\n@!done bra wait;\n}" ::"r"(
          smem_addr(&bar))
      : "memory");
  const int seg = kc / wpr, c0 = s * seg, c1 = s == wpr - 1 ? kc : c0 + seg;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  for (int j = 0; j < stage; j++) {
    const int local = j * fpc + warp / wpr, n = first + local;
    float acc[NR][1] = {};
    if (n < N)
      for (int c = c0 + lane; c < c1; c += 32 * UNROLL) {
        uint4 wv[NR][UNROLL];
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
          for (int u = 0; u < UNROLL; u++)
            if (c + 32 * u < c1) wv[r][u] = staged[((size_t)r * stage * fpc + local) * kc + c + 32 * u];
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
          for (int u = 0; u < UNROLL; u++)
            if (c + 32 * u < c1) dot8<T, 1>(wv[r][u], xr, c + 32 * u, kc, acc[r]);
      }
#pragma unroll
    for (int r = 0; r < NR; r++) {
      const float v = warp_sum(acc[r][0]);
      if (lane == 0) part[warp][r] = v;
    }
    __syncthreads();
    if (n < N && s == 0 && lane == 0) {
      float v[NR];
      for (int r = 0; r < NR; r++) {
        v[r] = part[warp][r];
        for (int i = 1; i < wpr; i++) v[r] += part[warp + i][r];
      }
      if (GATED) {
        const float g = to_f(from_f<T>(v[0]));
        const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
        y[n] = from_f<T>(a * to_f(from_f<T>(v[NR - 1])));
      } else {
        y[n] = from_f<T>(v[0]);
      }
    }
    __syncthreads();
  }
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_staged_bf16_1(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr,
                      int stage) {
  lab_staged<false>(x, w, y, N, K, wpr, stage);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_silu_staged_bf16_1(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr,
                           int stage) {
  lab_staged<true>(x, w, y, N, K, wpr, stage);
}

// A latency-bound stand-in for attention: waits for its predecessor, then spins `ns` of the
// global timer (CTAs from `active` on return at once, holding the launch's shared memory until
// then, as attention's empty split-K partitions do). While it does, it may ask `bytes` at `p` (the next GEMV's weight) into L2:
//   mode 0: no; 1: bulk prefetches of `chunk` bytes from each warp's lane 0, before the wait;
//   2: the same after the wait; 3: one `prefetch.global.L2` per 128-byte line, after the wait.
extern "C" __global__ void __launch_bounds__(256)
    lab_spin(unsigned long long ns, const char* p, unsigned long long bytes, unsigned int chunk, int mode,
             unsigned int active) {
  extern __shared__ float hold[];  // sized by the launch: shared memory held as attention holds it
  pdl_trigger();
  const unsigned long long warp = (unsigned long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const unsigned long long stride = (unsigned long long)gridDim.x * (blockDim.x / 32) * chunk;
  auto bulk = [&] {
    if (threadIdx.x % 32 != 0) return;
    for (unsigned long long o = warp * chunk; o < bytes; o += stride) {
      const unsigned int len = (unsigned int)min((unsigned long long)chunk, bytes - o);
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + o), "r"(len) : "memory");
    }
  };
  if (mode == 1) bulk();
  pdl_wait();
  if (blockIdx.x >= active) {  // attention's empty split-K partitions
    if (threadIdx.x == 0) hold[0] = 0.f;
    return;
  }
  const unsigned long long t0 = global_ns();
  if (mode == 2) bulk();
  if (mode == 3)
    for (unsigned long long o = ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) * 128; o < bytes;
         o += (unsigned long long)gridDim.x * blockDim.x * 128)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
  while (global_ns() - t0 < ns) {
  }
}

// Diagnostic: CTA 0 stamps the global timer at its start and after its wait, then all spin `ns`.
extern "C" __global__ void __launch_bounds__(256) lab_stamp(unsigned long long* buf, int idx, unsigned long long ns) {
  const unsigned long long t0 = global_ns();
  pdl_trigger();
  pdl_wait();
  const unsigned long long t1 = global_ns();
  while (global_ns() - t1 < ns) {
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    buf[3 * idx] = t0;
    buf[3 * idx + 1] = t1;
    buf[3 * idx + 2] = global_ns();
  }
}

// Diagnostic: the streaming or staged GEMV (one row, bf16) with each CTA's start and end on the
// global timer, in `st` (two u64 a CTA).
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_gemv_stamp(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr,
                   int stage, unsigned long long* st) {
  const unsigned long long t0 = global_ns();
  if (stage)
    lab_staged<false>(x, w, y, N, K, wpr, stage);
  else
    gemv<__nv_bfloat16, 1, false>(x, w, y, N, K, wpr);
  if (threadIdx.x == 0) {
    st[2 * blockIdx.x] = t0;
    st[2 * blockIdx.x + 1] = global_ns();
  }
}

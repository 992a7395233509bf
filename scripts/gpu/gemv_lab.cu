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

// A latency-bound stand-in for attention: waits for its predecessor, then spins `ns` of the
// global timer. While it does, it may ask `bytes` at `p` (the next GEMV's weight) into L2:
//   mode 0: no; 1: bulk prefetches of `chunk` bytes from each warp's lane 0, before the wait;
//   2: the same after the wait; 3: one `prefetch.global.L2` per 128-byte line, after the wait.
extern "C" __global__ void __launch_bounds__(256)
    lab_spin(unsigned long long ns, const char* p, unsigned long long bytes, unsigned int chunk, int mode) {
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

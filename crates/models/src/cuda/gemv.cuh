// Part of kernels.cu (included there after its shared helpers).
// ---------------------------------------------------------------------------------------------
// Small-batch dense matmul (decode): y (M, N) = x (M, K) · Wᵀ with W (N, K) row-major, M ≤ 2,
// K a multiple of 8, 16-byte aligned rows. A decode step at small batch is a stream over the
// weights. `wpr` warps (1, 2, 4 or 8) share one output feature: warp s of a feature takes the
// s-th contiguous segment of its row, each lane loading 16 bytes at a time (UNROLL loads in
// flight, bypassing L1 so that x stays there), widening to f32 and accumulating against the M
// rows of x. The segments' warp sums meet in shared memory and are added in segment order, and
// the total is rounded to T once (cuBLAS's f32-compute rounding). The host picks wpr (gemv.rs:
// two below LM-head sizes, measured per projection by scripts/gpu/gemv_lab.py).
// The order of every sum depends on (N, K, wpr) alone, never on M, so a token's output does not
// depend on the batch beside it. grid ceil(N · wpr / GEMV_WARPS), block GEMV_WARPS · 32.
constexpr int GEMV_WARPS = 8;

__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

// With `sq` (a constant once unrolled) it also adds the squares of x's values to ss.
template <typename T, int M>
__device__ __forceinline__ void dot8(const uint4& wv, const uint4* __restrict__ xr, int c, int kc, float* acc,
                                     bool sq, float* ss) {
  float wf[8];
  unpack<T>(wv, wf);
#pragma unroll
  for (int m = 0; m < M; m++) {
    float xf[8];
    unpack<T>(__ldg(xr + (size_t)m * kc + c), xf);
#pragma unroll
    for (int e = 0; e < 8; e++) acc[m] = fmaf(wf[e], xf[e], acc[m]);
    if (sq)
#pragma unroll
      for (int e = 0; e < 8; e++) ss[m] = fmaf(xf[e], xf[e], ss[m]);
  }
}

// GATED (SwiGLU's `[gate | up]` projection, W (2N, K)): the warps of feature n stream rows n and
// N + n and write silu(gate) · up, rounded as silu_mul rounds it (gate and up to T, silu to T,
// the product to T): the same values as the GEMV over W (same wpr) followed by silu_mul, one
// launch and no `[gate | up]` round trip through memory.
//
// RMS (an RMSNorm folded into the projection: W holds W · diag(norm weight), nn/norm.rs): x is
// the raw residual stream, and each dot product is scaled by rsqrt(mean(x²) + eps) of its row
// before the rounding to T. Each warp sums the squares of the x chunks it reads anyway; the
// segments' sums meet like the dot products, so every feature of a row gets the same scale and
// no norm launch runs before the GEMV.
// RES (the residual add after an output projection): y = x_res + (the GEMV's value rounded to
// T), rounded to T: the values of the GEMV followed by the residual add.
template <typename T, int M, bool GATED, bool RMS, bool RES>
__device__ void gemv(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int N, int K, int wpr,
                     const T* __restrict__ res, float eps) {
  // Loads in flight a lane: 8, which a gated warp splits over its two rows.
  constexpr int UNROLL = 8 / (GATED ? 2 : 1);
  constexpr int NR = GATED ? 2 : 1;
  __shared__ float part[GEMV_WARPS][NR][M];
  __shared__ float sq_part[GEMV_WARPS][M];
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
  float acc[NR][M], ss[M];
#pragma unroll
  for (int r = 0; r < NR; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = 0.f;
#pragma unroll
  for (int m = 0; m < M; m++) ss[m] = 0.f;
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
        for (int u = 0; u < UNROLL; u++) dot8<T, M>(wv[r][u], xr, c + 32 * u, kc, acc[r], RMS && r == 0, ss);
    }
    // The last, partial round: its loads issued together too, then used in chunk order.
    if (c < c1) {
      uint4 wv[NR][UNROLL];
#pragma unroll
      for (int r = 0; r < NR; r++)
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
          if (c + 32 * u < c1) wv[r][u] = ld_stream(wr[r] + c + 32 * u);
#pragma unroll
      for (int r = 0; r < NR; r++)
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
          if (c + 32 * u < c1) dot8<T, M>(wv[r][u], xr, c + 32 * u, kc, acc[r], RMS && r == 0, ss);
    }
  }
#pragma unroll
  for (int r = 0; r < NR; r++)
#pragma unroll
    for (int m = 0; m < M; m++) {
      const float v = warp_sum(acc[r][m]);
      if (lane == 0) part[warp][r][m] = v;
    }
  if (RMS)
#pragma unroll
    for (int m = 0; m < M; m++) {
      const float v = warp_sum(ss[m]);
      if (lane == 0) sq_part[warp][m] = v;
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
  if (RMS) {
    float q = sq_part[warp][m];
    for (int i = 1; i < wpr; i++) q += sq_part[warp + i][m];
    const float scale = rsqrtf(q / K + eps);
#pragma unroll
    for (int r = 0; r < NR; r++) v[r] *= scale;
  }
  const size_t o = (size_t)m * N + n;
  if (GATED) {
    const float g = to_f(from_f<T>(v[0]));
    const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
    y[o] = from_f<T>(a * to_f(from_f<T>(v[NR - 1])));
  } else if (RES) {
    y[o] = from_f<T>(to_f(res[o]) + to_f(from_f<T>(v[0])));
  } else {
    y[o] = from_f<T>(v[0]);
  }
}

#define GEMV_KERNEL(NAME, T, M, GATED, RMS, RES)                                                  \
  extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)                                  \
      NAME(const T* x, const T* w, T* y, int N, int K, int wpr, const T* res, float eps) {         \
    gemv<T, M, GATED, RMS, RES>(x, w, y, N, K, wpr, res, eps);                                    \
  }
// The plain GEMV, SwiGLU's, each with the folded RMSNorm, and the GEMV with the residual add.
#define GEMV(TN, T, M)                                         \
  GEMV_KERNEL(gemv_##TN##_##M, T, M, false, false, false)      \
  GEMV_KERNEL(gemv_silu_##TN##_##M, T, M, true, false, false)  \
  GEMV_KERNEL(gemv_rms_##TN##_##M, T, M, false, true, false)   \
  GEMV_KERNEL(gemv_silu_rms_##TN##_##M, T, M, true, true, false) \
  GEMV_KERNEL(gemv_res_##TN##_##M, T, M, false, false, true)
// One and two rows (gemv.rs's MAX_ROWS): from three rows on the dot products, not the weight
// stream, bound the kernel, and cuBLAS's tensor-core GEMMs take over.
#define GEMV_ALL(TN, T) \
  GEMV(TN, T, 1)        \
  GEMV(TN, T, 2)
GEMV_ALL(bf16, __nv_bfloat16)
GEMV_ALL(f16, __half)

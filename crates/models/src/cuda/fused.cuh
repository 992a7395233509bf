// Part of kernels.cu (included there after its shared helpers).
// ---------------------------------------------------------------------------------------------
// Fused elementwise kernels of the decoder layer (fewer launches and passes per layer; the
// per-op cost dominates a decode step at small batch).
//
// add_rms_norm: s = x + h (rounded to T, as candle's add), then y = s · rsqrt(mean(s²) + eps) · w
// with the sum in f32 (candle's rmsnorm arithmetic); with h = null it is the plain RMSNorm of x
// (s unused). One CTA per row. Where the row is whole 16-byte chunks that fit NORM_MAXC per
// thread, each thread loads its chunks once (all loads in flight together) and keeps them in
// registers for the second pass; otherwise a strided loop re-reads what the thread wrote.
constexpr int NORM_MAXC = 4;

__device__ __forceinline__ float block_sum(float x, float* part) {
  x = warp_sum(x);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.f;
    x = warp_sum(x);
    if (lane == 0) part[0] = x;
  }
  __syncthreads();
  return part[0];
}

template <typename T>
__device__ void add_rms_norm(const T* __restrict__ x, const T* __restrict__ h, const T* __restrict__ w,
                             T* __restrict__ s, T* __restrict__ y, int dim, float eps, int aligned) {
  pdl_trigger();
  __shared__ float part[32];
  constexpr int VEC = 16 / sizeof(T);
  const size_t base = (size_t)blockIdx.x * dim;
  const int nch = dim / VEC;
  const bool vec = aligned && dim % VEC == 0 && nch <= NORM_MAXC * (int)blockDim.x;
  // The weight is read after the row's sum, on the critical path, and the weight streams of the
  // GEMVs have evicted it from L2: ask it there before the wait (weights are never written).
  for (int b = threadIdx.x * 128; b < dim * (int)sizeof(T); b += blockDim.x * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(w) + b));
  pdl_wait();
  float ss = 0.f;
  if (vec) {
    float v[NORM_MAXC][VEC];
#pragma unroll
    for (int c = 0; c < NORM_MAXC; c++) {
      const int i = threadIdx.x + c * blockDim.x;
      if (i >= nch) break;
      const uint4 xa = *reinterpret_cast<const uint4*>(x + base + (size_t)i * VEC);
      unpack<T>(xa, v[c]);
      if (h) {
        float hv[VEC];
        unpack<T>(*reinterpret_cast<const uint4*>(h + base + (size_t)i * VEC), hv);
#pragma unroll
        for (int e = 0; e < VEC; e++) v[c][e] = to_f(from_f<T>(v[c][e] + hv[e]));
        *reinterpret_cast<uint4*>(s + base + (size_t)i * VEC) = pack<T>(v[c]);
      }
#pragma unroll
      for (int e = 0; e < VEC; e++) ss += v[c][e] * v[c][e];
    }
    const float scale = rsqrtf(block_sum(ss, part) / dim + eps);
#pragma unroll
    for (int c = 0; c < NORM_MAXC; c++) {
      const int i = threadIdx.x + c * blockDim.x;
      if (i >= nch) break;
      float wv[VEC];
      unpack<T>(*reinterpret_cast<const uint4*>(w + (size_t)i * VEC), wv);
#pragma unroll
      for (int e = 0; e < VEC; e++) wv[e] = scale * v[c][e] * wv[e];
      *reinterpret_cast<uint4*>(y + base + (size_t)i * VEC) = pack<T>(wv);
    }
    return;
  }
  const T* src = h ? s : x;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const T v = h ? from_f<T>(to_f(x[base + i]) + to_f(h[base + i])) : x[base + i];
    if (h) s[base + i] = v;
    const float f = to_f(v);
    ss += f * f;
  }
  const float scale = rsqrtf(block_sum(ss, part) / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    y[base + i] = from_f<T>(scale * to_f(src[base + i]) * to_f(w[i]));
}

// silu_mul: out[r, i] = silu(gate[r, i]) · up[r, i] for rows of `ff` features whose gate and up
// rows are `ld` apart (ld = ff for separate projections; gate = up - ff, ld = 2 ff for a fused
// `[gate | up]` projection). silu is computed in f32 and rounded to T before the product, which
// is rounded again, as the unfused pair of ops does. A thread takes 16 bytes of each row (32-bit
// index math) where the rows and pointers allow it (cuda/fused.rs sizes the grid for that),
// else one value at a time; the values are the same either way. The one-at-a-time loop's 64-bit
// division made this kernel 11 µs at bs 128 of the 8B shape (bench/RESULTS.md, 2026-12-03).
template <typename T>
__device__ __forceinline__ T silu_times(float g, float u) {
  const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
  return from_f<T>(a * u);
}

template <typename T>
__device__ void silu_mul(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out, int rows,
                         int ff, int ld) {
  pdl_trigger();
  pdl_wait();
  constexpr int V = 16 / sizeof(T);
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  const uintptr_t at = reinterpret_cast<uintptr_t>(gate) | reinterpret_cast<uintptr_t>(up) | reinterpret_cast<uintptr_t>(out);
  if (ff % V == 0 && ld % V == 0 && at % 16 == 0 && (size_t)rows * (ff / V) <= 0xffffffffu) {
    const unsigned per = ff / V, n = (unsigned)rows * per;
    for (unsigned k = first; k < n; k += stride) {
      const unsigned r = k / per, c = k - r * per;
      float g[V], u[V];
      unpack<T>(*reinterpret_cast<const uint4*>(gate + (size_t)r * ld + c * V), g);
      unpack<T>(*reinterpret_cast<const uint4*>(up + (size_t)r * ld + c * V), u);
      uint4 o;
      T* e = reinterpret_cast<T*>(&o);
#pragma unroll
      for (int i = 0; i < V; i++) e[i] = silu_times<T>(g[i], u[i]);
      *reinterpret_cast<uint4*>(out + (size_t)r * ff + c * V) = o;
    }
    return;
  }
  const size_t n = (size_t)rows * ff;
  for (size_t k = first; k < n; k += stride) {
    const size_t r = k / ff, i = k - r * ff;
    out[k] = silu_times<T>(to_f(gate[r * ld + i]), to_f(up[r * ld + i]));
  }
}

#define FUSED(TN, T)                                                                              \
  extern "C" __global__ void __launch_bounds__(1024)                                             \
      add_rms_norm_##TN(const T* x, const T* h, const T* w, T* s, T* y, int dim, float eps,       \
                        int aligned) {                                                            \
    add_rms_norm<T>(x, h, w, s, y, dim, eps, aligned);                                            \
  }                                                                                               \
  extern "C" __global__ void silu_mul_##TN(const T* gate, const T* up, T* out, int rows, int ff,  \
                                           int ld) {                                              \
    silu_mul<T>(gate, up, out, rows, ff, ld);                                                     \
  }
FUSED(f32, float)
FUSED(f16, __half)
FUSED(bf16, __nv_bfloat16)

// ---------------------------------------------------------------------------------------------
// to_f32: a contiguous f16/bf16 array as f32 (the logits of every step), 8 values a thread from
// one 16-byte load where the count allows (x 16-byte aligned: checked by the caller), the tail
// one at a time; grid-stride. Exact: every f16/bf16 value is an f32.
template <typename T>
__device__ void to_f32(const T* __restrict__ x, float* __restrict__ y, size_t n) {
  pdl_trigger();
  pdl_wait();
  const size_t n8 = n / 8, stride = (size_t)gridDim.x * blockDim.x;
  const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  for (size_t i = first; i < n8; i += stride) {
    const uint4 raw = reinterpret_cast<const uint4*>(x)[i];
    const T* e = reinterpret_cast<const T*>(&raw);
    float4* o = reinterpret_cast<float4*>(y) + 2 * i;
    o[0] = make_float4(to_f(e[0]), to_f(e[1]), to_f(e[2]), to_f(e[3]));
    o[1] = make_float4(to_f(e[4]), to_f(e[5]), to_f(e[6]), to_f(e[7]));
  }
  for (size_t i = n8 * 8 + first; i < n; i += stride) y[i] = to_f(x[i]);
}
extern "C" __global__ void to_f32_f16(const __half* x, float* y, unsigned long long n) { to_f32(x, y, n); }
extern "C" __global__ void to_f32_bf16(const __nv_bfloat16* x, float* y, unsigned long long n) { to_f32(x, y, n); }

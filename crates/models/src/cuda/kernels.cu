// Prometheus CUDA kernels, compiled to one PTX module by crates/models/build.rs under the
// `cuda` feature and launched from `cuda/*.rs`. This file holds what every part uses; the parts:
// attention.cuh (KV cache writes, paged attention with split-K), decode.cuh (decode attention),
// prefill.cuh (prefill attention on tensor cores), sample.cuh (greedy and random sampling),
// fused.cuh (norms, SwiGLU, casts) and gemv.cuh (small-batch matmul).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Programmatic dependent launch (sm_90; cuda/launch.rs launches every kernel here with it): a
// kernel may start while the one before it in the stream is still running. Each kernel lets its
// successor start at once (`pdl_trigger`), and waits for its predecessor to finish and its
// writes to be visible (`pdl_wait`) before it reads anything a kernel wrote or writes anything:
// before the wait only reads of the weights (never written in a step) are allowed, as in `gemv`.
// Without a programmatic predecessor both are no-ops.
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, o));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffff, x, o);
  return x;
}

template <typename T>
__device__ __forceinline__ void unpack(const uint4& r, float* f) {
  const T* e = reinterpret_cast<const T*>(&r);
#pragma unroll
  for (int i = 0; i < (int)(16 / sizeof(T)); i++) f[i] = to_f(e[i]);
}

template <typename T>
__device__ __forceinline__ uint4 pack(const float* f) {
  uint4 r;
  T* e = reinterpret_cast<T*>(&r);
#pragma unroll
  for (int i = 0; i < (int)(16 / sizeof(T)); i++) e[i] = from_f<T>(f[i]);
  return r;
}

#include "attention.cuh"
#include "decode.cuh"
#include "prefill.cuh"
#include "sample.cuh"
#include "fused.cuh"
#include "gemv.cuh"

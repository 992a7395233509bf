// Part of kernels.cu (included there after its shared helpers).
// ---------------------------------------------------------------------------------------------
// Greedy sampling on the device: per row of f32 logits (rows, vocab), the index of the largest
// finite value, the lowest index on ties (the engine's host `argmax`); 0xffffffff when no value
// is finite. grid (rows, parts), block ARGMAX_THREADS: CTA (r, z) scans logits
// [z · chunk, (z + 1) · chunk) of row r. With one part it writes the row's id to `idx[r]`; with
// several (a small batch spreads each row over more SMs) it writes its best (value, id) to
// `val` / `idx` at r · parts + z, and `argmax_merge` picks each row's winner. Only the ids go back
// to the host.
constexpr int ARGMAX_THREADS = 1024;

__device__ __forceinline__ bool better(float v, uint32_t i, float bv, uint32_t bi) {
  // An index of 0xffffffff is "none yet"; a finite value beats it, ties go to the lower index.
  return i != 0xffffffffu && (bi == 0xffffffffu || v > bv || (v == bv && i < bi));
}

__device__ __forceinline__ void warp_best(float& bv, uint32_t& bi) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffff, bv, o);
    const uint32_t i = __shfl_xor_sync(0xffffffff, bi, o);
    if (better(v, i, bv, bi)) {
      bv = v;
      bi = i;
    }
  }
}

extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_f32(const float* __restrict__ x, float* __restrict__ val, uint32_t* __restrict__ idx, int vocab,
               int chunk) {
  pdl_trigger();
  pdl_wait();
  __shared__ float sv[ARGMAX_THREADS / 32];
  __shared__ uint32_t si[ARGMAX_THREADS / 32];
  const float* row = x + (size_t)blockIdx.x * vocab;
  const int end = min(vocab, (int)(blockIdx.y + 1) * chunk);
  float bv = -INFINITY;
  uint32_t bi = 0xffffffffu;
  // Each thread sees increasing indices, so a strict `>` keeps its lowest one on ties.
  for (int i = blockIdx.y * chunk + threadIdx.x; i < end; i += blockDim.x) {
    const float v = row[i];
    if (isfinite(v) && (bi == 0xffffffffu || v > bv)) {
      bv = v;
      bi = i;
    }
  }
  warp_best(bv, bi);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = bv;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    bv = lane < nw ? sv[lane] : -INFINITY;
    bi = lane < nw ? si[lane] : 0xffffffffu;
    warp_best(bv, bi);
    if (lane == 0) {
      const size_t at = (size_t)blockIdx.x * gridDim.y + blockIdx.y;
      if (gridDim.y > 1) val[at] = bv;
      idx[at] = bi;
    }
  }
}

// The row winners of argmax_f32's `parts` partial results. grid (rows), block 32.
extern "C" __global__ void argmax_merge(const float* __restrict__ val, const uint32_t* __restrict__ idx,
                                        uint32_t* __restrict__ out, int parts) {
  pdl_trigger();
  pdl_wait();
  float bv = -INFINITY;
  uint32_t bi = 0xffffffffu;
  for (int z = threadIdx.x; z < parts; z += 32) {
    const size_t at = (size_t)blockIdx.x * parts + z;
    if (better(val[at], idx[at], bv, bi)) {
      bv = val[at];
      bi = idx[at];
    }
  }
  warp_best(bv, bi);
  if (threadIdx.x == 0) out[blockIdx.x] = bi;
}

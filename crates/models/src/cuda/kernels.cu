// Prometheus CUDA kernels: the paged KV cache's write and paged attention (prefill and decode
// in one kernel, online softmax). Compiled to PTX by crates/models/build.rs under the `cuda`
// feature and launched from `cuda/attention.rs`.
//
// Pool layout on the GPU (per layer; see nn/kv_cache.rs): K `[block][kv_head][offset][k_dim]`,
// V `[block][kv_head][offset][v_dim]`: token-major, so a tile load reads whole rows. (The CPU
// pool stores K transposed inside a block for its SIMD loop; the two never mix.)
//
// Semantics are the CPU kernel's (kernels/attention.rs): score = q·k · scale, + ALiBi
// (slope · key position), then the softcap, then the causal / sliding-window mask; GQA maps
// query head h to kv head h / (heads / kv_heads). With an f16 cache and f32 queries the query
// is rounded to f16 first, as the CPU kernel (and llama.cpp) do.
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

// ---------------------------------------------------------------------------------------------
// KV write: k (kv_heads, t, k_dim), v (kv_heads, t, v_dim), contiguous; token i goes to
// slots[i] = block * block_size + offset. grid (t, kv_heads), any block size.
template <typename TI, typename TK>
__device__ void kv_write(const TI* __restrict__ k, const TI* __restrict__ v, TK* __restrict__ kp,
                         TK* __restrict__ vp, const uint32_t* __restrict__ slots, int t, int kvh, int dk,
                         int dv, int bs) {
  const int i = blockIdx.x, h = blockIdx.y;
  const size_t slot = slots[i];
  const size_t at = (slot / bs * kvh + h) * bs + slot % bs;
  const TI* ks = k + ((size_t)h * t + i) * dk;
  const TI* vs = v + ((size_t)h * t + i) * dv;
  for (int d = threadIdx.x; d < dk; d += blockDim.x) kp[at * dk + d] = from_f<TK>(to_f(ks[d]));
  for (int d = threadIdx.x; d < dv; d += blockDim.x) vp[at * dv + d] = from_f<TK>(to_f(vs[d]));
}

// ---------------------------------------------------------------------------------------------
// Paged attention. One CTA of WARPS warps per (work item, query-head chunk):
// - a work item is (sequence, first token of a tile of up to QTILE query tokens);
// - a head chunk is `hp` consecutive query heads of one kv head's GQA group.
// The CTA's rows (token, head) share every K/V tile it loads into shared memory. Each warp
// owns rows warp, warp + WARPS, ... (at most MAXR) and keeps their running max, sum and
// output accumulator (lane owns v dims lane, lane + 32, ...) in registers.
//
// Key tiles hold KT = 32 consecutive positions: in the score phase lane j scores key j
// (K tile transposed in shared memory, padded to KT + 1, so lanes read distinct banks); in the
// value phase each lane accumulates its own dims over the 32 keys.
constexpr int WARPS = 4;
constexpr int MAXR = 4;
constexpr int KT = 32;

struct SeqInfo {
  int row;    // first row of the sequence in q / out
  int len;    // query tokens of this chunk
  int start;  // position of its first token (tokens 0..start are cached)
  int table;  // offset of its block table in `tables`
};

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

template <typename TQ, typename TK, int DVL>
__device__ void paged_attn(const TQ* __restrict__ q, TQ* __restrict__ out, const TK* __restrict__ kp,
                           const TK* __restrict__ vp, const int2* __restrict__ work,
                           const SeqInfo* __restrict__ seqs, const uint32_t* __restrict__ tables,
                           const float* __restrict__ alibi, int H, int kvh, int dk, int dv, int bs, int hp,
                           int qtile, float scale, float softcap, int window) {
  extern __shared__ float smem[];
  float* qs = smem;                        // (WARPS * MAXR, dk)
  float* ks = qs + WARPS * MAXR * dk;      // (dk, KT + 1): transposed
  float* vs = ks + dk * (KT + 1);          // (KT, dv)

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int2 w = work[blockIdx.x];
  const SeqInfo s = seqs[w.x];
  const int tile0 = w.y;
  const int ntok = min(qtile, s.len - tile0);
  const int nrows = ntok * hp;
  const int h0 = blockIdx.y * hp;  // first query head of the chunk
  const int g = h0 / (H / kvh);    // its kv head
  const int first_pos = s.start + tile0, last_pos = first_pos + ntok - 1;
  const int lo = window > 0 ? max(0, first_pos + 1 - window) : 0;

  for (int idx = tid; idx < nrows * dk; idx += blockDim.x) {
    const int r = idx / dk, d = idx - r * dk;
    const int tok = r / hp, head = h0 + r % hp;
    const float x = to_f(q[((size_t)(s.row + tile0 + tok) * H + head) * dk + d]);
    qs[r * dk + d] = to_f(from_f<TK>(x));
  }

  float m[MAXR], l[MAXR], acc[MAXR][DVL];
#pragma unroll
  for (int j = 0; j < MAXR; j++) {
    m[j] = -INFINITY;
    l[j] = 0.f;
#pragma unroll
    for (int e = 0; e < DVL; e++) acc[j][e] = 0.f;
  }

  for (int kb = lo; kb <= last_pos; kb += KT) {
    __syncthreads();  // the previous tile is consumed (and, the first time, q is stored)
    for (int idx = tid; idx < KT * dk; idx += blockDim.x) {
      const int j = idx / dk, d = idx - j * dk, pos = kb + j;
      float x = 0.f;
      if (pos <= last_pos) {
        const size_t blk = tables[s.table + pos / bs];
        x = to_f(kp[((blk * kvh + g) * bs + pos % bs) * dk + d]);
      }
      ks[d * (KT + 1) + j] = x;
    }
    for (int idx = tid; idx < KT * dv; idx += blockDim.x) {
      const int j = idx / dv, d = idx - j * dv, pos = kb + j;
      float x = 0.f;
      if (pos <= last_pos) {
        const size_t blk = tables[s.table + pos / bs];
        x = to_f(vp[((blk * kvh + g) * bs + pos % bs) * dv + d]);
      }
      vs[j * dv + d] = x;
    }
    __syncthreads();

#pragma unroll
    for (int j = 0; j < MAXR; j++) {
      const int r = warp + WARPS * j;
      if (r >= nrows) break;
      const int head = h0 + r % hp, qpos = first_pos + r / hp, pos = kb + lane;
      const bool valid = pos <= qpos && (window <= 0 || pos + window > qpos);
      float sc = -INFINITY;
      if (valid) {
        const float* qr = qs + r * dk;
        float dot = 0.f;
        for (int d = 0; d < dk; d++) dot = fmaf(qr[d], ks[d * (KT + 1) + lane], dot);
        sc = dot * scale;
        if (alibi) sc += alibi[head] * (float)pos;
        if (softcap > 0.f) sc = softcap * tanhf(sc / softcap);
      }
      const float tmax = warp_max(sc);
      if (tmax == -INFINITY) continue;  // no valid key in this tile for the row
      const float mnew = fmaxf(m[j], tmax);
      const float corr = expf(m[j] - mnew);  // 0 while m is -inf
      const float p = valid ? expf(sc - mnew) : 0.f;
      l[j] = l[j] * corr + warp_sum(p);
      m[j] = mnew;
#pragma unroll
      for (int e = 0; e < DVL; e++) acc[j][e] *= corr;
      for (int jj = 0; jj < KT; jj++) {
        const float pj = __shfl_sync(0xffffffff, p, jj);
        if (pj == 0.f) continue;  // warp-uniform: pj is broadcast
        const float* vr = vs + jj * dv;
#pragma unroll
        for (int e = 0; e < DVL; e++) {
          const int d = lane + 32 * e;
          if (d < dv) acc[j][e] = fmaf(pj, vr[d], acc[j][e]);
        }
      }
    }
  }

#pragma unroll
  for (int j = 0; j < MAXR; j++) {
    const int r = warp + WARPS * j;
    if (r >= nrows) break;
    const int head = h0 + r % hp, tok = r / hp;
    const float inv = l[j] > 0.f ? 1.f / l[j] : 0.f;
    TQ* o = out + ((size_t)(s.row + tile0 + tok) * H + head) * dv;
#pragma unroll
    for (int e = 0; e < DVL; e++) {
      const int d = lane + 32 * e;
      if (d < dv) o[d] = from_f<TQ>(acc[j][e] * inv);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points: one per (query/output type, cache type) and, for attention, per register
// width of the output accumulator (v_dim ≤ 32 · DVL). Names are read by cuda/attention.rs.
#define KV_WRITE(NAME, TI, TK)                                                                    \
  extern "C" __global__ void NAME(const TI* k, const TI* v, TK* kp, TK* vp, const uint32_t* slots, \
                                  int t, int kvh, int dk, int dv, int bs) {                       \
    kv_write<TI, TK>(k, v, kp, vp, slots, t, kvh, dk, dv, bs);                                    \
  }
KV_WRITE(kv_write_f32_f32, float, float)
KV_WRITE(kv_write_f32_f16, float, __half)
KV_WRITE(kv_write_f16_f16, __half, __half)
KV_WRITE(kv_write_bf16_bf16, __nv_bfloat16, __nv_bfloat16)

#define ATTN(NAME, TQ, TK, DVL)                                                                   \
  extern "C" __global__ void __launch_bounds__(WARPS * 32)                                       \
      NAME(const TQ* q, TQ* out, const TK* kp, const TK* vp, const int2* work,                    \
           const SeqInfo* seqs, const uint32_t* tables, const float* alibi, int H, int kvh, int dk, \
           int dv, int bs, int hp, int qtile, float scale, float softcap, int window) {           \
    paged_attn<TQ, TK, DVL>(q, out, kp, vp, work, seqs, tables, alibi, H, kvh, dk, dv, bs, hp,    \
                            qtile, scale, softcap, window);                                       \
  }
#define ATTN_ALL(TN, TQ, TK)              \
  ATTN(paged_attn_##TN##_1, TQ, TK, 1)    \
  ATTN(paged_attn_##TN##_2, TQ, TK, 2)    \
  ATTN(paged_attn_##TN##_4, TQ, TK, 4)    \
  ATTN(paged_attn_##TN##_8, TQ, TK, 8)    \
  ATTN(paged_attn_##TN##_16, TQ, TK, 16)
ATTN_ALL(f32_f32, float, float)
ATTN_ALL(f32_f16, float, __half)
ATTN_ALL(f16_f16, __half, __half)
ATTN_ALL(bf16_bf16, __nv_bfloat16, __nv_bfloat16)

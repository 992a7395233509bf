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

// Programmatic dependent launch (sm_90; cuda/launch.rs launches every kernel here with it): a
// kernel may start while the one before it in the stream is still running. Each kernel lets its
// successor start at once (`pdl_trigger`), and waits for its predecessor to finish and its
// writes to be visible (`pdl_wait`) before it reads anything a kernel wrote or writes anything:
// before the wait only reads of the weights (never written in a step) are allowed, as in `gemv`.
// Without a programmatic predecessor both are no-ops.
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

// ---------------------------------------------------------------------------------------------
// A token whose K/V go nowhere: the padding rows of a CUDA graph's batch (cuda/graph.rs).
constexpr uint32_t NO_SLOT = 0xffffffffu;

// KV write: k (kv_heads, t, k_dim), v (kv_heads, t, v_dim), contiguous; token i goes to
// slots[i] = block * block_size + offset. grid (t, kv_heads), any block size.
template <typename TI, typename TK>
__device__ void kv_write(const TI* __restrict__ k, const TI* __restrict__ v, TK* __restrict__ kp,
                         TK* __restrict__ vp, const uint32_t* __restrict__ slots, int t, int kvh, int dk,
                         int dv, int bs) {
  pdl_trigger();
  pdl_wait();
  const int i = blockIdx.x, h = blockIdx.y;
  if (slots[i] == NO_SLOT) return;
  const size_t slot = slots[i];
  const size_t at = (slot / bs * kvh + h) * bs + slot % bs;
  const TI* ks = k + ((size_t)h * t + i) * dk;
  const TI* vs = v + ((size_t)h * t + i) * dv;
  for (int d = threadIdx.x; d < dk; d += blockDim.x) kp[at * dk + d] = from_f<TK>(to_f(ks[d]));
  for (int d = threadIdx.x; d < dv; d += blockDim.x) vp[at * dv + d] = from_f<TK>(to_f(vs[d]));
}

// Fused projection → cache: the rows of a fused `[q | k | v]` projection (T, (H + 2·kvh)·d),
// before rotary. Query heads are rotated into q_out (T, H, d); key heads rotated and value heads
// copied straight into the pool at slots[i] (layout as kv_write). Rotary: `rot` leading dims of
// each head turn (0: none), as pairs (j, j + rot/2) or, `interleaved`, (2j, 2j + 1), with cos/sin
// (T, rot/2); computed in f32 and rounded once. One CTA per (token, head): grid (T, H + 2·kvh).
// This replaces the head-split copies, two rotary launches and the KV write of the unfused path.
template <typename T, typename TK>
__device__ void qkv_rope_write(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                               T* __restrict__ q_out, TK* __restrict__ kp, TK* __restrict__ vp,
                               const uint32_t* __restrict__ slots, int H, int kvh, int d, int rot,
                               int interleaved, int bs) {
  pdl_trigger();
  pdl_wait();
  const int i = blockIdx.x, hh = blockIdx.y;
  const T* src = qkv + (size_t)i * (H + 2 * kvh) * d + (size_t)hh * d;
  const int half = rot / 2;
  const bool turn = hh < H + kvh && half > 0;
  const T* c = cos + (size_t)i * half;
  const T* sn = sin + (size_t)i * half;
  auto put = [&](int e, float val) {
    if (hh < H) {
      q_out[((size_t)i * H + hh) * d + e] = from_f<T>(val);
    } else if (slots[i] != NO_SLOT) {
      const size_t slot = slots[i];
      const int g = (hh - H) % kvh;
      const size_t at = (slot / bs * kvh + g) * bs + slot % bs;
      (hh < H + kvh ? kp : vp)[at * d + e] = from_f<TK>(val);
    }
  };
  if (turn) {
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
      const int a = interleaved ? 2 * j : j, b = interleaved ? 2 * j + 1 : j + half;
      const float x1 = to_f(src[a]), x2 = to_f(src[b]), cj = to_f(c[j]), sj = to_f(sn[j]);
      put(a, x1 * cj - x2 * sj);
      put(b, x1 * sj + x2 * cj);
    }
  }
  for (int e = (turn ? rot : 0) + threadIdx.x; e < d; e += blockDim.x) put(e, to_f(src[e]));
}

#define QKV_ROPE_WRITE(NAME, TI, TK)                                                              \
  extern "C" __global__ void NAME(const TI* qkv, const TI* cos, const TI* sin, TI* q_out, TK* kp, \
                                  TK* vp, const uint32_t* slots, int H, int kvh, int d, int rot,  \
                                  int interleaved, int bs) {                                      \
    qkv_rope_write<TI, TK>(qkv, cos, sin, q_out, kp, vp, slots, H, kvh, d, rot, interleaved, bs); \
  }
QKV_ROPE_WRITE(qkv_rope_write_f32_f32, float, float)
QKV_ROPE_WRITE(qkv_rope_write_f32_f16, float, __half)
QKV_ROPE_WRITE(qkv_rope_write_f16_f16, __half, __half)
QKV_ROPE_WRITE(qkv_rope_write_bf16_bf16, __nv_bfloat16, __nv_bfloat16)

// ---------------------------------------------------------------------------------------------
// Paged attention. One CTA of WARPS warps per (work item, query-head chunk):
// - a work item is (sequence, first token of a tile of up to QTILE query tokens);
// - a head chunk is `hp` consecutive query heads of one kv head's GQA group.
// The CTA's rows (token, head) share every K/V tile it loads into shared memory. Each warp
// owns rows warp, warp + WARPS, ... (at most MAXR) and keeps their running max, sum and
// output accumulator (lane owns v dims lane, lane + 32, ...) in registers.
//
// Key tiles hold KT = 32 consecutive positions: in the score phase lane j scores key j
// (reading its K row in shared memory as float4s, rows padded so that lanes hit distinct
// banks); in the value phase each lane accumulates its own dims over the 32 keys. Tiles are
// loaded 16 bytes a thread where the rows allow it (k_dim / v_dim a multiple of 16 bytes, an
// aligned pool).
//
// Split-K (flash-decoding): with `part` ≠ 0 the CTA at blockIdx.z covers only keys
// [lo + z·part, lo + (z + 1)·part) of its rows (part < 0: the kernel sizes it per sequence) and writes its unnormalized state (running max,
// sum, accumulator) to `part_ml` / `part_acc` instead of `out`; the last CTA of its (work
// item, head chunk) to finish (a ticket in `counters`) then merges the gridDim.z partitions
// (`merge_parts`) and writes `out`, in the same launch. A small batch (bs 1: one CTA per kv
// head) thus spreads one sequence's context over many SMs. A partition past a row's last key
// writes (-inf, 0, 0), which the merge weighs by 0.
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

// Online-softmax state of N rows (running max, running sum, E accumulator values each), empty.
template <int N, int E>
__device__ __forceinline__ void softmax_init(float (&m)[N], float (&l)[N], float (&acc)[N][E]) {
#pragma unroll
  for (int r = 0; r < N; r++) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int e = 0; e < E; e++) acc[r][e] = 0.f;
  }
}

// One online-softmax step of a row over a warp's tile of keys, one key per lane: `tmax` is the
// tile's (finite) max score, `x` this lane's score. Rescales the row's running sum and
// accumulator to the new max and returns this lane's probability (0 for a masked key).
template <int E>
__device__ __forceinline__ float softmax_update(float& m, float& l, float (&acc)[E], float tmax, float x,
                                                bool valid) {
  const float mnew = fmaxf(m, tmax);
  const float corr = expf(m - mnew);  // 0 while m is -inf
  const float p = valid ? expf(x - mnew) : 0.f;
  l = l * corr + warp_sum(p);
  m = mnew;
#pragma unroll
  for (int e = 0; e < E; e++) acc[e] *= corr;
  return p;
}

// Narrows a CTA's keys [lo, hi] to its split-K partition blockIdx.z: `part` keys a partition
// (> 0), or, with part < 0, whole `unit`s sized here per sequence so that its keys spread over
// gridDim.z partitions (a CUDA graph fixes the grid before the contexts are known). part = 0:
// one partition.
__device__ __forceinline__ void split_keys(int& lo, int& hi, int part, int unit) {
  if (part == 0) return;
  const int z = gridDim.z;
  const int p = part > 0 ? part : max(unit, (hi - lo + 1 + z * unit - 1) / (z * unit) * unit);
  lo += blockIdx.z * p;
  hi = min(hi, lo + p - 1);
}

// Merges the split-K partitions of `nrows` (token, head) rows, row i at index `row_of(i)`:
// out[row] = Σ_z acc_z w_z / Σ_z l_z w_z with w_z = e^(m_z - M), M = max_z m_z. One warp a row:
// lanes over the partitions for M and the sum, then each lane owns the value dims lane + 32 e
// (e < DVL) and walks the partitions, its DVL loads of several partitions in flight together.
// A partition without a key (m = -inf) weighs 0, and none past the row's last partition with a
// key is read (with a graph's fixed grid most are empty at short contexts). The order of every
// sum depends on nparts alone.
template <int DVL, typename TQ, typename RowOf>
__device__ void merge_parts(const float2* __restrict__ part_ml, const float* __restrict__ part_acc,
                            TQ* __restrict__ out, int nrows, RowOf row_of, int dv, int nparts) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int i = warp; i < nrows; i += nw) {
    const size_t row = row_of(i);
    const float2* ml = part_ml + row * nparts;
    float mx = -INFINITY;
    int zend = 0;
    for (int z = lane; z < nparts; z += 32) {
      const float m = ml[z].x;
      mx = fmaxf(mx, m);
      if (m > -INFINITY) zend = z + 1;
    }
    mx = warp_max(mx);
    zend = __reduce_max_sync(0xffffffff, zend);
    float sum = 0.f;
    for (int z = lane; z < zend; z += 32) {
      const float2 v = ml[z];
      if (v.x > -INFINITY) sum += v.y * expf(v.x - mx);
    }
    sum = warp_sum(sum);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const float* acc = part_acc + row * nparts * dv;
    float a[DVL];
#pragma unroll
    for (int e = 0; e < DVL; e++) a[e] = 0.f;
#pragma unroll 4
    for (int z = 0; z < zend; z++) {
      const float m = ml[z].x;
      const float w = m > -INFINITY ? expf(m - mx) : 0.f;
#pragma unroll
      for (int e = 0; e < DVL; e++) {
        const int d = lane + 32 * e;
        if (d < dv) a[e] = fmaf(acc[(size_t)z * dv + d], w, a[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < DVL; e++) {
      const int d = lane + 32 * e;
      if (d < dv) out[row * dv + d] = from_f<TQ>(a[e] * inv);
    }
  }
}

// Split-K's end for a CTA that has written its partitions: true in the last of the gridDim.z
// CTAs of its (work item, head chunk) to get here, which then merges them. The ticket counter
// goes back to 0 in that CTA (every other one has taken its ticket), ready for the next launch.
__device__ __forceinline__ bool last_partition(unsigned* __restrict__ counters) {
  __shared__ bool last;
  __threadfence();  // this CTA's partitions are visible to the merging CTA
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* c = counters + blockIdx.x * gridDim.y + blockIdx.y;
    last = atomicAdd(c, 1u) == gridDim.z - 1;
    if (last) *c = 0;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// Before `pdl_wait`: asks the first `keys` K and V rows of a CTA's range from `lo` into L2,
// so that the loads after the wait hit it. Rows of earlier steps are final; a row the kernel
// before writes is fetched again after the wait (L2 is where those writes land, so a prefetch
// only ever warms it).
template <typename TK>
__device__ __forceinline__ void prefetch_kv(const TK* kp, const TK* vp, const uint32_t* tables, int table, int kvh,
                                            int g, int bs, int dk, int dv, int lo, int keys) {
  const int kl = (dk * (int)sizeof(TK) + 127) / 128, vl = (dv * (int)sizeof(TK) + 127) / 128;
  for (int idx = threadIdx.x; idx < keys * (kl + vl); idx += blockDim.x) {
    const int j = idx / (kl + vl), c = idx - j * (kl + vl), pos = lo + j;
    const size_t row = ((size_t)tables[table + pos / bs] * kvh + g) * bs + pos % bs;
    const char* at = c < kl ? reinterpret_cast<const char*>(kp + row * dk) + 128 * c
                            : reinterpret_cast<const char*>(vp + row * dv) + 128 * (c - kl);
    asm volatile("prefetch.global.L2 [%0];" ::"l"(at));
  }
}

template <typename TQ, typename TK, int DVL>
__device__ void paged_attn(const TQ* __restrict__ q, TQ* __restrict__ out, const TK* __restrict__ kp,
                           const TK* __restrict__ vp, const int2* __restrict__ work,
                           const SeqInfo* __restrict__ seqs, const uint32_t* __restrict__ tables,
                           const float* __restrict__ alibi, int H, int kvh, int dk, int dv, int bs, int hp,
                           int qtile, float scale, float softcap, int window, int part,
                           float2* __restrict__ part_ml, float* __restrict__ part_acc,
                           unsigned* __restrict__ counters) {
  pdl_trigger();
  // K rows are padded to kst floats (a multiple of 4, ≡ 4 mod 32 at head dims that are a
  // multiple of 32): lane j reads key j's row as float4s, and the 8 lanes of each 128-byte
  // phase hit distinct banks. q rows are qst floats apart, also float4-aligned.
  extern __shared__ __align__(16) float smem[];
  const int qst = (dk + 3) / 4 * 4, kst = qst + 4;
  float* qs = smem;                        // (WARPS * MAXR, qst)
  float* ks = qs + WARPS * MAXR * qst;     // (KT, kst)
  float* vs = ks + KT * kst;               // (KT, dv)

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int2 w = work[blockIdx.x];
  const SeqInfo s = seqs[w.x];
  const int tile0 = w.y;
  const int ntok = min(qtile, s.len - tile0);
  const int nrows = ntok * hp;
  const int h0 = blockIdx.y * hp;  // first query head of the chunk
  const int g = h0 / (H / kvh);    // its kv head
  const int first_pos = s.start + tile0, last_pos = first_pos + ntok - 1;
  int lo = window > 0 ? max(0, first_pos + 1 - window) : 0;
  int hi = last_pos;  // the last key any row of the CTA may see
  split_keys(lo, hi, part, KT);
  // The layout is uploaded before the step: only q and this step's K/V rows need the wait.
  if (lo <= hi) prefetch_kv(kp, vp, tables, s.table, kvh, g, bs, dk, dv, lo, min(KT, hi - lo + 1));
  pdl_wait();
  constexpr int VEC = 16 / sizeof(TK);  // cache elements per 16-byte load
  const bool vec = dk % VEC == 0 && dv % VEC == 0 && ((uintptr_t)kp & 15) == 0 && ((uintptr_t)vp & 15) == 0;

  for (int idx = tid; idx < nrows * dk; idx += blockDim.x) {
    const int r = idx / dk, d = idx - r * dk;
    const int tok = r / hp, head = h0 + r % hp;
    const float x = to_f(q[((size_t)(s.row + tile0 + tok) * H + head) * dk + d]);
    qs[r * qst + d] = to_f(from_f<TK>(x));
  }

  float m[MAXR], l[MAXR], acc[MAXR][DVL];
  softmax_init(m, l, acc);

  for (int kb = lo; kb <= hi; kb += KT) {
    __syncthreads();  // the previous tile is consumed (and, the first time, q is stored)
    if (vec) {
      const int kc = dk / VEC, vc = dv / VEC;  // 16-byte chunks per row
      for (int idx = tid; idx < KT * kc; idx += blockDim.x) {
        const int j = idx / kc, d = (idx - j * kc) * VEC, pos = kb + j;
        uint4 raw = make_uint4(0, 0, 0, 0);
        if (pos <= hi) {
          const size_t blk = tables[s.table + pos / bs];
          raw = *reinterpret_cast<const uint4*>(kp + ((blk * kvh + g) * bs + pos % bs) * dk + d);
        }
        const TK* e = reinterpret_cast<const TK*>(&raw);
#pragma unroll
        for (int x = 0; x < VEC; x += 4)
          *reinterpret_cast<float4*>(ks + j * kst + d + x) =
              make_float4(to_f(e[x]), to_f(e[x + 1]), to_f(e[x + 2]), to_f(e[x + 3]));
      }
      for (int idx = tid; idx < KT * vc; idx += blockDim.x) {
        const int j = idx / vc, d = (idx - j * vc) * VEC, pos = kb + j;
        uint4 raw = make_uint4(0, 0, 0, 0);
        if (pos <= hi) {
          const size_t blk = tables[s.table + pos / bs];
          raw = *reinterpret_cast<const uint4*>(vp + ((blk * kvh + g) * bs + pos % bs) * dv + d);
        }
        const TK* e = reinterpret_cast<const TK*>(&raw);
#pragma unroll
        for (int x = 0; x < VEC; x++) vs[j * dv + d + x] = to_f(e[x]);
      }
    } else {
    for (int idx = tid; idx < KT * dk; idx += blockDim.x) {
      const int j = idx / dk, d = idx - j * dk, pos = kb + j;
      float x = 0.f;
      if (pos <= hi) {
        const size_t blk = tables[s.table + pos / bs];
        x = to_f(kp[((blk * kvh + g) * bs + pos % bs) * dk + d]);
      }
      ks[j * kst + d] = x;
    }
    for (int idx = tid; idx < KT * dv; idx += blockDim.x) {
      const int j = idx / dv, d = idx - j * dv, pos = kb + j;
      float x = 0.f;
      if (pos <= hi) {
        const size_t blk = tables[s.table + pos / bs];
        x = to_f(vp[((blk * kvh + g) * bs + pos % bs) * dv + d]);
      }
      vs[j * dv + d] = x;
    }
    }
    __syncthreads();

#pragma unroll
    for (int j = 0; j < MAXR; j++) {
      const int r = warp + WARPS * j;
      if (r >= nrows) break;
      const int head = h0 + r % hp, qpos = first_pos + r / hp, pos = kb + lane;
      const bool valid = pos <= qpos && pos <= hi && (window <= 0 || pos + window > qpos);
      float sc = -INFINITY;
      if (valid) {
        // Four independent partial sums: the loads of several dims are in flight at once
        // instead of one dependent FMA chain over the head dim.
        const float* qr = qs + r * qst;
        const float* kr = ks + lane * kst;
        float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
        int d = 0;
#pragma unroll 4
        for (; d + 4 <= dk; d += 4) {
          const float4 a = *reinterpret_cast<const float4*>(qr + d);
          const float4 b = *reinterpret_cast<const float4*>(kr + d);
          d0 = fmaf(a.x, b.x, d0);
          d1 = fmaf(a.y, b.y, d1);
          d2 = fmaf(a.z, b.z, d2);
          d3 = fmaf(a.w, b.w, d3);
        }
        for (; d < dk; d++) d0 = fmaf(qr[d], kr[d], d0);
        sc = ((d0 + d1) + (d2 + d3)) * scale;
        if (alibi) sc += alibi[head] * (float)pos;
        if (softcap > 0.f) sc = softcap * tanhf(sc / softcap);
      }
      const float tmax = warp_max(sc);
      if (tmax == -INFINITY) continue;  // no valid key in this tile for the row
      const float p = softmax_update(m[j], l[j], acc[j], tmax, sc, valid);
      // Unrolled over the tile's keys (a masked key's p is 0): the broadcasts and value loads
      // of several keys are in flight together.
#pragma unroll 4
      for (int jj = 0; jj < KT; jj++) {
        const float pj = __shfl_sync(0xffffffff, p, jj);
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
    if (part != 0) {
      const size_t at = ((size_t)(s.row + tile0 + tok) * H + head) * gridDim.z + blockIdx.z;
      if (lane == 0) part_ml[at] = make_float2(m[j], l[j]);
#pragma unroll
      for (int e = 0; e < DVL; e++) {
        const int d = lane + 32 * e;
        if (d < dv) part_acc[at * dv + d] = acc[j][e];
      }
      continue;
    }
    const float inv = l[j] > 0.f ? 1.f / l[j] : 0.f;
    TQ* o = out + ((size_t)(s.row + tile0 + tok) * H + head) * dv;
#pragma unroll
    for (int e = 0; e < DVL; e++) {
      const int d = lane + 32 * e;
      if (d < dv) o[d] = from_f<TQ>(acc[j][e] * inv);
    }
  }
  if (part != 0 && last_partition(counters)) {
    auto row_of = [&](int r) { return (size_t)(s.row + tile0 + r / hp) * H + h0 + r % hp; };
    merge_parts<DVL>(part_ml, part_acc, out, nrows, row_of, dv, gridDim.z);
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
  /* five CTAs a SM (shared memory allows five at head dim 128): registers capped to fit */      \
  extern "C" __global__ void __launch_bounds__(WARPS * 32, DVL <= 4 ? 5 : 1)                     \
      NAME(const TQ* q, TQ* out, const TK* kp, const TK* vp, const int2* work,                    \
           const SeqInfo* seqs, const uint32_t* tables, const float* alibi, int H, int kvh, int dk, \
           int dv, int bs, int hp, int qtile, float scale, float softcap, int window, int part,  \
           float2* part_ml, float* part_acc, unsigned* counters) {                                \
    paged_attn<TQ, TK, DVL>(q, out, kp, vp, work, seqs, tables, alibi, H, kvh, dk, dv, bs, hp,    \
                            qtile, scale, softcap, window, part, part_ml, part_acc, counters);    \
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

// ---------------------------------------------------------------------------------------------
// Decode attention: every work item is one query token (a decode step). One CTA of WARPS warps
// per (sequence, chunk of R ∈ {1, 2, 4, 8} query heads of one kv head, key partition z). The CTA's
// keys go to its warps a 32-key tile at a time (warp w takes tiles w, w + WARPS, ...). In a tile
// lane j scores key j straight from global memory (its K row in 16-byte loads) against the
// chunk's query rows in shared memory; then each lane accumulates the value dims 2·lane + 64·e
// and the ones after them over the tile's keys, the warp reading each V row as one coalesced
// row of 2-value loads. Nothing is staged
// in shared memory and there is no barrier in the loop: each warp streams its own tiles and
// keeps its rows' running max, sum and accumulator in registers; the warps' states merge
// through shared memory at the end. `part` as in paged_attn (0: the whole context; > 0: fixed
// partitions; < 0: sized here per sequence). K rows must be 16-byte aligned (DK a multiple of
// 16 bytes, an aligned pool): cuda/attention.rs checks.
// Two consecutive cache values (an even index: 4- or 8-byte aligned) as floats.
__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load2(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ float2 load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

template <typename TQ, typename TK, int DK, int DV, int R>
__device__ void paged_decode(const TQ* __restrict__ q, TQ* __restrict__ out, const TK* __restrict__ kp,
                             const TK* __restrict__ vp, const int2* __restrict__ work,
                             const SeqInfo* __restrict__ seqs, const uint32_t* __restrict__ tables,
                             const float* __restrict__ alibi, int H, int kvh, int bs, float scale,
                             float softcap, int window, int part, float2* __restrict__ part_ml,
                             float* __restrict__ part_acc, unsigned* __restrict__ counters) {
  pdl_trigger();
  pdl_wait();
  constexpr int VEC = 16 / sizeof(TK);  // cache elements per 16-byte load
  constexpr int KC = DK / VEC;          // 16-byte chunks per K row
  constexpr int DPL = DV / 32;          // value dims per lane
  extern __shared__ __align__(16) float smem[];
  float* qs = smem;                          // (R, DK)
  float2* wml = reinterpret_cast<float2*>(qs + R * DK);  // (WARPS, R)
  float* wacc = reinterpret_cast<float*>(wml + WARPS * R);  // (WARPS, R, DV)

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const SeqInfo s = seqs[work[blockIdx.x].x];
  const int h0 = blockIdx.y * R, g = h0 / (H / kvh);
  const int qpos = s.start;
  int lo = window > 0 ? max(0, qpos + 1 - window) : 0;
  int hi = qpos;
  split_keys(lo, hi, part, WARPS * KT);  // whole tiles for every warp
  for (int idx = tid; idx < R * DK; idx += blockDim.x) {
    const int r = idx / DK, d = idx - r * DK;
    qs[idx] = to_f(from_f<TK>(to_f(q[((size_t)s.row * H + h0 + r) * DK + d])));
  }
  __syncthreads();

  float m[R], l[R], acc[R][DPL];
  softmax_init(m, l, acc);

  for (int kb = lo + warp * KT; kb <= hi; kb += WARPS * KT) {
    const int pos = kb + lane;
    const bool valid = pos <= hi;
    // This lane's key: its row in the pool (block · kvh + g) · bs + offset.
    uint32_t krow = 0;
    float sc[R];
#pragma unroll
    for (int r = 0; r < R; r++) sc[r] = 0.f;
    if (valid) {
      krow = (tables[s.table + pos / bs] * kvh + g) * bs + pos % bs;
      const uint4* kr = reinterpret_cast<const uint4*>(kp + (size_t)krow * DK);
#pragma unroll 8
      for (int c = 0; c < KC; c++) {
        const uint4 raw = __ldg(kr + c);
        const TK* e = reinterpret_cast<const TK*>(&raw);
        float kv[VEC];
#pragma unroll
        for (int x = 0; x < VEC; x++) kv[x] = to_f(e[x]);
#pragma unroll
        for (int r = 0; r < R; r++) {
          {
            const float* qr = qs + r * DK + c * VEC;
#pragma unroll
            for (int x = 0; x < VEC; x++) sc[r] = fmaf(qr[x], kv[x], sc[r]);
          }
        }
      }
    }
    const int nk = min(KT, hi - kb + 1);  // keys of this tile in range (warp-uniform)
    float p[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      p[r] = 0.f;
      float x = -INFINITY;
      if (valid) {
        x = sc[r] * scale;
        if (alibi) x += alibi[h0 + r] * (float)pos;
        if (softcap > 0.f) x = softcap * tanhf(x / softcap);
      }
      // The tile's max is finite: key kb is always in range.
      p[r] = softmax_update(m[r], l[r], acc[r], warp_max(x), x, valid);
    }
#pragma unroll 8
    for (int j = 0; j < nk; j++) {
      const uint32_t vrow = __shfl_sync(0xffffffff, krow, j);
      const TK* vr = vp + (size_t)vrow * DV;
      float v[DPL];  // dims 2 (lane + 32 e) and the one after it, two to a load
#pragma unroll
      for (int e = 0; e < DPL / 2; e++) {
        const float2 x = load2(vr + 2 * (lane + 32 * e));
        v[2 * e] = x.x;
        v[2 * e + 1] = x.y;
      }
#pragma unroll
      for (int r = 0; r < R; r++) {
          const float pj = __shfl_sync(0xffffffff, p[r], j);
#pragma unroll
        for (int e = 0; e < DPL; e++) acc[r][e] = fmaf(pj, v[e], acc[r][e]);
      }
    }
  }

  // Merge the warps: each leaves (max, sum) and its accumulator, then every thread combines
  // its share of (row, dim).
#pragma unroll
  for (int r = 0; r < R; r++) {
    if (lane == 0) wml[warp * R + r] = make_float2(m[r], l[r]);
#pragma unroll
    for (int e = 0; e < DPL; e++) wacc[(warp * R + r) * DV + 2 * (lane + 32 * (e / 2)) + e % 2] = acc[r][e];
  }
  __syncthreads();
  for (int idx = tid; idx < R * DV; idx += blockDim.x) {
    const int r = idx / DV, d = idx - r * DV;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; w++) mx = fmaxf(mx, wml[w * R + r].x);
    float sum = 0.f, a = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) {
      const float2 ml = wml[w * R + r];
      if (ml.x == -INFINITY) continue;
      const float f = expf(ml.x - mx);
      sum = fmaf(ml.y, f, sum);
      a = fmaf(wacc[(w * R + r) * DV + d], f, a);
    }
    const int head = h0 + r;
    if (part != 0) {
      const size_t at = ((size_t)s.row * H + head) * gridDim.z + blockIdx.z;
      if (d == 0) part_ml[at] = make_float2(mx, sum);
      part_acc[at * DV + d] = a;
    } else {
      out[((size_t)s.row * H + head) * DV + d] = from_f<TQ>(sum > 0.f ? a / sum : 0.f);
    }
  }
  if (part != 0 && last_partition(counters)) {
    auto row_of = [&](int r) { return (size_t)s.row * H + h0 + r; };
    merge_parts<DPL>(part_ml, part_acc, out, R, row_of, DV, gridDim.z);
  }
}

#define DECODE(NAME, TQ, TK, D, R)                                                               \
  extern "C" __global__ void __launch_bounds__(WARPS * 32)                                       \
      NAME(const TQ* q, TQ* out, const TK* kp, const TK* vp, const int2* work, const SeqInfo* seqs, \
           const uint32_t* tables, const float* alibi, int H, int kvh, int bs, float scale,       \
           float softcap, int window, int part, float2* part_ml, float* part_acc, unsigned* counters) { \
    paged_decode<TQ, TK, D, D, R>(q, out, kp, vp, work, seqs, tables, alibi, H, kvh, bs, scale,   \
                                  softcap, window, part, part_ml, part_acc, counters);           \
  }
#define DECODE_R(TN, TQ, TK, D)                   \
  DECODE(paged_decode_##TN##_##D##_1, TQ, TK, D, 1) \
  DECODE(paged_decode_##TN##_##D##_2, TQ, TK, D, 2) \
  DECODE(paged_decode_##TN##_##D##_4, TQ, TK, D, 4) \
  DECODE(paged_decode_##TN##_##D##_8, TQ, TK, D, 8)
#define DECODE_ALL(TN, TQ, TK) \
  DECODE_R(TN, TQ, TK, 64)      \
  DECODE_R(TN, TQ, TK, 128)     \
  DECODE_R(TN, TQ, TK, 256)
DECODE_ALL(f32_f32, float, float)
DECODE_ALL(f32_f16, float, __half)
DECODE_ALL(f16_f16, __half, __half)
DECODE_ALL(bf16_bf16, __nv_bfloat16, __nv_bfloat16)

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
  pdl_wait();
  __shared__ float part[32];
  constexpr int VEC = 16 / sizeof(T);
  const size_t base = (size_t)blockIdx.x * dim;
  const int nch = dim / VEC;
  const bool vec = aligned && dim % VEC == 0 && nch <= NORM_MAXC * (int)blockDim.x;
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
// is rounded again, as the unfused pair of ops does.
template <typename T>
__device__ void silu_mul(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out, int rows,
                         int ff, int ld) {
  pdl_trigger();
  pdl_wait();
  const size_t n = (size_t)rows * ff;
  for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
    const size_t r = k / ff, i = k - r * ff;
    const float g = to_f(gate[r * ld + i]);
    const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
    out[k] = from_f<T>(a * to_f(up[r * ld + i]));
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
// Small-batch dense matmul (decode): y (M, N) = x (M, K) · Wᵀ with W (N, K) row-major, M ≤ 8,
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

template <typename T, int M>
__device__ __forceinline__ void dot8(const uint4& wv, const uint4* __restrict__ xr, int c, int kc, float* acc) {
  float wf[8];
  unpack<T>(wv, wf);
#pragma unroll
  for (int m = 0; m < M; m++) {
    float xf[8];
    unpack<T>(__ldg(xr + (size_t)m * kc + c), xf);
#pragma unroll
    for (int e = 0; e < 8; e++) acc[m] = fmaf(wf[e], xf[e], acc[m]);
  }
}

// GATED (SwiGLU's `[gate | up]` projection, W (2N, K)): the warps of feature n stream rows n and
// N + n and write silu(gate) · up, rounded as silu_mul rounds it (gate and up to T, silu to T,
// the product to T): the same values as the GEMV over W (same wpr) followed by silu_mul, one
// launch and no `[gate | up]` round trip through memory.
template <typename T, int M, bool GATED>
__device__ void gemv(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int N, int K, int wpr) {
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
          if (c + 32 * u < c1) dot8<T, M>(wv[r][u], xr, c + 32 * u, kc, acc[r]);
    }
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

#define GEMV(TN, T, M)                                                                            \
  extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)                                  \
      gemv_##TN##_##M(const T* x, const T* w, T* y, int N, int K, int wpr) {                      \
    gemv<T, M, false>(x, w, y, N, K, wpr);                                                        \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)                                  \
      gemv_silu_##TN##_##M(const T* x, const T* w, T* y, int N, int K, int wpr) {                 \
    gemv<T, M, true>(x, w, y, N, K, wpr);                                                         \
  }
#define GEMV_ALL(TN, T) \
  GEMV(TN, T, 1)        \
  GEMV(TN, T, 2)        \
  GEMV(TN, T, 3)        \
  GEMV(TN, T, 4)        \
  GEMV(TN, T, 5)        \
  GEMV(TN, T, 6)        \
  GEMV(TN, T, 7)        \
  GEMV(TN, T, 8)
GEMV_ALL(bf16, __nv_bfloat16)
GEMV_ALL(f16, __half)

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

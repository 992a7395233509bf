// Part of kernels.cu (included there after its shared helpers).
//
// The paged KV cache's write and paged attention (prefill and decode
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

// One rotary pair (x1, x2) turned by (c, s): (x1·c − x2·s, x1·s + x2·c), each product rounded
// before the sum, so that every kernel that rotates (qkv_rope_write, paged_decode's fused
// prologue) gets the same bits whatever the compiler contracts elsewhere.
__device__ __forceinline__ float2 rope_pair(float x1, float x2, float c, float s) {
  return make_float2(__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)), __fadd_rn(__fmul_rn(x1, s), __fmul_rn(x2, c)));
}

// Fused projection → cache: the rows of a fused `[q | k | v]` projection (T, (H + 2·kvh)·d),
// before rotary. Query heads are rotated into q_out (T, H, d); key heads rotated and value heads
// copied straight into the pool at slots[i] (layout as kv_write). Rotary: `rot` leading dims of
// each head turn (0: none), as pairs (j, j + rot/2) or, `interleaved`, (2j, 2j + 1), with cos/sin
// (T, rot/2); computed in f32 and rounded once. A row of threads (threadIdx.y) per (token, head):
// grid (T, ⌈(H + 2·kvh) / blockDim.y⌉). This replaces the head-split copies, two rotary launches
// and the KV write of the unfused path.
template <typename T, typename TK>
__device__ void qkv_rope_write(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                               T* __restrict__ q_out, TK* __restrict__ kp, TK* __restrict__ vp,
                               const uint32_t* __restrict__ slots, int H, int kvh, int d, int rot,
                               int interleaved, int bs) {
  pdl_trigger();
  pdl_wait();
  const int i = blockIdx.x, hh = blockIdx.y * blockDim.y + threadIdx.y;
  if (hh >= H + 2 * kvh) return;
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
      const float2 y = rope_pair(to_f(src[a]), to_f(src[b]), to_f(c[j]), to_f(sn[j]));
      put(a, y.x);
      put(b, y.y);
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

// qkv_rope_write's vector form, for the common case: 16-bit activations and a cache of their
// type, rotary over the whole head in halves (j, j + d/2) or none, d a multiple of 16 and every
// row 16-byte aligned (cuda/attention.rs checks). A thread takes dims j..j+7 of both halves of
// one head with 16-byte loads and stores: blockDim.x = d / 16 threads a head, blockDim.y heads a
// CTA, grid (T, ⌈(H + 2·kvh) / blockDim.y⌉). The same rounding as the scalar form, bit for bit.
// (The scalar form moves 2 bytes a thread: 149 µs for 8192 rows of the 8B shape, 1.3 TB/s.)
template <typename T>
__device__ void qkv_rope_write_v(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                                 T* __restrict__ q_out, T* __restrict__ kp, T* __restrict__ vp,
                                 const uint32_t* __restrict__ slots, int H, int kvh, int d, int rot, int bs) {
  pdl_trigger();
  pdl_wait();
  const int i = blockIdx.x, hh = blockIdx.y * blockDim.y + threadIdx.y;
  if (hh >= H + 2 * kvh) return;
  const int half = d / 2, j = threadIdx.x * 8;
  T* dst;
  if (hh < H) {
    dst = q_out + ((size_t)i * H + hh) * d;
  } else {
    if (slots[i] == NO_SLOT) return;
    const size_t slot = slots[i];
    const size_t at = (slot / bs * kvh + (hh - H) % kvh) * bs + slot % bs;
    dst = (hh < H + kvh ? kp : vp) + at * d;
  }
  const T* src = qkv + ((size_t)i * (H + 2 * kvh) + hh) * d;
  uint4 a = *reinterpret_cast<const uint4*>(src + j), b = *reinterpret_cast<const uint4*>(src + j + half);
  if (rot > 0 && hh < H + kvh) {
    const uint4 cv = *reinterpret_cast<const uint4*>(cos + (size_t)i * half + j);
    const uint4 sv = *reinterpret_cast<const uint4*>(sin + (size_t)i * half + j);
    T* x1 = reinterpret_cast<T*>(&a);
    T* x2 = reinterpret_cast<T*>(&b);
    const T* c = reinterpret_cast<const T*>(&cv);
    const T* sn = reinterpret_cast<const T*>(&sv);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      const float2 y = rope_pair(to_f(x1[e]), to_f(x2[e]), to_f(c[e]), to_f(sn[e]));
      x1[e] = from_f<T>(y.x);
      x2[e] = from_f<T>(y.y);
    }
  }
  *reinterpret_cast<uint4*>(dst + j) = a;
  *reinterpret_cast<uint4*>(dst + j + half) = b;
}

#define QKV_ROPE_WRITE_V(NAME, T)                                                                  \
  extern "C" __global__ void NAME(const T* qkv, const T* cos, const T* sin, T* q_out, T* kp, T* vp, \
                                  const uint32_t* slots, int H, int kvh, int d, int rot, int bs) {   \
    qkv_rope_write_v<T>(qkv, cos, sin, q_out, kp, vp, slots, H, kvh, d, rot, bs);                    \
  }
QKV_ROPE_WRITE_V(qkv_rope_write_v_f16, __half)
QKV_ROPE_WRITE_V(qkv_rope_write_v_bf16, __nv_bfloat16)

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
// head) thus spreads one sequence's context over many SMs. A partition past the CTA's last key
// leaves at once (`split_keys`); the merge reads the partitions with keys only.
constexpr int WARPS = 4;
constexpr int MAXR = 4;
constexpr int KT = 32;

struct SeqInfo {
  int row;    // first row of the sequence in q / out
  int len;    // query tokens of this chunk
  int start;  // position of its first token (tokens 0..start are cached)
  int table;  // offset of its block table in `tables`
};


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
// one partition. Returns how many of the partitions hold keys: the first `used` (at least one);
// a CTA at blockIdx.z ≥ used has nothing to do, and leaves at once (at bs 1 a graph's grid is
// mostly such CTAs), neither writing its partition nor taking a ticket.
__device__ __forceinline__ int split_keys(int& lo, int& hi, int part, int unit) {
  if (part == 0) return 1;
  const int z = gridDim.z, n = hi - lo + 1;
  const int p = part > 0 ? part : max(unit, (n + z * unit - 1) / (z * unit) * unit);
  const int used = min(z, max(1, (n + p - 1) / p));
  lo += blockIdx.z * p;
  hi = min(hi, lo + p - 1);
  return used;
}

// Merges the split-K partitions of `nrows` (token, head) rows, row i at index `row_of(i)`:
// out[row] = Σ_z acc_z w_z / Σ_z l_z w_z with w_z = e^(m_z - M), M = max_z m_z, over the `used`
// partitions that hold keys (of `nparts` a row in the scratch). One warp a row: lanes over the
// partitions for M and the sum, then each lane owns the value dims lane + 32 e (e < DVL) and
// walks the partitions, its DVL loads of several partitions in flight together. A partition
// whose keys are all masked (m = -inf) weighs 0. The order of every sum depends on `used`
// alone.
template <int DVL, typename TQ, typename RowOf>
__device__ void merge_parts(const float2* __restrict__ part_ml, const float* __restrict__ part_acc,
                            TQ* __restrict__ out, int nrows, RowOf row_of, int dv, int nparts, int used) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int i = warp; i < nrows; i += nw) {
    const size_t row = row_of(i);
    const float2* ml = part_ml + row * nparts;
    float mx = -INFINITY;
    for (int z = lane; z < used; z += 32) mx = fmaxf(mx, ml[z].x);
    mx = warp_max(mx);
    float sum = 0.f;
    for (int z = lane; z < used; z += 32) {
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
    for (int z = 0; z < used; z++) {
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

// Split-K's end for a CTA that has written its partitions: true in the last of the `used` CTAs
// of its (work item, head chunk) with keys to get here, which then merges them. The ticket
// counter goes back to 0 in that CTA (every other one has taken its ticket), ready for the next
// launch.
__device__ __forceinline__ bool last_partition(unsigned* __restrict__ counters, int used) {
  __shared__ bool last;
  __threadfence();  // this CTA's partitions are visible to the merging CTA
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* c = counters + blockIdx.x * gridDim.y + blockIdx.y;
    last = atomicAdd(c, 1u) == (unsigned)used - 1;
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

// Stages the KT cache rows from position kb (rows past `hi` as zeros) of kv head g, `dim`
// values each, into shared memory as f32 rows `stride` apart: K into its padded rows, V into
// packed ones. With `vec` (dim and the pool 16-byte aligned, stride a multiple of 4), one
// 16-byte load a thread and float4 stores; otherwise one value at a time.
template <typename TK>
__device__ __forceinline__ void stage_tile(const TK* __restrict__ src, float* __restrict__ dst, int stride, int dim,
                                           const uint32_t* __restrict__ tables, int table, int kvh, int g, int bs,
                                           int kb, int hi, bool vec) {
  constexpr int VEC = 16 / sizeof(TK);  // cache elements per 16-byte load
  if (vec) {
    const int chunks = dim / VEC;
    for (int idx = threadIdx.x; idx < KT * chunks; idx += blockDim.x) {
      const int j = idx / chunks, d = (idx - j * chunks) * VEC, pos = kb + j;
      uint4 raw = make_uint4(0, 0, 0, 0);
      if (pos <= hi) {
        const size_t blk = tables[table + pos / bs];
        raw = *reinterpret_cast<const uint4*>(src + ((blk * kvh + g) * bs + pos % bs) * dim + d);
      }
      const TK* e = reinterpret_cast<const TK*>(&raw);
#pragma unroll
      for (int x = 0; x < VEC; x += 4)
        *reinterpret_cast<float4*>(dst + j * stride + d + x) =
            make_float4(to_f(e[x]), to_f(e[x + 1]), to_f(e[x + 2]), to_f(e[x + 3]));
    }
    return;
  }
  for (int idx = threadIdx.x; idx < KT * dim; idx += blockDim.x) {
    const int j = idx / dim, d = idx - j * dim, pos = kb + j;
    float x = 0.f;
    if (pos <= hi) {
      const size_t blk = tables[table + pos / bs];
      x = to_f(src[((blk * kvh + g) * bs + pos % bs) * dim + d]);
    }
    dst[j * stride + d] = x;
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
  const int used = split_keys(lo, hi, part, KT);
  if ((int)blockIdx.z >= used) return;
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
    stage_tile(kp, ks, kst, dk, tables, s.table, kvh, g, bs, kb, hi, vec);
    stage_tile(vp, vs, dv, dv, tables, s.table, kvh, g, bs, kb, hi, vec);
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
  if (part != 0 && last_partition(counters, used)) {
    auto row_of = [&](int r) { return (size_t)(s.row + tile0 + r / hp) * H + h0 + r % hp; };
    merge_parts<DVL>(part_ml, part_acc, out, nrows, row_of, dv, gridDim.z, used);
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

// Part of kernels.cu (included there after its shared helpers).
// ---------------------------------------------------------------------------------------------
// Decode attention: every work item is one query token (a decode step). One CTA of W warps
// per (sequence, chunk of R ∈ {1, 2, 4, 8} query heads of one kv head, key partition z). The CTA's
// keys go to its warps a 32-key tile at a time (warp w takes tiles w, w + W, ...). In a tile
// lane j scores key j straight from global memory (its K row in 16-byte loads) against the
// chunk's query rows in shared memory; then each lane accumulates the value dims 2·lane + 64·e
// and the ones after them over the tile's keys, the warp reading each V row as one coalesced
// row of 2-value loads. Nothing is staged
// in shared memory and there is no barrier in the loop: each warp streams its own tiles and
// keeps its rows' running max, sum and accumulator in registers; the warps' states merge
// through shared memory at the end. `part` as in paged_attn (0: the whole context; > 0: fixed
// partitions; < 0: sized here per sequence; a sequence whose keys fit one partition writes `out`
// at once, without the scratch and the merge). K rows must be 16-byte aligned (DK a multiple of
// 16 bytes, an aligned pool): cuda/attention.rs checks.
//
// W = 4 serves large batches (a CTA per SM or more). W = 16 serves small ones (bs 1: a CTA per
// query head): its partitions hold 16 tiles, so up to 512 keys a sequence are one CTA whose
// warps each take one tile at once and merge in shared memory, with no split-K round trip
// through global memory. Before the wait each warp looks up its first tile's rows (the layout is
// uploaded before the step) and asks them into L2 (`prefetch_kv`'s reasoning).
//
// ROPE (16 warps only; a fused `[q | k | v]` projection's rows before rotary, with a 16-bit
// cache of the activations' type): the kernel does qkv_rope_write's work itself, so that no
// launch sits between the projection and attention. `q` is then the projection (rows of
// (H + 2·kvh)·DK); the CTA rotates its query heads and its kv head's new key, rounds them as
// qkv_rope_write and the cache would, and keeps the new key and value in shared memory: the lane
// (and the value step) of the token's own position reads them from there, every other key comes
// from the pool as before. The CTA of the group's first head and the token's partition writes
// them into the pool at slots[row], for the next steps. The values are qkv_rope_write's followed
// by the unfused kernel's, bit for bit.

// Two consecutive cache values (an even index: 4- or 8-byte aligned) as floats.
__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load2(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ float2 load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

template <typename TQ, typename TK, int DK, int DV, int R, int W, bool ROPE>
__device__ void paged_decode(const TQ* __restrict__ q, TQ* __restrict__ out, TK* __restrict__ kp,
                             TK* __restrict__ vp, const int2* __restrict__ work,
                             const SeqInfo* __restrict__ seqs, const uint32_t* __restrict__ tables,
                             const float* __restrict__ alibi, int H, int kvh, int bs, float scale,
                             float softcap, int window, int part, float2* __restrict__ part_ml,
                             float* __restrict__ part_acc, unsigned* __restrict__ counters,
                             const TQ* __restrict__ cos, const TQ* __restrict__ sin,
                             const uint32_t* __restrict__ slots, int rot, int interleaved) {
  pdl_trigger();
  constexpr int VEC = 16 / sizeof(TK);  // cache elements per 16-byte load
  constexpr int KC = DK / VEC;          // 16-byte chunks per K row
  constexpr int DPL = DV / 32;          // value dims per lane
  extern __shared__ __align__(16) float smem[];
  float* qs = smem;                          // (R, DK)
  float2* wml = reinterpret_cast<float2*>(qs + R * DK);  // (W, R)
  float* wacc = reinterpret_cast<float*>(wml + W * R);  // (W, R, DV)
  // ROPE: the token's own key and value, as the cache holds them (16-byte aligned: every part
  // above is a multiple of 16 bytes).
  TK* kn = reinterpret_cast<TK*>(wacc + W * R * DV);  // (DK)
  TK* vn = kn + DK;                                   // (DV)

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const SeqInfo s = seqs[work[blockIdx.x].x];
  const int h0 = blockIdx.y * R, g = h0 / (H / kvh);
  const int qpos = s.start;
  int lo = window > 0 ? max(0, qpos + 1 - window) : 0;
  int hi = qpos;
  const int used = split_keys(lo, hi, part, W * KT);  // whole tiles for every warp
  if ((int)blockIdx.z >= used) return;
  // The layout is uploaded before the step: only q and this step's K/V rows need the wait.
  // This lane's key in the warp's first tile, its row in the pool (block · kvh + g) · bs + offset.
  const int kb0 = lo + warp * KT;
  uint32_t krow0 = 0;
  if (kb0 + lane <= hi) {
    const int pos = kb0 + lane;
    krow0 = (tables[s.table + pos / bs] * kvh + g) * bs + pos % bs;
    if (W > WARPS) {
      const char* kr = reinterpret_cast<const char*>(kp + (size_t)krow0 * DK);
      const char* vr = reinterpret_cast<const char*>(vp + (size_t)krow0 * DV);
#pragma unroll
      for (int c = 0; c < (int)(DK * sizeof(TK)); c += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(kr + c));
#pragma unroll
      for (int c = 0; c < (int)(DV * sizeof(TK)); c += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(vr + c));
    }
  }
  pdl_wait();
  if (ROPE) {
    const TQ* row = q + (size_t)s.row * (H + 2 * kvh) * DK;
    const int half = rot / 2;
    // A thread a pair of values: over the R query heads and the kv head's key, DK / 2 pairs a
    // head (the rot / 2 rotary pairs, then the dims past rot two at a time), then the value's.
    constexpr int NQK = (R + 1) * DK / 2;
    for (int idx = tid; idx < NQK + DV / 2; idx += blockDim.x) {
      if (idx >= NQK) {
        const int d = 2 * (idx - NQK);
        const TQ* src = row + (size_t)(H + kvh + g) * DK;
        vn[d] = from_f<TK>(to_f(src[d]));
        vn[d + 1] = from_f<TK>(to_f(src[d + 1]));
        continue;
      }
      const int r = idx / (DK / 2), e = idx - r * (DK / 2);
      const TQ* src = row + (size_t)(r < R ? h0 + r : H + g) * DK;
      const bool turn = e < half;
      const int a = turn ? (interleaved ? 2 * e : e) : rot + 2 * (e - half);
      const int b = turn ? (interleaved ? 2 * e + 1 : e + half) : a + 1;
      const float x1 = to_f(src[a]), x2 = to_f(src[b]);
      const float2 y = turn ? rope_pair(x1, x2, to_f(cos[(size_t)s.row * half + e]), to_f(sin[(size_t)s.row * half + e]))
                            : make_float2(x1, x2);
      if (r < R) {
        qs[r * DK + a] = to_f(from_f<TK>(to_f(from_f<TQ>(y.x))));
        qs[r * DK + b] = to_f(from_f<TK>(to_f(from_f<TQ>(y.y))));
      } else {
        kn[a] = from_f<TK>(y.x);
        kn[b] = from_f<TK>(y.y);
      }
    }
  } else {
    for (int idx = tid; idx < R * DK; idx += blockDim.x) {
      const int r = idx / DK, d = idx - r * DK;
      qs[idx] = to_f(from_f<TK>(to_f(q[((size_t)s.row * H + h0 + r) * DK + d])));
    }
  }
  __syncthreads();
  // The group's first CTA in the token's partition stores the new key and value.
  if (ROPE && h0 % (H / kvh) == 0 && (int)blockIdx.z == used - 1 && slots[s.row] != NO_SLOT) {
    const size_t slot = slots[s.row];
    const size_t at = (slot / bs * kvh + g) * bs + slot % bs;
    for (int d = tid; d < DK; d += blockDim.x) kp[at * DK + d] = kn[d];
    for (int d = tid; d < DV; d += blockDim.x) vp[at * DV + d] = vn[d];
  }

  float m[R], l[R], acc[R][DPL];
  softmax_init(m, l, acc);

  for (int kb = kb0; kb <= hi; kb += W * KT) {
    const int pos = kb + lane;
    const bool valid = pos <= hi;
    // This lane's key: its row in the pool (block · kvh + g) · bs + offset.
    uint32_t krow = 0;
    // Each row's dot product as SA interleaved partial sums (element x of a chunk goes to sum
    // x % SA), so that a CTA of one or two heads still has four FMA chains a lane in flight.
    constexpr int SA = R >= 4 ? 1 : 4 / R;
    float sc[R][SA];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int a = 0; a < SA; a++) sc[r][a] = 0.f;
    if (valid) {
      krow = kb == kb0 ? krow0 : (tables[s.table + pos / bs] * kvh + g) * bs + pos % bs;
      const uint4* kr = reinterpret_cast<const uint4*>(kp + (size_t)krow * DK);
      // ROPE: the token's own key is in shared memory (its slot may be being written).
      const bool fresh = ROPE && pos == qpos;
#pragma unroll 8
      for (int c = 0; c < KC; c++) {
        const uint4 raw = fresh ? reinterpret_cast<const uint4*>(kn)[c] : __ldg(kr + c);
        const TK* e = reinterpret_cast<const TK*>(&raw);
        float kv[VEC];
#pragma unroll
        for (int x = 0; x < VEC; x++) kv[x] = to_f(e[x]);
#pragma unroll
        for (int r = 0; r < R; r++) {
          const float* qr = qs + r * DK + c * VEC;
#pragma unroll
          for (int x = 0; x < VEC; x++) sc[r][x % SA] = fmaf(qr[x], kv[x], sc[r][x % SA]);
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
        float dot = sc[r][0];
#pragma unroll
        for (int a = 1; a < SA; a++) dot += sc[r][a];
        x = dot * scale;
        if (alibi) x += alibi[h0 + r] * (float)pos;
        if (softcap > 0.f) x = softcap * tanhf(x / softcap);
      }
      // The tile's max is finite: key kb is always in range.
      p[r] = softmax_update(m[r], l[r], acc[r], warp_max(x), x, valid);
    }
#pragma unroll 8
    for (int j = 0; j < nk; j++) {
      const uint32_t vrow = __shfl_sync(0xffffffff, krow, j);
      const TK* vr = ROPE && kb + j == qpos ? vn : vp + (size_t)vrow * DV;
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
    for (int w = 0; w < W; w++) mx = fmaxf(mx, wml[w * R + r].x);
    float sum = 0.f, a = 0.f;
#pragma unroll
    for (int w = 0; w < W; w++) {
      const float2 ml = wml[w * R + r];
      if (ml.x == -INFINITY) continue;
      const float f = expf(ml.x - mx);
      sum = fmaf(ml.y, f, sum);
      a = fmaf(wacc[(w * R + r) * DV + d], f, a);
    }
    const int head = h0 + r;
    if (used > 1) {
      const size_t at = ((size_t)s.row * H + head) * gridDim.z + blockIdx.z;
      if (d == 0) part_ml[at] = make_float2(mx, sum);
      part_acc[at * DV + d] = a;
    } else {
      out[((size_t)s.row * H + head) * DV + d] = from_f<TQ>(sum > 0.f ? a / sum : 0.f);
    }
  }
  if (used > 1 && last_partition(counters, used)) {
    auto row_of = [&](int r) { return (size_t)s.row * H + h0 + r; };
    merge_parts<DPL>(part_ml, part_acc, out, R, row_of, DV, gridDim.z, used);
  }
}

// With a 16-bit cache, head dims up to 128 and up to four heads a CTA, the registers of the
// 4-warp kernel are capped for 8 CTAs an SM (64 a thread): at 80 a bs-128 launch of 1024 CTAs
// ran 6 an SM, in 1.29 waves (Nsight Compute, bench/RESULTS.md). ptxas then spills at most 28
// bytes; the other variants (f32 caches, head dim 256, eight heads) would spill up to 384 bytes
// under the cap, and keep their registers. The 16-warp kernel runs one CTA an SM.
#define DECODE_MIN_CTAS(TK, D, R, W) ((W) == WARPS && (R) <= 4 && (D) <= 128 && sizeof(TK) == 2 ? 8 : 1)
#define DECODE(NAME, TQ, TK, D, R, W, ROPE)                                                      \
  extern "C" __global__ void __launch_bounds__(W * 32, DECODE_MIN_CTAS(TK, D, R, W))             \
      NAME(const TQ* q, TQ* out, TK* kp, TK* vp, const int2* work, const SeqInfo* seqs,           \
           const uint32_t* tables, const float* alibi, int H, int kvh, int bs, float scale,       \
           float softcap, int window, int part, float2* part_ml, float* part_acc, unsigned* counters, \
           const TQ* cos, const TQ* sin, const uint32_t* slots, int rot, int interleaved) {       \
    paged_decode<TQ, TK, D, D, R, W, ROPE>(q, out, kp, vp, work, seqs, tables, alibi, H, kvh, bs,  \
                                           scale, softcap, window, part, part_ml, part_acc,         \
                                           counters, cos, sin, slots, rot, interleaved);            \
  }
#define DECODE_R(TN, TQ, TK, D, RP, ROPE)                                  \
  DECODE(paged_decode_##RP##TN##_##D##_1, TQ, TK, D, 1, WARPS, ROPE) \
  DECODE(paged_decode_##RP##TN##_##D##_2, TQ, TK, D, 2, WARPS, ROPE) \
  DECODE(paged_decode_##RP##TN##_##D##_4, TQ, TK, D, 4, WARPS, ROPE) \
  DECODE(paged_decode_##RP##TN##_##D##_8, TQ, TK, D, 8, WARPS, ROPE)
// The small-batch kernel: 16 warps, up to four heads a CTA, head dims 64 and 128.
#define DECODE_W(TN, TQ, TK, D, RP, ROPE)                                   \
  DECODE(paged_decode_w16_##RP##TN##_##D##_1, TQ, TK, D, 1, 16, ROPE) \
  DECODE(paged_decode_w16_##RP##TN##_##D##_2, TQ, TK, D, 2, 16, ROPE) \
  DECODE(paged_decode_w16_##RP##TN##_##D##_4, TQ, TK, D, 4, 16, ROPE)
#define DECODE_ALL(TN, TQ, TK)    \
  DECODE_R(TN, TQ, TK, 64, , false)  \
  DECODE_R(TN, TQ, TK, 128, , false) \
  DECODE_R(TN, TQ, TK, 256, , false) \
  DECODE_W(TN, TQ, TK, 64, , false)  \
  DECODE_W(TN, TQ, TK, 128, , false)
DECODE_ALL(f32_f32, float, float)
DECODE_ALL(f32_f16, float, __half)
DECODE_ALL(f16_f16, __half, __half)
DECODE_ALL(bf16_bf16, __nv_bfloat16, __nv_bfloat16)
// The fused-rotary forms of the 16-warp kernel (`paged_decode_w16_rope_*`): 16-bit activations
// and a cache of the same type. The 4-warp kernel has none: at bs 32 and 128 its fused form
// (every CTA rotating four query heads and the key before its first load) was 3% slower a step
// than qkv_rope_write followed by the plain kernel (bench/RESULTS.md, 2026-12-01).
#define DECODE_ROPE(TN, TQ)              \
  DECODE_W(TN, TQ, TQ, 64, rope_, true) \
  DECODE_W(TN, TQ, TQ, 128, rope_, true)
DECODE_ROPE(f16_f16, __half)
DECODE_ROPE(bf16_bf16, __nv_bfloat16)

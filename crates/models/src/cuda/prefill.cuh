// Part of kernels.cu (included there after attention.cuh, whose SeqInfo it reads).
// ---------------------------------------------------------------------------------------------
// Prefill attention on tensor cores (FlashAttention-2's loop): a 16-bit cache, k_dim = v_dim = D
// ∈ {64, 128}, causal with an optional sliding window, no ALiBi or softcap (cuda/attention.rs
// picks it; everything else takes paged_attn). One CTA of 4 warps per (64 query tokens of one
// sequence, query head): warp w owns query rows 16w..16w+15. Per 64-key tile the CTA stages K
// and V rows (through the block table) in shared memory; each warp computes its 16 × 64 scores
// with `mma.m16n8k16` (f32 accumulators), applies the mask, keeps its rows' running max and sum
// (online softmax, base 2), rounds the probabilities to T as the A operand of P·V, and
// accumulates its 16 × D output in f32 registers. The output is divided by the sum once and
// rounded to T.
//
// `work` is the batch's tile list (GpuBatch's `tiles`): a (sequence, first token) item a CTA,
// every 64 tokens of each sequence. (Launched over paged_attn's QTILE-token list instead, 3 CTAs
// in 4 left at once, and a step of 64 prompts of 128 tokens spent most of its time on them.)
constexpr int PF_Q = 64;  // query tokens a CTA, 16 a warp
constexpr int PF_K = 64;  // keys a tile
constexpr int PF_THREADS = 128;  // 4 warps a CTA (__launch_bounds__ below, cuda/attention.rs)

// `mma.m16n8k16` with f32 accumulators for T = bf16 or f16 (PTX names the type), and `pack2`: two
// floats rounded to T, the first in the low half (the lower column).
template <typename T> struct Mma16816;
#define MMA16816(T, PTX, T2, CVT)                                                                 \
  template <> struct Mma16816<T> {                                                               \
    static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, \
                                               uint32_t b1) {                                    \
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX "." PTX                          \
                   ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"         \
                   : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                               \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));               \
    }                                                                                             \
    static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {                        \
      T2 v = CVT(lo, hi);                                                                         \
      return *reinterpret_cast<uint32_t*>(&v);                                                    \
    }                                                                                             \
  };
MMA16816(__nv_bfloat16, "bf16", __nv_bfloat162, __floats2bfloat162_rn)
MMA16816(__half, "f16", __half2, __floats2half2_rn)

__device__ __forceinline__ uint32_t ld_u32(const void* p) { return *reinterpret_cast<const uint32_t*>(p); }

// The online-softmax step of one key tile on `mma.m16n8k16` fragments (FlashAttention-2's, base
// 2), shared by prefill_mma and decode_mma. `sc` holds NT 8-key score tiles, masked (-inf) and
// scaled (c0, c1: row gid; c2, c3: row gid + 8; a row lives in the 4 threads of a quad). Updates
// the two rows' running max and sum, rescales the output accumulators `o`, and returns the
// probabilities rounded to T as P·V's A fragments: k-step t takes tiles 2t (a0, a1) and 2t + 1
// (a2, a3). A row with no key yet keeps max -inf: its exponents are taken against 0, never NaN.
template <typename M, int NT, int DN>
__device__ __forceinline__ void softmax_tile(float (&sc)[NT][4], float& m0, float& m1, float& l0, float& l1,
                                             float (&o)[DN][4], uint32_t (&pa)[NT / 2][4]) {
  float t0 = -INFINITY, t1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < NT; j++) {
    t0 = fmaxf(t0, fmaxf(sc[j][0], sc[j][1]));
    t1 = fmaxf(t1, fmaxf(sc[j][2], sc[j][3]));
  }
  t0 = fmaxf(t0, __shfl_xor_sync(0xffffffff, t0, 1));
  t0 = fmaxf(t0, __shfl_xor_sync(0xffffffff, t0, 2));
  t1 = fmaxf(t1, __shfl_xor_sync(0xffffffff, t1, 1));
  t1 = fmaxf(t1, __shfl_xor_sync(0xffffffff, t1, 2));
  const float n0 = fmaxf(m0, t0), n1 = fmaxf(m1, t1);
  const float b0 = n0 == -INFINITY ? 0.f : n0, b1 = n1 == -INFINITY ? 0.f : n1;
  const float f0 = exp2f(m0 - b0), f1 = exp2f(m1 - b1);
  m0 = n0;
  m1 = n1;
  l0 *= f0;
  l1 *= f1;
#pragma unroll
  for (int n = 0; n < DN; n++) {
    o[n][0] *= f0;
    o[n][1] *= f0;
    o[n][2] *= f1;
    o[n][3] *= f1;
  }
#pragma unroll
  for (int j = 0; j < NT; j++) {
    const float p00 = exp2f(sc[j][0] - b0), p01 = exp2f(sc[j][1] - b0);
    const float p10 = exp2f(sc[j][2] - b1), p11 = exp2f(sc[j][3] - b1);
    l0 += p00 + p01;
    l1 += p10 + p11;
    pa[j / 2][(j % 2) * 2] = M::pack2(p00, p01);
    pa[j / 2][(j % 2) * 2 + 1] = M::pack2(p10, p11);
  }
}

// O += P·V for one 16-key k-step: B(k = key, n = dim) = V[key][dim] from shared-memory rows `v`
// (stride DP), two 8 × 8 blocks a column tile transposed by ldmatrix (lanes 0–15 give the 16
// keys' row addresses).
template <typename M, typename T, int DN, int DP>
__device__ __forceinline__ void pv_step(float (&o)[DN][4], const uint32_t (&pa)[4], const T* v, int lane) {
#pragma unroll
  for (int n = 0; n < DN; n++) {
    const unsigned addr = (unsigned)__cvta_generic_to_shared(v + (lane & 15) * DP + n * 8);
    uint32_t v0, v1;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];" : "=r"(v0), "=r"(v1) : "r"(addr));
    M::run(o[n], pa, v0, v1);
  }
}

// The sum of a row's partial sums over the 4 threads of its quad.
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffff, x, 1);
  return x + __shfl_xor_sync(0xffffffff, x, 2);
}

template <typename T, int D>
__device__ void prefill_mma(const T* __restrict__ q, T* __restrict__ out, const T* __restrict__ kp,
                            const T* __restrict__ vp, const int2* __restrict__ work, const SeqInfo* __restrict__ seqs,
                            const uint32_t* __restrict__ tables, int H, int kvh, int bs, float scale, int window) {
  using M = Mma16816<T>;
  pdl_trigger();
  // Rows padded by 16 bytes: the 8 rows a fragment load touches start 4 banks apart.
  constexpr int DP = D + 8;
  constexpr int CH = D / 8;  // 16-byte chunks a row
  extern __shared__ __align__(16) unsigned char pf_smem[];
  T* qs = reinterpret_cast<T*>(pf_smem);  // (PF_Q, DP)
  T* ks = qs + PF_Q * DP;                 // (PF_K, DP)
  T* vs = ks + PF_K * DP;                 // (PF_K, DP)

  const int2 wi = work[blockIdx.x];
  const SeqInfo s = seqs[wi.x];
  const int tile0 = wi.y, nq = min(PF_Q, s.len - tile0);
  const int h = blockIdx.y, g = h / (H / kvh);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int q_first = s.start + tile0, q_last = q_first + nq - 1;
  const int lo = window > 0 ? max(0, q_first + 1 - window) : 0;
  pdl_wait();

  // Every thread stages the same 16-byte chunk `c` of rows cr, cr + RS, ... (PF_THREADS is a
  // multiple of CH): all of a thread's loads of a tile are independent and issued together.
  constexpr int RS = PF_THREADS / CH, NL = PF_K / RS;
  static_assert(PF_THREADS % CH == 0 && PF_K % RS == 0 && PF_Q == PF_K, "staging layout");
  const int c = tid % CH, cr = tid / CH;
  {
    uint4 v[NL];
#pragma unroll
    for (int k = 0; k < NL; k++) {
      const int r = cr + k * RS;
      v[k] = r < nq ? *reinterpret_cast<const uint4*>(q + ((size_t)(s.row + tile0 + r) * H + h) * D + c * 8)
                    : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int k = 0; k < NL; k++) *reinterpret_cast<uint4*>(qs + (cr + k * RS) * DP + c * 8) = v[k];
  }
  __syncthreads();

  // This warp's query rows as A fragments (rows gid and gid + 8; columns 2·tig, +1, +8, +9 of
  // each 16-wide step).
  const int r0 = warp * 16;
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    const T* b = qs + (r0 + gid) * DP + kk * 16 + 2 * tig;
    qa[kk][0] = ld_u32(b);
    qa[kk][1] = ld_u32(b + 8 * DP);
    qa[kk][2] = ld_u32(b + 8);
    qa[kk][3] = ld_u32(b + 8 * DP + 8);
  }
  const int qp0 = q_first + r0 + gid, qp1 = qp0 + 8;  // this thread's two rows' positions
  const bool live = r0 < nq;
  const int warp_last = min(q_last, q_first + r0 + 15);
  const float sl2 = scale * 1.4426950408889634f;  // scores in base 2
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

  for (int kb = lo; kb <= q_last; kb += PF_K) {
    // The tile's rows through the block table, then all their K and V chunks at once: one
    // round trip a stage (a row at a time, a thread waited on 2·NL dependent trips a tile).
    size_t row[NL];
#pragma unroll
    for (int k = 0; k < NL; k++) {
      const int pos = kb + cr + k * RS;
      row[k] = pos <= q_last ? ((size_t)tables[s.table + pos / bs] * kvh + g) * bs + pos % bs : SIZE_MAX;
    }
    uint4 kv[NL], vv[NL];
#pragma unroll
    for (int k = 0; k < NL; k++) {
      const bool in = row[k] != SIZE_MAX;
      kv[k] = in ? *reinterpret_cast<const uint4*>(kp + row[k] * D + c * 8) : make_uint4(0, 0, 0, 0);
      vv[k] = in ? *reinterpret_cast<const uint4*>(vp + row[k] * D + c * 8) : make_uint4(0, 0, 0, 0);
    }
    __syncthreads();  // the previous tile is consumed
#pragma unroll
    for (int k = 0; k < NL; k++) {
      *reinterpret_cast<uint4*>(ks + (cr + k * RS) * DP + c * 8) = kv[k];
      *reinterpret_cast<uint4*>(vs + (cr + k * RS) * DP + c * 8) = vv[k];
    }
    __syncthreads();
    if (!live || kb > warp_last) continue;  // every key of the tile is after this warp's rows

    // S = Q Kᵀ (16 × 64): B(k = dim, n = key) = K[key][dim], two consecutive dims a register.
    float sc[PF_K / 8][4];
#pragma unroll
    for (int j = 0; j < PF_K / 8; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
      for (int j = 0; j < PF_K / 8; j++) {
        const T* kr = ks + (j * 8 + gid) * DP + kk * 16 + 2 * tig;
        M::run(sc[j], qa[kk], ld_u32(kr), ld_u32(kr + 8));
      }

    // Mask (causal, window, rows past the chunk) and scale.
#pragma unroll
    for (int j = 0; j < PF_K / 8; j++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int key = kb + j * 8 + 2 * tig + e;
        const bool v0 = key <= qp0 && qp0 <= q_last && (window <= 0 || key > qp0 - window);
        const bool v1 = key <= qp1 && qp1 <= q_last && (window <= 0 || key > qp1 - window);
        sc[j][e] = v0 ? sc[j][e] * sl2 : -INFINITY;
        sc[j][2 + e] = v1 ? sc[j][2 + e] * sl2 : -INFINITY;
      }
    uint32_t pa[PF_K / 16][4];
    softmax_tile<M>(sc, m0, m1, l0, l1, o, pa);
#pragma unroll
    for (int t = 0; t < PF_K / 16; t++) pv_step<M, T, D / 8, DP>(o, pa[t], vs + t * 16 * DP, lane);
  }
  if (!live) return;
  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
  T* y0 = out + ((size_t)(s.row + tile0 + r0 + gid) * H + h) * D + 2 * tig;
  T* y1 = y0 + (size_t)8 * H * D;
#pragma unroll
  for (int n = 0; n < D / 8; n++) {
    if (qp0 <= q_last) *reinterpret_cast<uint32_t*>(y0 + n * 8) = M::pack2(o[n][0] * i0, o[n][1] * i0);
    if (qp1 <= q_last) *reinterpret_cast<uint32_t*>(y1 + n * 8) = M::pack2(o[n][2] * i1, o[n][3] * i1);
  }
}

#define PREFILL(NAME, T, D)                                                                        \
  extern "C" __global__ void __launch_bounds__(PF_THREADS)                                         \
      NAME(const T* q, T* out, const T* kp, const T* vp, const int2* work, const SeqInfo* seqs,     \
           const uint32_t* tables, int H, int kvh, int bs, float scale, int window) {               \
    prefill_mma<T, D>(q, out, kp, vp, work, seqs, tables, H, kvh, bs, scale, window);               \
  }
PREFILL(prefill_mma_bf16_64, __nv_bfloat16, 64)
PREFILL(prefill_mma_bf16_128, __nv_bfloat16, 128)
PREFILL(prefill_mma_f16_64, __half, 64)
PREFILL(prefill_mma_f16_128, __half, 128)

// ---------------------------------------------------------------------------------------------
// Decode attention on tensor cores for large batches (`decode_mma`): one warp (a CTA of 32
// threads) per (sequence, kv head), the group's query heads (up to 16) as the rows of
// `mma.m16n8k16` (rows past the group are zero and never stored). The warp streams its keys in
// 16-key tiles through an ST-stage `cp.async` ring in shared memory: while it scores and
// accumulates tile t, tiles t + 1 .. t + ST − 1 are in flight, so an SM of 8 such warps keeps
// ~128 KB of K/V reads outstanding. That is what `paged_decode` lacks at bs 128: its warps wait
// on each tile's K rows, then on each batch of V rows, and ran at ~25% of DRAM bandwidth
// (bench/RESULTS.md, 2026-12-01). Scores, the online softmax (base 2) and P·V follow
// prefill_mma (P rounded to T as the A operand), and no warp shares its state, so there is no
// merge. 16-bit cache of the activations' type, k_dim = v_dim = D ∈ {64, 128}, causal with an
// optional window, no ALiBi or softcap (cuda/attention.rs picks it).
constexpr int DM_K = 16;      // keys a tile
constexpr int DM_STAGES = 3;  // tiles in the ring (cuda/attention.rs sizes its shared memory)

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  const int n = valid ? 16 : 0;  // 0: zero-fill (keys past the end)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

template <typename T, int D, int ST>
__device__ void decode_mma(const T* __restrict__ q, T* __restrict__ out, const T* __restrict__ kp,
                           const T* __restrict__ vp, const int2* __restrict__ work, const SeqInfo* __restrict__ seqs,
                           const uint32_t* __restrict__ tables, int H, int kvh, int bs, float scale, int window) {
  using M = Mma16816<T>;
  pdl_trigger();
  constexpr int DP = D + 8;  // padded rows: a fragment's 8 rows start 4 banks apart
  constexpr int CH = D / 8;  // 16-byte chunks a row
  constexpr int RPI = 32 / CH;  // rows a warp-wide copy round covers
  extern __shared__ __align__(16) unsigned char dm_smem[];
  T* ks = reinterpret_cast<T*>(dm_smem);  // (ST, DM_K, DP)
  T* vs = ks + ST * DM_K * DP;            // (ST, DM_K, DP)

  const int lane = threadIdx.x, gid = lane >> 2, tig = lane & 3;
  const SeqInfo s = seqs[work[blockIdx.x].x];
  const int g = blockIdx.y, rep = H / kvh;
  const int hi = s.start, lo = window > 0 ? max(0, hi + 1 - window) : 0;
  const int tiles = (hi - lo) / DM_K + 1;
  // Lanes 0..15 look up their key's pool row of a tile; the copy rounds take them by shuffle.
  auto row_of = [&](int t) -> uint32_t {
    const int pos = lo + t * DM_K + (lane & (DM_K - 1));
    return pos <= hi ? (tables[s.table + pos / bs] * kvh + g) * bs + pos % bs : 0;
  };
  auto issue = [&](int t, uint32_t krow) {
    if (t < tiles) {
      T* kd = ks + (t % ST) * DM_K * DP;
      T* vd = vs + (t % ST) * DM_K * DP;
      const int c = lane % CH;
#pragma unroll
      for (int i = 0; i < DM_K / RPI; i++) {
        const int r = lane / CH + i * RPI;
        const uint32_t row = __shfl_sync(0xffffffff, krow, r);
        const bool valid = lo + t * DM_K + r <= hi;
        cp_async16(kd + r * DP + c * 8, kp + (size_t)row * D + c * 8, valid);
        cp_async16(vd + r * DP + c * 8, vp + (size_t)row * D + c * 8, valid);
      }
    }
    cp_async_commit();  // an empty group past the end keeps the wait counts uniform
  };
  uint32_t rows[ST];
#pragma unroll
  for (int t = 0; t < ST - 1; t++) rows[t] = t < tiles ? row_of(t) : 0;
  pdl_wait();
#pragma unroll
  for (int t = 0; t < ST - 1; t++) issue(t, rows[t]);

  // The group's query rows as A fragments (rows gid and gid + 8), straight from global memory.
  uint32_t qa[D / 16][4];
  const T* q0 = q + ((size_t)s.row * H + g * rep + gid) * D + 2 * tig;
  const T* q1 = q0 + (size_t)8 * D;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    qa[kk][0] = gid < rep ? ld_u32(q0 + kk * 16) : 0u;
    qa[kk][1] = gid + 8 < rep ? ld_u32(q1 + kk * 16) : 0u;
    qa[kk][2] = gid < rep ? ld_u32(q0 + kk * 16 + 8) : 0u;
    qa[kk][3] = gid + 8 < rep ? ld_u32(q1 + kk * 16 + 8) : 0u;
  }
  const float sl2 = scale * 1.4426950408889634f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

  for (int t = 0; t < tiles; t++) {
    issue(t + ST - 1, t + ST - 1 < tiles ? row_of(t + ST - 1) : 0);
    cp_async_wait<ST - 1>();  // this lane's copies of tile t have landed
    __syncwarp();             // and every other lane's
    const T* kt = ks + (t % ST) * DM_K * DP;
    const T* vt = vs + (t % ST) * DM_K * DP;
    const int kb = lo + t * DM_K;

    float sc[2][4];
#pragma unroll
    for (int j = 0; j < 2; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const T* kr = kt + (j * 8 + gid) * DP + kk * 16 + 2 * tig;
        M::run(sc[j], qa[kk], ld_u32(kr), ld_u32(kr + 8));
      }
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const bool v = kb + j * 8 + 2 * tig + e <= hi;
        sc[j][e] = v ? sc[j][e] * sl2 : -INFINITY;
        sc[j][2 + e] = v ? sc[j][2 + e] * sl2 : -INFINITY;
      }
    uint32_t pa[1][4];
    softmax_tile<M>(sc, m0, m1, l0, l1, o, pa);
    pv_step<M, T, D / 8, DP>(o, pa[0], vt, lane);
    __syncwarp();  // every lane is done with this stage before the next round refills it
  }
  cp_async_wait<0>();
  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
  T* y0 = out + ((size_t)s.row * H + g * rep + gid) * D + 2 * tig;
  T* y1 = y0 + (size_t)8 * D;
#pragma unroll
  for (int n = 0; n < D / 8; n++) {
    if (gid < rep) *reinterpret_cast<uint32_t*>(y0 + n * 8) = M::pack2(o[n][0] * i0, o[n][1] * i0);
    if (gid + 8 < rep) *reinterpret_cast<uint32_t*>(y1 + n * 8) = M::pack2(o[n][2] * i1, o[n][3] * i1);
  }
}

// A warp a CTA; 3 stages (26 KB of shared memory at D = 128): 8 CTAs an SM.
#define DECODE_MMA(NAME, T, D)                                                                     \
  extern "C" __global__ void __launch_bounds__(32)                                                 \
      NAME(const T* q, T* out, const T* kp, const T* vp, const int2* work, const SeqInfo* seqs,     \
           const uint32_t* tables, int H, int kvh, int bs, float scale, int window) {               \
    decode_mma<T, D, DM_STAGES>(q, out, kp, vp, work, seqs, tables, H, kvh, bs, scale, window);     \
  }
DECODE_MMA(decode_mma_bf16_64, __nv_bfloat16, 64)
DECODE_MMA(decode_mma_bf16_128, __nv_bfloat16, 128)
DECODE_MMA(decode_mma_f16_64, __half, 64)
DECODE_MMA(decode_mma_f16_128, __half, 128)

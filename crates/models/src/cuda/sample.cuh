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

// The next step's token ids from this step's picks, for a step scheduled before they reach the
// host (async scheduling): row i takes picks[map[i]] unless map[i] is 0xffffffff (it keeps the
// id the host wrote). A pick outside the vocabulary (0xffffffff: no finite logit) becomes 0, so
// the embedding lookup stays in bounds; the engine fails that sequence when the pick comes back.
extern "C" __global__ void next_ids(const uint32_t* __restrict__ picks, const uint32_t* __restrict__ map,
                                    uint32_t* __restrict__ ids, int n, uint32_t vocab) {
  pdl_trigger();
  pdl_wait();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint32_t m = map[i];
  if (m == 0xffffffffu) return;
  const uint32_t t = picks[m];
  ids[i] = t < vocab ? t : 0u;
}

// ---------------------------------------------------------------------------------------------
// Random sampling on the device: temperature, top-k, top-p, min-p and one draw, per row, with
// the definition of cuda/filter.rs (the host sampler's), bit for bit: the same weights (an
// `exp` with the same roundings), integer masses floor(w · 2^45) whose sums are exact in any
// order, and the same cuts of the order "heavier first, lower id on ties". The host draws `u53`
// from the sequence's RNG; only the chosen id comes back.
//
// A row is one CTA of SAMPLE_THREADS, or, when rows are few, a cluster of SAMPLE_CLUSTER CTAs
// (on different SMs) that split the row into contiguous slices and add up their partial sums and
// histograms through distributed shared memory. Each CTA writes its slice's weights once into
// `scratch` (vocab floats a row), then every selection is a pass over them:
// - top-k and top-p each find where their prefix ends by a radix descent over the weights' f32
//   bits (positive floats order as their bits), three digits of 11, 11 and 9 bits: a shared
//   histogram of counts (top-k) or masses (top-p) over the tokens still in play, then the digit
//   where the running count/mass from the top reaches what is needed. The prefix then ends
//   inside one weight value; its ties are taken in id order.
// - the draw, and the "n-th tie in id order", walk the row in id order: the slices' sums pick a
//   CTA, its warps' segment sums pick a segment, and the CTA splits that segment into runs of a
//   few ids, one a thread.
#include <cooperative_groups.h>

constexpr int SAMPLE_THREADS = 1024;
constexpr int SAMPLE_WARPS = SAMPLE_THREADS / 32;
constexpr int SAMPLE_BINS = 2048;
constexpr unsigned long long NO_TOKEN = 0xffffffffull;
// CTAs a row when rows are few (`sample_rows_f32_x8`); 8 is the portable cluster size.
constexpr int SAMPLE_CLUSTER = 8;

// One sampled row (cuda/sample.rs packs it as four u64s).
struct SampleRow {
  float temperature;
  float top_p;
  float min_p;
  uint32_t top_k;  // 0: off
  unsigned long long u53;
  uint32_t row;  // row of the logits
  uint32_t pad;
};

// filter.rs's exp_neg, operation for operation, each rounded alone (no contraction into FMAs).
__device__ __forceinline__ float sample_exp_neg(float x) {
  const float LN2_HI = 0.6933594f, LN2_LO = -2.1219444e-4f, ROUND = 12582912.0f;
  const float t = __fadd_rn(__fmul_rn(x, 1.44269504088896341f), ROUND);
  const float n = __fsub_rn(t, ROUND);
  const float r = __fsub_rn(__fsub_rn(x, __fmul_rn(n, LN2_HI)), __fmul_rn(n, LN2_LO));
  float p = 1.9875692e-4f;
  p = __fadd_rn(__fmul_rn(p, r), 1.3981999e-3f);
  p = __fadd_rn(__fmul_rn(p, r), 8.333452e-3f);
  p = __fadd_rn(__fmul_rn(p, r), 4.1665796e-2f);
  p = __fadd_rn(__fmul_rn(p, r), 1.6666665e-1f);
  p = __fadd_rn(__fmul_rn(p, r), 0.5f);
  const float y = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(p, r), r), r), 1.0f);
  return __fmul_rn(y, __uint_as_float((__float_as_uint(t) - __float_as_uint(ROUND) + 127u) << 23));
}

// filter.rs's scale: x · (1 / temperature), clamped to the finite range.
__device__ __forceinline__ float sample_scale(float x, float inv_t) {
  return fminf(fmaxf(__fmul_rn(x, inv_t), -3.40282347e38f), 3.40282347e38f);
}

__device__ __forceinline__ unsigned long long mass_of(float w) {
  return (unsigned long long)__fmul_rn(w, 0x1p45f);  // truncates, as Rust's `as`
}

// filter.rs's top_p_target: ceil(p · total), exactly.
__device__ __forceinline__ unsigned long long top_p_target(float p, unsigned long long total) {
  const uint32_t bits = __float_as_uint(p), e = (bits >> 23) & 0xff;
  uint32_t m = bits & 0x7fffff, shift = 149;
  if (e != 0) {
    m |= 0x800000;
    shift = 150 - e;
  }
  const unsigned __int128 prod = (unsigned __int128)m * total;
  if (shift >= 127) return prod > 0 ? 1 : 0;
  return (unsigned long long)((prod + (((unsigned __int128)1 << shift) - 1)) >> shift);
}

// A prefix end: keeps the tokens whose weight bits are above `key`, and those equal to it with
// an id ≤ `id`. {0, NO_TOKEN} keeps every weight > 0.
struct SampleCut {
  uint32_t key;
  uint32_t id;
  __device__ __forceinline__ bool keeps(uint32_t k, uint32_t i) const { return k > key || (k == key && i <= id); }
};

template <typename T>
__device__ __forceinline__ T warp_incl_scan(T v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T t = __shfl_up_sync(0xffffffff, v, o);
    if (lane >= o) v += t;
  }
  return v;
}


__device__ __forceinline__ unsigned long long block_sum_u64(unsigned long long v, unsigned long long* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  __syncthreads();  // `red` may still be read from a previous use
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = 0;
  for (int w = 0; w < SAMPLE_WARPS; w++) v += red[w];
  return v;
}

// Across the C CTAs of a row's cluster (C = 1: the CTA alone). `v` is this CTA's value, the same
// in all its threads; `slot` a shared variable of this CTA. Each returns in every thread of every
// CTA, and leaves the slots free for the next exchange.
template <int C>
__device__ __forceinline__ void cluster_scan(unsigned long long v, unsigned long long* slot, unsigned long long& before,
                                             unsigned long long& total) {
  if constexpr (C == 1) {
    before = 0;
    total = v;
  } else {
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    const unsigned rank = cl.block_rank();
    __syncthreads();
    if (threadIdx.x == 0) *slot = v;
    cl.sync();
    before = 0;
    total = 0;
    for (unsigned r = 0; r < C; r++) {
      const unsigned long long x = *cl.map_shared_rank(slot, r);
      if (r < rank) before += x;
      total += x;
    }
    cl.sync();
  }
}

template <int C>
__device__ __forceinline__ unsigned long long cluster_sum(unsigned long long v, unsigned long long* slot) {
  unsigned long long before, total;
  cluster_scan<C>(v, slot, before, total);
  return total;
}

template <int C>
__device__ __forceinline__ float cluster_max(float v, float* slot) {
  if constexpr (C == 1) {
    return v;
  } else {
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    __syncthreads();
    if (threadIdx.x == 0) *slot = v;
    cl.sync();
    float m = -INFINITY;
    for (unsigned r = 0; r < C; r++) m = fmaxf(m, *cl.map_shared_rank(slot, r));
    cl.sync();
    return m;
  }
}

// Per-row scratch in shared memory.
struct SampleShared {
  unsigned long long red[SAMPLE_WARPS];
  unsigned long long slot;  // cluster exchanges
  unsigned long long r;
  uint32_t w, id;
  float fslot;
};

// The first id i of this CTA's slice [lo, hi), in increasing order across the row's cluster, at
// which the running sum of weigh(i) exceeds `r`; r is `pick(total)` (total: the sum over the
// whole row). Every CTA of the cluster returns it; NO_TOKEN when it never happens. Coalesced
// passes: each warp sums a contiguous segment of the slice (its lanes 32 apart); the slices'
// sums pick a CTA and its segments' sums a segment; then the CTA splits that segment into
// contiguous runs of a few ids, one a thread, and the thread whose run holds r walks it.
template <int C, typename Weigh, typename Pick>
__device__ uint32_t first_exceeding(int lo, int hi, Weigh weigh, Pick pick, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int seg = (hi - lo + SAMPLE_THREADS - 1) / SAMPLE_THREADS * 32;
  unsigned long long s = 0;
  {
    const int a = lo + warp * seg, b = min(hi, a + seg);
    for (int i = a + lane; i < b; i += 32) s += weigh(i);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
  __syncthreads();
  if (lane == 0) sh.red[warp] = s;
  __syncthreads();
  unsigned long long mine = 0;
  for (int k = 0; k < SAMPLE_WARPS; k++) mine += sh.red[k];
  unsigned long long before, total;
  cluster_scan<C>(mine, &sh.slot, before, total);
  const unsigned long long r = pick(total);
  if (warp == 0) {
    // Inside this CTA's slice, when it holds r.
    const bool here = before <= r && r < before + mine;
    const unsigned long long v = sh.red[lane], inc = warp_incl_scan(v);
    const uint32_t hit = __ballot_sync(0xffffffff, here && inc > r - before);
    const int w = hit ? __ffs(hit) - 1 : 0;
    const unsigned long long below = __shfl_sync(0xffffffff, inc - v, w);
    if (lane == 0) {
      sh.w = hit ? w : SAMPLE_WARPS;
      sh.r = r - before - below;
      sh.id = (uint32_t)NO_TOKEN;
    }
  }
  __syncthreads();
  const int w = sh.w;
  if (w < SAMPLE_WARPS) {
    const unsigned long long rr = sh.r;
    const int a0 = lo + w * seg, b0 = min(hi, a0 + seg), per = (seg + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int a = min(b0, a0 + (int)threadIdx.x * per), b = min(b0, a + per);
    unsigned long long t = 0;
    for (int i = a; i < b; i++) t += weigh(i);
    const unsigned long long inc_w = warp_incl_scan(t);
    __syncthreads();  // everyone has read `red`
    if (lane == 31) sh.red[warp] = inc_w;
    __syncthreads();
    if (warp == 0) {
      const unsigned long long v = sh.red[lane];
      sh.red[lane] = warp_incl_scan(v) - v;
    }
    __syncthreads();
    const unsigned long long incl = sh.red[warp] + inc_w;
    if (incl - t <= rr && rr < incl) {
      unsigned long long acc = incl - t;
      for (int i = a; i < b; i++) {
        const unsigned long long v = weigh(i);
        if (rr < acc + v) {
          sh.id = i;
          break;
        }
        acc += v;
      }
    }
  }
  __syncthreads();
  if constexpr (C == 1) {
    return sh.id;
  } else {
    // One CTA found it (or none did): the smallest id over the cluster.
    unsigned long long before_unused, found;
    const unsigned long long mine_id = sh.id == (uint32_t)NO_TOKEN ? 0 : (unsigned long long)sh.id + 1;
    cluster_scan<C>(mine_id, &sh.slot, before_unused, found);
    return found == 0 ? (uint32_t)NO_TOKEN : (uint32_t)(found - 1);
  }
}

// A shared histogram: per bin, a count (hist[0]) and a mass in four 12-bit limbs (hist[1..4]),
// each added with a native 32-bit shared atomic (a 64-bit one is a compare-and-swap loop, and
// thousands of tokens of a flat row share a bin). A limb sum stays below 2^31 for any
// vocabulary up to 2^19 tokens (MASS_BITS' bound). A cluster's CTAs then merge theirs: counts
// into hist[0], masses as u64 over the limbs' space.
constexpr int HIST_ARRAYS = 5;

__device__ __forceinline__ void hist_add_mass(uint32_t* hist, uint32_t d, unsigned long long m) {
  atomicAdd(&hist[1 * SAMPLE_BINS + d], (uint32_t)(m & 0xfff));
  atomicAdd(&hist[2 * SAMPLE_BINS + d], (uint32_t)((m >> 12) & 0xfff));
  atomicAdd(&hist[3 * SAMPLE_BINS + d], (uint32_t)((m >> 24) & 0xfff));
  atomicAdd(&hist[4 * SAMPLE_BINS + d], (uint32_t)(m >> 36));
}

template <bool BY_MASS>
__device__ __forceinline__ unsigned long long hist_bin(const uint32_t* hist, int d) {
  if (!BY_MASS) return hist[d];
  return (unsigned long long)hist[1 * SAMPLE_BINS + d] + ((unsigned long long)hist[2 * SAMPLE_BINS + d] << 12) +
         ((unsigned long long)hist[3 * SAMPLE_BINS + d] << 24) + ((unsigned long long)hist[4 * SAMPLE_BINS + d] << 36);
}

// Bin d of a (merged, for C > 1) histogram.
template <int C, bool BY_MASS>
__device__ __forceinline__ unsigned long long merged_bin(const uint32_t* hist, int d) {
  if (C == 1 || !BY_MASS) return hist_bin<BY_MASS>(hist, d);
  return reinterpret_cast<const unsigned long long*>(hist + SAMPLE_BINS)[d];
}

// Sums the cluster's histograms into each CTA's (no-op for C = 1).
template <int C, bool BY_MASS>
__device__ __forceinline__ void hist_merge(uint32_t* hist) {
  if constexpr (C > 1) {
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    constexpr int PER = SAMPLE_BINS / SAMPLE_THREADS;
    unsigned long long m[PER];
    cl.sync();  // every CTA's histogram is complete
#pragma unroll
    for (int j = 0; j < PER; j++) {
      m[j] = 0;
      for (unsigned r = 0; r < C; r++) m[j] += hist_bin<BY_MASS>(cl.map_shared_rank(hist, r), threadIdx.x + j * SAMPLE_THREADS);
    }
    cl.sync();  // every CTA has read them
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const int b = threadIdx.x + j * SAMPLE_THREADS;
      if (BY_MASS)
        reinterpret_cast<unsigned long long*>(hist + SAMPLE_BINS)[b] = m[j];
      else
        hist[b] = (uint32_t)m[j];
    }
    __syncthreads();
  }
}

__device__ __forceinline__ void hist_clear(uint32_t* hist) {
  for (int b = threadIdx.x; b < HIST_ARRAYS * SAMPLE_BINS; b += SAMPLE_THREADS) hist[b] = 0;
}

// The radix descent's first digit: weight bits [30:20].
__device__ __forceinline__ uint32_t first_digit(uint32_t k) { return (k >> 20) & (SAMPLE_BINS - 1); }

// The radix descent: among the tokens with weight > 0 that `cut` keeps, where the order
// "heavier first" reaches `need` tokens (BY_MASS false) or `need` of mass (BY_MASS true). Returns
// the weight bits `key` the prefix ends in, and in `need` what is still needed among that key's
// tokens. This CTA histograms its slice [lo, hi); a cluster merges them. With `built0` the first
// digit's histogram is already in `hist` (the weights pass builds it when nothing cuts first).
template <int C, bool BY_MASS>
__device__ uint32_t radix_descend(const float* w, int lo, int hi, SampleCut cut, unsigned long long& need, uint32_t* hist,
                                  bool built0, SampleShared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int shifts[3] = {20, 9, 0}, widths[3] = {11, 11, 9};
  uint32_t prefix = 0, pmask = 0;
#pragma unroll
  for (int level = 0; level < 3; level++) {
    const int sh_bits = shifts[level], nb = 1 << widths[level];
    if (level > 0 || !built0) {
      hist_clear(hist);
      __syncthreads();
      for (int i = lo + threadIdx.x; i < hi; i += SAMPLE_THREADS) {
        const float x = w[i];
        const uint32_t k = __float_as_uint(x);
        if (x > 0.f && (k & pmask) == prefix && cut.keeps(k, i)) {
          const uint32_t d = (k >> sh_bits) & (nb - 1);
          if (BY_MASS)
            hist_add_mass(hist, d, mass_of(x));
          else
            atomicAdd(&hist[d], 1u);
        }
      }
      __syncthreads();
    }
    hist_merge<C, BY_MASS>(hist);
    if (warp == 0) {
      // Lane L sums bins [nb - per·(L+1), nb - per·L), the heaviest first.
      const int per = nb / 32, top = nb - per * lane;
      unsigned long long s = 0;
      for (int b = top - 1; b >= top - per; b--) s += merged_bin<C, BY_MASS>(hist, b);
      const unsigned long long inc = warp_incl_scan(s);
      const uint32_t hit = __ballot_sync(0xffffffff, inc >= need);
      // `need` never exceeds what is in play; were it to, the lightest bin takes the rest.
      const int at = hit ? __ffs(hit) - 1 : 31;
      if (lane == at) {
        unsigned long long acc = inc - s;
        int digit = top - per;
        for (int b = top - 1; b >= top - per; b--) {
          const unsigned long long v = merged_bin<C, BY_MASS>(hist, b);
          if (acc + v >= need) {
            digit = b;
            break;
          }
          acc += v;
        }
        sh.w = digit;
        sh.r = need - acc;
      }
    }
    __syncthreads();
    prefix |= sh.w << sh_bits;
    pmask |= (uint32_t)(nb - 1) << sh_bits;
    need = sh.r;
    __syncthreads();
  }
  return prefix;
}

// grid (sampled rows · C), block SAMPLE_THREADS, clusters of C. `logits` f32 (rows, vocab);
// `scratch` sampled rows × vocab floats; out[rows[b].row] gets the token (NO_TOKEN when no logit
// is finite).
template <int C>
__device__ __forceinline__ void sample_rows(const float* __restrict__ logits, const SampleRow* __restrict__ rows,
                                            float* __restrict__ scratch, uint32_t* __restrict__ out, int vocab) {
  pdl_trigger();
  pdl_wait();
  __shared__ uint32_t hist[HIST_ARRAYS * SAMPLE_BINS];
  __shared__ SampleShared sh;
  const int rank = blockIdx.x % C, b = blockIdx.x / C;
  const SampleRow p = rows[b];
  const float* x = logits + (size_t)p.row * vocab;
  float* w = scratch + (size_t)b * vocab;
  const int slice = (vocab + C - 1) / C;
  const int lo = min(vocab, rank * slice), hi = min(vocab, lo + slice);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  // The largest finite logit.
  float mx = -INFINITY;
  for (int i = lo + threadIdx.x; i < hi; i += SAMPLE_THREADS) {
    const float v = x[i];
    if (fabsf(v) < INFINITY && v > mx) mx = v;
  }
  mx = warp_max(mx);
  if (lane == 0) reinterpret_cast<float*>(sh.red)[warp] = mx;
  __syncthreads();
  if (warp == 0) {
    float m = reinterpret_cast<float*>(sh.red)[lane];
    m = warp_max(m);
    if (lane == 0) sh.fslot = m;
  }
  __syncthreads();
  mx = cluster_max<C>(sh.fslot, &sh.fslot);
  if (mx == -INFINITY) {
    if (threadIdx.x == 0 && rank == 0) out[p.row] = (uint32_t)NO_TOKEN;
    return;
  }

  // Weights, and how many are > 0. When top-p is the first cut, this pass also sums the mass
  // and builds the descent's first histogram.
  const float inv_t = __fdiv_rn(1.f, p.temperature);
  const float s_max = sample_scale(mx, inv_t);
  const bool top_p_first = p.top_k == 0 && p.top_p < 1.f;
  if (top_p_first) hist_clear(hist);
  __syncthreads();
  uint32_t positive = 0;
  unsigned long long mass = 0;
  for (int i = lo + threadIdx.x; i < hi; i += SAMPLE_THREADS) {
    const float v = x[i];
    const float d = __fsub_rn(sample_scale(v, inv_t), s_max);
    const float e = sample_exp_neg(d > -50.f ? d : -50.f);
    const float wi = (fabsf(v) < INFINITY && e >= 0x1p-45f) ? e : 0.f;
    w[i] = wi;
    positive += wi > 0.f;
    if (top_p_first && wi > 0.f) {
      const unsigned long long m = mass_of(wi);
      mass += m;
      hist_add_mass(hist, first_digit(__float_as_uint(wi)), m);
    }
  }
  // The block sums' barriers also publish `w` and `hist` to the CTA (each CTA reads only its slice).
  positive = (uint32_t)cluster_sum<C>(block_sum_u64(positive, sh.red), &sh.slot);
  if (top_p_first) mass = cluster_sum<C>(block_sum_u64(mass, sh.red), &sh.slot);

  SampleCut cut = {0, (uint32_t)NO_TOKEN};
  if (p.top_k > 0 && p.top_k < positive) {
    unsigned long long need = p.top_k;
    const uint32_t key = radix_descend<C, false>(w, lo, hi, cut, need, hist, false, sh);
    // The need-th token of weight `key`, in id order.
    const uint32_t id = first_exceeding<C>(
        lo, hi, [&](int i) -> unsigned long long { return __float_as_uint(w[i]) == key ? 1 : 0; },
        [&](unsigned long long) { return need - 1; }, sh);
    cut = {key, id};
  }
  if (p.top_p < 1.f) {
    unsigned long long total = mass;
    if (!top_p_first) {
      for (int i = lo + threadIdx.x; i < hi; i += SAMPLE_THREADS) {
        const float v = w[i];
        if (v > 0.f && cut.keeps(__float_as_uint(v), i)) total += mass_of(v);
      }
      total = cluster_sum<C>(block_sum_u64(total, sh.red), &sh.slot);
    }
    unsigned long long need = top_p_target(p.top_p, total);
    const uint32_t key = radix_descend<C, true>(w, lo, hi, cut, need, hist, top_p_first, sh);
    // Ties weigh the same: the prefix takes ceil(need / m) of them, in id order.
    const unsigned long long m = mass_of(__uint_as_float(key));
    const unsigned long long take = (need + m - 1) / m;
    const SampleCut k = cut;
    const uint32_t id = first_exceeding<C>(
        lo, hi, [&](int i) -> unsigned long long { return __float_as_uint(w[i]) == key && k.keeps(key, i) ? 1 : 0; },
        [&](unsigned long long) { return take - 1; }, sh);
    cut = {key, id};
  }
  const float min_p = p.min_p;
  const unsigned long long u53 = p.u53;
  const uint32_t token = first_exceeding<C>(
      lo, hi,
      [&](int i) -> unsigned long long {
        const float v = w[i];
        return v > 0.f && v >= min_p && cut.keeps(__float_as_uint(v), i) ? mass_of(v) : 0;
      },
      [&](unsigned long long total) { return (unsigned long long)(((unsigned __int128)u53 * total) >> 53); }, sh);
  if (threadIdx.x == 0 && rank == 0) out[p.row] = token;
}

// One CTA a row: a batch of rows fills the GPU.
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_rows_f32(const float* __restrict__ logits, const SampleRow* __restrict__ rows, float* __restrict__ scratch,
                    uint32_t* __restrict__ out, int vocab) {
  sample_rows<1>(logits, rows, scratch, out, vocab);
}

// SAMPLE_CLUSTER CTAs a row, for a few rows.
extern "C" __global__ void __cluster_dims__(SAMPLE_CLUSTER, 1, 1) __launch_bounds__(SAMPLE_THREADS)
    sample_rows_f32_x8(const float* __restrict__ logits, const SampleRow* __restrict__ rows,
                       float* __restrict__ scratch, uint32_t* __restrict__ out, int vocab) {
  sample_rows<SAMPLE_CLUSTER>(logits, rows, scratch, out, vocab);
}

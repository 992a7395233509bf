//! The random path of token selection: temperature, then top-k, top-p and min-p (HF's order),
//! then one draw. The engine's host sampler runs it on the rows it holds; `sample.cuh` runs the
//! same definition on the GPU (`sample_rows_f32`), and the two pick the same token bit for bit.
//!
//! Nothing sorts the vocabulary. Each token's weight w = exp(s - s_max) (s = logit /
//! temperature) is computed once, in f32, by a polynomial `exp` written with the same roundings
//! on both sides. Masses are integers: a weight w weighs `floor(w · 2^MASS_BITS)`, so every sum is
//! exact and its order does not matter (a GPU sums in whatever order its threads run). A token
//! lighter than 2^-MASS_BITS of the most likely one (≈ 31 nats below it) weighs 0 and is never
//! drawn; at most `vocab · 2^-45` of the probability moves (< 4e-9 for a 128k vocabulary).
//!
//! The filters each keep a prefix of the order "more likely first, lower id on ties": top-k and
//! top-p find where theirs ends from a histogram of the weights' top bits (one pass), then sort
//! only the bucket the end falls in. The excluded tokens' weights are then zeroed, and the draw
//! walks the masses in id order (by blocks of 64 first): a draw `u` lands on the first token whose
//! cumulative mass exceeds `floor(u · total)`. (A 128k-entry row took ~1–1.9 ms with a
//! quickselect over all candidates and libm's `exp`; bench/RESULTS.md has the figures.)

use std::cmp::Ordering;

/// A token: `(weight, id)`, weight = exp(s - s_max), the probability relative to the most
/// likely token (which has 1).
type Cand = (f32, u32);

/// Masses are in units of 2^-MASS_BITS of the most likely token's weight. 45 bits keep a sum
/// over a vocabulary of up to 2^19 tokens (each ≤ 2^45) inside a u64.
pub const MASS_BITS: u32 = 45;

/// The largest vocabulary the random path takes: its masses' sums must fit a u64 (and the GPU's
/// 32-bit histogram limbs). Every model family here is far below (Gemma's 256k is 2^18).
pub const MAX_VOCAB: usize = 1 << (64 - MASS_BITS);

/// The lightest weight that counts: 2^-MASS_BITS.
const MIN_WEIGHT: f32 = 1.0 / (1u64 << MASS_BITS) as f32;

/// Arguments to `exp` are clamped here (the weight is 0 well before: e^-50 < 2^-45).
const EXP_FLOOR: f32 = -50.0;

/// Histogram buckets: a weight's f32 bits shifted right by this (exponent and the top 7 mantissa
/// bits, so a bucket spans 1/128 of an octave).
const BUCKET_SHIFT: u32 = 16;

/// Most likely first; lower id first on ties. A total order, so selection is deterministic.
fn desc(a: &Cand, b: &Cand) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The random path's knobs, validated by the engine (temperature > 0, top_p in (0, 1],
/// min_p in [0, 1], top_k 0 for off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Filters {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
}

/// Buffers the filters reuse across steps, so a step allocates nothing once they have grown.
#[derive(Default)]
pub struct Scratch {
    /// Each token's weight, 0 for the excluded: what [`draw`] draws from.
    pub w: Vec<f32>,
    /// The mass of each block of [`BLOCK`] weights, for the draw.
    pub blocks: Vec<u64>,
    /// Per bucket: tokens and their mass.
    counts: Vec<u32>,
    mass: Vec<u64>,
    /// The tokens of a bucket where a prefix ends, sorted by [`desc`].
    edge: Vec<Cand>,
}

/// A token's mass: `floor(w · 2^MASS_BITS)` for a weight `w` in [0, 1], from its bits alone
/// (the mantissa with its implicit bit, shifted by the exponent): integer operations only, where
/// a float-to-integer conversion has range checks and no vector form before AVX-512. No branch:
/// a row's weights fall on both sides of the shift's direction.
#[inline(always)]
pub fn mass_of(w: f32) -> u64 {
    let b = w.to_bits();
    let m = u64::from((b & 0x7f_ffff) | 0x80_0000);
    // w = m · 2^(e - 150), so w · 2^45 = m · 2^(e - 105) = (m · 2^24) >> (129 - e): exact for
    // e ≤ 127 (w ≤ 1; m · 2^24 < 2^48 has 24 zero bits to lose), 0 once the shift passes 47.
    let r = (129 - (b >> 23) as i32).clamp(0, 63) as u32;
    (m << 24) >> r
}

/// `ceil(p · total)`, exactly (p's mantissa times `total` in 128 bits): the mass a top-p prefix
/// must reach.
pub fn top_p_target(p: f32, total: u64) -> u64 {
    let bits = p.to_bits();
    let (e, m) = ((bits >> 23) & 0xff, bits & 0x7f_ffff);
    // p = m · 2^-shift, with the implicit bit for a normal p.
    let (m, shift) = if e == 0 { (m, 149) } else { (m | 0x80_0000, 150 - e) };
    let prod = u128::from(m) * u128::from(total);
    if shift >= 127 {
        u64::from(prod > 0)
    } else {
        ((prod + (1u128 << shift) - 1) >> shift) as u64
    }
}

/// Where a draw lands: `floor(u · total)` for `u = u53 / 2^53` (`u53` < 2^53, the top 53 bits of
/// a uniform u64), exactly. The drawn token is the first whose cumulative mass exceeds it.
pub fn draw_point(u53: u64, total: u64) -> u64 {
    ((u128::from(u53) * u128::from(total)) >> 53) as u64
}

/// `exp(x)` for `x` in [EXP_FLOOR, 0] (Cephes' `expf`: x = n·ln2 + r, a degree-5 polynomial in
/// r, then the exponent set directly; within ~2 ulp of libm). Plain arithmetic, no calls, so a
/// loop over it vectorizes; `sample.cuh`'s `exp_neg` repeats it operation for operation, with
/// every product and sum rounded on its own (no fused multiply-adds: Rust never fuses them).
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by the 1.5·2^23 trick (|x·log2 e| < 2^22 here): the sum's low mantissa
    // bits then hold n, read back without a float-to-int conversion (whose saturating `as`
    // would keep the loop scalar).
    const ROUND: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n in [-73, 0]: 2^n is a normal f32, its exponent field n + 127.
    y * f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
}

/// The end of a kept prefix in the order [`desc`]: `(w, id)` keeps the tokens no later than it.
type Cut = Option<Cand>;

/// The token drawn from `logits` with `f` at `u53` (see [`draw_point`]); `None` when no logit
/// is finite. [`candidates`] then [`draw`].
pub fn sample(logits: &[f32], f: Filters, u53: u64, sc: &mut Scratch) -> Option<u32> {
    if !candidates(logits, f, sc) {
        return None;
    }
    let Scratch { w, blocks, .. } = sc;
    draw(w, u53, blocks)
}

/// Sets `sc.w` to the surviving tokens' weights (0 for the rest). Returns false when no logit is
/// finite.
pub fn candidates(logits: &[f32], f: Filters, sc: &mut Scratch) -> bool {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the features were just detected.
        return unsafe { candidates_avx2(logits, f, sc) };
    }
    candidates_portable(logits, f, sc)
}

/// Whether the CPU runs the `avx2` copies: the same Rust operations compiled for 8-lane vectors
/// (Rust never fuses or reorders float arithmetic, so the values are the portable code's, bit
/// for bit; BMI2 gives shifts by a register without the `cl` dance).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn wide() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("bmi2")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi2")]
unsafe fn candidates_avx2(logits: &[f32], f: Filters, sc: &mut Scratch) -> bool {
    candidates_portable(logits, f, sc)
}

#[inline(always)]
fn candidates_portable(logits: &[f32], f: Filters, sc: &mut Scratch) -> bool {
    let max = finite_max(logits);
    if max == f32::NEG_INFINITY {
        return false;
    }
    let Scratch { w, counts, mass, edge, .. } = sc;
    w.clear();
    w.resize(logits.len(), 0.0);
    // Scaling a huge logit by a small temperature can overflow; clamped, it still dominates.
    let inv_t = 1.0 / f.temperature;
    weights(logits, inv_t, scale(max, inv_t), w);
    let positive = w.iter().filter(|&&x| x > 0.0).count();
    let k = if f.top_k > 0 && f.top_k < positive { f.top_k } else { 0 };
    let cut = if k > 0 || f.top_p < 1.0 { prefix_end(w, k, f.top_p, Histogram { counts, mass, edge }) } else { None };
    if cut.is_some() || f.min_p > 0.0 {
        let (cw, cid) = cut.unwrap_or((0.0, u32::MAX));
        for (i, x) in w.iter_mut().enumerate() {
            let id = i as u32;
            let keep = *x >= f.min_p && (*x > cw || (*x == cw && id <= cid));
            *x = if keep { *x } else { 0.0 };
        }
    }
    true
}

/// `x / temperature` as `x · inv_t` (`inv_t = 1 / temperature`, rounded once: a product per
/// token is cheaper than a quotient, on both sides), clamped to the finite range.
#[inline(always)]
fn scale(x: f32, inv_t: f32) -> f32 {
    (x * inv_t).clamp(f32::MIN, f32::MAX)
}

/// `w[i] = exp(s_i - s_max)` for the finite logits with s_i = [`scale`]`(logit)`, when that is
/// at least [`MIN_WEIGHT`]; else 0. Excluded tokens still go through exp, on a clamped argument,
/// and then weigh 0: no branch, so the loop vectorizes.
#[inline(always)]
fn weights(logits: &[f32], inv_t: f32, s_max: f32, w: &mut [f32]) {
    for (o, &x) in w.iter_mut().zip(logits) {
        let d = scale(x, inv_t) - s_max;
        let e = exp_neg(if d > EXP_FLOOR { d } else { EXP_FLOOR });
        *o = if x.abs() < f32::INFINITY && e >= MIN_WEIGHT { e } else { 0.0 };
    }
}

/// The largest finite value (NEG_INFINITY when there is none), in lanes the compiler vectorizes.
#[inline(always)]
fn finite_max(x: &[f32]) -> f32 {
    const L: usize = 16;
    let mut best = [f32::NEG_INFINITY; L];
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..L {
            // NaN and ±inf never win: their `abs() < inf` is false.
            best[l] = if c[l].abs() < f32::INFINITY && c[l] > best[l] { c[l] } else { best[l] };
        }
    }
    tail.iter().filter(|v| v.is_finite()).fold(best.into_iter().fold(f32::NEG_INFINITY, f32::max), |a, &b| a.max(b))
}

#[inline(always)]
fn bucket(w: f32, base: u32) -> usize {
    ((w.to_bits() >> BUCKET_SHIFT).saturating_sub(base)) as usize
}

/// [`Scratch`]'s buffers for [`prefix_end`].
struct Histogram<'a> {
    counts: &'a mut Vec<u32>,
    mass: &'a mut Vec<u64>,
    edge: &'a mut Vec<Cand>,
}

/// Where the kept prefix ends: the `k` most likely tokens (k = 0: all), then of those the
/// smallest most-likely prefix whose mass reaches [`top_p_target`]`(p, theirs)`. `None` keeps
/// every weight > 0.
#[inline(always)]
fn prefix_end(w: &[f32], k: usize, p: f32, sc: Histogram) -> Cut {
    // Every weight > 0 is at least 2^-45 and at most 1.
    let base = MIN_WEIGHT.to_bits() >> BUCKET_SHIFT;
    let buckets = bucket(1.0, base) + 1;
    sc.counts.clear();
    sc.counts.resize(buckets, 0);
    sc.mass.clear();
    sc.mass.resize(buckets, 0);
    let (counts, mass) = (&mut sc.counts[..buckets], &mut sc.mass[..buckets]);
    // Top-k alone needs the counts only.
    if p < 1.0 {
        for &x in w.iter().filter(|&&x| x > 0.0) {
            let b = bucket(x, base).min(buckets - 1);
            counts[b] += 1;
            mass[b] += mass_of(x);
        }
    } else {
        for &x in w.iter().filter(|&&x| x > 0.0) {
            counts[bucket(x, base).min(buckets - 1)] += 1;
        }
    }
    // The bucket holding the prefix's last token, and how many of that bucket it takes.
    let mut last = buckets; // past the end: every bucket whole
    let mut take = usize::MAX;
    if k > 0 {
        let mut seen = 0;
        for b in (0..buckets).rev() {
            let c = sc.counts[b] as usize;
            if seen + c >= k {
                (last, take) = (b, k - seen);
                break;
            }
            seen += c;
        }
    }
    let mut cut = None;
    if last < buckets {
        edge(w, last, base, buckets, sc.edge);
        sc.edge.truncate(take);
        cut = sc.edge.last().copied();
    }
    if p >= 1.0 {
        return cut;
    }
    // Mass of what top-k kept: the buckets above `last`, and `last`'s kept part.
    let edge_mass = |e: &[Cand]| e.iter().map(|c| mass_of(c.0)).sum::<u64>();
    let lowest = if last < buckets { last } else { 0 };
    let kept_of = |b: usize, sc: &Histogram| if b == last { edge_mass(sc.edge) } else { sc.mass[b] };
    let total: u64 = (lowest..buckets).map(|b| kept_of(b, &sc)).sum();
    let target = top_p_target(p, total);
    let mut acc = 0;
    for b in (lowest..buckets).rev() {
        let m = kept_of(b, &sc);
        if m > 0 && acc + m >= target {
            if b != last {
                edge(w, b, base, buckets, sc.edge);
            }
            for &c in sc.edge.iter() {
                acc += mass_of(c.0);
                if acc >= target {
                    return Some(c);
                }
            }
            // Unreachable: the bucket's tokens add up to its mass exactly.
            return sc.edge.last().copied().or(cut);
        }
        acc += m;
    }
    cut
}

/// The tokens of bucket `b`, sorted by [`desc`], into `out`.
#[inline(always)]
fn edge(w: &[f32], b: usize, base: u32, buckets: usize, out: &mut Vec<Cand>) {
    out.clear();
    out.extend(
        w.iter()
            .enumerate()
            .filter(|&(_, &x)| x > 0.0 && bucket(x, base).min(buckets - 1) == b)
            .map(|(i, &x)| (x, i as u32)),
    );
    out.sort_unstable_by(desc);
}

/// Weights a draw first walks as one block.
const BLOCK: usize = 64;

/// [`mass_of`] as an f64 (an integer below 2^46, so exact), in plain arithmetic that vectorizes
/// without AVX-512: rounded to the nearest integer by adding and removing 2^52, then stepped
/// down when that rounded up.
#[inline(always)]
fn mass_f64(w: f32) -> f64 {
    const ROUND: f64 = 4_503_599_627_370_496.0; // 2^52
    let v = f64::from(w) * (1u64 << MASS_BITS) as f64;
    let r = (v + ROUND) - ROUND;
    if r > v {
        r - 1.0
    } else {
        r
    }
}

/// The total mass of `w` (at most [`BLOCK`] weights), in 8 f64 lanes the compiler vectorizes:
/// every partial sum is an integer below 2^53, so exact.
#[inline(always)]
fn block_mass(w: &[f32]) -> u64 {
    let mut lanes = [0f64; 8];
    let chunks = w.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| mass_f64(x)).sum();
    for c in chunks {
        for (a, &x) in lanes.iter_mut().zip(c) {
            *a += mass_f64(x);
        }
    }
    (lanes.iter().sum::<f64>() + tail) as u64
}

/// `blocks` = the masses of `w`'s blocks of [`BLOCK`] weights ([`block_mass`], in 8-lane AVX2
/// vectors where the CPU has them: see [`wide`]).
fn block_masses(w: &[f32], blocks: &mut Vec<u64>) {
    blocks.clear();
    #[cfg(target_arch = "x86_64")]
    if wide() {
        #[target_feature(enable = "avx2,bmi2")]
        unsafe fn avx2(w: &[f32], blocks: &mut Vec<u64>) {
            blocks.extend(w.chunks(BLOCK).map(block_mass));
        }
        // SAFETY: the features were just detected.
        return unsafe { avx2(w, blocks) };
    }
    blocks.extend(w.chunks(BLOCK).map(block_mass));
}

/// Draws one token with probability proportional to its mass in `w` (its id the index): the
/// first token whose cumulative mass, in id order, exceeds [`draw_point`]`(u53, total)`. The
/// blocks' masses are walked first, then the weights of the block the draw lands in. `None` only
/// when every mass is 0.
pub fn draw(w: &[f32], u53: u64, blocks: &mut Vec<u64>) -> Option<u32> {
    block_masses(w, blocks);
    let mut r = draw_point(u53, blocks.iter().sum());
    for (b, &m) in blocks.iter().enumerate() {
        if r < m {
            let block = &w[b * BLOCK..((b + 1) * BLOCK).min(w.len())];
            for (i, &x) in block.iter().enumerate() {
                let m = mass_of(x);
                if r < m {
                    return Some((b * BLOCK + i) as u32);
                }
                r -= m;
            }
            return None; // unreachable: the block's masses add up to `m` > r
        }
        r -= m;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(logits: &[f32], f: Filters) -> Vec<u32> {
        let mut sc = Scratch::default();
        assert!(candidates(logits, f, &mut sc));
        sc.w.iter().enumerate().filter(|(_, &w)| w > 0.0).map(|(i, _)| i as u32).collect()
    }

    const OFF: Filters = Filters { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0 };

    #[test]
    fn top_k_keeps_the_k_largest_and_the_lower_id_on_a_tie() {
        let l = [1.0, 5.0, 3.0, 5.0, 3.0, f32::NEG_INFINITY];
        assert_eq!(kept(&l, Filters { top_k: 3, ..OFF }), vec![1, 2, 3]);
        assert_eq!(kept(&l, Filters { top_k: 100, ..OFF }), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_p() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (ln-spaced logits).
        let l = [2f32.ln() * 3.0, 2f32.ln() * 2.0, 2f32.ln(), 2f32.ln()];
        assert_eq!(kept(&l, Filters { top_p: 0.45, ..OFF }), vec![0]);
        assert_eq!(kept(&l, Filters { top_p: 0.6, ..OFF }), vec![0, 1]);
        assert_eq!(kept(&l, Filters { top_p: 0.8, ..OFF }), vec![0, 1, 2]);
        assert_eq!(kept(&l, Filters { top_p: 0.9, ..OFF }), vec![0, 1, 2, 3]);
    }

    #[test]
    fn top_p_on_a_large_vocab_matches_a_full_sort() {
        let l: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 4999) as f32 * 1e-3).collect();
        for p in [0.01, 0.3, 0.97, 0.999] {
            let got = kept(&l, Filters { top_p: p, ..OFF });
            let mut all: Vec<Cand> = l.iter().enumerate().map(|(i, &x)| (x, i as u32)).collect();
            all.sort_by(desc);
            let total: f64 = all.iter().map(|c| f64::from(c.0 - all[0].0).exp()).sum();
            let mut acc = 0.0;
            let n = all.iter().position(|c| {
                acc += f64::from(c.0 - all[0].0).exp();
                acc >= f64::from(p) * total
            });
            let mut want: Vec<u32> = all[..n.map_or(all.len(), |i| i + 1)].iter().map(|c| c.1).collect();
            want.sort_unstable();
            assert_eq!(got, want, "top_p {p}");
        }
    }

    #[test]
    fn top_p_is_relative_to_the_top_k_survivors() {
        // After top-k 2: 0.8 / 0.2 (ln 4 apart); top_p 0.75 keeps one.
        let l = [4f32.ln(), 0.0, -0.1, -0.1, -0.1];
        assert_eq!(kept(&l, Filters { top_k: 2, top_p: 0.75, ..OFF }), vec![0]);
        assert_eq!(kept(&l, Filters { top_k: 2, top_p: 0.85, ..OFF }), vec![0, 1]);
    }

    #[test]
    fn min_p_is_a_ratio_to_the_top_token_after_temperature() {
        let l = [0.0, -(2f32.ln()), -(8f32.ln())]; // p ∝ 1, 1/2, 1/8
        assert_eq!(kept(&l, Filters { min_p: 0.4, ..OFF }), vec![0, 1]);
        assert_eq!(kept(&l, Filters { min_p: 0.1, ..OFF }), vec![0, 1, 2]);
        // At T = 2 the ratios become 1, 1/√2, 1/√8 ≈ 0.35.
        assert_eq!(kept(&l, Filters { min_p: 0.4, temperature: 2.0, ..OFF }), vec![0, 1]);
        assert_eq!(kept(&l, Filters { min_p: 0.3, temperature: 2.0, ..OFF }), vec![0, 1, 2]);
    }

    #[test]
    fn only_negligible_tokens_are_dropped_up_front() {
        // The floor is a weight of 2^-45: 45 ln 2 ≈ 31.19 nats below the best.
        assert_eq!(kept(&[0.0, -31.0, -31.5], OFF), vec![0, 1]);
        // Temperature scales the distance: 124 logits at T = 4 is 31 nats.
        assert_eq!(kept(&[0.0, -124.0, -300.0], Filters { temperature: 4.0, ..OFF }), vec![0, 1]);
    }

    #[test]
    fn masses_are_the_float_product_truncated() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Weights across the whole range, exact powers of two and 0 among them.
            let w = match i % 4 {
                0 => f32::from_bits((x >> 33) as u32 % 0x3f80_0001),
                1 => (-((x >> 40) as f32) / (1u64 << 24) as f32 * 40.0).exp(),
                2 => 2f32.powi(-((x % 50) as i32)),
                _ => 0.0,
            };
            assert_eq!(mass_of(w), (w * (1u64 << MASS_BITS) as f32) as u64, "{w:e}");
            assert_eq!(mass_f64(w), mass_of(w) as f64, "{w:e}");
        }
    }

    #[test]
    fn integer_masses_are_exact() {
        assert_eq!(mass_of(1.0), 1 << 45);
        assert_eq!(mass_of(MIN_WEIGHT), 1);
        assert_eq!(mass_of(MIN_WEIGHT * 0.99), 0);
        assert_eq!(mass_of(0.75), 3 << 43);
        assert_eq!(top_p_target(1.0, 12345), 12345);
        assert_eq!(top_p_target(0.5, 7), 4);
        assert_eq!(top_p_target(0.25, 8), 2);
        assert_eq!(top_p_target(0.95, 1 << 45), ((0.95f32 as f64) * (1u64 << 45) as f64).ceil() as u64);
        assert_eq!(top_p_target(f32::from_bits(1), 1 << 60), 1);
        // 0.9f32 is 15099494 · 2^-24.
        assert_eq!(top_p_target(0.9, u64::MAX) as u128, (15_099_494u128 * u128::from(u64::MAX)).div_ceil(1 << 24));
        assert_eq!(draw_point(0, 100), 0);
        assert_eq!(draw_point((1 << 53) - 1, 100), 99);
        assert_eq!(draw_point(1 << 52, 101), 50);
        assert_eq!(draw_point((1 << 53) - 1, u64::MAX), u64::MAX - 2048);
    }

    #[test]
    fn nothing_finite_is_reported() {
        assert!(!candidates(&[f32::NEG_INFINITY, f32::NAN], OFF, &mut Scratch::default()));
    }

    /// `u` in [0, 1) as the 53-bit integer the draw takes.
    fn u53(u: f64) -> u64 {
        (u * (1u64 << 53) as f64) as u64
    }

    #[test]
    fn draw_walks_the_cumulative_mass() {
        let d = |w: &[f32], u: f64| draw(w, u53(u), &mut vec![]);
        let mut w = vec![0.0; 12];
        (w[7], w[9]) = (1.0, 1.0);
        assert_eq!(d(&w, 0.0), Some(7));
        assert_eq!(d(&w, 0.49), Some(7));
        assert_eq!(d(&w, 0.5), Some(9));
        assert_eq!(d(&w, 0.999_999_999), Some(9));
        assert_eq!(d(&[0.25, 0.75], 0.26), Some(1));
        assert_eq!(d(&[0.0; 3], 0.5), None);
        assert_eq!(d(&[], 0.5), None);
        // Below 2^-45 a weight is 0.
        assert_eq!(d(&[1e-15, 1e-15], 0.5), None);
    }

    #[test]
    fn draw_across_blocks_matches_a_plain_walk() {
        // Weights over several blocks, some blocks empty; every u lands where one sequential
        // cumulative walk of the integer masses puts it.
        let w: Vec<f32> =
            (0..1000).map(|i| if (i / 64) % 3 == 1 { 0.0 } else { ((i * 37) % 11) as f32 * 0.1 }).collect();
        let total: u64 = w.iter().map(|&x| mass_of(x)).sum();
        for k in 0..400u64 {
            let u = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            let (mut r, mut want) = (draw_point(u, total), None);
            for (i, &x) in w.iter().enumerate() {
                if r < mass_of(x) {
                    want = Some(i as u32);
                    break;
                }
                r -= mass_of(x);
            }
            assert!(want.is_some());
            assert_eq!(draw(&w, u, &mut vec![]), want, "u {u}");
        }
    }
}

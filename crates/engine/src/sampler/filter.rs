//! The random path: temperature, then top-k, top-p and min-p (HF's order), then one draw.
//!
//! Nothing sorts the vocabulary. Each token's weight exp(s - s_max) (s = logit / temperature) is
//! computed once, in f32, by a polynomial `exp` the compiler vectorizes; masses are summed in
//! f64. The filters each keep a prefix of the order "more likely first, lower id on ties": top-k
//! and top-p find where theirs ends from a histogram of the weights' top bits (one pass), then
//! sort only the bucket the end falls in. The excluded tokens' weights are then zeroed, and the
//! draw walks the weights in id order (by blocks of 64 first), so a seed reproduces the same draw. (A 128k-entry row took ~1–1.9 ms with a quickselect over
//! all candidates and libm's `exp`; bench/RESULTS.md has the figures.)

use std::cmp::Ordering;

/// A token: `(weight, id)`, weight = exp(s - s_max), the probability relative to the most
/// likely token (which has 1).
type Cand = (f32, u32);

/// Tokens this many nats (after temperature) below the best never enter the buffer: e^-50 ≈ 2e-22,
/// so even a million of them hold under 2^-53 of the mass, less than the f64 uniform draw can
/// resolve. In a peaked distribution that skips most of the vocabulary.
const NEGLIGIBLE_NATS: f32 = 50.0;

/// Histogram buckets: a weight's f32 bits shifted right by this (exponent and the top 7 mantissa
/// bits, so a bucket spans 1/128 of an octave).
const BUCKET_SHIFT: u32 = 16;

/// Most likely first; lower id first on ties. A total order, so selection is deterministic.
fn desc(a: &Cand, b: &Cand) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Filters {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
}

/// Buffers the filters reuse across steps, so a step allocates nothing once they have grown.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Each token's weight, 0 for the excluded: what [`draw`] draws from.
    pub w: Vec<f32>,
    /// The mass of each block of [`BLOCK`] weights, for the draw.
    pub blocks: Vec<f64>,
    /// Per bucket: tokens and their mass.
    counts: Vec<u32>,
    mass: Vec<f64>,
    /// The tokens of a bucket where a prefix ends, sorted by [`desc`].
    edge: Vec<Cand>,
}

/// `exp(x)` for `x` in [-NEGLIGIBLE_NATS, 0] (Cephes' `expf`: x = n·ln2 + r, a degree-5
/// polynomial in r, then the exponent set directly; within ~2 ulp of libm). Plain arithmetic, no
/// calls, so a loop over it vectorizes.
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

/// Sets `sc.w` to the surviving tokens' weights (0 for the rest). Returns false when no logit is
/// finite.
pub(crate) fn candidates(logits: &[f32], f: Filters, sc: &mut Scratch) -> bool {
    let max = finite_max(logits);
    if max == f32::NEG_INFINITY {
        return false;
    }
    // Dividing a huge logit by a small temperature can overflow; clamped, it still dominates.
    let scale = |x: f32| (x / f.temperature).clamp(f32::MIN, f32::MAX);
    let (s_max, floor) = (scale(max), scale(max) - NEGLIGIBLE_NATS);
    let Scratch { w, counts, mass, edge, .. } = sc;
    w.clear();
    w.resize(logits.len(), 0.0);
    weights(logits, f.temperature, s_max, floor, w);
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

/// `w[i] = exp(s_i - s_max)` for the finite logits with s_i = logit / temperature (clamped as
/// `candidates` clamps it) at or above `floor`, else 0. Excluded tokens still go through exp, on a
/// clamped argument, and then weigh 0: no branch, so the loop vectorizes.
fn weights(logits: &[f32], temperature: f32, s_max: f32, floor: f32, w: &mut [f32]) {
    for (o, &x) in w.iter_mut().zip(logits) {
        let s = (x / temperature).clamp(f32::MIN, f32::MAX);
        let d = s - s_max;
        let e = exp_neg(if d > -NEGLIGIBLE_NATS { d } else { -NEGLIGIBLE_NATS });
        *o = if x.abs() < f32::INFINITY && s >= floor { e } else { 0.0 };
    }
}

/// The largest finite value (NEG_INFINITY when there is none), in lanes the compiler vectorizes.
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

fn bucket(w: f32, base: u32) -> usize {
    ((w.to_bits() >> BUCKET_SHIFT).saturating_sub(base)) as usize
}

/// [`Scratch`]'s buffers for [`prefix_end`].
struct Histogram<'a> {
    counts: &'a mut Vec<u32>,
    mass: &'a mut Vec<f64>,
    edge: &'a mut Vec<Cand>,
}

/// Where the kept prefix ends: the `k` most likely tokens (k = 0: all), then of those the
/// smallest most-likely prefix whose mass reaches `p` of theirs. `None` keeps every weight > 0.
fn prefix_end(w: &[f32], k: usize, p: f32, sc: Histogram) -> Cut {
    // Every weight > 0 is at least e^-50 ≈ 1.9e-22 and at most 1.
    let base = 1e-23f32.to_bits() >> BUCKET_SHIFT;
    let buckets = bucket(1.0, base) + 1;
    sc.counts.clear();
    sc.counts.resize(buckets, 0);
    sc.mass.clear();
    sc.mass.resize(buckets, 0.0);
    for &x in w.iter().filter(|&&x| x > 0.0) {
        let b = bucket(x, base).min(buckets - 1);
        sc.counts[b] += 1;
        sc.mass[b] += f64::from(x);
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
    let edge_mass = |e: &[Cand]| e.iter().map(|c| f64::from(c.0)).sum::<f64>();
    let lowest = if last < buckets { last } else { 0 };
    let kept_of = |b: usize, sc: &Histogram| if b == last { edge_mass(sc.edge) } else { sc.mass[b] };
    let total: f64 = (lowest..buckets).map(|b| kept_of(b, &sc)).sum();
    let target = f64::from(p) * total;
    let mut acc = 0.0;
    for b in (lowest..buckets).rev() {
        let m = kept_of(b, &sc);
        if m > 0.0 && acc + m >= target {
            if b != last {
                edge(w, b, base, buckets, sc.edge);
            }
            for &c in sc.edge.iter() {
                acc += f64::from(c.0);
                if acc >= target {
                    return Some(c);
                }
            }
            // Rounding (sums taken in another order) left `acc` just short: the bucket suffices.
            return sc.edge.last().copied().or(cut);
        }
        acc += m;
    }
    cut
}

/// The tokens of bucket `b`, sorted by [`desc`], into `out`.
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

/// The f64 sum of `w`, in 8 lanes (the compiler vectorizes them) added up at the end.
fn mass(w: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = w.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(x)).sum();
    for c in chunks {
        for (a, &x) in lanes.iter_mut().zip(c) {
            *a += f64::from(x);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Draws one token with probability proportional to its weight in `w` (its id the index), `u`
/// uniform in [0, 1): the blocks' masses are walked first, then the weights of the block the
/// draw lands in. `None` only when every weight is 0.
pub(crate) fn draw(w: &[f32], u: f64, blocks: &mut Vec<f64>) -> Option<u32> {
    blocks.clear();
    blocks.extend(w.chunks(BLOCK).map(mass));
    let mut r = u * blocks.iter().sum::<f64>();
    let mut last = None;
    for (b, &m) in blocks.iter().enumerate() {
        if m <= 0.0 {
            continue;
        }
        if r < m {
            let block = &w[b * BLOCK..((b + 1) * BLOCK).min(w.len())];
            for (i, &x) in block.iter().enumerate() {
                if x > 0.0 {
                    let id = (b * BLOCK + i) as u32;
                    if r < f64::from(x) {
                        return Some(id);
                    }
                    r -= f64::from(x);
                    last = Some(id);
                }
            }
            // The block's weights, summed one by one, came out just under its lane-summed mass.
            return last;
        }
        r -= m;
        last = block_last(w, b);
    }
    // Rounding left `r` just past the end: the last token with any weight.
    last
}

/// The last token of block `b` with any weight.
fn block_last(w: &[f32], b: usize) -> Option<u32> {
    let block = &w[b * BLOCK..((b + 1) * BLOCK).min(w.len())];
    block.iter().rposition(|&x| x > 0.0).map(|i| (b * BLOCK + i) as u32)
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
        assert_eq!(kept(&[0.0, -49.0, -51.0], OFF), vec![0, 1]);
        // Temperature scales the distance: 100 logits at T = 4 is 25 nats.
        assert_eq!(kept(&[0.0, -100.0, -300.0], Filters { temperature: 4.0, ..OFF }), vec![0, 1]);
    }

    #[test]
    fn nothing_finite_is_reported() {
        assert!(!candidates(&[f32::NEG_INFINITY, f32::NAN], OFF, &mut Scratch::default()));
    }

    #[test]
    fn draw_walks_the_cumulative_mass() {
        let d = |w: &[f32], u: f64| draw(w, u, &mut vec![]);
        let mut w = vec![0.0; 12];
        (w[7], w[9]) = (1.0, 1.0);
        assert_eq!(d(&w, 0.0), Some(7));
        assert_eq!(d(&w, 0.49), Some(7));
        assert_eq!(d(&w, 0.51), Some(9));
        assert_eq!(d(&w, 0.999_999_999), Some(9));
        assert_eq!(d(&[0.25, 0.75], 0.26), Some(1));
        assert_eq!(d(&[0.0; 3], 0.5), None);
        assert_eq!(d(&[], 0.5), None);
    }

    #[test]
    fn draw_across_blocks_matches_a_plain_walk() {
        // Weights over several blocks, some blocks empty; every u lands where one sequential
        // cumulative walk puts it (away from the boundaries' last bits).
        let w: Vec<f32> =
            (0..1000).map(|i| if (i / 64) % 3 == 1 { 0.0 } else { ((i * 37) % 11) as f32 * 0.1 }).collect();
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        for k in 0..200 {
            let u = (k as f64 + 0.5) / 200.0;
            let (mut r, mut want) = (u * total, None);
            for (i, &x) in w.iter().enumerate() {
                if x > 0.0 && r < f64::from(x) {
                    want = Some(i as u32);
                    break;
                }
                r -= f64::from(x);
            }
            assert_eq!(draw(&w, u, &mut vec![]), want, "u {u}");
        }
    }
}

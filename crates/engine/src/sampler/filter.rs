//! The random path: temperature, then top-k, top-p and min-p (HF's order), then one draw.
//!
//! Candidates live in a buffer the sampler reuses across steps, and nothing sorts the vocabulary:
//! top-k is a linear-time selection, top-p a weighted quickselect (expected linear), min-p a
//! threshold. Each candidate's exp is computed once, in f32, and summed in f64. Order among equal
//! values is by id, so a seed reproduces the same draw.

use std::cmp::Ordering;

/// A surviving token: `(logit / temperature, id)` until top-k is done, then `(weight, id)` with
/// weight = exp(s - s_max), the probability relative to the most likely token (which has 1).
pub(crate) type Cand = (f32, u32);

/// Tokens this many nats (after temperature) below the best never enter the buffer: e^-50 ≈ 2e-22,
/// so even a million of them hold under 2^-53 of the mass, less than the f64 uniform draw can
/// resolve. In a peaked distribution that skips most of the vocabulary.
const NEGLIGIBLE_NATS: f32 = 50.0;

/// Below this many candidates, top-p just sorts.
const SORT_BELOW: usize = 64;

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

/// Fills `cand` with the surviving tokens and their weights. Returns false when no logit is finite.
pub(crate) fn candidates(logits: &[f32], f: Filters, cand: &mut Vec<Cand>) -> bool {
    cand.clear();
    let max = logits.iter().copied().filter(|x| x.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return false;
    }
    // Dividing a huge logit by a small temperature can overflow; clamped, it still dominates.
    let scale = |x: f32| (x / f.temperature).clamp(f32::MIN, f32::MAX);
    let (s_max, floor) = (scale(max), scale(max) - NEGLIGIBLE_NATS);
    for (i, &x) in logits.iter().enumerate() {
        if x.is_finite() && scale(x) >= floor {
            cand.push((scale(x), i as u32));
        }
    }
    if f.top_k > 0 && f.top_k < cand.len() {
        cand.select_nth_unstable_by(f.top_k - 1, desc);
        cand.truncate(f.top_k);
    }
    for c in cand.iter_mut() {
        c.0 = (c.0 - s_max).exp();
    }
    if f.top_p < 1.0 {
        top_p(cand, f.top_p);
    }
    if f.min_p > 0.0 {
        // Weights are p_i / p_max, which renormalizing after top-k/top-p does not change.
        cand.retain(|&(w, _)| w >= f.min_p);
    }
    true
}

fn mass(cand: &[Cand]) -> f64 {
    cand.iter().map(|c| f64::from(c.0)).sum()
}

/// Keeps the smallest most-likely prefix whose weight reaches `p` of the candidates' total:
/// a quickselect that halves the range around the boundary, then sorts the last few.
fn top_p(cand: &mut Vec<Cand>, p: f32) {
    let target = f64::from(p) * mass(cand);
    // Invariant: each of cand[..lo] is more likely than all of cand[lo..hi], together they weigh
    // `acc`, and the kept prefix ends inside lo..hi.
    let (mut lo, mut hi, mut acc) = (0, cand.len(), 0.0);
    while hi - lo > SORT_BELOW {
        let mid = lo + (hi - lo) / 2;
        cand[lo..hi].select_nth_unstable_by(mid - lo, desc);
        let upper = mass(&cand[lo..=mid]);
        if acc + upper >= target {
            hi = mid + 1;
        } else {
            acc += upper;
            lo = mid + 1;
        }
    }
    cand[lo..hi].sort_unstable_by(desc);
    for i in lo..hi {
        acc += f64::from(cand[i].0);
        if acc >= target {
            cand.truncate(i + 1);
            return;
        }
    }
    // Rounding (sums taken in another order) left `acc` just short: `hi` is known to suffice.
    cand.truncate(hi);
}

/// Draws one candidate with probability proportional to its weight, `u` uniform in [0, 1);
/// `None` only when `cand` is empty.
pub(crate) fn draw(cand: &[Cand], u: f64) -> Option<u32> {
    let mut r = u * mass(cand);
    let mut last = None;
    for &(w, id) in cand {
        if w > 0.0 {
            let w = f64::from(w);
            if r < w {
                return Some(id);
            }
            r -= w;
            last = Some(id);
        }
    }
    // Rounding left `r` just past the end: the last token with any weight.
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(logits: &[f32], f: Filters) -> Vec<u32> {
        let mut c = vec![];
        assert!(candidates(logits, f, &mut c));
        let mut ids: Vec<u32> = c.iter().map(|c| c.1).collect();
        ids.sort_unstable();
        ids
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
        assert!(!candidates(&[f32::NEG_INFINITY, f32::NAN], OFF, &mut vec![]));
    }

    #[test]
    fn draw_walks_the_cumulative_mass() {
        let c = [(1.0, 7), (1.0, 9), (0.0, 11)];
        assert_eq!(draw(&c, 0.0), Some(7));
        assert_eq!(draw(&c, 0.49), Some(7));
        assert_eq!(draw(&c, 0.51), Some(9));
        assert_eq!(draw(&c, 0.999_999_999), Some(9));
        assert_eq!(draw(&[(0.25, 1), (0.75, 2)], 0.26), Some(2));
        assert_eq!(draw(&[], 0.5), None);
    }
}

//! The random path: temperature, then top-k, top-p and min-p (HF's order), then one draw.
//!
//! Candidates live in a buffer the sampler reuses across steps. Nothing sorts the vocabulary:
//! top-k is a linear-time selection, top-p sorts only the prefix it keeps (found by selecting
//! growing chunks), and min-p is a threshold. Order among equal logits is by id, so a seed
//! reproduces the same draw.

use std::cmp::Ordering;

/// A surviving token: `(logit / temperature, id)`.
pub(crate) type Cand = (f32, u32);

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

/// Fills `cand` with the tokens that survive the filters. Returns false when no logit is finite.
pub(crate) fn candidates(logits: &[f32], f: Filters, cand: &mut Vec<Cand>) -> bool {
    cand.clear();
    // Dividing a huge logit by a small temperature can overflow; clamped, it still dominates.
    let scaled = |(i, &x): (usize, &f32)| ((x / f.temperature).clamp(f32::MIN, f32::MAX), i as u32);
    cand.extend(logits.iter().enumerate().filter(|(_, x)| x.is_finite()).map(scaled));
    if cand.is_empty() {
        return false;
    }
    if f.top_k > 0 && f.top_k < cand.len() {
        cand.select_nth_unstable_by(f.top_k - 1, desc);
        cand.truncate(f.top_k);
    }
    if f.top_p < 1.0 {
        top_p(cand, f.top_p);
    }
    if f.min_p > 0.0 {
        // p_i >= min_p * p_max  <=>  exp(s_i - s_max) >= min_p; renormalizing after top-k/top-p
        // does not change that ratio, so the threshold is the same wherever it is applied.
        let max = max_logit(cand);
        cand.retain(|&(s, _)| f64::from(s - max).exp() >= f64::from(f.min_p));
    }
    true
}

fn max_logit(cand: &[Cand]) -> f32 {
    cand.iter().map(|c| c.0).fold(f32::NEG_INFINITY, f32::max)
}

/// Keeps the smallest most-likely prefix whose probability reaches `p` of the candidates' mass.
/// Sorts only that prefix: the next chunk of most likely tokens is selected in linear time and
/// sorted, and the chunk grows 4x whenever the mass is not reached yet.
fn top_p(cand: &mut Vec<Cand>, p: f32) {
    let max = max_logit(cand);
    let weight = |c: &Cand| f64::from(c.0 - max).exp();
    let target = f64::from(p) * cand.iter().map(weight).sum::<f64>();
    let (mut sorted, mut chunk, mut acc) = (0, 64, 0.0);
    while sorted < cand.len() {
        let (len, end) = (cand.len(), (sorted + chunk).min(cand.len()));
        let rest = &mut cand[sorted..];
        if end < len {
            rest.select_nth_unstable_by(end - sorted - 1, desc);
        }
        rest[..end - sorted].sort_unstable_by(desc);
        for i in sorted..end {
            acc += weight(&cand[i]);
            if acc >= target {
                cand.truncate(i + 1);
                return;
            }
        }
        sorted = end;
        chunk *= 4;
    }
}

/// Draws one candidate with probability proportional to exp(s), `u` uniform in [0, 1); `None`
/// only when `cand` is empty.
pub(crate) fn draw(cand: &[Cand], u: f64) -> Option<u32> {
    let max = max_logit(cand);
    let total: f64 = cand.iter().map(|c| f64::from(c.0 - max).exp()).sum();
    let mut r = u * total;
    let mut last = None;
    for c in cand {
        let w = f64::from(c.0 - max).exp();
        if w > 0.0 {
            if r < w {
                return Some(c.1);
            }
            r -= w;
            last = Some(c.1);
        }
    }
    // Rounding left `r` just past the end: the last token with any mass.
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
        assert_eq!(kept(&l, Filters { top_p: 0.5, ..OFF }), vec![0]);
        assert_eq!(kept(&l, Filters { top_p: 0.6, ..OFF }), vec![0, 1]);
        assert_eq!(kept(&l, Filters { top_p: 0.8, ..OFF }), vec![0, 1, 2]);
        assert_eq!(kept(&l, Filters { top_p: 0.9, ..OFF }), vec![0, 1, 2, 3]);
    }

    #[test]
    fn top_p_across_several_chunks_matches_a_full_sort() {
        let l: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 4999) as f32 * 1e-3).collect();
        for p in [0.01, 0.3, 0.97, 0.999] {
            let mut got = kept(&l, Filters { top_p: p, ..OFF });
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
            got.dedup();
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
    fn nothing_finite_is_reported() {
        assert!(!candidates(&[f32::NEG_INFINITY, f32::NAN], OFF, &mut vec![]));
    }

    #[test]
    fn draw_walks_the_cumulative_mass() {
        let c = [(0.0, 7), (0.0, 9)];
        assert_eq!(draw(&c, 0.0), Some(7));
        assert_eq!(draw(&c, 0.49), Some(7));
        assert_eq!(draw(&c, 0.51), Some(9));
        assert_eq!(draw(&c, 0.999_999_999), Some(9));
        assert_eq!(draw(&[], 0.5), None);
    }
}

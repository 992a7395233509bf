//! Log-probabilities reported to the client: of the sampled token (vLLM's default "raw_logprobs",
//! i.e. log_softmax of the model's logits before bias, penalties, temperature or filtering) and of
//! each prompt token given its prefix (`prompt_logprobs`, for echo).
//!
//! Nothing here materializes a log_softmax row: one pass finds the log-normalizer, one more finds
//! the rank and the top N, and only the handful of reported values are computed.

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// 1 + the number of tokens strictly more likely (the argmax has rank 1, ties share a rank).
    pub rank: usize,
    /// The most likely tokens and their logprobs, most likely first (lower id first on ties).
    pub top: Vec<(u32, f32)>,
}

/// log Σ exp(x) over the finite entries, with max-subtraction and an f64 sum; `None` when no
/// entry is finite. Non-finite logits (masked, or a broken model's NaN) count as probability 0.
pub(crate) fn log_sum_exp(row: &[f32]) -> Option<f64> {
    let max = row.iter().copied().filter(|x| x.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return None;
    }
    // exp in f32 (one rounding, ~1e-7 relative), summed in f64: far inside the 1e-5 budget.
    let sum: f64 = row.iter().filter(|x| x.is_finite()).map(|&x| f64::from((x - max).exp())).sum();
    Some(f64::from(max) + sum.ln())
}

/// The `n` largest finite entries as `(id, logit)`, largest first, lower id first on ties.
/// One pass with a sorted buffer of at most `n`, which stays cheap for n <= MAX_LOGPROBS.
fn top_n(row: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return top;
    }
    for (i, &x) in row.iter().enumerate() {
        if !x.is_finite() || (top.len() == n && x <= top[n - 1].1) {
            continue;
        }
        // After every equal value: ids arrive in increasing order, so ties keep the lower id first.
        let at = top.partition_point(|&(_, y)| y >= x);
        top.insert(at, (i as u32, x));
        top.truncate(n);
    }
    top
}

/// Logprob, rank and top-`n` of `token` under log_softmax(`row`); `None` when no logit is finite
/// or `token` is outside the row.
pub(crate) fn token_logprob(row: &[f32], token: u32, n: usize) -> Option<TokenLogprob> {
    let x = *row.get(token as usize)?;
    let lse = log_sum_exp(row)?;
    let lp = |x: f32| if x.is_finite() { (f64::from(x) - lse) as f32 } else { f32::NEG_INFINITY };
    let rank = 1 + row.iter().filter(|&&y| y.is_finite() && y > x).count();
    let top = top_n(row, n).into_iter().map(|(t, y)| (t, lp(y))).collect();
    Some(TokenLogprob { token, logprob: lp(x), rank, top })
}

/// For each row `i` of `logits` (`(targets.len(), vocab)`, row-major), the logprob of `targets[i]`
/// under log_softmax(row i), its rank and the top `top_n`. For prompt logprobs, row i holds the
/// logits at prompt position i and `targets[i]` is prompt token i + 1: the first prompt token has
/// no prefix and so no entry.
pub fn prompt_logprobs(logits: &[f32], vocab: usize, targets: &[u32], top_n: usize) -> Result<Vec<TokenLogprob>> {
    let bad = |m: String| Err(Error::InvalidRequest(format!("prompt logprobs: {m}")));
    if vocab == 0 || Some(logits.len()) != targets.len().checked_mul(vocab) {
        return bad(format!(
            "logits must be (targets, vocab) = ({}, {vocab}). Given: {} values",
            targets.len(),
            logits.len()
        ));
    }
    let mut out = Vec::with_capacity(targets.len());
    for (i, (row, &t)) in logits.chunks_exact(vocab).zip(targets).enumerate() {
        if t as usize >= vocab {
            return bad(format!("target token ids must be < vocab ({vocab}). Given: {t} at position {i}"));
        }
        match token_logprob(row, t, top_n) {
            Some(lp) => out.push(lp),
            None => return bad(format!("row {i} has no finite logit")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference log_softmax, straightforwardly in f64.
    fn reference(row: &[f32]) -> Vec<f64> {
        let z: f64 = row.iter().map(|&x| f64::from(x).exp()).sum();
        row.iter().map(|&x| f64::from(x) - z.ln()).collect()
    }

    #[test]
    fn logprob_is_log_softmax_of_the_row() {
        let row: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 113) as f32 * 0.37 - 20.0).collect();
        let want = reference(&row);
        for t in [0u32, 17, 500, 999] {
            let lp = token_logprob(&row, t, 0).unwrap();
            assert!(
                (f64::from(lp.logprob) - want[t as usize]).abs() < 1e-5,
                "{t}: {} vs {}",
                lp.logprob,
                want[t as usize]
            );
        }
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let lp = token_logprob(&[1000.0, 1000.0, -1000.0], 0, 0).unwrap();
        assert!((lp.logprob - (0.5f32).ln()).abs() < 1e-6, "{}", lp.logprob);
    }

    #[test]
    fn rank_and_top_n_sorted_descending_with_ties_by_id() {
        let row = [0.5, 3.0, -1.0, 3.0, 2.0, f32::NEG_INFINITY];
        let want = reference(&row[..5]);
        let lp = token_logprob(&row, 4, 3).unwrap();
        assert_eq!(lp.rank, 3);
        let ids: Vec<u32> = lp.top.iter().map(|&(t, _)| t).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        for &(t, v) in &lp.top {
            assert!((f64::from(v) - want[t as usize]).abs() < 1e-6);
        }
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(token_logprob(&row, 1, 0).unwrap().rank, 1);
        assert_eq!(token_logprob(&row, 3, 0).unwrap().rank, 1);
        let masked = token_logprob(&row, 5, 0).unwrap();
        assert_eq!((masked.logprob, masked.rank), (f32::NEG_INFINITY, 6));
        // Asking for more than the finite entries returns just those.
        assert_eq!(token_logprob(&row, 0, 20).unwrap().top.len(), 5);
    }

    #[test]
    fn prompt_logprobs_on_a_tiny_matrix() {
        // Prompt [a, b, c] with vocab 3: row 0 predicts b = 1, row 1 predicts c = 2.
        let logits = [1.0, 2.0, 3.0, /* row 1 */ 0.0, 0.0, 0.0];
        let out = prompt_logprobs(&logits, 3, &[1, 2], 1).unwrap();
        let r0 = reference(&logits[..3]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].token, out[0].rank), (1, 2));
        assert!((f64::from(out[0].logprob) - r0[1]).abs() < 1e-6);
        assert_eq!(out[0].top.len(), 1);
        assert_eq!(out[0].top[0].0, 2);
        assert!((f64::from(out[0].top[0].1) - r0[2]).abs() < 1e-6);
        assert!((out[1].logprob - (1.0f32 / 3.0).ln()).abs() < 1e-6);
        assert_eq!((out[1].rank, out[1].top[0].0), (1, 0));
    }

    #[test]
    fn prompt_logprobs_rejects_bad_shapes_and_ids() {
        let e = prompt_logprobs(&[0.0; 5], 3, &[1, 2], 0).unwrap_err().to_string();
        assert!(e.contains("(2, 3)") && e.contains("Given: 5"), "{e}");
        let e = prompt_logprobs(&[0.0; 6], 3, &[1, 3], 0).unwrap_err().to_string();
        assert!(e.contains("Given: 3 at position 1"), "{e}");
        let e = prompt_logprobs(&[f32::NEG_INFINITY; 3], 3, &[0], 0).unwrap_err().to_string();
        assert!(e.contains("row 0"), "{e}");
    }
}

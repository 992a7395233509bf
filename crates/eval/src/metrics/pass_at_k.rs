//! HumanEval's unbiased pass@k estimator (openai/human-eval `evaluation.py`): with `n` samples of
//! which `c` pass, pass@k = 1 − C(n−c, k)/C(n, k), computed as 1 − ∏_{i=n−c+1}^{n} (1 − k/i).

/// `None` when `k > n` (human-eval then leaves pass@k out of the report).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let prod: f64 = ((n - c + 1)..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Some(1.0 - prod)
}

#[cfg(test)]
mod tests {
    use super::pass_at_k;

    #[test]
    fn published_values() {
        let cases = [
            ((10, 3, 1), 0.3),
            ((10, 3, 5), 0.916667),
            ((5, 2, 2), 0.7),
            ((200, 10, 10), 0.408548),
            ((200, 10, 100), 0.999229),
        ];
        for ((n, c, k), want) in cases {
            let got = pass_at_k(n, c, k).unwrap();
            assert!((got - want).abs() < 1e-6, "pass@{k} n={n} c={c}: {got}");
        }
        assert_eq!(pass_at_k(5, 0, 1), Some(0.0));
        assert_eq!(pass_at_k(5, 5, 3), Some(1.0));
        assert_eq!(pass_at_k(3, 1, 10), None);
    }
}

//! Standard errors as lm-eval reports them (`lm_eval/api/metrics.py`): `mean` aggregations get
//! sample_std/√n; bootstrappable aggregations (median, bleu, chrf, ter, perplexity, f1, mcc) get
//! the standard deviation of the aggregate over resamples; anything else gets none ("N/A").
//!
//! Bootstrap draws come from a seeded RNG of ours, not Python's `random.Random(0)`, so bootstrap
//! stderrs agree with lm-eval's to sampling noise, not digit for digit.

use rand::{Rng, SeedableRng};

pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n − 1 denominator); `NaN` below two values.
pub fn sample_stddev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// lm-eval `mean_stderr`.
pub fn mean_stderr(xs: &[f64]) -> f64 {
    sample_stddev(xs) / (xs.len() as f64).sqrt()
}

/// Standard deviation of `agg` over `iters` resamples (with replacement) of `items`.
pub fn bootstrap_stderr<T: Clone>(items: &[T], agg: impl Fn(&[T]) -> f64, iters: usize, seed: u64) -> f64 {
    if items.is_empty() || iters < 2 {
        return f64::NAN;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buf = Vec::with_capacity(items.len());
    let stats: Vec<f64> = (0..iters)
        .map(|_| {
            buf.clear();
            buf.extend((0..items.len()).map(|_| items[rng.random_range(0..items.len())].clone()));
            agg(&buf)
        })
        .collect();
    sample_stddev(&stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_stderr_matches_the_formula() {
        // 0/1 accuracies: 3 of 4 right; std = sqrt(0.25) = 0.5, / sqrt(4) = 0.25.
        let xs = [1.0, 1.0, 1.0, 0.0];
        assert!((mean_stderr(&xs) - 0.25).abs() < 1e-12);
        assert!(mean_stderr(&[1.0]).is_nan());
    }

    #[test]
    fn bootstrap_of_the_mean_is_close_to_the_analytic_stderr() {
        let xs: Vec<f64> = (0..400).map(|i| f64::from(i % 3 == 0)).collect();
        let b = bootstrap_stderr(&xs, mean, 2000, 0);
        let a = mean_stderr(&xs);
        assert!((b - a).abs() / a < 0.1, "bootstrap {b} vs analytic {a}");
    }
}

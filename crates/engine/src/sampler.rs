//! Token selection from logits: greedy, or temperature with top-k / top-p / min-p filtering,
//! reproducible for a given seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability sums to at least `top_p`; 1 disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top token's; 0 disables.
    pub min_p: f32,
    pub seed: Option<u64>,
    pub max_tokens: usize,
    /// Generation stops when the text contains one of these (the stop string is not returned).
    pub stop: Vec<String>,
    /// Extra token ids that end generation (besides the model's EOS ids).
    pub stop_token_ids: Vec<u32>,
    /// Keep going past EOS (benchmarks).
    pub ignore_eos: bool,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: None,
            max_tokens: 256,
            stop: vec![],
            stop_token_ids: vec![],
            ignore_eos: false,
        }
    }

    /// Rejects out-of-range values with a message naming the field, the limit and the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidRequest(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("`temperature` must be >= 0. Given: {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("`top_p` must be in (0, 1]. Given: {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("`min_p` must be in [0, 1]. Given: {}", self.min_p));
        }
        if self.max_tokens == 0 {
            return bad("`max_tokens` must be >= 1. Given: 0".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("`stop` strings must not be empty".into());
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { params: params.clone(), rng }
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        if p.temperature == 0.0 || p.top_k == 1 {
            return argmax(logits);
        }
        // Candidates sorted by logit, descending; ties broken by id for reproducibility.
        let mut idx: Vec<u32> = (0..logits.len() as u32).filter(|&i| logits[i as usize].is_finite()).collect();
        if idx.is_empty() {
            return argmax(logits);
        }
        idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        if p.top_k > 0 {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0] as usize];
        let mut probs: Vec<f32> = idx.iter().map(|&i| ((logits[i as usize] - max) / p.temperature).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            let keep = probs.iter().take_while(|&&x| x >= floor).count().max(1);
            probs.truncate(keep);
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, x) in probs.iter().enumerate() {
                acc += x;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, x) in probs.iter().enumerate() {
            if r < *x {
                return idx[i];
            }
            r -= x;
        }
        idx[probs.len() - 1]
    }
}

/// Index of the largest logit (the first one on ties, like torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams { temperature: t, seed: Some(7), ..SamplingParams::greedy() }
    }

    #[test]
    fn greedy_is_argmax_with_first_index_on_ties() {
        let mut s = Sampler::new(&params(0.0));
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(&SamplingParams { seed: Some(seed), ..params(1.0) });
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [5.0, 4.0, 0.0, -1.0, -2.0];
        let mut s = Sampler::new(&SamplingParams { top_k: 2, ..params(5.0) });
        assert!((0..200).all(|_| s.sample(&logits) < 2));
        // p(0) ≈ 0.73 at T=1, so top_p 0.5 keeps only token 0.
        let mut s = Sampler::new(&SamplingParams { top_p: 0.5, ..params(1.0) });
        assert!((0..200).all(|_| s.sample(&logits) == 0));
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = [3.0, 2.9, -5.0, -6.0];
        let mut s = Sampler::new(&SamplingParams { min_p: 0.1, ..params(1.0) });
        let seen: std::collections::HashSet<u32> = (0..500).map(|_| s.sample(&logits)).collect();
        assert_eq!(seen, [0, 1].into_iter().collect());
    }

    #[test]
    fn validate_names_field_and_value() {
        let e = SamplingParams { top_p: 1.5, ..SamplingParams::greedy() }.validate().unwrap_err().to_string();
        assert!(e.contains("top_p") && e.contains("1.5"), "{e}");
    }
}

//! The perplexity signal: NeMo Guardrails' jailbreak heuristic flags prompts whose perplexity,
//! or the perplexity of their last words, is far above natural text (GCG-style adversarial
//! suffixes). The guard only does the arithmetic; the server computes the token logprobs with
//! the served model, since the thresholds belong to the model that scores.

/// Perplexities of a prompt, from its tokens' logprobs (natural log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative logprob) over the whole prompt.
    pub whole: f64,
    /// The highest perplexity of any window of `window` consecutive tokens.
    pub max_window: f64,
}

impl Perplexity {
    pub fn from_logprobs(logprobs: &[f32], window: usize) -> Self {
        let nll: Vec<f64> = logprobs.iter().map(|&l| -f64::from(l)).collect();
        if nll.is_empty() {
            return Self { whole: 1.0, max_window: 1.0 };
        }
        let whole = (nll.iter().sum::<f64>() / nll.len() as f64).exp();
        let w = window.clamp(1, nll.len());
        let mut sum: f64 = nll[..w].iter().sum();
        let mut best = sum;
        for i in w..nll.len() {
            sum += nll[i] - nll[i - w];
            best = best.max(sum);
        }
        Self { whole, max_window: (best / w as f64).exp() }
    }

    /// What the check compares with its threshold.
    pub fn worst(&self) -> f64 {
        self.whole.max(self.max_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let mut lp = vec![-1.0f32; 30];
        lp.extend([-8.0f32; 10]);
        let p = Perplexity::from_logprobs(&lp, 10);
        assert!((p.max_window - 8f64.exp()).abs() < 1e-6 * 8f64.exp());
        assert!((p.whole - (110.0f64 / 40.0).exp()).abs() < 1e-9);
    }
}

//! Logit adjustments that depend on the request and on what the sequence has seen: logit bias,
//! the `min_tokens` mask, and the repetition / presence / frequency penalties.
//!
//! All of them are sparse: they touch only the ids that are biased, masked or already seen, never
//! the whole vocabulary, so their cost follows the sequence length rather than the vocab size.

use std::collections::{HashMap, HashSet};

/// The three penalties of a request; `Penalties::OFF` changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalties {
    /// HF/vLLM: over prompt and generated tokens, positive logits divided, others multiplied.
    pub repetition: f32,
    /// OpenAI: over generated tokens, `logit -= presence` once if the token occurred.
    pub presence: f32,
    /// OpenAI: over generated tokens, `logit -= frequency * count`.
    pub frequency: f32,
}

impl Penalties {
    pub const OFF: Self = Self { repetition: 1.0, presence: 0.0, frequency: 0.0 };

    pub fn is_off(&self) -> bool {
        *self == Self::OFF
    }
}

/// What the penalties need to know about one sequence: the distinct prompt ids and how often each
/// generated id occurred. Kept incrementally, one token at a time, instead of being recounted every
/// step.
#[derive(Debug, Clone, Default)]
pub struct TokenCounts {
    prompt: HashSet<u32>,
    output: HashMap<u32, u32>,
    /// How many generated tokens `output` counts.
    counted: usize,
}

impl TokenCounts {
    pub fn new(prompt: &[u32]) -> Self {
        Self { prompt: prompt.iter().copied().collect(), ..Self::default() }
    }

    pub fn push(&mut self, token: u32) {
        *self.output.entry(token).or_insert(0) += 1;
        self.counted += 1;
    }

    /// How often `token` was generated.
    #[cfg(test)]
    pub fn count(&self, token: u32) -> u32 {
        self.output.get(&token).copied().unwrap_or(0)
    }

    /// Brings the counts up to date with `generated`, the sequence's whole output so far. That
    /// output is append-only, so only the new tail is counted; a shorter slice than last time
    /// means the sequence was restarted, and everything is recounted.
    pub fn sync(&mut self, generated: &[u32]) {
        if generated.len() < self.counted {
            self.output.clear();
            self.counted = 0;
        }
        for &t in &generated[self.counted..] {
            self.push(t);
        }
    }
}

/// Applies the penalties in vLLM's order: repetition first, then frequency and presence. Ids
/// outside `logits` are ignored (a prompt may hold ids past a padded or truncated head).
pub fn apply_penalties(logits: &mut [f32], counts: &TokenCounts, p: Penalties) {
    if p.repetition != 1.0 {
        let repeat = |x: &mut f32| *x = if *x > 0.0 { *x / p.repetition } else { *x * p.repetition };
        let generated_only = counts.output.keys().filter(|t| !counts.prompt.contains(t));
        for &t in counts.prompt.iter().chain(generated_only) {
            if let Some(x) = logits.get_mut(t as usize) {
                repeat(x);
            }
        }
    }
    if p.presence != 0.0 || p.frequency != 0.0 {
        for (&t, &n) in &counts.output {
            if let Some(x) = logits.get_mut(t as usize) {
                *x -= p.frequency * n as f32 + p.presence;
            }
        }
    }
}

/// Adds each `(id, bias)`; ids were checked against the vocabulary when the sampler was built.
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(t, b) in bias {
        if let Some(x) = logits.get_mut(t as usize) {
            *x += b;
        }
    }
}

/// Makes `ids` impossible to sample (the `min_tokens` mask on EOS and stop ids).
pub fn mask_tokens(logits: &mut [f32], ids: &[u32]) {
    for &t in ids {
        if let Some(x) = logits.get_mut(t as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 6] = [2.0, -1.0, 0.5, 3.0, -2.0, 1.0];

    fn penalized(prompt: &[u32], generated: &[u32], p: Penalties) -> Vec<f32> {
        let mut counts = TokenCounts::new(prompt);
        counts.sync(generated);
        let mut l = LOGITS.to_vec();
        apply_penalties(&mut l, &counts, p);
        l
    }

    #[test]
    fn repetition_divides_positive_and_multiplies_negative_over_prompt_and_output() {
        let p = Penalties { repetition: 2.0, ..Penalties::OFF };
        // Token 0 (prompt, positive), 1 (prompt, negative), 3 (generated twice: still once).
        let l = penalized(&[0, 1, 0], &[3, 3], p);
        assert_eq!(l, vec![1.0, -2.0, 0.5, 1.5, -2.0, 1.0]);
    }

    #[test]
    fn presence_and_frequency_count_generated_tokens_only() {
        let p = Penalties { repetition: 1.0, presence: 0.5, frequency: 0.25 };
        // Token 2 is in the prompt only: untouched. Token 3 twice, token 4 once.
        let l = penalized(&[2], &[3, 4, 3], p);
        assert_eq!(l, vec![2.0, -1.0, 0.5, 3.0 - 0.5 - 2.0 * 0.25, -2.0 - 0.5 - 0.25, 1.0]);
    }

    #[test]
    fn repetition_comes_before_the_additive_penalties() {
        let p = Penalties { repetition: 2.0, presence: 1.0, frequency: 0.0 };
        // (3 / 2) - 1, not (3 - 1) / 2.
        assert_eq!(penalized(&[], &[3], p)[3], 0.5);
    }

    #[test]
    fn negative_penalties_encourage() {
        let p = Penalties { repetition: 1.0, presence: -1.0, frequency: -0.5 };
        assert_eq!(penalized(&[], &[5, 5], p)[5], 1.0 + 1.0 + 1.0);
    }

    #[test]
    fn off_changes_nothing_and_out_of_vocab_ids_are_ignored() {
        let p = Penalties { repetition: 1.3, presence: 1.0, frequency: 1.0 };
        assert_eq!(penalized(&[], &[], p), LOGITS.to_vec());
        assert_eq!(penalized(&[0, 1, 2, 3], &[4, 5], Penalties::OFF), LOGITS.to_vec());
        assert_eq!(penalized(&[99], &[], p), LOGITS.to_vec());
    }

    #[test]
    fn incremental_counts_match_a_recount_and_restart_on_a_shorter_output() {
        let mut c = TokenCounts::new(&[]);
        c.sync(&[1, 2]);
        c.sync(&[1, 2, 2, 7]);
        assert_eq!((c.count(1), c.count(2), c.count(7)), (1, 2, 1));
        c.sync(&[7]);
        assert_eq!((c.count(1), c.count(2), c.count(7)), (0, 0, 1));
    }

    #[test]
    fn logit_bias_adds_and_mask_forbids() {
        let mut l = LOGITS.to_vec();
        apply_logit_bias(&mut l, &[(1, 5.0), (4, -100.0)]);
        mask_tokens(&mut l, &[0]);
        assert_eq!(l, vec![f32::NEG_INFINITY, 4.0, 0.5, 3.0, -102.0, 1.0]);
    }
}

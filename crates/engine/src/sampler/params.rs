//! What a request asks of the sampler, and the range check that turns a raw request into one the
//! engine can trust. Field semantics follow vLLM's `SamplingParams` (and OpenAI's API where the two
//! agree); the "off" value of every knob is the identity.

use std::collections::HashSet;

use crate::{Error, Result};

/// Most alternatives `logprobs` / `prompt_logprobs` may ask for (vLLM's default `max_logprobs`).
pub const MAX_LOGPROBS: usize = 20;

/// Largest magnitude of a `logit_bias` value (OpenAI's limit; ±100 already bans or forces a token).
const MAX_LOGIT_BIAS: f32 = 100.0;

/// Largest magnitude of `presence_penalty` and `frequency_penalty` (OpenAI's limit).
const MAX_PRESENCE_FREQUENCY: f32 = 2.0;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Completions to return for the request; each is its own sequence with its own sampler
    /// (see [`Sampler::new_for_child`](super::Sampler::new_for_child)).
    pub n: usize,
    /// 0 means greedy (argmax); below 1e-5 is treated as 0, as vLLM does.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability sums to at least `top_p`;
    /// 1 disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top token's; 0 disables.
    pub min_p: f32,
    /// HF/vLLM repetition penalty over prompt and generated tokens: a seen token's logit is
    /// divided by it when positive, multiplied when not. 1 disables.
    pub repetition_penalty: f32,
    /// OpenAI presence penalty, over generated tokens only: subtracted once from a seen token's
    /// logit. In [-2, 2]; 0 disables.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty, over generated tokens only: subtracted once per occurrence.
    /// In [-2, 2]; 0 disables.
    pub frequency_penalty: f32,
    /// `(token id, bias)` added to the logits before sampling; bias in [-100, 100], each id once.
    /// Ids are checked against the vocabulary when the sampler is built.
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: Option<u64>,
    pub max_tokens: usize,
    /// EOS ids and `stop_token_ids` cannot be sampled until this many tokens were generated.
    pub min_tokens: usize,
    /// Generation stops when the text contains one of these (the stop string is not returned).
    pub stop: Vec<String>,
    /// Extra token ids that end generation (besides the model's EOS ids).
    pub stop_token_ids: Vec<u32>,
    /// Keep going past EOS (benchmarks).
    pub ignore_eos: bool,
    /// Return the sampled token's logprob and this many top alternatives (0: just the token).
    pub logprobs: Option<usize>,
    /// Return each prompt token's logprob given its prefix, plus this many top alternatives.
    pub prompt_logprobs: Option<usize>,
}

/// OpenAI's defaults: temperature 1 and every filter and penalty off.
impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: vec![],
            seed: None,
            max_tokens: 256,
            min_tokens: 0,
            stop: vec![],
            stop_token_ids: vec![],
            ignore_eos: false,
            logprobs: None,
            prompt_logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Argmax decoding with everything else off.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Rejects out-of-range values with a message naming the field, the limit and the value.
    /// Token ids in `logit_bias` need the vocabulary and are checked by the sampler.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidRequest(m));
        if self.n == 0 {
            return bad("`n` must be >= 1. Given: 0".into());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("`temperature` must be >= 0 and finite. Given: {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("`top_p` must be in (0, 1]. Given: {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("`min_p` must be in [0, 1]. Given: {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!("`repetition_penalty` must be > 0 and finite. Given: {}", self.repetition_penalty));
        }
        let pf = -MAX_PRESENCE_FREQUENCY..=MAX_PRESENCE_FREQUENCY;
        if !pf.contains(&self.presence_penalty) {
            return bad(format!("`presence_penalty` must be in [-2, 2]. Given: {}", self.presence_penalty));
        }
        if !pf.contains(&self.frequency_penalty) {
            return bad(format!("`frequency_penalty` must be in [-2, 2]. Given: {}", self.frequency_penalty));
        }
        let mut seen = HashSet::with_capacity(self.logit_bias.len());
        for &(id, b) in &self.logit_bias {
            if !(-MAX_LOGIT_BIAS..=MAX_LOGIT_BIAS).contains(&b) {
                return bad(format!("`logit_bias` values must be in [-100, 100]. Given: {b} for token {id}"));
            }
            if !seen.insert(id) {
                return bad(format!("`logit_bias` must list each token once. Given: token {id} twice"));
            }
        }
        if self.max_tokens == 0 {
            return bad("`max_tokens` must be >= 1. Given: 0".into());
        }
        if self.min_tokens > self.max_tokens {
            return bad(format!(
                "`min_tokens` must be <= `max_tokens` ({}). Given: {}",
                self.max_tokens, self.min_tokens
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("`stop` strings must not be empty. Given: \"\"".into());
        }
        for (name, v) in [("logprobs", self.logprobs), ("prompt_logprobs", self.prompt_logprobs)] {
            if let Some(v) = v.filter(|&v| v > MAX_LOGPROBS) {
                return bad(format!("`{name}` must be <= {MAX_LOGPROBS}. Given: {v}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(p: SamplingParams) -> String {
        match p.validate() {
            Ok(()) => panic!("accepted {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_and_greedy_are_valid() {
        SamplingParams::default().validate().unwrap();
        SamplingParams::greedy().validate().unwrap();
        assert_eq!(SamplingParams::greedy().temperature, 0.0);
    }

    #[test]
    fn each_bad_value_names_its_field_and_the_value() {
        let g = SamplingParams::greedy;
        let cases: Vec<(SamplingParams, &str, &str)> = vec![
            (SamplingParams { n: 0, ..g() }, "`n`", "Given: 0"),
            (SamplingParams { temperature: -0.5, ..g() }, "`temperature`", "-0.5"),
            (SamplingParams { temperature: f32::INFINITY, ..g() }, "`temperature`", "inf"),
            (SamplingParams { top_p: 1.5, ..g() }, "`top_p`", "1.5"),
            (SamplingParams { top_p: 0.0, ..g() }, "`top_p`", "Given: 0"),
            (SamplingParams { min_p: 1.25, ..g() }, "`min_p`", "1.25"),
            (SamplingParams { repetition_penalty: 0.0, ..g() }, "`repetition_penalty`", "Given: 0"),
            (SamplingParams { repetition_penalty: f32::NAN, ..g() }, "`repetition_penalty`", "NaN"),
            (SamplingParams { presence_penalty: 2.5, ..g() }, "`presence_penalty`", "2.5"),
            (SamplingParams { frequency_penalty: -3.0, ..g() }, "`frequency_penalty`", "-3"),
            (SamplingParams { logit_bias: vec![(7, 101.0)], ..g() }, "`logit_bias`", "101"),
            (SamplingParams { logit_bias: vec![(7, 1.0), (7, 2.0)], ..g() }, "`logit_bias`", "token 7 twice"),
            (SamplingParams { max_tokens: 0, ..g() }, "`max_tokens`", "Given: 0"),
            (SamplingParams { min_tokens: 9, max_tokens: 8, ..g() }, "`min_tokens`", "Given: 9"),
            (SamplingParams { stop: vec!["".into()], ..g() }, "`stop`", "\"\""),
            (SamplingParams { logprobs: Some(21), ..g() }, "`logprobs`", "21"),
            (SamplingParams { prompt_logprobs: Some(50), ..g() }, "`prompt_logprobs`", "50"),
        ];
        for (p, field, value) in cases {
            let e = err(p);
            assert!(e.contains(field) && e.contains(value), "{e:?} should name {field} and {value}");
        }
    }

    #[test]
    fn limits_themselves_are_accepted() {
        let p = SamplingParams {
            top_p: 1.0,
            min_p: 1.0,
            presence_penalty: -2.0,
            frequency_penalty: 2.0,
            logit_bias: vec![(0, -100.0), (1, 100.0)],
            min_tokens: 5,
            max_tokens: 5,
            logprobs: Some(20),
            prompt_logprobs: Some(0),
            ..SamplingParams::default()
        };
        p.validate().unwrap();
    }
}

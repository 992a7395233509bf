//! The sampling fields chat and completions share, and their conversion into the engine's
//! [`SamplingParams`]. Range checks the engine already makes (`SamplingParams::validate`) are left
//! to it; this module checks what needs the server's view: types, the vocabulary, server limits.

use std::collections::HashMap;

use prom_engine::SamplingParams;
use serde::Deserialize;
use serde_json::Value;

use super::at_most;
use crate::error::ApiError;

/// Most completions one request may ask for per prompt (OpenAI's limit).
pub const MAX_N: usize = 128;
/// Most stop strings one request may give.
pub const MAX_STOP: usize = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// Fields of both `/v1/chat/completions` and `/v1/completions` (OpenAI's, plus vLLM's extensions
/// `top_k`, `min_p`, `repetition_penalty`, `min_tokens`, `ignore_eos`, `stop_token_ids`, `priority`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SamplingFields {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub n: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub logit_bias: Option<HashMap<String, f32>>,
    pub seed: Option<i64>,
    pub stop: Option<Value>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub min_tokens: Option<u64>,
    pub ignore_eos: Option<bool>,
    pub priority: Option<i32>,
    pub user: Option<String>,
}

/// What every generation request carries besides its prompt.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// `max_tokens` is a placeholder until the endpoint knows the prompt: see [`Self::max_tokens`].
    pub params: SamplingParams,
    /// `max_tokens` / `max_completion_tokens` as given.
    pub max_tokens: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    pub priority: i32,
}

impl SamplingFields {
    /// Unset fields take the model's defaults (`defaults`, from its generation config).
    pub fn resolve(&self, defaults: &SamplingParams, vocab_size: usize) -> Result<Sampling, ApiError> {
        let n = at_most("n", self.n.unwrap_or(1), MAX_N)?;
        if n == 0 {
            return Err(ApiError::bad_field("n", "`n` must be >= 1. Given: 0"));
        }
        let top_k = match self.top_k {
            None => defaults.top_k,
            Some(-1 | 0) => 0, // vLLM: -1 (or 0) turns top-k off
            Some(k) if k > 0 => k as usize,
            Some(k) => return Err(ApiError::bad_field("top_k", format!("`top_k` must be -1, 0 or >= 1. Given: {k}"))),
        };
        let max_tokens = match (self.max_tokens, self.max_completion_tokens) {
            (_, Some(m)) => Some(at_most("max_completion_tokens", m, u32::MAX as usize)?),
            (Some(m), None) => Some(at_most("max_tokens", m, u32::MAX as usize)?),
            (None, None) => None,
        };
        let ignore_eos = self.ignore_eos.unwrap_or(false);
        // The model's EOS ids (from its generation config) stop generation unless `ignore_eos`.
        let mut stop_token_ids = if ignore_eos { vec![] } else { defaults.stop_token_ids.clone() };
        for &id in self.stop_token_ids.iter().flatten() {
            if id as usize >= vocab_size {
                return Err(ApiError::bad_field(
                    "stop_token_ids",
                    format!("`stop_token_ids` must be token ids < {vocab_size} (the vocabulary size). Given: {id}"),
                ));
            }
            stop_token_ids.push(id);
        }
        let params = SamplingParams {
            n,
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k,
            top_p: self.top_p.unwrap_or(defaults.top_p),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(defaults.repetition_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logit_bias: logit_bias(self.logit_bias.as_ref(), vocab_size)?,
            // OpenAI seeds are any integer; the engine's are u64: keep all 64 bits.
            seed: self.seed.map(|s| s as u64),
            max_tokens: 1,
            min_tokens: self.min_tokens.map(|m| at_most("min_tokens", m, u32::MAX as usize)).transpose()?.unwrap_or(0),
            stop: stop(self.stop.as_ref())?,
            stop_token_ids,
            ignore_eos,
            logprobs: None,
            prompt_logprobs: None,
        };
        let stream = self.stream.unwrap_or(false);
        let include_usage = self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        if self.stream_options.is_some() && !stream {
            return Err(ApiError::bad_field(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true. Given: stream false",
            ));
        }
        Ok(Sampling { params, max_tokens, stream, include_usage, priority: self.priority.unwrap_or(0) })
    }
}

impl Sampling {
    /// Sets `max_tokens` for a prompt of `prompt_len` tokens: the request's value, else `default`,
    /// else whatever the context leaves. Too long a prompt is an error naming both numbers.
    pub fn with_max_tokens(
        &self,
        prompt_len: usize,
        default: Option<usize>,
        max_model_len: usize,
    ) -> Result<SamplingParams, ApiError> {
        let room = max_model_len.saturating_sub(prompt_len);
        let max_tokens = match self.max_tokens.or(default) {
            Some(m) => m,
            None if room == 0 => {
                return Err(ApiError::bad_request(format!(
                    "The prompt has {prompt_len} tokens, which leaves no room in the model's context length of \
                     {max_model_len} tokens"
                )))
            }
            None => room,
        };
        Ok(SamplingParams { max_tokens, ..self.params.clone() })
    }
}

/// `logit_bias`: `{"token id": bias}`, sorted by id.
fn logit_bias(map: Option<&HashMap<String, f32>>, vocab_size: usize) -> Result<Vec<(u32, f32)>, ApiError> {
    let mut out = Vec::new();
    for (k, &b) in map.into_iter().flatten() {
        let id = match k.trim().parse::<u32>() {
            Ok(id) if (id as usize) < vocab_size => id,
            _ => {
                return Err(ApiError::bad_field(
                    "logit_bias",
                    format!("`logit_bias` keys must be token ids < {vocab_size} (the vocabulary size). Given: {k:?}"),
                ))
            }
        };
        out.push((id, b));
    }
    out.sort_by_key(|&(id, _)| id);
    Ok(out)
}

/// `stop`: a string or a list of strings.
fn stop(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = |m: String| Err(ApiError::bad_field("stop", m));
    let list = match v {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        return bad(format!(
                            "`stop` must be a string or a list of strings. Given: {other} at index {i}"
                        ))
                    }
                }
            }
            out
        }
        Some(other) => return bad(format!("`stop` must be a string or a list of strings. Given: {other}")),
    };
    if list.len() > MAX_STOP {
        return bad(format!("`stop` may hold at most {MAX_STOP} strings. Given: {}", list.len()));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(v: Value) -> Result<Sampling, ApiError> {
        let f: SamplingFields = crate::protocol::fields(&v)?;
        f.resolve(&SamplingParams::default(), 100)
    }

    #[test]
    fn fields_map_onto_engine_params() {
        let s = resolve(json!({"n": 3, "temperature": 0.5, "top_k": -1, "stop": "x", "seed": -1,
            "logit_bias": {"7": 5.0, "2": -1}, "max_completion_tokens": 9, "max_tokens": 4,
            "stream": true, "stream_options": {"include_usage": true}}))
        .unwrap();
        assert_eq!((s.params.n, s.params.temperature, s.params.top_k), (3, 0.5, 0));
        assert_eq!(s.params.stop, vec!["x".to_string()]);
        assert_eq!(s.params.seed, Some(u64::MAX));
        assert_eq!(s.params.logit_bias, vec![(2, -1.0), (7, 5.0)]);
        assert_eq!(s.max_tokens, Some(9), "max_completion_tokens wins");
        assert!(s.stream && s.include_usage);
    }

    #[test]
    fn bad_values_name_field_limit_and_value() {
        let cases = [
            (json!({"n": 500}), "n", "500"),
            (json!({"n": 0}), "n", "0"),
            (json!({"top_k": -2}), "top_k", "-2"),
            (json!({"logit_bias": {"abc": 1}}), "logit_bias", "abc"),
            (json!({"logit_bias": {"100": 1}}), "logit_bias", "100"),
            (json!({"stop": [1]}), "stop", "1"),
            (json!({"stop": (0..40).map(|i| i.to_string()).collect::<Vec<_>>()}), "stop", "40"),
            (json!({"stop_token_ids": [1000]}), "stop_token_ids", "1000"),
            (json!({"temperature": "hot"}), "temperature", "hot"),
            (json!({"stream_options": {"include_usage": true}}), "stream_options", "false"),
        ];
        for (v, field, value) in cases {
            let e = resolve(v.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{v}: {e:?}");
            assert!(e.message.contains(field) && e.message.contains(value), "{v}: {}", e.message);
        }
    }

    #[test]
    fn max_tokens_defaults_to_the_room_left() {
        let s = resolve(json!({})).unwrap();
        assert_eq!(s.with_max_tokens(10, None, 64).unwrap().max_tokens, 54);
        assert_eq!(s.with_max_tokens(10, Some(16), 64).unwrap().max_tokens, 16);
        let e = s.with_max_tokens(64, None, 64).unwrap_err();
        assert!(e.message.contains("64 tokens") && e.message.contains("context length of 64"), "{}", e.message);
    }
}

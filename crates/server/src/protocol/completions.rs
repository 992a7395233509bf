//! `POST /v1/completions` requests: a prompt as text, token ids, or a batch of either.

use prom_engine::{SamplingParams, MAX_LOGPROBS};
use serde::Deserialize;
use serde_json::Value;

use super::chat::ModelView;
use super::sampling::SamplingFields;
use super::{at_most, check_model, fields};
use crate::error::ApiError;

/// OpenAI's default `max_tokens` for completions.
pub const DEFAULT_MAX_TOKENS: usize = 16;
/// Most prompts in one batch.
pub const MAX_BATCH: usize = 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CompletionFields {
    pub prompt: Option<Value>,
    pub echo: Option<bool>,
    pub logprobs: Option<u64>,
    pub suffix: Option<String>,
    pub best_of: Option<u64>,
}

/// One prompt of the batch.
#[derive(Debug, Clone)]
pub struct PromptIn {
    pub ids: Vec<u32>,
    /// The prompt's text (as given, or decoded from its ids) for `echo`.
    pub text: String,
}

#[derive(Debug)]
pub struct CompletionRequest {
    pub prompts: Vec<PromptIn>,
    /// Per prompt (`max_tokens` is the same for all; only the prompt differs).
    pub params: SamplingParams,
    pub stream: bool,
    pub include_usage: bool,
    pub echo: bool,
    /// `echo` with `max_tokens: 0`: return the prompt (and its logprobs) only. The engine
    /// samples one token, which is dropped.
    pub echo_only: bool,
    /// `logprobs`: the sampled token's logprob and this many top alternatives (and, with echo,
    /// the same for every prompt token).
    pub logprobs: Option<usize>,
    pub priority: i32,
}

impl CompletionRequest {
    pub fn parse(body: &Value, m: &ModelView) -> Result<Self, ApiError> {
        let s: SamplingFields = fields(body)?;
        let c: CompletionFields = fields(body)?;
        check_model(s.model.as_deref(), m.name)?;
        let sampling = s.resolve(m.defaults, m.tokenizer.vocab_size())?;
        if c.suffix.as_deref().is_some_and(|x| !x.is_empty()) {
            return Err(ApiError::bad_field(
                "suffix",
                "`suffix` (fill-in-the-middle) is not supported. Given: a suffix",
            ));
        }
        if let Some(b) = c.best_of.filter(|&b| b != sampling.params.n as u64) {
            return Err(ApiError::bad_field(
                "best_of",
                format!(
                    "`best_of` must equal `n` ({}); ranking candidates is not supported. Given: {b}",
                    sampling.params.n
                ),
            ));
        }
        let logprobs = c.logprobs.map(|k| at_most("logprobs", k, MAX_LOGPROBS)).transpose()?;
        let echo = c.echo.unwrap_or(false);
        let prompts = prompts(c.prompt.as_ref(), m)?;
        let echo_only = echo && sampling.max_tokens == Some(0);
        if sampling.max_tokens == Some(0) && !echo {
            return Err(ApiError::bad_field("max_tokens", "`max_tokens` must be >= 1 (or 0 with `echo`). Given: 0"));
        }
        // One `max_tokens` for the batch: checked against the longest prompt.
        let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
        let mut params = sampling.with_max_tokens(longest, Some(DEFAULT_MAX_TOKENS), m.max_model_len)?;
        if echo_only {
            params.max_tokens = 1;
        }
        params.logprobs = logprobs;
        params.prompt_logprobs = if echo { logprobs } else { None };
        Ok(Self {
            prompts,
            params,
            stream: sampling.stream,
            include_usage: sampling.include_usage,
            echo,
            echo_only,
            logprobs,
            priority: sampling.priority,
        })
    }
}

/// `prompt`: `"text"`, `["text", ..]`, `[id, ..]` or `[[id, ..], ..]`.
fn prompts(v: Option<&Value>, m: &ModelView) -> Result<Vec<PromptIn>, ApiError> {
    let bad = |m: String| ApiError::bad_field("prompt", m);
    let shape = "`prompt` must be a string, a list of strings, a list of token ids or a list of lists of token ids";
    let text = |s: &str| -> Result<PromptIn, ApiError> {
        let ids = m.tokenizer.encode(s, true).map_err(|e| ApiError::internal(format!("tokenizing the prompt: {e}")))?;
        Ok(PromptIn { ids, text: s.to_owned() })
    };
    let ids = |items: &[Value], at: &str| -> Result<PromptIn, ApiError> {
        let vocab = m.tokenizer.vocab_size();
        let mut ids = Vec::with_capacity(items.len());
        for (i, x) in items.iter().enumerate() {
            match x.as_u64() {
                Some(id) if (id as usize) < vocab => ids.push(id as u32),
                _ => {
                    return Err(bad(format!(
                        "`prompt`{at} token ids must be integers in [0, {vocab}) (the vocabulary size). Given: {x} at index {i}"
                    )))
                }
            }
        }
        let text =
            m.tokenizer.decode(&ids, false).map_err(|e| ApiError::internal(format!("decoding the prompt: {e}")))?;
        Ok(PromptIn { ids, text })
    };
    let out = match v {
        None | Some(Value::Null) => return Err(bad("`prompt` is required. Given: nothing".into())),
        Some(Value::String(s)) => vec![text(s)?],
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(bad("`prompt` must not be empty. Given: []".into()))
        }
        Some(Value::Array(items)) => match &items[0] {
            Value::Number(_) => vec![ids(items, "")?],
            Value::String(_) | Value::Array(_) => {
                if items.len() > MAX_BATCH {
                    return Err(bad(format!("`prompt` may batch at most {MAX_BATCH} prompts. Given: {}", items.len())));
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(match item {
                        Value::String(s) => text(s)?,
                        Value::Array(a) if !a.is_empty() => ids(a, &format!("[{i}]"))?,
                        Value::Array(_) => return Err(bad(format!("`prompt[{i}]` must not be empty. Given: []"))),
                        other => return Err(bad(format!("{shape}. Given: {other} at index {i}"))),
                    });
                }
                out
            }
            other => return Err(bad(format!("{shape}. Given: {other} at index 0"))),
        },
        Some(other) => return Err(bad(format!("{shape}. Given: {other}"))),
    };
    Ok(out)
}

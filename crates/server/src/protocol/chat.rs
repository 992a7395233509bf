//! `POST /v1/chat/completions` requests: messages rendered with the model's chat template.

use prom_engine::{SamplingParams, MAX_LOGPROBS};
use prom_models::chat::{ChatTemplate, RenderOptions};
use prom_models::Tokenizer;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::sampling::{Sampling, SamplingFields};
use super::{at_most, check_model, fields};
use crate::error::ApiError;

/// The chat-only fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatFields {
    pub messages: Option<Vec<Value>>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u64>,
    pub add_generation_prompt: Option<bool>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    pub tools: Option<Value>,
    pub response_format: Option<Value>,
}

/// A chat request the engine can run.
#[derive(Debug)]
pub struct ChatRequest {
    pub prompt: Vec<u32>,
    /// The rendered prompt (logged only with `--log-prompts`).
    pub prompt_text: String,
    pub params: SamplingParams,
    pub stream: bool,
    pub include_usage: bool,
    /// `Some(k)` when `logprobs: true`: return each token's logprob and its top k alternatives.
    pub top_logprobs: Option<usize>,
    pub priority: i32,
}

/// What validation needs from the served model.
pub struct ModelView<'a> {
    pub name: &'a str,
    pub tokenizer: &'a Tokenizer,
    pub template: &'a ChatTemplate,
    pub defaults: &'a SamplingParams,
    pub max_model_len: usize,
}

impl ChatRequest {
    pub fn parse(body: &Value, m: &ModelView) -> Result<Self, ApiError> {
        let s: SamplingFields = fields(body)?;
        let c: ChatFields = fields(body)?;
        check_model(s.model.as_deref(), m.name)?;
        let sampling: Sampling = s.resolve(m.defaults, m.tokenizer.vocab_size())?;
        if c.tools.as_ref().is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(ApiError::bad_field("tools", "`tools` is not supported by this server. Given: a tool list"));
        }
        if let Some(rf) = &c.response_format {
            let kind = rf.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "text" && !rf.is_null() {
                return Err(ApiError::bad_field(
                    "response_format",
                    format!("`response_format` must be {{\"type\": \"text\"}}; structured output is not supported. Given: {rf}"),
                ));
            }
        }
        let top_logprobs = match (c.logprobs.unwrap_or(false), c.top_logprobs) {
            (true, k) => Some(at_most("top_logprobs", k.unwrap_or(0), MAX_LOGPROBS)?),
            (false, Some(k)) if k > 0 => {
                return Err(ApiError::bad_field(
                    "top_logprobs",
                    format!("`top_logprobs` needs `logprobs: true`. Given: top_logprobs {k} with logprobs false"),
                ))
            }
            (false, _) => None,
        };
        let messages = normalize_messages(c.messages.unwrap_or_default())?;
        let opts = RenderOptions {
            add_generation_prompt: c.add_generation_prompt.unwrap_or(true),
            tools: None,
            extra: c.chat_template_kwargs.unwrap_or_default(),
        };
        let prompt_text = m.template.render(&messages, &opts).map_err(|e| {
            ApiError::bad_field(
                "messages",
                format!("`messages` could not be rendered with the model's chat template: {e}"),
            )
        })?;
        // The template writes BOS itself where the model wants it.
        let prompt = m
            .tokenizer
            .encode(&prompt_text, false)
            .map_err(|e| ApiError::internal(format!("tokenizing the rendered chat: {e}")))?;
        let mut params = sampling.with_max_tokens(prompt.len(), None, m.max_model_len)?;
        params.logprobs = top_logprobs;
        Ok(Self {
            prompt,
            prompt_text,
            params,
            stream: sampling.stream,
            include_usage: sampling.include_usage,
            top_logprobs,
            priority: sampling.priority,
        })
    }
}

/// Checks each message's shape and flattens content parts (`[{"type": "text", "text": ..}]`) into
/// one string, which is what text-only chat templates expect.
pub fn normalize_messages(messages: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_field("messages", "`messages` must hold at least one message. Given: []"));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("messages[{i}]");
            let Value::Object(mut obj) = m else {
                return Err(ApiError::bad_field(field.clone(), format!("`{field}` must be an object. Given: {m}")));
            };
            match obj.get("role") {
                Some(Value::String(_)) => {}
                other => {
                    let given = other.map_or("nothing".to_string(), Value::to_string);
                    return Err(ApiError::bad_field(
                        format!("{field}.role"),
                        format!("`{field}.role` must be a string. Given: {given}"),
                    ));
                }
            }
            if let Some(content) = obj.get_mut("content") {
                if let Value::Array(parts) = content {
                    let mut text = String::new();
                    for (j, part) in parts.iter().enumerate() {
                        match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            _ => {
                                let f = format!("{field}.content[{j}]");
                                return Err(ApiError::bad_field(
                                    f.clone(),
                                    format!(
                                        "`{f}` must be a text part {{\"type\": \"text\", \"text\": ..}}. Given: {part}"
                                    ),
                                ));
                            }
                        }
                    }
                    *content = Value::String(text);
                } else if !matches!(content, Value::String(_) | Value::Null) {
                    let f = format!("{field}.content");
                    return Err(ApiError::bad_field(
                        f.clone(),
                        format!("`{f}` must be a string or a list of text parts. Given: {content}"),
                    ));
                }
            }
            Ok(Value::Object(obj))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_parts_become_one_string() {
        let m = normalize_messages(vec![json!({"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})])
        .unwrap();
        assert_eq!(m[0]["content"], "ab");
    }

    #[test]
    fn bad_messages_name_their_index() {
        let e = normalize_messages(vec![]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = normalize_messages(vec![json!({"role": "user", "content": "x"}), json!({"content": "y"})]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].role"));
        let e = normalize_messages(vec![json!({"role": "user", "content": 3})]).unwrap_err();
        assert!(e.message.contains("Given: 3"), "{}", e.message);
        let e = normalize_messages(vec![json!({"role": "user", "content": [{"type": "image_url"}]})]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
    }
}

//! `POST /tokenize` and `POST /detokenize` in vLLM's shapes (what lm-eval's remote tokenizer
//! sends): `{prompt, add_special_tokens}` or `{messages, add_generation_prompt}` in,
//! `{count, max_model_len, tokens, token_strs}` out; `{tokens}` in, `{prompt}` out.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::chat::{normalize_messages, ModelView};
use super::check_model;
use super::fields;
use crate::error::ApiError;
use prom_models::chat::RenderOptions;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenizeFields {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<Value>>,
    add_special_tokens: Option<bool>,
    add_generation_prompt: Option<bool>,
    chat_template_kwargs: Option<Map<String, Value>>,
    return_token_strs: Option<bool>,
}

#[derive(Debug)]
pub struct TokenizeRequest {
    pub text: String,
    pub add_special_tokens: bool,
    pub return_token_strs: bool,
}

impl TokenizeRequest {
    pub fn parse(body: &Value, m: &ModelView) -> Result<Self, ApiError> {
        let f: TokenizeFields = fields(body)?;
        check_model(f.model.as_deref(), m.name)?;
        let return_token_strs = f.return_token_strs.unwrap_or(false);
        match (f.prompt, f.messages) {
            (Some(text), None) => {
                Ok(Self { text, add_special_tokens: f.add_special_tokens.unwrap_or(true), return_token_strs })
            }
            (None, Some(messages)) => {
                let opts = RenderOptions {
                    add_generation_prompt: f.add_generation_prompt.unwrap_or(true),
                    tools: None,
                    extra: f.chat_template_kwargs.unwrap_or_default(),
                };
                let text = m.template.render(&normalize_messages(messages)?, &opts).map_err(|e| {
                    ApiError::bad_field(
                        "messages",
                        format!("`messages` could not be rendered with the chat template: {e}"),
                    )
                })?;
                // The rendered chat carries its own special tokens (vLLM's default for chat).
                Ok(Self { text, add_special_tokens: f.add_special_tokens.unwrap_or(false), return_token_strs })
            }
            (Some(_), Some(_)) => Err(ApiError::bad_request("Give either `prompt` or `messages`, not both")),
            (None, None) => Err(ApiError::bad_field("prompt", "`prompt` (or `messages`) is required. Given: neither")),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DetokenizeFields {
    model: Option<String>,
    tokens: Option<Vec<Value>>,
}

#[derive(Debug)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

impl DetokenizeRequest {
    pub fn parse(body: &Value, m: &ModelView) -> Result<Self, ApiError> {
        let f: DetokenizeFields = fields(body)?;
        check_model(f.model.as_deref(), m.name)?;
        let vocab = m.tokenizer.vocab_size();
        let Some(items) = f.tokens else {
            return Err(ApiError::bad_field("tokens", "`tokens` is required. Given: nothing"));
        };
        let mut tokens = Vec::with_capacity(items.len());
        for (i, x) in items.iter().enumerate() {
            match x.as_u64() {
                Some(id) if (id as usize) < vocab => tokens.push(id as u32),
                _ => {
                    return Err(ApiError::bad_field(
                        "tokens",
                        format!(
                            "`tokens` must be integers in [0, {vocab}) (the vocabulary size). Given: {x} at index {i}"
                        ),
                    ))
                }
            }
        }
        Ok(Self { tokens })
    }
}

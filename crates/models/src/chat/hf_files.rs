//! Finding a model's chat template and special tokens in an HF directory: `chat_template.jinja`
//! (newer exports) or `tokenizer_config.json`'s `chat_template` (a string, or a list of named
//! templates), with `bos_token`, `eos_token`, … from `tokenizer_config.json`.

use std::path::Path;

use serde_json::Value;

use super::ChatTemplate;
use crate::{Error, Result};

/// The special tokens transformers passes to every template (`special_tokens_map`).
const SPECIAL_TOKENS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

impl ChatTemplate {
    /// The template of an HF model directory, as transformers picks it: `chat_template.jinja` if
    /// present, else the `default` entry (or the only string) of `tokenizer_config.json`'s
    /// `chat_template`. Special tokens come from `tokenizer_config.json`. `Ok(None)` when the model
    /// has no template (use [`ChatTemplate::chatml`] then, knowingly).
    pub fn from_hf_files(tokenizer_config: Option<&Path>, chat_template_jinja: Option<&Path>) -> Result<Option<Self>> {
        let config = match tokenizer_config {
            Some(path) => Some((path, read_json(path)?)),
            None => None,
        };
        let tokens = match &config {
            Some((path, json)) => special_tokens(path, json)?,
            None => Vec::new(),
        };
        let source = match (chat_template_jinja, &config) {
            (Some(path), _) => Some(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?),
            (None, Some((path, json))) => template_from_config(path, json)?,
            (None, None) => None,
        };
        source.map(|s| Self::with_special_tokens(&s, tokens)).transpose()
    }

    /// [`ChatTemplate::from_hf_files`] for a lone `tokenizer_config.json`.
    pub fn from_tokenizer_config(path: &Path) -> Result<Option<Self>> {
        Self::from_hf_files(Some(path), None)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("invalid JSON: {e}")))
}

fn wrong_type(path: &Path, field: &str, expected: &str, got: &Value) -> Error {
    Error::config(field, format!("in {}: expected {expected}, got {got}", path.display()))
}

/// A token is a string or an `AddedToken` object `{"content": "...", ...}`; null means none.
fn special_tokens(path: &Path, json: &Value) -> Result<Vec<(String, String)>> {
    let mut tokens = Vec::new();
    for name in SPECIAL_TOKENS {
        match json.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => tokens.push((name.to_string(), s.clone())),
            Some(v @ Value::Object(o)) => match o.get("content") {
                Some(Value::String(s)) => tokens.push((name.to_string(), s.clone())),
                _ => return Err(wrong_type(path, name, "a string or {\"content\": string}", v)),
            },
            Some(v) => return Err(wrong_type(path, name, "a string or {\"content\": string}", v)),
        }
    }
    Ok(tokens)
}

fn template_from_config(path: &Path, json: &Value) -> Result<Option<String>> {
    let expected = "a string or a list of {\"name\", \"template\"}";
    match json.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ Value::Array(entries)) => {
            let mut default = None;
            for entry in entries {
                match (entry.get("name").and_then(Value::as_str), entry.get("template").and_then(Value::as_str)) {
                    (Some("default"), Some(t)) => default = Some(t.to_string()),
                    (Some(_), Some(_)) => {}
                    _ => return Err(wrong_type(path, "chat_template", expected, v)),
                }
            }
            match default {
                Some(t) => Ok(Some(t)),
                None => Err(Error::config(
                    "chat_template",
                    format!("in {}: a list of templates without a `default` entry", path.display()),
                )),
            }
        }
        Some(v) => Err(wrong_type(path, "chat_template", expected, v)),
    }
}

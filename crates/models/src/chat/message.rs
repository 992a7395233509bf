//! Messages: a plain `{role, content}` convenience, and the normalisation transformers applies to
//! every message before a template sees it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// A text-only chat message. Anything richer (tool calls, content parts, reasoning) is passed
/// to [`super::ChatTemplate::render`] as a JSON object directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

impl From<ChatMessage> for Value {
    fn from(m: ChatMessage) -> Value {
        let mut map = Map::new();
        map.insert("role".into(), Value::String(m.role));
        map.insert("content".into(), Value::String(m.content));
        Value::Object(map)
    }
}

/// Names a message's reasoning arrives under; the first is the one most templates read.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// transformers' `_normalize_chat_messages` + `_alias_reasoning_fields`: drop `null` values
/// (templates handle a missing key but print `None` for a null one), then expose the reasoning as
/// `thinking` (first key, for gpt-oss) and `reasoning_content` (in place).
pub(crate) fn normalize(messages: &[Value]) -> Result<Vec<Value>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let Value::Object(fields) = message else {
                return Err(Error::ChatTemplate(format!("message {i} must be a JSON object, got {message}")));
            };
            let fields: Map<String, Value> =
                fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
            let reasoning = REASONING_FIELDS.iter().find_map(|k| fields.get(*k)).cloned();
            let Some(reasoning) = reasoning else {
                return Ok(Value::Object(fields));
            };
            let mut aliased = Map::new();
            aliased.insert("thinking".into(), reasoning.clone());
            for (k, v) in fields {
                aliased.insert(k, v);
            }
            aliased.insert("reasoning_content".into(), reasoning);
            Ok(Value::Object(aliased))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_nulls_and_aliases_reasoning_like_transformers() {
        let msgs = [json!({"role": "assistant", "content": null, "reasoning": "r", "tool_calls": []})];
        let out = normalize(&msgs).unwrap();
        // Python: {"thinking": r, **message, "reasoning_content": r} after dropping None values.
        let keys: Vec<&str> = out[0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["thinking", "role", "reasoning", "tool_calls", "reasoning_content"]);
        assert_eq!(out[0]["reasoning_content"], "r");
    }

    #[test]
    fn thinking_key_keeps_its_position_when_present() {
        let msgs = [json!({"role": "assistant", "thinking": "t", "content": "c"})];
        let out = normalize(&msgs).unwrap();
        let keys: Vec<&str> = out[0].as_object().unwrap().keys().map(String::as_str).collect();
        // dict literal order: "thinking" first (overwritten in place by **message), then the rest.
        assert_eq!(keys, ["thinking", "role", "content", "reasoning_content"]);
    }

    #[test]
    fn rejects_non_objects() {
        let err = normalize(&[json!("hi")]).unwrap_err().to_string();
        assert!(err.contains("message 0 must be a JSON object"), "{err}");
    }
}

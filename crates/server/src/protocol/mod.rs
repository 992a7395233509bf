//! The wire protocol: raw request bodies as clients send them, and their conversion into validated
//! requests the engine can trust ("parse, don't validate"). Nothing past this module sees JSON
//! request text; every rejection here names the field, the limit and the value given.
//!
//! A body is parsed once into a JSON value, then read twice: into the endpoint's own fields and
//! into the [`sampling::SamplingFields`] that chat and completions share. Unknown fields are
//! ignored, as OpenAI and vLLM do.

pub mod chat;
pub mod completions;
pub mod sampling;
pub mod tokenize;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// The body as a JSON object.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        let kind = match v {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return Err(ApiError::bad_request(format!("The request body must be a JSON object. Given: {kind}")));
    }
    Ok(v)
}

/// Reads typed fields out of a body; a type error names the field path (`stream_options.include_usage`).
pub fn fields<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        if path == "." {
            ApiError::bad_request(inner)
        } else {
            ApiError::bad_field(path.clone(), format!("`{path}`: {inner}"))
        }
    })
}

/// `field` as a usize no larger than `max`.
pub(crate) fn at_most(field: &str, v: u64, max: usize) -> Result<usize, ApiError> {
    match usize::try_from(v) {
        Ok(v) if v <= max => Ok(v),
        _ => Err(ApiError::bad_field(field, format!("`{field}` must be <= {max}. Given: {v}"))),
    }
}

/// The model a request names must be the served one (absent means the served one).
pub fn check_model(given: Option<&str>, served: &str) -> Result<(), ApiError> {
    match given {
        Some(m) if m != served => Err(ApiError::model_not_found(m, served)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        a: Option<u64>,
        b: Option<Inner>,
    }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        c: bool,
    }

    #[test]
    fn type_errors_name_the_field_path() {
        let e = fields::<T>(&serde_json::json!({"a": "x"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("a"));
        assert!(e.message.contains("`a`") && e.message.contains("\"x\""), "{}", e.message);
        let e = fields::<T>(&serde_json::json!({"b": {"c": 3}})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("b.c"));
        let e = fields::<T>(&serde_json::json!({"a": -1})).unwrap_err();
        assert!(e.message.contains("-1"), "{}", e.message);
    }

    #[test]
    fn body_must_be_an_object() {
        assert!(parse_body(b"{\"a\":1}").is_ok());
        assert!(parse_body(b"[1]").unwrap_err().message.contains("an array"));
        assert!(parse_body(b"{").unwrap_err().message.contains("not valid JSON"));
    }
}

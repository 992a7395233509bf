//! A model's `generation_config.json`: the sampling defaults and stop tokens its authors ship.
//!
//! Only the fields the engine uses are read; everything else in the file is ignored. Values are
//! checked for type only (an `eos_token_id` must be an integer or a list of integers); whether a
//! temperature is sensible is the sampler's business. HF semantics are kept as they are: `top_k`
//! 0 means "no top-k", `max_length` counts the prompt and `max_new_tokens` does not.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The parsed file; `None` where the file leaves a value unset (or `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` as a list: HF allows one id or several.
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
    pub max_length: Option<usize>,
}

impl GenerationConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses the text of a `generation_config.json`; `origin` names it in errors.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| Error::bad_file(origin, format!("invalid JSON: {e}")))?;
        let Value::Object(obj) = json else {
            return Err(Error::bad_file(origin, "expected a JSON object"));
        };
        let f = Fields { obj: &obj, origin };
        Ok(Self {
            bos_token_id: f.token_id("bos_token_id")?,
            eos_token_ids: f.token_ids("eos_token_id")?,
            pad_token_id: f.token_id("pad_token_id")?,
            do_sample: f.get("do_sample")?,
            temperature: f.get("temperature")?,
            top_p: f.get("top_p")?,
            top_k: f.get("top_k")?,
            min_p: f.get("min_p")?,
            repetition_penalty: f.get("repetition_penalty")?,
            max_new_tokens: f.get("max_new_tokens")?,
            max_length: f.get("max_length")?,
        })
    }
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    origin: &'a Path,
}

impl Fields<'_> {
    fn error(&self, field: &str, expected: &str, value: &Value) -> Error {
        Error::config(field, format!("in {}: expected {expected}, got {value}", self.origin.display()))
    }

    /// A field deserialized as `T`; a missing or `null` field is `None`.
    fn get<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| {
                let expected = e.to_string();
                let expected = expected.rsplit_once("expected ").map_or(expected.as_str(), |(_, x)| x);
                self.error(field, expected, v)
            }),
        }
    }

    /// Some exports write `-1` for "no such token"; that is the same as leaving it unset.
    fn token_id(&self, field: &str) -> Result<Option<u32>> {
        match self.get::<i64>(field)? {
            Some(id) if id < 0 => Ok(None),
            Some(id) => {
                u32::try_from(id).map(Some).map_err(|_| self.error(field, "a token id (u32)", &Value::from(id)))
            }
            None => Ok(None),
        }
    }

    fn token_ids(&self, field: &str) -> Result<Vec<u32>> {
        let expected = "a token id or a list of token ids";
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| self.error(field, expected, v)))
                .collect(),
            Some(v) => match v.as_i64() {
                Some(id) if id < 0 => Ok(Vec::new()),
                Some(id) => u32::try_from(id).map(|id| vec![id]).map_err(|_| self.error(field, expected, v)),
                None => Err(self.error(field, expected, v)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GenerationConfig> {
        GenerationConfig::from_json_str(text, Path::new("/m/generation_config.json"))
    }

    #[test]
    fn reads_llama3_style_config() {
        let text = r#"{"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
            "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.45.0", "max_length": 4096}"#;
        let c = parse(text).unwrap();
        assert_eq!(c.bos_token_id, Some(128000));
        assert_eq!(c.eos_token_ids, [128001, 128008, 128009]);
        assert_eq!(c.do_sample, Some(true));
        assert_eq!(c.temperature, Some(0.6));
        assert_eq!(c.top_p, Some(0.9));
        assert_eq!(c.max_length, Some(4096));
        assert_eq!((c.top_k, c.min_p, c.pad_token_id, c.max_new_tokens), (None, None, None, None));
    }

    #[test]
    fn single_eos_nulls_and_integer_floats() {
        let c = parse(r#"{"eos_token_id": 2, "pad_token_id": null, "temperature": 1, "top_k": 20, "min_p": 0, "repetition_penalty": 1.05, "max_new_tokens": 256}"#).unwrap();
        assert_eq!(c.eos_token_ids, [2]);
        assert_eq!(c.pad_token_id, None);
        assert_eq!(c.temperature, Some(1.0));
        assert_eq!(c.top_k, Some(20));
        assert_eq!(c.min_p, Some(0.0));
        assert_eq!(c.repetition_penalty, Some(1.05));
        assert_eq!(c.max_new_tokens, Some(256));
    }

    #[test]
    fn negative_pad_id_means_unset() {
        assert_eq!(parse(r#"{"pad_token_id": -1}"#).unwrap().pad_token_id, None);
    }

    #[test]
    fn wrong_types_name_the_field_and_file() {
        for (text, field) in [
            (r#"{"temperature": "hot"}"#, "temperature"),
            (r#"{"eos_token_id": "</s>"}"#, "eos_token_id"),
            (r#"{"eos_token_id": [1, "x"]}"#, "eos_token_id"),
            (r#"{"top_k": 1.5}"#, "top_k"),
            (r#"{"do_sample": "yes"}"#, "do_sample"),
            (r#"{"bos_token_id": 5000000000}"#, "bos_token_id"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(&err, Error::Config { field: f, .. } if f == field), "{text}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains("/m/generation_config.json") && msg.contains(field), "{msg}");
        }
    }

    #[test]
    fn not_an_object_is_a_bad_file() {
        assert!(matches!(parse("[1]"), Err(Error::BadFile { .. })));
        assert!(matches!(parse("{"), Err(Error::BadFile { .. })));
    }
}

//! Typed, checked access to GGUF metadata. Every accessor answers `Ok(None)` for an absent key
//! and an error naming the key, the file and what was found for a present key of the wrong
//! type, so callers decide what is optional and never index blindly.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use crate::{Error, Result};

pub(super) struct Meta<'a> {
    md: &'a HashMap<String, Value>,
    path: &'a Path,
}

impl<'a> Meta<'a> {
    pub(super) fn new(md: &'a HashMap<String, Value>, path: &'a Path) -> Self {
        Self { md, path }
    }

    /// An error about `key` in this file.
    pub(super) fn bad(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::bad_file(self.path, format!("tokenizer metadata `{key}`: {msg}"))
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.md.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.bad(key, format!("expected a string, found {}", describe(v)))),
        }
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.md.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(key, format!("expected a bool, found {}", describe(v)))),
        }
    }

    /// A token id: any integer type, as long as it is non-negative and fits in `u32`.
    pub(super) fn token_id(&self, key: &str) -> Result<Option<u32>> {
        let Some(v) = self.md.get(key) else { return Ok(None) };
        let n: Option<i128> = match v {
            Value::U8(x) => Some((*x).into()),
            Value::I8(x) => Some((*x).into()),
            Value::U16(x) => Some((*x).into()),
            Value::I16(x) => Some((*x).into()),
            Value::U32(x) => Some((*x).into()),
            Value::I32(x) => Some((*x).into()),
            Value::U64(x) => Some((*x).into()),
            Value::I64(x) => Some((*x).into()),
            _ => None,
        };
        let n = n.ok_or_else(|| self.bad(key, format!("expected an integer, found {}", describe(v))))?;
        u32::try_from(n).map(Some).map_err(|_| self.bad(key, format!("{n} is not a valid token id")))
    }

    fn array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.md.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a.as_slice())),
            Some(v) => Err(self.bad(key, format!("expected an array, found {}", describe(v)))),
        }
    }

    pub(super) fn string_array(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.array(key)? else { return Ok(None) };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match v {
                Value::String(s) => out.push(s.as_str()),
                v => return Err(self.bad(key, format!("element {i}: expected a string, found {}", describe(v)))),
            }
        }
        Ok(Some(out))
    }

    /// Scores: llama.cpp accepts float32 or int32 arrays.
    pub(super) fn score_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(items) = self.array(key)? else { return Ok(None) };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match v {
                Value::F32(x) => out.push(*x),
                Value::I32(x) => out.push(*x as f32),
                v => {
                    let msg = format!("element {i}: expected float32 or int32, found {}", describe(v));
                    return Err(self.bad(key, msg));
                }
            }
        }
        Ok(Some(out))
    }

    pub(super) fn i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let Some(items) = self.array(key)? else { return Ok(None) };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match v {
                Value::I32(x) => out.push(*x),
                v => return Err(self.bad(key, format!("element {i}: expected int32, found {}", describe(v)))),
            }
        }
        Ok(Some(out))
    }
}

/// "string \"abc\"", "u32 7", "array of 3": enough to see what a file holds.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() <= 40 => format!("string {s:?}"),
        Value::String(s) => format!("a string of {} bytes", s.len()),
        Value::Array(a) => format!("an array of {} values", a.len()),
        Value::Bool(b) => format!("bool {b}"),
        Value::U8(x) => format!("u8 {x}"),
        Value::I8(x) => format!("i8 {x}"),
        Value::U16(x) => format!("u16 {x}"),
        Value::I16(x) => format!("i16 {x}"),
        Value::U32(x) => format!("u32 {x}"),
        Value::I32(x) => format!("i32 {x}"),
        Value::U64(x) => format!("u64 {x}"),
        Value::I64(x) => format!("i64 {x}"),
        Value::F32(x) => format!("f32 {x}"),
        Value::F64(x) => format!("f64 {x}"),
    }
}

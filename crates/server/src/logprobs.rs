//! Logprobs in OpenAI's two shapes.
//!
//! Completions: `{tokens, token_logprobs, top_logprobs, text_offset}`, parallel lists with one
//! entry per token; `top_logprobs` maps token text to logprob and (as in vLLM) holds the top k plus
//! the token itself. With `echo` the prompt's tokens come first and the first entry's logprob and
//! top are `null` (nothing precedes it) — lm-eval's `local-completions` sums
//! `token_logprobs[ctxlen:-1]`. Chat: `{content: [{token, logprob, bytes, top_logprobs: [..]}]}`.
//!
//! A token's text is its own bytes (lossy UTF-8 where a character spans tokens). `-inf` (a token
//! masked out) is reported as -9999.0, as vLLM does, since JSON has no infinity.

use prom_engine::TokenLogprob;
use prom_models::Tokenizer;
use serde_json::{json, Map, Value};

/// A token's text as it contributes to the output.
pub fn token_text(tok: &Tokenizer, id: u32) -> String {
    match tok.token_bytes(id, true) {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => tok.decode(&[id], false).unwrap_or_default(),
    }
}

fn token_bytes(tok: &Tokenizer, id: u32) -> Vec<u8> {
    match tok.token_bytes(id, true) {
        Some(b) => b.to_vec(),
        None => token_text(tok, id).into_bytes(),
    }
}

pub fn finite(lp: f32) -> f32 {
    if lp.is_finite() {
        lp
    } else {
        -9999.0
    }
}

/// The completions shape, built up as tokens arrive (a stream sends one per chunk).
#[derive(Debug, Default)]
pub struct CompletionLogprobs {
    tokens: Vec<String>,
    token_logprobs: Vec<Option<f32>>,
    top_logprobs: Vec<Option<Map<String, Value>>>,
    text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Echoed prompt tokens; `lps[i]` scores `ids[i]` (the first is `None`). `offset` is the
    /// character offset of the next token in the choice's text, advanced past each token.
    pub fn push_prompt(&mut self, tok: &Tokenizer, ids: &[u32], lps: &[Option<TokenLogprob>], offset: &mut usize) {
        for (i, &id) in ids.iter().enumerate() {
            match lps.get(i).and_then(Option::as_ref) {
                Some(lp) => self.push(tok, lp, offset),
                None => {
                    let text = token_text(tok, id);
                    self.text_offset.push(*offset);
                    *offset += text.chars().count();
                    self.tokens.push(text);
                    self.token_logprobs.push(None);
                    self.top_logprobs.push(None);
                }
            }
        }
    }

    pub fn push(&mut self, tok: &Tokenizer, lp: &TokenLogprob, offset: &mut usize) {
        let text = token_text(tok, lp.token);
        let mut top = Map::new();
        for &(id, v) in &lp.top {
            top.entry(token_text(tok, id)).or_insert(json!(finite(v)));
        }
        top.entry(text.clone()).or_insert(json!(finite(lp.logprob)));
        self.text_offset.push(*offset);
        *offset += text.chars().count();
        self.tokens.push(text);
        self.token_logprobs.push(Some(finite(lp.logprob)));
        self.top_logprobs.push(Some(top));
    }

    pub fn to_json(&self) -> Value {
        json!({
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        })
    }
}

/// The chat shape's `content` entries for `lps`.
pub fn chat_content(tok: &Tokenizer, lps: &[TokenLogprob], top_k: usize) -> Vec<Value> {
    let entry =
        |id: u32, lp: f32| json!({"token": token_text(tok, id), "logprob": finite(lp), "bytes": token_bytes(tok, id)});
    lps.iter()
        .map(|lp| {
            let mut e = entry(lp.token, lp.logprob);
            let top: Vec<Value> = lp.top.iter().take(top_k).map(|&(id, v)| entry(id, v)).collect();
            e["top_logprobs"] = Value::Array(top);
            e
        })
        .collect()
}

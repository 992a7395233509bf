//! HTTP handlers: each turns a body into a validated request (see `protocol`), runs it, and
//! shapes the answer. Errors are [`ApiError`]s, answered as OpenAI error JSON.

pub mod chat;
pub mod completions;
pub mod info;
pub mod tokenize;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use prom_engine::SamplingParams;

use crate::error::ApiError;
use crate::state::State;

/// The body bytes, or 413 / 400 in OpenAI's error shape.
pub fn body(s: &State, b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(s.config.max_body_bytes),
        _ => ApiError::bad_request(format!("Could not read the request body: {r}")),
    })
}

/// The request id (set by the request-id layer from `x-request-id`, or generated).
pub fn request_id(h: &HeaderMap) -> String {
    h.get(crate::app::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_owned()
}

/// Logs a generation request's shape; its text only with `--log-prompts`.
pub fn log_request(s: &State, endpoint: &str, prompt_tokens: usize, p: &SamplingParams, text: impl FnOnce() -> String) {
    if s.config.log_prompts {
        let prompt = text();
        tracing::info!(
            endpoint,
            prompt_tokens,
            n = p.n,
            max_tokens = p.max_tokens,
            temperature = p.temperature,
            prompt,
            "generate"
        );
    } else {
        tracing::info!(
            endpoint,
            prompt_tokens,
            n = p.n,
            max_tokens = p.max_tokens,
            temperature = p.temperature,
            "generate"
        );
    }
}

pub fn finish_str(r: Option<prom_engine::FinishReason>) -> Option<&'static str> {
    r.map(prom_engine::FinishReason::as_str)
}

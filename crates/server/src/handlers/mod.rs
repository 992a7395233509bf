//! HTTP handlers: each turns a body into a validated request (see `protocol`), runs it, and
//! shapes the answer. Errors are [`ApiError`]s, answered as OpenAI error JSON.

pub mod chat;
pub mod completions;
pub mod info;
pub mod tokenize;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;
use prom_engine::SamplingParams;

use crate::error::ApiError;
use crate::state::State;

/// Reads the body, up to `--max-body-bytes`. A larger body is still read (and discarded) up to
/// four times the limit, so that the client, still sending, receives the 413 instead of a broken
/// pipe; a body announced as larger than that is refused before it is read.
pub async fn read_body(s: &State, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = s.config.max_body_bytes;
    let drain_cap = limit.saturating_mul(4).max(1 << 20);
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > drain_cap) {
        return Err(ApiError::too_large(limit));
    }
    let mut data = Vec::with_capacity(announced.unwrap_or(0).min(limit));
    let (mut total, mut frames) = (0usize, body.into_data_stream());
    while let Some(chunk) = frames.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}")))?;
        total += chunk.len();
        if total <= limit {
            data.extend_from_slice(&chunk);
        } else if total > drain_cap {
            break;
        }
    }
    if total > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(Bytes::from(data))
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

//! `POST /tokenize`, `POST /detokenize`, `GET /tokenizer_info` (vLLM's shapes; lm-eval's
//! `local-completions` uses them as a remote tokenizer).

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::read_body;
use crate::error::ApiError;
use crate::logprobs::token_text;
use crate::protocol::parse_body;
use crate::protocol::tokenize::{DetokenizeRequest, TokenizeRequest};
use crate::state::AppState;

pub async fn tokenize(Extract(s): Extract<AppState>, headers: HeaderMap, b: Body) -> Response {
    let bytes = match read_body(&s, &headers, b).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let run = || -> Result<Response, ApiError> {
        let req = TokenizeRequest::parse(&parse_body(&bytes)?, &s.view())?;
        let tok = &s.model.tokenizer;
        let tokens = tok
            .encode(&req.text, req.add_special_tokens)
            .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))?;
        let token_strs = req.return_token_strs.then(|| tokens.iter().map(|&t| token_text(tok, t)).collect::<Vec<_>>());
        Ok(axum::Json(json!({
            "count": tokens.len(),
            "max_model_len": s.model.engine.info().max_model_len,
            "tokens": tokens,
            "token_strs": token_strs,
        }))
        .into_response())
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

pub async fn detokenize(Extract(s): Extract<AppState>, headers: HeaderMap, b: Body) -> Response {
    let bytes = match read_body(&s, &headers, b).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let run = || -> Result<Response, ApiError> {
        let req = DetokenizeRequest::parse(&parse_body(&bytes)?, &s.view())?;
        let prompt = s
            .model
            .tokenizer
            .decode(&req.tokens, false)
            .map_err(|e| ApiError::bad_field("tokens", format!("`tokens` could not be decoded: {e}")))?;
        Ok(axum::Json(json!({ "prompt": prompt })).into_response())
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

pub async fn tokenizer_info(Extract(s): Extract<AppState>) -> Response {
    let tok = &s.model.tokenizer;
    axum::Json(json!({
        "tokenizer_class": "prom_models::Tokenizer",
        "bos_token": tok.bos_token(),
        "eos_token": tok.eos_token(),
        "bos_token_id": tok.bos_token_id(),
        "eos_token_id": tok.eos_token_id(),
        "pad_token": null,
        "add_bos_token": tok.add_bos(),
        "add_eos_token": tok.add_eos(),
        "chat_template": tok.chat_template(),
        "model_max_length": s.model.engine.info().max_model_len,
        "vocab_size": tok.vocab_size(),
    }))
    .into_response()
}

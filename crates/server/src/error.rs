//! The server's errors: [`Error`] for the library (binding, serving), [`ApiError`] for what a client
//! sees — OpenAI's error JSON `{"error": {"message", "type", "param", "code"}}` with its status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error("invalid server configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] prom_models::Error),
}

/// An error answered to a client. `message` names the field, the limit and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400 for a bad value of `param`.
    pub fn bad_field(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self { param: Some(param.into()), ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message) }
    }

    /// 400 not tied to one field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self { code: Some("invalid_api_key"), ..Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message) }
    }

    pub fn model_not_found(given: &str, served: &str) -> Self {
        Self {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{given}` does not exist; this server serves `{served}`"),
            )
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body exceeds the server's limit of {limit} bytes (--max-body-bytes)"),
        )
    }

    pub fn queue_full(in_flight: usize, capacity: usize, retry_after: u64) -> Self {
        Self {
            code: Some("rate_limit_exceeded"),
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "The server is at capacity: {in_flight} sequences in flight, limit {capacity} \
                     (--max-num-seqs + --max-queue); retry after {retry_after} s"
                ),
            )
        }
    }

    pub fn draining() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "The server is shutting down")
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// An engine error: a rejected request is the client's fault (400, naming the field the
    /// engine's message names in backticks); anything else is the server's.
    pub fn from_engine(e: &prom_engine::Error) -> Self {
        match e {
            prom_engine::Error::InvalidRequest(m) => {
                let param = m.split('`').nth(1).filter(|p| !p.is_empty() && !p.contains(' '));
                Self { param: param.map(str::to_owned), ..Self::bad_request(m.clone()) }
            }
            prom_engine::Error::Engine(m) if m.contains("stopped") || m.contains("shutting down") => {
                Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", m.clone()) }
            }
            other => Self::internal(other.to_string()),
        }
    }

    /// The JSON body, also sent as an SSE event when a stream fails midway.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_rejections_name_their_field() {
        let e = prom_engine::Error::InvalidRequest("`top_p` must be in (0, 1]. Given: 1.5".into());
        let a = ApiError::from_engine(&e);
        assert_eq!((a.status, a.param.as_deref()), (StatusCode::BAD_REQUEST, Some("top_p")));
        let e = prom_engine::Error::InvalidRequest("the prompt is empty".into());
        assert_eq!(ApiError::from_engine(&e).param, None);
        let e = prom_engine::Error::Engine("the engine has stopped".into());
        assert_eq!(ApiError::from_engine(&e).status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn body_has_openai_shape() {
        let b = ApiError::bad_field("n", "`n` must be <= 128. Given: 500").body();
        assert_eq!(b["error"]["param"], "n");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert!(b["error"]["code"].is_null());
    }
}

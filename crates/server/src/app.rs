//! The router and its middleware: request ids, tracing, CORS, API keys, draining,
//! per-route status counts, and a JSON 500 for panics.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State as Extract};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::{ApiError, Error};
use crate::handlers::{chat, completions, info, tokenize};
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, for the OpenAPI document's test: (method, path).
#[cfg_attr(not(test), allow(dead_code))]
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/chat/completions"),
    ("post", "/v1/completions"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{model}"),
    ("post", "/tokenize"),
    ("post", "/detokenize"),
    ("get", "/tokenizer_info"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/version"),
    ("get", "/openapi.json"),
];

pub fn router(state: AppState) -> Result<Router, Error> {
    // Generation and tokenizer routes: need a key (when configured) and refuse work while draining.
    let guarded = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), refuse_when_draining));
    let keyed = Router::new()
        .merge(guarded)
        .route("/v1/models", get(info::models))
        .route("/v1/models/{model}", get(info::model))
        .route("/tokenizer_info", get(tokenize::tokenizer_info))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), check_api_key));
    let open = Router::new()
        .route("/health", get(info::health))
        .route("/ready", get(info::ready))
        .route("/metrics", get(info::metrics))
        .route("/version", get(info::version))
        .route("/openapi.json", get(info::openapi));
    let cors = cors(&state.config.cors_origins)?;
    let app = keyed
        .merge(open)
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), count_status))
        .fallback(info::not_found)
        .method_not_allowed_fallback(info::method_not_allowed)
        .with_state(state);
    let layers = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("The server hit an internal error").into_response()))
        .layer(middleware::map_request(drop_odd_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomId))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .option_layer(cors);
    Ok(app.layer(layers))
}

fn span(req: &Request) -> tracing::Span {
    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", id, method = %req.method(), path = %req.uri().path())
}

/// A client's `x-request-id` is kept when it is a plausible id (it names the completion and the
/// log span); anything longer than 128 bytes or outside `[A-Za-z0-9._:-]` is replaced by a fresh one.
async fn drop_odd_request_id(mut req: Request) -> Request {
    let ok = req.headers().get(REQUEST_ID).is_none_or(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    });
    if !ok {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// 32 random hex digits.
#[derive(Clone, Copy)]
struct RandomId;

impl MakeRequestId for RandomId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:032x}", rand::random::<u128>());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

fn cors(origins: &[String]) -> Result<Option<CorsLayer>, Error> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| Error::Config(format!("--cors-origin is not a valid origin. Given: {o:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(Any)
            .expose_headers([REQUEST_ID]),
    ))
}

/// `Authorization: Bearer <key>` against the configured keys. Both sides are hashed first so
/// that the constant-time comparison sees equal lengths; every key is compared, match or not.
async fn check_api_key(Extract(s): Extract<AppState>, req: Request, next: Next) -> Response {
    if s.config.api_keys.is_empty() {
        return next.run(req).await;
    }
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return ApiError::unauthorized("Missing API key: send `Authorization: Bearer <key>`").into_response();
    };
    let digest = Sha256::digest(given.trim().as_bytes());
    let mut ok = subtle::Choice::from(0);
    for key in &s.config.api_keys {
        ok |= Sha256::digest(key.as_bytes()).ct_eq(&digest);
    }
    if bool::from(ok) {
        next.run(req).await
    } else {
        ApiError::unauthorized("Incorrect API key").into_response()
    }
}

async fn refuse_when_draining(Extract(s): Extract<AppState>, req: Request, next: Next) -> Response {
    if s.is_draining() {
        return ApiError::draining().into_response();
    }
    next.run(req).await
}

/// `prom_http_requests_total{route, status}`; unmatched paths are counted by their fallback.
async fn count_status(Extract(s): Extract<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let resp = next.run(req).await;
    s.metrics.http(&route, resp.status().as_u16());
    resp
}

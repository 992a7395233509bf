//! Small GET endpoints: models, health, readiness, version, metrics, the OpenAPI document, and the
//! JSON answers for unknown routes and methods.

use axum::extract::{Path, State as Extract};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::{AppState, State};

fn model_card(s: &State) -> Value {
    json!({
        "id": s.model.name,
        "object": "model",
        "created": s.started,
        "owned_by": "prometheus",
        "root": s.model.name,
        "parent": null,
        "max_model_len": s.model.engine.info().max_model_len,
    })
}

pub async fn models(Extract(s): Extract<AppState>) -> Response {
    axum::Json(json!({"object": "list", "data": [model_card(&s)]})).into_response()
}

pub async fn model(Extract(s): Extract<AppState>, Path(id): Path<String>) -> Response {
    if id == s.model.name {
        axum::Json(model_card(&s)).into_response()
    } else {
        ApiError::model_not_found(&id, &s.model.name).into_response()
    }
}

/// Alive: the process answers.
pub async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready: the model is loaded and the server is not draining.
pub async fn ready(Extract(s): Extract<AppState>) -> Response {
    if s.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "draining"}))).into_response()
    } else {
        axum::Json(json!({"status": "ready", "model": s.model.name})).into_response()
    }
}

pub async fn version() -> Response {
    axum::Json(json!({"version": env!("CARGO_PKG_VERSION")})).into_response()
}

pub async fn metrics(Extract(s): Extract<AppState>) -> Response {
    let text = s.metrics.render(&s.gauges());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

pub async fn openapi(Extract(s): Extract<AppState>) -> Response {
    let info = s.model.engine.info();
    axum::Json(crate::openapi::document(info.vocab_size, info.max_model_len)).into_response()
}

pub async fn not_found(Extract(s): Extract<AppState>, method: Method, uri: Uri) -> Response {
    s.metrics.http("unmatched", StatusCode::NOT_FOUND.as_u16());
    ApiError::not_found(format!("Unknown route: {method} {}", uri.path())).into_response()
}

pub async fn method_not_allowed(Extract(s): Extract<AppState>, method: Method, uri: Uri) -> Response {
    s.metrics.http("unmatched", StatusCode::METHOD_NOT_ALLOWED.as_u16());
    ApiError::method_not_allowed(format!("Method {method} is not allowed on {}", uri.path())).into_response()
}

//! Prometheus server: an OpenAI-compatible HTTP API over the engine, usable unchanged by clients
//! written for vLLM and llama-server.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions` (SSE streaming, `n`, logprobs,
//! `echo` with prompt logprobs, batches), `GET /v1/models`, vLLM's `POST /tokenize`,
//! `POST /detokenize` and `GET /tokenizer_info`, `GET /health`, `/ready`, `/metrics` (Prometheus
//! text format), `/version`, `/openapi.json`.
//!
//! A request body becomes a validated request (`protocol`) before the engine sees it; errors are
//! OpenAI error JSON naming the field, the limit and the value. The server admits at most
//! `max_num_seqs + max_queue` sequences at once and answers the excess with 429 + Retry-After.
//! Dropping a request's engine streams aborts it, so a client that disconnects frees its KV blocks
//! at once. On SIGTERM / ctrl-c the server stops accepting, answers 503 to new work, lets
//! in-flight requests finish up to a timeout, and returns.
//!
//! ```no_run
//! # async fn run(engine: prom_engine::Engine, tok: std::sync::Arc<prom_models::Tokenizer>) -> prom_server::Result<()> {
//! use prom_server::{serve, shutdown_signal, ServedModel, ServerConfig};
//! let model = ServedModel {
//!     engine,
//!     tokenizer: tok,
//!     chat_template: None, // ChatML
//!     name: "smollm2".into(),
//!     defaults: prom_engine::SamplingParams::default(),
//! };
//! serve(model, ServerConfig { addr: "127.0.0.1:8000".into(), ..Default::default() }, shutdown_signal()).await
//! # }
//! ```

mod app;
mod config;
mod error;
mod generate;
mod guard;
mod handlers;
mod logprobs;
mod metrics;
mod openapi;
mod protocol;
mod server;
mod sse;
mod state;

pub use config::{ServedModel, ServerConfig};
pub use error::{ApiError, Error, Result};
pub use openapi::document as openapi_document;
pub use server::{serve, serve_on, shutdown_signal};

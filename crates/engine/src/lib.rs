//! Prometheus engine: many concurrent requests served by one model, vLLM V1 style.
//!
//! An engine thread loops schedule → execute → update: the [`Scheduler`] picks each step's
//! tokens under one token budget (running sequences decode while new prompts prefill in chunks),
//! the [`KvManager`] hands out fixed-size blocks of the paged KV cache (shared through prefix
//! caching), the model runs every scheduled token in one forward pass, and the per-request
//! [`Sampler`] and streaming detokenizer turn logits into [`Event`]s.
//!
//! ```no_run
//! use std::sync::Arc;
//! use prom_engine::{Engine, EngineConfig, Event, Request, SamplingParams};
//! # fn run(model: prom_models::nn::Model, tok: prom_models::Tokenizer) -> prom_engine::Result<()> {
//! let tok = Arc::new(tok);
//! let engine = Engine::start(model, Arc::clone(&tok), EngineConfig::default())?;
//! let prompt = tok.encode("The capital of France is", true)?;
//! let params = SamplingParams { max_tokens: 16, ..SamplingParams::greedy() };
//! let mut stream = engine.submit(Request::new(prompt, params))?;
//! while let Some(event) = stream.blocking_next() {
//!     match event {
//!         Event::Delta(d) => print!("{}", d.text),
//!         Event::Finished { usage, .. } => println!("\n{usage:?}"),
//!         Event::Error(e) => return Err(e),
//!         Event::PromptLogprobs(_) => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod core;
mod detokenizer;
mod engine;
mod error;
mod kv;
mod request;
mod sampler;
mod scheduler;

pub use detokenizer::{StopMatcher, StreamDecoder};
pub use engine::{Engine, EngineConfig, EngineInfo, EngineStats, KvCacheMemory, RequestStream};
pub use error::{Error, Result};
pub use kv::{BlockId, KvManager, PrefixCacheStats, PrefixHit, SeqId};
pub use request::{Delta, Event, FinishReason, Request, RequestId, Timings, Usage};
pub use sampler::{child_seed, prompt_logprobs, Sampled, Sampler, SamplingParams, TokenLogprob, MAX_LOGPROBS};
pub use scheduler::{Policy, SchedError, ScheduledSeq, Scheduler, SchedulerConfig, SchedulerOutput, SeqRequest};

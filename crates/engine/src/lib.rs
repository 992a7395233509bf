//! Prometheus engine: turns a loaded model into text.
//!
//! This crate currently runs one sequence at a time ([`Generator`]); the batching scheduler and
//! paged KV cache build on the same [`Sampler`] and [`StreamDecoder`].
//!
//! ```no_run
//! use prom_engine::{Generator, SamplingParams};
//! # fn run(model: &prom_models::nn::Model, tok: &prom_models::Tokenizer) -> prom_engine::Result<()> {
//! let prompt = tok.encode("The capital of France is", true)?;
//! let params = SamplingParams { max_tokens: 16, ..SamplingParams::greedy() };
//! let out = Generator::new(model, tok).generate(&prompt, &params, |delta| print!("{delta}"))?;
//! println!("\n{:?}", out.finish_reason);
//! # Ok(()) }
//! ```

mod detokenizer;
mod error;
mod generate;
mod kv;
mod sampler;
mod scheduler;

pub use detokenizer::{StopMatcher, StreamDecoder};
pub use error::{Error, Result};
pub use generate::{FinishReason, Generation, Generator};
pub use kv::{BlockId, KvManager, PrefixCacheStats, PrefixHit, SeqId};
pub use sampler::{child_seed, prompt_logprobs, Sampled, Sampler, SamplingParams, TokenLogprob, MAX_LOGPROBS};
pub use scheduler::{Policy, SchedError, ScheduledSeq, Scheduler, SchedulerConfig, SchedulerOutput, SeqRequest};

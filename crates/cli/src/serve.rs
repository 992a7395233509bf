//! `prom serve`: the OpenAI-compatible HTTP server (crate `prom-server`) over a loaded model.

use std::time::Duration;

use anyhow::{Context, Result};
use prom_engine::SamplingParams;
use prom_models::generation_config::GenerationConfig;
use prom_server::{ServedModel, ServerConfig};

use crate::common::{start_engine, EngineArgs, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Require `Authorization: Bearer <KEY>` on the API routes (repeatable).
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// Read API keys from a file, one per line (blank lines and `#` comments ignored).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<std::path::PathBuf>,
    /// Sequences that may wait for a running slot; more get 429 with Retry-After.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Allow browser requests from this origin (repeatable; `*` for any).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// The model name clients send (default: the --model argument).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Log prompt text (off by default: prompts may be private).
    #[arg(long)]
    log_prompts: bool,
    /// Seconds in-flight requests get to finish after SIGTERM / ctrl-c.
    #[arg(long, default_value_t = 30.0)]
    shutdown_timeout: f64,
    /// Guardrails: input and output rails from a YAML file (see docs/guard.md).
    #[arg(long, value_name = "RAILS.yaml")]
    guard: Option<std::path::PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
}

pub fn run(a: Args) -> Result<()> {
    let mut api_keys = a.api_keys.clone();
    if let Some(path) = &a.api_key_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading --api-key-file {}", path.display()))?;
        api_keys.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
        anyhow::ensure!(!api_keys.is_empty(), "--api-key-file {} holds no key", path.display());
    }
    anyhow::ensure!(
        a.shutdown_timeout.is_finite() && a.shutdown_timeout >= 0.0,
        "--shutdown-timeout must be a number of seconds >= 0. Given: {}",
        a.shutdown_timeout
    );
    // Before the model loads: a bad rails file fails fast.
    let guard = a.guard.as_deref().map(prom_guard::RailsConfig::from_file).transpose()?;
    let m = a.model.load()?;
    let defaults = defaults(&m.generation_config);
    let s = start_engine(m, &a.engine)?;
    let model = ServedModel {
        engine: s.engine,
        tokenizer: s.tokenizer,
        chat_template: s.chat_template,
        name: a.served_model_name.clone().unwrap_or_else(|| a.model.model.clone()),
        defaults,
    };
    let config = ServerConfig {
        addr: format!("{}:{}", a.host, a.port),
        api_keys,
        max_num_seqs: a.engine.max_num_seqs,
        max_queue: a.max_queue,
        cors_origins: a.cors_origins.clone(),
        log_prompts: a.log_prompts,
        shutdown_timeout: Duration::from_secs_f64(a.shutdown_timeout),
        max_body_bytes: a.max_body_bytes,
        guard: guard.map(|c| std::sync::Arc::new(prom_guard::Guard::new(c))),
    };
    // The engine runs on its own thread; HTTP needs little CPU.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(prom_server::serve(model, config, prom_server::shutdown_signal()))?;
    Ok(())
}

/// vLLM's default: sampling fields a request leaves out come from the model's generation config,
/// else OpenAI's defaults; its EOS ids stop every request.
fn defaults(g: &GenerationConfig) -> SamplingParams {
    let d = SamplingParams::default();
    SamplingParams {
        temperature: g.temperature.unwrap_or(d.temperature),
        top_p: g.top_p.unwrap_or(d.top_p),
        top_k: g.top_k.unwrap_or(d.top_k),
        min_p: g.min_p.unwrap_or(d.min_p),
        repetition_penalty: g.repetition_penalty.unwrap_or(d.repetition_penalty),
        stop_token_ids: g.eos_token_ids.clone(),
        ..d
    }
}

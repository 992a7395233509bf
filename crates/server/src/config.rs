//! What the server is given: the model to serve (plain data the CLI builds) and its settings.

use std::sync::Arc;
use std::time::Duration;

use prom_engine::{Engine, SamplingParams};
use prom_models::chat::ChatTemplate;
use prom_models::Tokenizer;

/// A loaded model in a running engine.
pub struct ServedModel {
    pub engine: Engine,
    pub tokenizer: Arc<Tokenizer>,
    /// The model's chat template; `None` falls back to ChatML.
    pub chat_template: Option<ChatTemplate>,
    /// The name clients use in `model` (and `/v1/models` lists).
    pub name: String,
    /// Defaults for fields a request leaves out (the model's generation config; OpenAI's
    /// defaults otherwise). `stop_token_ids` here are added to every request's.
    pub defaults: SamplingParams,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `host:port` to listen on.
    pub addr: String,
    /// Accepted bearer tokens; empty means no authentication.
    pub api_keys: Vec<String>,
    /// The engine's `max_num_seqs`: how many sequences run at once.
    pub max_num_seqs: usize,
    /// How many more sequences may wait for a slot; beyond that requests get 429.
    pub max_queue: usize,
    /// Allowed CORS origins (`*` for any); empty means no CORS headers.
    pub cors_origins: Vec<String>,
    /// Log prompt text and generated text (off by default: prompts may be private).
    pub log_prompts: bool,
    /// How long in-flight requests may take to finish after SIGTERM / ctrl-c.
    pub shutdown_timeout: Duration,
    pub max_body_bytes: usize,
    /// Guardrails (`--guard rails.yaml`): input and output rails on chat and completions.
    pub guard: Option<Arc<prom_guard::Guard>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8000".into(),
            api_keys: vec![],
            max_num_seqs: 128,
            max_queue: 256,
            cors_origins: vec![],
            log_prompts: false,
            shutdown_timeout: Duration::from_secs(30),
            max_body_bytes: 16 << 20,
            guard: None,
        }
    }
}

//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! A [`ChatTemplate`] renders a model's Jinja template (from `tokenizer_config.json`,
//! `chat_template.jinja` or GGUF metadata) the way transformers' `apply_chat_template` does, so
//! that our prompts are byte-identical to Python's. `crates/models/tests/chat_templates.rs` holds
//! us to that on the ~70 real templates shipped with llama.cpp.
//!
//! ```
//! use prom_models::chat::{ChatMessage, ChatTemplate, RenderOptions};
//!
//! let template = ChatTemplate::chatml()?;
//! let messages = [ChatMessage::system("Be brief."), ChatMessage::user("Hi!")].map(Into::into);
//! let prompt = template.render(&messages, &RenderOptions { add_generation_prompt: true, ..Default::default() })?;
//! assert_eq!(prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
//! # Ok::<(), prom_models::Error>(())
//! ```
//!
//! Out of scope: transformers' `continue_final_message`, assistant-token masks and
//! `sanitize_control_tokens`; `strftime_now` formats UTC rather than local time.

mod env;
mod hf_files;
mod json;
mod message;
mod python;
mod strftime;

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::Environment;
use serde_json::{Map, Value};

use crate::{Error, Result};
pub use message::ChatMessage;
use strftime::Clock;

/// The ChatML template, for models that ship without a chat template. This is transformers'
/// historical `default_chat_template`; models not trained on ChatML will not follow it well,
/// but any template beats concatenated text.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const NAME: &str = "chat_template";

/// What a rendering needs besides the messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderOptions {
    /// End with the header that opens an assistant turn.
    pub add_generation_prompt: bool,
    /// Tool schemas (a JSON list), visible to the template as `tools`; `None` renders as `none`.
    pub tools: Option<Value>,
    /// Further template variables, e.g. `enable_thinking`; these override the special tokens.
    pub extra: Map<String, Value>,
}

/// A compiled chat template plus the special-token variables it is rendered with.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, … in the order transformers passes them; `None` entries are
    /// left undefined, as transformers drops them.
    special_tokens: Vec<(String, String)>,
}

impl ChatTemplate {
    /// Compiles `source` once. A syntax error becomes [`Error::ChatTemplate`] naming the line.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let tokens = [("bos_token", bos_token), ("eos_token", eos_token)];
        Self::with_special_tokens(source, tokens.iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string()))))
    }

    /// The [`CHATML_TEMPLATE`] fallback, with no special tokens.
    pub fn chatml() -> Result<Self> {
        Self::new(CHATML_TEMPLATE, None, None)
    }

    pub(crate) fn with_special_tokens(
        source: &str,
        tokens: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut env = env::hf_environment(Clock::System);
        env.add_template_owned(NAME, env::rewrite_generation_tags(source)).map_err(|e| compile_error(&e))?;
        Ok(Self { env, special_tokens: tokens.into_iter().collect() })
    }

    /// Makes `strftime_now` report `time` instead of the current time, for reproducible prompts.
    pub fn with_fixed_time(mut self, time: SystemTime) -> Self {
        let secs = match time.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        env::set_clock(&mut self.env, Clock::Fixed(secs));
        self
    }

    /// Renders `messages` (JSON objects with at least `role`; usually `content`, possibly
    /// `tool_calls`, `reasoning_content`, …). As in transformers, keys whose value is `null` are
    /// dropped and a message's reasoning is visible as both `reasoning_content` and `thinking`.
    pub fn render(&self, messages: &[Value], opts: &RenderOptions) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(|e| compile_error(&e))?;
        let mut ctx = Map::new();
        ctx.insert("messages".into(), Value::Array(message::normalize(messages)?));
        ctx.insert("tools".into(), opts.tools.clone().unwrap_or(Value::Null));
        ctx.insert("documents".into(), Value::Null);
        ctx.insert("add_generation_prompt".into(), Value::Bool(opts.add_generation_prompt));
        for (name, token) in &self.special_tokens {
            ctx.insert(name.clone(), Value::String(token.clone()));
        }
        for (name, value) in &opts.extra {
            if matches!(name.as_str(), "messages" | "tools" | "documents" | "add_generation_prompt") {
                return Err(Error::ChatTemplate(format!(
                    "RenderOptions::extra may not set `{name}`; it is a render argument of its own"
                )));
            }
            ctx.insert(name.clone(), value.clone());
        }
        template.render(minijinja::Value::from_serialize(&ctx)).map_err(|e| render_error(&e))
    }
}

fn location(e: &minijinja::Error) -> String {
    e.line().map(|l| format!(" at line {l}")).unwrap_or_default()
}

fn compile_error(e: &minijinja::Error) -> Error {
    Error::ChatTemplate(format!("{}{}: {}", e.kind(), location(e), e.detail().unwrap_or_default()))
}

fn render_error(e: &minijinja::Error) -> Error {
    // A `raise_exception` inside a macro or filter may arrive wrapped; find its message.
    let raised = std::iter::successors(Some(e), |e| {
        std::error::Error::source(*e).and_then(|s| s.downcast_ref::<minijinja::Error>())
    })
    .find_map(|e| e.detail().and_then(|d| d.strip_prefix(env::RAISED_PREFIX)).filter(|_| e.kind() == env::RAISED));
    match raised {
        Some(msg) => Error::ChatTemplate(format!("template raised an exception{}: {msg}", location(e))),
        None => {
            let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
            Error::ChatTemplate(format!("render failed{}: {}{detail}", location(e), e.kind()))
        }
    }
}

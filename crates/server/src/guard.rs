//! Guardrails in the server (`prom serve --guard rails.yaml`): the input rails run on the user's
//! messages (chat) or the prompts (completions) before anything reaches the engine; the output
//! rails run on each choice, and on streams through a [`StreamScanner`] per choice, so nothing a
//! blocking or redacting check would catch is sent. A blocked request gets a refusal in OpenAI's
//! shape (`finish_reason: "content_filter"`). Every decision is counted in `/metrics`
//! (`prom_guard_decisions_total{rail, check, action}`) and appended to the audit log.
//!
//! Deliberately out of scope: logprobs of guarded output (token strings would bypass the
//! redactions, so choices carry `logprobs: null` when output rails are on) and canaries for
//! `/v1/completions` (there is no system prompt to hide one in).

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use prom_engine::SamplingParams;
use prom_guard::perplexity::Perplexity;
use prom_guard::{canary, AuditContext, AuditLog, Decision, Guard, Policy, Rail, Signals, StreamScanner};
use serde_json::{json, Value};

use crate::error::{ApiError, Error};
use crate::metrics::Metrics;
use crate::state::State;

/// Tokens per window of the perplexity signal (NeMo's heuristic uses 19-word prefixes/suffixes).
const PERPLEXITY_WINDOW: usize = 20;

/// The configured guard and its audit log.
pub struct ServerGuard {
    guard: Arc<Guard>,
    audit: Option<AuditLog>,
}

impl ServerGuard {
    pub fn new(guard: Arc<Guard>) -> Result<Self, Error> {
        let audit = match &guard.config.audit_log {
            Some(p) => Some(AuditLog::open(p).map_err(|e| Error::Config(format!("--guard: {e}")))?),
            None => None,
        };
        Ok(Self { guard, audit })
    }
}

/// The rails of one request: its policy (by API key and route) and, when the output rails look
/// for one, the canary hidden in its system prompt.
pub struct RequestRails {
    server: Arc<ServerGuard>,
    policy: Policy,
    route: &'static str,
    request_id: String,
    metrics: Arc<Metrics>,
    canary: Option<String>,
}

impl RequestRails {
    pub fn begin(s: &State, headers: &HeaderMap, route: &'static str, request_id: &str) -> Option<Self> {
        let server = Arc::clone(s.guard.as_ref()?);
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let policy = server.guard.policy(key, route).clone();
        Some(Self {
            server,
            policy,
            route,
            request_id: request_id.to_owned(),
            metrics: Arc::clone(&s.metrics),
            canary: None,
        })
    }

    pub fn refusal(&self) -> &str {
        &self.server.guard.config.refusal
    }

    pub fn has_output(&self) -> bool {
        !self.policy.output.is_empty()
    }

    /// Counts and audits decisions.
    fn record(&self, rail: Rail, decisions: &[Decision]) {
        for d in decisions {
            self.metrics.guard_decision(rail.name(), d.check.name(), d.action.name());
        }
        if let Some(log) = &self.server.audit {
            let ctx = AuditContext { request_id: &self.request_id, route: self.route, profile: &self.policy.name };
            if let Err(e) = log.record(&ctx, rail, decisions) {
                tracing::error!("guard audit log: {e}");
            }
        }
    }

    /// Runs the input rails on one text; `Ok(None)` when blocked, else the (redacted) text.
    async fn input_text(&self, s: &State, text: &str) -> Result<Option<String>, ApiError> {
        if self.policy.input.is_empty() || text.is_empty() {
            return Ok(Some(text.to_owned()));
        }
        let perplexity = if self.policy.needs_perplexity() { Some(perplexity(s, text).await?) } else { None };
        let v = self
            .server
            .guard
            .check_input(&self.policy, text, &Signals { perplexity, canary: None })
            .map_err(|e| ApiError::internal(format!("guard: {e}")))?;
        self.record(Rail::Input, &v.decisions);
        Ok((!v.blocked).then_some(v.text))
    }

    /// Input rails over a chat body's user messages, redacting them in place; true when blocked.
    /// Also hides a canary in the system prompt when the output rails look for one.
    pub async fn chat_input(&mut self, s: &State, v: &mut Value) -> Result<bool, ApiError> {
        let Some(messages) = v.get_mut("messages").and_then(Value::as_array_mut) else { return Ok(false) };
        for m in messages.iter_mut().filter(|m| m.get("role").and_then(Value::as_str) == Some("user")) {
            for slot in text_slots(m.get_mut("content")) {
                let Some(text) = slot.as_str().map(str::to_owned) else { continue };
                match self.input_text(s, &text).await? {
                    None => return Ok(true),
                    Some(t) if t != text => *slot = Value::String(t),
                    Some(_) => {}
                }
            }
        }
        if self.policy.wants_canary() {
            let c = canary::new_canary();
            match messages.first_mut() {
                Some(m) if m.get("role").and_then(Value::as_str) == Some("system") => {
                    if let Some(slot) = text_slots(m.get_mut("content")).into_iter().next() {
                        let text = slot.as_str().unwrap_or_default().to_owned();
                        *slot = Value::String(canary::embed(&c, &text));
                    }
                }
                _ => messages.insert(0, json!({"role": "system", "content": canary::embed(&c, "")})),
            }
            self.canary = Some(c);
        }
        Ok(false)
    }

    /// Input rails over a completions body's prompts (strings, or token ids decoded to text);
    /// a redacted prompt is replaced by its text. True when blocked.
    pub async fn completion_input(&mut self, s: &State, v: &mut Value) -> Result<bool, ApiError> {
        let Some(prompt) = v.get_mut("prompt") else { return Ok(false) };
        let mut prompts: Vec<&mut Value> = match prompt {
            Value::Array(items) if items.iter().all(|i| i.is_string() || i.is_array()) => items.iter_mut().collect(),
            other => vec![other],
        };
        for p in prompts.iter_mut() {
            let text = match &**p {
                Value::String(t) => t.clone(),
                Value::Array(ids) => {
                    let ids: Option<Vec<u32>> =
                        ids.iter().map(|i| i.as_u64().and_then(|x| u32::try_from(x).ok())).collect();
                    match ids.and_then(|ids| s.model.tokenizer.decode(&ids, false).ok()) {
                        Some(t) => t,
                        None => continue, // not token ids: the request parser will say why
                    }
                }
                _ => continue,
            };
            match self.input_text(s, &text).await? {
                None => return Ok(true),
                Some(t) if t != text => **p = Value::String(t),
                Some(_) => {}
            }
        }
        Ok(false)
    }

    /// Output rails on a whole choice: (text to send, blocked).
    pub fn output(&self, text: &str) -> Result<(String, bool), ApiError> {
        if self.policy.output.is_empty() {
            return Ok((text.to_owned(), false));
        }
        let signals = Signals { perplexity: None, canary: self.canary.as_deref() };
        let v = self
            .server
            .guard
            .check_output(&self.policy, text, &signals)
            .map_err(|e| ApiError::internal(format!("guard: {e}")))?;
        self.record(Rail::Output, &v.decisions);
        Ok((v.text, v.blocked))
    }

    /// Scanners for `choices` streamed choices.
    pub fn streams(&self, choices: usize) -> OutputStreams<'_> {
        OutputStreams {
            rails: self,
            scanners: (0..choices)
                .map(|_| StreamScanner::new(&self.server.guard, &self.policy, self.canary.clone()))
                .collect(),
            ended: vec![false; choices],
        }
    }
}

/// The output rails of a streamed response, one scanner per choice.
pub struct OutputStreams<'a> {
    rails: &'a RequestRails,
    scanners: Vec<StreamScanner<'a>>,
    ended: Vec<bool>,
}

/// What to send for a delta.
pub struct Guarded {
    pub text: String,
    /// The choice was stopped by a blocking check: send `finish_reason: "content_filter"`.
    pub blocked: bool,
}

impl OutputStreams<'_> {
    /// Feeds choice `i`'s next text (`last` when the engine finished it). `None` once the choice
    /// was blocked: nothing more of it may be sent.
    pub fn feed(&mut self, i: usize, text: &str, last: bool) -> Result<Option<Guarded>, ApiError> {
        let (Some(sc), Some(ended)) = (self.scanners.get_mut(i), self.ended.get_mut(i)) else { return Ok(None) };
        if *ended {
            return Ok(None);
        }
        let err = |e: prom_guard::Error| ApiError::internal(format!("guard: {e}"));
        let mut out = sc.push(text).map_err(err)?;
        if last && !out.blocked {
            let rest = sc.finish().map_err(err)?;
            out.emit.push_str(&rest.emit);
            out.blocked = rest.blocked;
        }
        *ended = last || out.blocked;
        Ok(Some(Guarded { text: out.emit, blocked: out.blocked }))
    }

    /// True when every choice was blocked (the engine's work can stop).
    pub fn all_blocked(&self) -> bool {
        self.ended.iter().all(|&e| e)
    }
}

impl Drop for OutputStreams<'_> {
    fn drop(&mut self) {
        let decisions: Vec<Decision> = self.scanners.iter().flat_map(|s| s.decisions().iter().cloned()).collect();
        self.rails.record(Rail::Output, &decisions);
    }
}

/// The text fields of a message's `content`: the string itself, or each `{"type": "text"}` part.
fn text_slots(content: Option<&mut Value>) -> Vec<&mut Value> {
    match content {
        Some(v @ Value::String(_)) => vec![v],
        Some(Value::Array(parts)) => {
            parts.iter_mut().filter_map(|p| p.get_mut("text").filter(|t| t.is_string())).collect()
        }
        _ => vec![],
    }
}

/// The served model's perplexity of `text`: one engine request asking only for prompt logprobs.
async fn perplexity(s: &State, text: &str) -> Result<Perplexity, ApiError> {
    let ids = s
        .model
        .tokenizer
        .encode(text, true)
        .map_err(|e| ApiError::internal(format!("guard perplexity: tokenizing: {e}")))?;
    let params =
        SamplingParams { max_tokens: 1, temperature: 0.0, prompt_logprobs: Some(0), n: 1, ..SamplingParams::default() };
    let c = s.submit(vec![ids], &params, 0)?.collect(1).await?;
    let lps: Vec<f32> = c.prompt_logprobs.into_iter().flatten().flatten().flatten().map(|t| t.logprob).collect();
    Ok(Perplexity::from_logprobs(&lps, PERPLEXITY_WINDOW))
}

/// A refusal in the endpoint's OpenAI shape: `n` choices with the refusal text and
/// `finish_reason: "content_filter"`, as JSON or as an SSE stream.
pub fn refused(object: &str, id: &str, model: &str, created: u64, v: &Value, refusal: &str) -> Response {
    let n = v.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 128) as usize;
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let chat = object == "chat.completion";
    let usage = json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
    let mut resp = if !stream {
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                if chat {
                    json!({"index": i, "message": {"role": "assistant", "content": refusal, "refusal": refusal},
                           "logprobs": null, "finish_reason": "content_filter"})
                } else {
                    json!({"index": i, "text": refusal, "logprobs": null, "finish_reason": "content_filter"})
                }
            })
            .collect();
        axum::Json(
            json!({"id": id, "object": object, "created": created, "model": model, "choices": choices, "usage": usage}),
        )
        .into_response()
    } else {
        let chunk_object = if chat { "chat.completion.chunk" } else { "text_completion" };
        let include_usage = v.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
        let head = json!({"id": id, "object": chunk_object, "created": created, "model": model});
        let chunk = move |choices: Value| {
            let mut c = head.clone();
            c["choices"] = choices;
            c
        };
        let refusal = refusal.to_owned();
        crate::sse::respond(move |sink| async move {
            for i in 0..n {
                let choice = if chat {
                    json!([{"index": i, "delta": {"role": "assistant", "content": refusal, "refusal": refusal},
                            "logprobs": null, "finish_reason": "content_filter"}])
                } else {
                    json!([{"index": i, "text": refusal, "logprobs": null, "finish_reason": "content_filter"}])
                };
                if !sink.json(&chunk(choice)).await {
                    return;
                }
            }
            if include_usage {
                let mut last = chunk(json!([]));
                last["usage"] = usage;
                if !sink.json(&last).await {
                    return;
                }
            }
            let _ = sink.done().await;
        })
    };
    if let Ok(h) = axum::http::HeaderValue::from_str("blocked") {
        resp.headers_mut().insert("x-prom-guard", h);
    }
    resp
}

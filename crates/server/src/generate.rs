//! Running submitted requests: the engine streams of one HTTP request merged into one, metrics
//! recorded as events pass, and (for non-streaming answers) everything collected per choice.
//!
//! Ownership is the cancellation mechanism: a [`Submitted`] owns the engine streams and the
//! admission permit, so dropping it — because the client went away and the handler future or the
//! SSE task was dropped — aborts every engine request and frees its KV blocks at once.

use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, BoxStream, StreamExt};
use prom_engine::{Event, FinishReason, RequestStream, TokenLogprob, Usage};

use crate::error::ApiError;
use crate::metrics::{Ending, Metrics};
use crate::state::Permit;

/// An HTTP request's engine requests, one per prompt, and its admission permit.
pub struct Submitted {
    pub(crate) streams: Vec<Watched>,
    pub(crate) permit: Permit,
}

/// One engine request with its metrics bookkeeping.
pub struct Watched {
    prompt: usize,
    stream: RequestStream,
    metrics: Arc<Metrics>,
    prompt_len: usize,
    started: bool,
    /// When each of the `n` sequences last produced a token.
    last_token: Vec<Option<Instant>>,
    /// Sequences not yet finished.
    open: usize,
    done: bool,
}

impl Watched {
    pub(crate) fn new(
        prompt: usize,
        stream: RequestStream,
        n: usize,
        prompt_len: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { prompt, stream, metrics, prompt_len, started: false, last_token: vec![None; n], open: n, done: false }
    }

    async fn next(&mut self) -> Option<Event> {
        let e = self.stream.next().await?;
        let m = &self.metrics;
        if !self.started && matches!(e, Event::Delta(_) | Event::PromptLogprobs(_)) {
            // The prompt has been computed.
            self.started = true;
            m.prompt_tokens(self.prompt_len);
        }
        match &e {
            Event::Delta(d) => {
                m.generation_tokens(d.token_ids.len());
                let now = Instant::now();
                if let Some(last) = self.last_token.get_mut(d.index) {
                    if let Some(t) = last.replace(now) {
                        m.inter_token(now - t);
                    }
                }
                if let Some(r) = d.finish_reason {
                    m.ended(r.into(), 1);
                    self.open = self.open.saturating_sub(1);
                }
            }
            Event::Finished { timings, .. } => {
                m.request_done(timings.queued, timings.first_token, timings.total);
                self.done = true;
            }
            Event::Error(_) => {
                m.ended(Ending::Error, self.open);
                self.done = true;
            }
            Event::PromptLogprobs(_) => {}
        }
        Some(e)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.done {
            // Dropping the RequestStream (right after this) aborts the engine request.
            self.metrics.ended(Ending::Abort, self.open);
        }
    }
}

/// An event of the merged stream, tagged with its prompt's index in the batch.
pub type Tagged = (usize, Event);

impl Submitted {
    /// All prompts' events as one stream, in arrival order. The permit lives as long as the stream.
    pub fn merged(self) -> BoxStream<'static, Tagged> {
        let permit = self.permit;
        let per_prompt = self.streams.into_iter().map(|w| {
            stream::unfold(w, |mut w| async move {
                let e = w.next().await?;
                Some(((w.prompt, e), w))
            })
            .boxed()
        });
        let merged = stream::select_all(per_prompt);
        // Keep the permit alive until the merged stream is dropped.
        merged
            .map(move |x| {
                let _ = &permit;
                x
            })
            .boxed()
    }

    /// Runs to the end and gathers each choice (index `prompt * n + i`).
    pub async fn collect(self, n: usize) -> Result<Collected, ApiError> {
        let prompts = self.streams.len();
        let mut out = Collected {
            choices: (0..prompts * n).map(|_| Choice::default()).collect(),
            prompt_logprobs: vec![None; prompts],
            usage: Usage::default(),
        };
        let mut events = self.merged();
        while let Some((p, e)) = events.next().await {
            match e {
                Event::PromptLogprobs(lp) => out.prompt_logprobs[p] = Some(lp),
                Event::Delta(d) => {
                    let Some(c) = out.choices.get_mut(p * n + d.index) else { continue };
                    c.text.push_str(&d.text);
                    c.token_ids.extend_from_slice(&d.token_ids);
                    c.logprobs.extend(d.logprobs);
                    c.finish_reason = d.finish_reason.or(c.finish_reason);
                }
                Event::Finished { usage, .. } => add_usage(&mut out.usage, &usage),
                Event::Error(e) => return Err(ApiError::from_engine(&e)),
            }
        }
        Ok(out)
    }
}

pub fn add_usage(total: &mut Usage, u: &Usage) {
    total.prompt_tokens += u.prompt_tokens;
    total.completion_tokens += u.completion_tokens;
    total.cached_prompt_tokens += u.cached_prompt_tokens;
}

#[derive(Debug, Default)]
pub struct Choice {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Debug)]
pub struct Collected {
    pub choices: Vec<Choice>,
    /// Per prompt, when prompt logprobs were asked for (the first entry is `None`).
    pub prompt_logprobs: Vec<Option<Vec<Option<TokenLogprob>>>>,
    pub usage: Usage,
}

/// OpenAI's `usage` object.
pub fn usage_json(u: &Usage) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
    })
}

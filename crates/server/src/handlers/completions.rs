//! `POST /v1/completions`: choice `prompt * n + i` is the i-th completion of the batch's prompt.

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use prom_engine::{Event, TokenLogprob, Usage};
use serde_json::{json, Value};

use super::{finish_str, log_request, read_body, request_id};
use crate::error::ApiError;
use crate::generate::{add_usage, usage_json, Submitted};
use crate::guard::{self, RequestRails};
use crate::logprobs::CompletionLogprobs;
use crate::protocol::completions::CompletionRequest;
use crate::protocol::parse_body;
use crate::sse;
use crate::state::{unix_now, AppState, State};

pub async fn completions(Extract(s): Extract<AppState>, headers: HeaderMap, b: Body) -> Response {
    run(s, headers, b).await.unwrap_or_else(IntoResponse::into_response)
}

async fn run(s: AppState, headers: HeaderMap, b: Body) -> Result<Response, ApiError> {
    let rid = request_id(&headers);
    let mut v = parse_body(&read_body(&s, &headers, b).await?)?;
    let mut rails = RequestRails::begin(&s, &headers, "/v1/completions", &rid);
    if let Some(r) = rails.as_mut() {
        if r.completion_input(&s, &mut v).await? {
            let id = format!("cmpl-{rid}");
            return Ok(guard::refused("text_completion", &id, &s.model.name, unix_now(), &v, r.refusal()));
        }
    }
    let req = CompletionRequest::parse(&v, &s.view())?;
    let tokens: usize = req.prompts.iter().map(|p| p.ids.len()).sum();
    log_request(&s, "completions", tokens, &req.params, || {
        req.prompts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join("\u{241E}")
    });
    let ids = req.prompts.iter().map(|p| p.ids.clone()).collect();
    let sub = s.submit(ids, &req.params, req.priority)?;
    let head = Head { id: format!("cmpl-{rid}"), created: unix_now(), model: s.model.name.clone() };
    if req.stream {
        return Ok(stream(s, sub, head, req, rails));
    }
    let n = req.params.n;
    let c = sub.collect(n).await?;
    let tok = &s.model.tokenizer;
    let guarded = rails.as_ref().filter(|r| r.has_output());
    let mut choices = Vec::with_capacity(c.choices.len());
    for (idx, ch) in c.choices.iter().enumerate() {
        let p = &req.prompts[idx / n];
        let mut text = if req.echo { p.text.clone() } else { String::new() };
        let mut blocked = false;
        if !req.echo_only {
            let (out, b) = match guarded {
                Some(r) => r.output(&ch.text)?,
                None => (ch.text.clone(), false),
            };
            text.push_str(&out);
            blocked = b;
        }
        // Token strings would bypass the output rails' redactions.
        let logprobs = req.logprobs.filter(|_| guarded.is_none()).map(|_| {
            let mut lp = CompletionLogprobs::default();
            let mut offset = 0;
            if req.echo {
                lp.push_prompt(tok, &p.ids, c.prompt_logprobs[idx / n].as_deref().unwrap_or(&[]), &mut offset);
            }
            if !req.echo_only {
                for l in &ch.logprobs {
                    lp.push(tok, l, &mut offset);
                }
            }
            lp.to_json()
        });
        let finish = if blocked {
            Some("content_filter")
        } else if req.echo_only {
            Some("length")
        } else {
            finish_str(ch.finish_reason)
        };
        choices.push(json!({"index": idx, "text": text, "logprobs": logprobs, "finish_reason": finish}));
    }
    let usage = reported_usage(&req, c.usage);
    tracing::info!(prompt_tokens = usage.prompt_tokens, completion_tokens = usage.completion_tokens, "done");
    Ok(axum::Json(json!({
        "id": head.id,
        "object": "text_completion",
        "created": head.created,
        "model": head.model,
        "choices": choices,
        "usage": usage_json(&usage),
    }))
    .into_response())
}

/// `echo` with `max_tokens: 0` generated nothing as far as the client is concerned.
fn reported_usage(req: &CompletionRequest, mut u: Usage) -> Usage {
    if req.echo_only {
        u.completion_tokens = 0;
    }
    u
}

struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "text_completion", "created": self.created, "model": self.model, "choices": choices})
    }

    fn choice(&self, index: usize, text: &str, logprobs: Option<Value>, finish: Option<&str>) -> Value {
        self.chunk(json!([{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]))
    }
}

/// The echo chunk of choice `idx`: the prompt's text, and its logprobs when asked for.
fn echo_chunk(
    s: &State,
    head: &Head,
    req: &CompletionRequest,
    idx: usize,
    lps: Option<&[Option<TokenLogprob>]>,
    offset: &mut usize,
) -> Value {
    let p = &req.prompts[idx / req.params.n];
    let logprobs = req.logprobs.map(|_| {
        let mut lp = CompletionLogprobs::default();
        lp.push_prompt(&s.model.tokenizer, &p.ids, lps.unwrap_or(&[]), offset);
        lp.to_json()
    });
    head.choice(idx, &p.text, logprobs, None)
}

fn stream(s: AppState, sub: Submitted, head: Head, req: CompletionRequest, rails: Option<RequestRails>) -> Response {
    sse::respond(move |sink| async move {
        let n = req.params.n;
        let mut outs = rails.as_ref().filter(|r| r.has_output()).map(|r| r.streams(req.prompts.len() * n));
        let want_logprobs = req.logprobs.filter(|_| outs.is_none());
        let mut offsets = vec![0usize; req.prompts.len() * n];
        // Without logprobs the echo needs nothing from the engine: send it first.
        if req.echo && req.logprobs.is_none() {
            for (idx, off) in offsets.iter_mut().enumerate() {
                if !sink.json(&echo_chunk(&s, &head, &req, idx, None, off)).await {
                    return;
                }
            }
        }
        let tok = &s.model.tokenizer;
        let mut usage = Usage::default();
        let mut events = sub.merged();
        while let Some((p, e)) = events.next().await {
            match e {
                Event::PromptLogprobs(lps) if req.echo => {
                    for (idx, off) in offsets.iter_mut().enumerate().skip(p * n).take(n) {
                        if !sink.json(&echo_chunk(&s, &head, &req, idx, Some(&lps), off)).await {
                            return;
                        }
                    }
                }
                Event::Delta(d) => {
                    let idx = p * n + d.index;
                    let mut finish =
                        if req.echo_only { d.finish_reason.map(|_| "length") } else { finish_str(d.finish_reason) };
                    let (mut text, lps) = if req.echo_only { (String::new(), vec![]) } else { (d.text, d.logprobs) };
                    if let Some(o) = outs.as_mut().filter(|_| !req.echo_only) {
                        match o.feed(idx, &text, d.finish_reason.is_some()) {
                            Ok(Some(g)) => {
                                text = g.text;
                                if g.blocked {
                                    finish = Some("content_filter");
                                }
                            }
                            Ok(None) => continue, // this choice was stopped by a rail
                            Err(e) => {
                                let _ = sink.json(&e.body()).await;
                                break;
                            }
                        }
                    }
                    let has_logprobs = want_logprobs.is_some() && !lps.is_empty();
                    if text.is_empty() && finish.is_none() && !has_logprobs {
                        continue;
                    }
                    let logprobs = want_logprobs.map(|_| {
                        let mut lp = CompletionLogprobs::default();
                        for l in &lps {
                            lp.push(tok, l, &mut offsets[idx]);
                        }
                        lp.to_json()
                    });
                    if !sink.json(&head.choice(idx, &text, logprobs, finish)).await {
                        return;
                    }
                    if outs.as_ref().is_some_and(|o| o.all_blocked()) {
                        break; // every choice was stopped: abort the engine's work
                    }
                }
                Event::Finished { usage: u, .. } => add_usage(&mut usage, &u),
                Event::Error(e) => {
                    tracing::warn!("request failed mid-stream: {e}");
                    let _ = sink.json(&ApiError::from_engine(&e).body()).await;
                    break;
                }
                Event::PromptLogprobs(_) => {}
            }
        }
        drop(events);
        drop(outs); // records the output rails' decisions
        let usage = reported_usage(&req, usage);
        tracing::info!(prompt_tokens = usage.prompt_tokens, completion_tokens = usage.completion_tokens, "done");
        if req.include_usage {
            let mut last = head.chunk(json!([]));
            last["usage"] = usage_json(&usage);
            if !sink.json(&last).await {
                return;
            }
        }
        let _ = sink.done().await;
    })
}

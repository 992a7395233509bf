//! `POST /v1/chat/completions`.

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use prom_engine::{Event, Usage};
use serde_json::{json, Value};

use super::{finish_str, log_request, read_body, request_id};
use crate::error::ApiError;
use crate::generate::{add_usage, usage_json, Submitted};
use crate::guard::{self, RequestRails};
use crate::logprobs::chat_content;
use crate::protocol::chat::ChatRequest;
use crate::protocol::parse_body;
use crate::sse;
use crate::state::{unix_now, AppState};

pub async fn chat_completions(Extract(s): Extract<AppState>, headers: HeaderMap, b: Body) -> Response {
    run(s, headers, b).await.unwrap_or_else(IntoResponse::into_response)
}

async fn run(s: AppState, headers: HeaderMap, b: Body) -> Result<Response, ApiError> {
    let rid = request_id(&headers);
    let mut v = parse_body(&read_body(&s, &headers, b).await?)?;
    let mut rails = RequestRails::begin(&s, &headers, "/v1/chat/completions", &rid);
    if let Some(r) = rails.as_mut() {
        if r.chat_input(&s, &mut v).await? {
            let id = format!("chatcmpl-{rid}");
            return Ok(guard::refused("chat.completion", &id, &s.model.name, unix_now(), &v, r.refusal()));
        }
    }
    let req = ChatRequest::parse(&v, &s.view())?;
    log_request(&s, "chat", req.prompt.len(), &req.params, || req.prompt_text.clone());
    let sub = s.submit(vec![req.prompt.clone()], &req.params, req.priority)?;
    let head = Head { id: format!("chatcmpl-{rid}"), created: unix_now(), model: s.model.name.clone() };
    if req.stream {
        return Ok(stream(s, sub, head, req, rails));
    }
    let c = sub.collect(req.params.n).await?;
    let tok = &s.model.tokenizer;
    let guarded = rails.as_ref().filter(|r| r.has_output());
    let mut choices: Vec<Value> = Vec::with_capacity(c.choices.len());
    for (i, ch) in c.choices.iter().enumerate() {
        let (content, blocked) = match guarded {
            Some(r) => r.output(&ch.text)?,
            None => (ch.text.clone(), false),
        };
        // Token strings would bypass the output rails' redactions.
        let top_logprobs = req.top_logprobs.filter(|_| guarded.is_none());
        choices.push(json!({
            "index": i,
            "message": {"role": "assistant", "content": content},
            "logprobs": top_logprobs.map(|k| json!({"content": chat_content(tok, &ch.logprobs, k), "refusal": null})),
            "finish_reason": if blocked { Some("content_filter") } else { finish_str(ch.finish_reason) },
        }));
    }
    tracing::info!(prompt_tokens = c.usage.prompt_tokens, completion_tokens = c.usage.completion_tokens, "done");
    Ok(axum::Json(json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": choices,
        "usage": usage_json(&c.usage),
    }))
    .into_response())
}

struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": choices})
    }
}

fn stream(s: AppState, sub: Submitted, head: Head, req: ChatRequest, rails: Option<RequestRails>) -> Response {
    sse::respond(move |sink| async move {
        let mut outs = rails.as_ref().filter(|r| r.has_output()).map(|r| r.streams(req.params.n));
        let top_logprobs = req.top_logprobs.filter(|_| outs.is_none());
        for i in 0..req.params.n {
            let first = json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]);
            if !sink.json(&head.chunk(first)).await {
                return;
            }
        }
        let tok = &s.model.tokenizer;
        let mut usage = Usage::default();
        let mut events = sub.merged();
        while let Some((_, e)) = events.next().await {
            match e {
                Event::Delta(d) => {
                    let (text, blocked) = match outs.as_mut() {
                        Some(o) => match o.feed(d.index, &d.text, d.finish_reason.is_some()) {
                            Ok(Some(g)) => (g.text, g.blocked),
                            Ok(None) => continue, // this choice was stopped by a rail
                            Err(e) => {
                                let _ = sink.json(&e.body()).await;
                                break;
                            }
                        },
                        None => (d.text, false),
                    };
                    let finish = if blocked { Some("content_filter") } else { finish_str(d.finish_reason) };
                    let has_logprobs = top_logprobs.is_some() && !d.logprobs.is_empty();
                    if text.is_empty() && finish.is_none() && !has_logprobs {
                        continue; // held back (a partial character, a possible stop string, a rail's lookback)
                    }
                    let delta = if text.is_empty() { json!({}) } else { json!({"content": text}) };
                    let choice = json!([{
                        "index": d.index,
                        "delta": delta,
                        "logprobs": top_logprobs.map(|k| json!({"content": chat_content(tok, &d.logprobs, k), "refusal": null})),
                        "finish_reason": finish,
                    }]);
                    if !sink.json(&head.chunk(choice)).await {
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
        drop(events); // finished: release the admission permit before the last writes
        drop(outs); // records the output rails' decisions
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

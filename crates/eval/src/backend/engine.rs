//! The in-process backend: requests go straight into a running [`prom_engine::Engine`], many in
//! flight at once so the scheduler batches them (no HTTP, no copies of the model).
//!
//! A score request is the whole sequence as a prompt with `prompt_logprobs` and one generated
//! token; its stream is dropped (aborting the request) as soon as the prompt logprobs arrive.
//! Known cost: the engine computes prompt logprobs only for prompts it prefills itself, so
//! requests that ask for them skip the prefix cache and choices sharing a long few-shot context
//! recompute it (an engine API that scores "from position k on" would lift that).

use std::collections::VecDeque;
use std::sync::Arc;

use prom_engine::{Engine, Event, Request, RequestStream, SamplingParams};
use prom_models::Tokenizer;

use super::{cut_at_stop, Backend, GenRequest, Progress, ScoreRequest, Scored};
use crate::{EvalError, Result};

pub struct EngineBackend {
    engine: Engine,
    tokenizer: Arc<Tokenizer>,
    name: String,
    /// Ids that end generation besides the stop strings (the model's EOS ids).
    stop_token_ids: Vec<u32>,
    /// Requests kept in flight.
    window: usize,
}

impl EngineBackend {
    pub fn new(engine: Engine, tokenizer: Arc<Tokenizer>, name: String, stop_token_ids: Vec<u32>) -> Self {
        Self { engine, tokenizer, name, stop_token_ids, window: 256 }
    }

    /// Submits `make(i)` for i in 0..n with at most `window` in flight, handing each finished
    /// stream to `finish` in order.
    fn pipeline<T>(
        &self,
        n: usize,
        make: impl Fn(usize) -> Result<Request>,
        finish: impl Fn(usize, RequestStream) -> Result<T>,
        progress: Progress,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(n);
        let mut inflight: VecDeque<(usize, RequestStream)> = VecDeque::new();
        let mut next = 0;
        while out.len() < n {
            while next < n && inflight.len() < self.window {
                let s =
                    self.engine.submit(make(next)?).map_err(|e| EvalError::Backend(format!("request {next}: {e}")))?;
                inflight.push_back((next, s));
                next += 1;
            }
            let Some((i, s)) = inflight.pop_front() else { break };
            out.push(finish(i, s)?);
            progress(1);
        }
        Ok(out)
    }
}

fn sum_continuation(lps: &[Option<prom_engine::TokenLogprob>], ctx_len: usize) -> Result<Scored> {
    let mut s = Scored { logprob: 0.0, is_greedy: true };
    for lp in lps.iter().skip(ctx_len) {
        let lp = lp
            .as_ref()
            .ok_or_else(|| EvalError::Backend("the engine returned no logprob for a continuation token".into()))?;
        s.logprob += f64::from(lp.logprob);
        s.is_greedy &= lp.rank == 1;
    }
    Ok(s)
}

impl Backend for EngineBackend {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, false).map_err(|e| EvalError::Backend(format!("tokenizing: {e}")))
    }

    fn prefix_token(&self) -> Result<u32> {
        self.tokenizer.bos_token_id().or(self.tokenizer.eos_token_id()).ok_or_else(|| {
            EvalError::Backend("the tokenizer has neither a BOS nor an EOS token to stand for an empty context".into())
        })
    }

    /// The prompt plus the one token the engine generates must fit the context.
    fn max_length(&self) -> usize {
        self.engine.info().max_model_len.saturating_sub(1).max(2)
    }

    fn score(&self, reqs: &[ScoreRequest], progress: Progress) -> Result<Vec<Scored>> {
        let params = SamplingParams { max_tokens: 1, prompt_logprobs: Some(0), ..SamplingParams::greedy() };
        self.pipeline(
            reqs.len(),
            |i| Ok(Request::new(reqs[i].tokens.clone(), params.clone())),
            |i, mut s| loop {
                match s.blocking_next() {
                    Some(Event::PromptLogprobs(lps)) => return sum_continuation(&lps, reqs[i].ctx_len),
                    Some(Event::Error(e)) => return Err(EvalError::Backend(format!("score request {i}: {e}"))),
                    Some(_) => {}
                    None => return Err(EvalError::Backend(format!("score request {i} ended without prompt logprobs"))),
                }
            },
            progress,
        )
    }

    fn generate(&self, reqs: &[GenRequest], progress: Progress) -> Result<Vec<String>> {
        let max_len = self.engine.info().max_model_len;
        self.pipeline(
            reqs.len(),
            |i| {
                let r = &reqs[i];
                let max_new = r.max_gen_toks.clamp(1, max_len.saturating_sub(1).max(1));
                let mut prompt = self.encode(&r.context)?;
                // Left-truncate so the prompt leaves room for max_new tokens (lm-eval does the same).
                let keep = max_len.saturating_sub(max_new).max(1);
                if prompt.len() > keep {
                    prompt.drain(..prompt.len() - keep);
                }
                if prompt.is_empty() {
                    prompt.push(self.prefix_token()?);
                }
                let params = SamplingParams {
                    max_tokens: max_new,
                    temperature: r.temperature,
                    top_p: r.top_p,
                    seed: r.seed,
                    stop: r.until.iter().filter(|s| !s.is_empty()).cloned().collect(),
                    stop_token_ids: self.stop_token_ids.clone(),
                    ..SamplingParams::default()
                };
                Ok(Request::new(prompt, params))
            },
            |i, mut s| {
                let mut text = String::new();
                loop {
                    match s.blocking_next() {
                        Some(Event::Delta(d)) => text.push_str(&d.text),
                        Some(Event::Finished { .. }) | None => return Ok(cut_at_stop(&text, &reqs[i].until)),
                        Some(Event::Error(e)) => return Err(EvalError::Backend(format!("generate request {i}: {e}"))),
                        Some(Event::PromptLogprobs(_)) => {}
                    }
                }
            },
            progress,
        )
    }
}

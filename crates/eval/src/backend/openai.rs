//! Any OpenAI-compatible `/v1/completions` endpoint (ours, vLLM, llama-server), spoken to the
//! way lm-eval's `local-completions` does: prompts as token ids, `echo: true`, `logprobs: 1`,
//! `max_tokens: 1`, temperature 0; the continuation's logprobs are
//! `token_logprobs[ctx_len..prompt_len]` and it is greedy when each equals the top logprob.
//! Tokenization is remote (vLLM's `POST /tokenize`, or llama-server's `{"content"}` shape) so
//! the ids are the server's own. A server that does not echo prompt logprobs is an error, not
//! a silent chance-level score.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value as Json};

use super::{cut_at_stop, Backend, GenRequest, Progress, ScoreRequest, Scored};
use crate::{EvalError, Result};

pub struct OpenAiBackend {
    base: String,
    model: String,
    agent: ureq::Agent,
    api_key: Option<String>,
    /// Prompts per HTTP request.
    batch: usize,
    /// HTTP requests in flight.
    concurrency: usize,
    max_length: usize,
    prefix: Mutex<Option<u32>>,
}

fn backend_err(what: &str, e: impl std::fmt::Display) -> EvalError {
    EvalError::Backend(format!("{what}: {e}"))
}

impl OpenAiBackend {
    /// `url` is the server root, `…/v1` or `…/v1/completions`. `model` is sent as `model`;
    /// `None` takes the first of `GET /v1/models`.
    pub fn connect(url: &str, model: Option<String>, api_key: Option<String>, concurrency: usize) -> Result<Self> {
        let mut base = url.trim_end_matches('/').to_string();
        for suffix in ["/completions", "/v1"] {
            if let Some(b) = base.strip_suffix(suffix) {
                base = b.to_string();
            }
        }
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(300)).build();
        let mut me = Self {
            base,
            model: String::new(),
            agent,
            api_key,
            batch: 16,
            concurrency: concurrency.max(1),
            max_length: 2048,
            prefix: Mutex::new(None),
        };
        let models = me.get("/v1/models")?;
        let first = models.get("data").and_then(|d| d.get(0));
        me.model = match model {
            Some(m) => m,
            None => first.and_then(|m| m.get("id")).and_then(Json::as_str).map(str::to_string).ok_or_else(|| {
                EvalError::Backend(format!("{}/v1/models lists no model; pass the model name", me.base))
            })?,
        };
        if let Some(n) = first.and_then(|m| m.get("max_model_len")).and_then(Json::as_u64) {
            me.max_length = (n as usize).saturating_sub(1).max(2);
        }
        Ok(me)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.api_key {
            Some(k) => r.set("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    fn get(&self, path: &str) -> Result<Json> {
        let r = self.request("GET", path).call().map_err(|e| backend_err(&format!("GET {}{path}", self.base), e))?;
        r.into_json().map_err(|e| backend_err(path, e))
    }

    fn post(&self, path: &str, body: &Json) -> Result<Json> {
        let mut last = None;
        // lm-eval retries 3 times; so do we, for transport errors and 5xx.
        for attempt in 0..3 {
            match self.request("POST", path).send_json(body.clone()) {
                Ok(r) => return r.into_json().map_err(|e| backend_err(path, e)),
                Err(ureq::Error::Status(code, r)) if code < 500 => {
                    let text = r.into_string().unwrap_or_default();
                    return Err(EvalError::Backend(format!("POST {}{path}: HTTP {code}: {text}", self.base)));
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
        Err(backend_err(&format!("POST {}{path}", self.base), last.map_or("failed".into(), |e| e.to_string())))
    }

    /// Runs `f` over `chunks` of the items, `concurrency` at a time, keeping the order.
    fn fan_out<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&[T]) -> Result<Vec<R>> + Sync,
        progress: Progress,
    ) -> Result<Vec<R>> {
        let chunks: Vec<&[T]> = items.chunks(self.batch).collect();
        let results: Vec<Mutex<Option<Result<Vec<R>>>>> = chunks.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.concurrency.min(chunks.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = chunks.get(i) else { break };
                    let r = f(c);
                    if r.is_ok() {
                        progress(c.len());
                    }
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        let mut out = Vec::with_capacity(items.len());
        for r in results {
            let r = r.into_inner().unwrap_or_else(|e| e.into_inner());
            out.extend(r.ok_or_else(|| EvalError::Backend("a batch was never run".into()))??);
        }
        Ok(out)
    }

    fn choices(resp: &Json, n: usize) -> Result<Vec<&Json>> {
        let mut c: Vec<&Json> =
            resp.get("choices").and_then(Json::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        c.sort_by_key(|x| x.get("index").and_then(Json::as_u64).unwrap_or(0));
        if c.len() != n {
            return Err(EvalError::Backend(format!("asked for {n} completions, the server returned {}", c.len())));
        }
        Ok(c)
    }
}

fn parse_scored(choice: &Json, r: &ScoreRequest) -> Result<Scored> {
    let lp = choice.get("logprobs").filter(|v| !v.is_null()).ok_or_else(|| {
        EvalError::Backend(
            "the server returned no logprobs: it must support `echo` with `logprobs` on /v1/completions".into(),
        )
    })?;
    let tl = lp.get("token_logprobs").and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default();
    let top = lp.get("top_logprobs").and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default();
    if tl.len() < r.tokens.len() {
        return Err(EvalError::Backend(format!(
            "the server echoed {} token logprobs for a {}-token prompt (no prompt logprobs with echo?)",
            tl.len(),
            r.tokens.len()
        )));
    }
    let mut s = Scored { logprob: 0.0, is_greedy: true };
    for t in r.ctx_len..r.tokens.len() {
        let x = tl[t].as_f64().ok_or_else(|| EvalError::Backend(format!("token_logprobs[{t}] is not a number")))?;
        s.logprob += x;
        let best = top
            .get(t)
            .and_then(Json::as_object)
            .map(|m| m.values().filter_map(Json::as_f64).fold(f64::NEG_INFINITY, f64::max));
        s.is_greedy &= best.is_some_and(|b| x >= b);
    }
    Ok(s)
}

impl Backend for OpenAiBackend {
    fn describe(&self) -> String {
        format!("{} at {}", self.model, self.base)
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let ids = |v: &Json| -> Option<Vec<u32>> {
            v.get("tokens")?.as_array()?.iter().map(|t| t.as_u64().map(|x| x as u32)).collect()
        };
        let vllm = self.post("/tokenize", &json!({"model": self.model, "prompt": text, "add_special_tokens": false}));
        if let Ok(Some(t)) = vllm.as_ref().map(ids) {
            return Ok(t);
        }
        let llama = self.post("/tokenize", &json!({"content": text, "add_special": false}))?;
        ids(&llama).ok_or_else(|| {
            EvalError::Backend(format!("{}/tokenize returned no `tokens` (vLLM or llama-server shape)", self.base))
        })
    }

    fn prefix_token(&self) -> Result<u32> {
        let mut cached = self.prefix.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = *cached {
            return Ok(t);
        }
        let info = self.get("/tokenizer_info")?;
        let id =
            ["bos_token_id", "eos_token_id"].iter().find_map(|k| info.get(k).and_then(Json::as_u64)).map(|x| x as u32);
        let id = match id {
            Some(i) => i,
            None => {
                let tok = ["bos_token", "eos_token"]
                    .iter()
                    .find_map(|k| info.get(k).and_then(Json::as_str))
                    .ok_or_else(|| EvalError::Backend("/tokenizer_info names neither a BOS nor an EOS token".into()))?;
                *self.encode(tok)?.first().ok_or_else(|| EvalError::Backend(format!("{tok:?} tokenizes to nothing")))?
            }
        };
        *cached = Some(id);
        Ok(id)
    }

    fn max_length(&self) -> usize {
        self.max_length
    }

    fn score(&self, reqs: &[ScoreRequest], progress: Progress) -> Result<Vec<Scored>> {
        self.fan_out(
            reqs,
            |chunk| {
                let prompts: Vec<&Vec<u32>> = chunk.iter().map(|r| &r.tokens).collect();
                let body = json!({"model": self.model, "prompt": prompts, "max_tokens": 1, "temperature": 0.0,
                                  "logprobs": 1, "echo": true, "seed": 1234});
                let resp = self.post("/v1/completions", &body)?;
                Self::choices(&resp, chunk.len())?.into_iter().zip(chunk).map(|(c, r)| parse_scored(c, r)).collect()
            },
            progress,
        )
    }

    fn generate(&self, reqs: &[GenRequest], progress: Progress) -> Result<Vec<String>> {
        let encoded: Vec<(Vec<u32>, &GenRequest)> =
            reqs.iter().map(|r| Ok((self.encode(&r.context)?, r))).collect::<Result<_>>()?;
        self.fan_out(
            &encoded,
            |chunk| {
                // Requests with different settings cannot share one HTTP call; send one each.
                chunk
                    .iter()
                    .map(|(prompt, r)| {
                        let keep = self.max_length.saturating_sub(r.max_gen_toks).max(1);
                        let prompt = &prompt[prompt.len().saturating_sub(keep)..];
                        let mut body = json!({"model": self.model, "prompt": prompt, "max_tokens": r.max_gen_toks,
                                              "temperature": r.temperature, "top_p": r.top_p});
                        if !r.until.is_empty() {
                            // OpenAI accepts at most 4 stop strings; the rest are cut here.
                            body["stop"] = json!(r.until.iter().take(4).collect::<Vec<_>>());
                        }
                        if let Some(s) = r.seed {
                            body["seed"] = json!(s);
                        }
                        let resp = self.post("/v1/completions", &body)?;
                        let text = Self::choices(&resp, 1)?[0]
                            .get("text")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string();
                        Ok(cut_at_stop(&text, &r.until))
                    })
                    .collect()
            },
            progress,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_echoed_logprobs_like_lm_eval() {
        // 4 prompt tokens + 1 generated; continuation = the last 2 prompt tokens.
        let choice = json!({"logprobs": {
            "token_logprobs": [null, -1.0, -0.5, -0.25, -3.0],
            "top_logprobs": [null, {"a": -1.0}, {"b": -0.5}, {"c": -0.1, "d": -0.25}, {"e": -3.0}]
        }});
        let r = ScoreRequest { tokens: vec![1, 2, 3, 4], ctx_len: 2 };
        let s = parse_scored(&choice, &r).unwrap();
        assert_eq!(s.logprob, -0.75);
        assert!(!s.is_greedy, "token 3 was not the top choice");
        let no_echo = json!({"logprobs": {"token_logprobs": [-3.0], "top_logprobs": [{"e": -3.0}]}});
        assert!(parse_scored(&no_echo, &r).unwrap_err().to_string().contains("echoed 1"));
        assert!(parse_scored(&json!({"logprobs": null}), &r).unwrap_err().to_string().contains("echo"));
    }
}

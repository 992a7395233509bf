//! `prom bench serve`: load-tests any OpenAI-compatible server the way `vllm bench serve` does.
//!
//! Requests arrive as a Poisson process at `--request-rate` (exponential gaps from a seeded
//! generator; `inf` sends them all at once), at most `--max-concurrency` in flight. Every request
//! streams; per request we record the time to the first content chunk (TTFT), the gap before
//! every later content chunk (ITL), the end-to-end latency and, from the final `usage` chunk
//! (`stream_options.include_usage`), the prompt and completion token counts; a server that sends
//! no usage gets its content chunks counted instead (llama-server streams one token per chunk).
//! TPOT is `(latency − TTFT) / (output tokens − 1)`. Throughputs divide by the wall time from the
//! first send to the last response.
//!
//! Prompts: `--dataset-path` (JSONL with a `prompt` and optional `max_tokens`/`output_len` per
//! line, or plain text with one prompt per line), or random ones: `--random-input-len` token ids
//! drawn uniformly from [1000, 31000) — inside every common vocabulary and clear of the special
//! tokens at either end — sent as a token-id prompt, so the server sees exactly that many tokens
//! (no decode/re-encode drift as with text). Random prompts need `/v1/completions`.
//!
//! One blocking thread per request in flight (ureq): at the concurrencies a CPU server takes,
//! threads are simpler than an async runtime and time just as well. Out of scope: TLS, goodput
//! SLOs, burstiness other than Poisson.

use std::io::{BufRead, BufReader};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::stats::{mean, median, percentile, std_population};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Server root, e.g. http://127.0.0.1:8000.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    base_url: String,
    /// `/v1/completions` or `/v1/chat/completions`.
    #[arg(long, default_value = "/v1/completions")]
    endpoint: String,
    /// Model name sent with each request (default: the first one `/v1/models` lists).
    #[arg(long)]
    model: Option<String>,
    /// Bearer token (default: $OPENAI_API_KEY when set).
    #[arg(long)]
    api_key: Option<String>,
    /// Requests to send.
    #[arg(long, default_value_t = 100)]
    num_prompts: usize,
    /// Poisson arrival rate in requests/s; `inf` sends every request at once.
    #[arg(long, default_value = "inf")]
    request_rate: f64,
    /// Most requests in flight at once (default: no limit).
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Prompts from a file: JSONL (`{"prompt": "...", "max_tokens": N}`) or one per line.
    /// Without it prompts are random token ids.
    #[arg(long)]
    dataset_path: Option<std::path::PathBuf>,
    /// Random prompts: tokens per prompt.
    #[arg(long, default_value_t = 256)]
    random_input_len: usize,
    /// Output tokens per request (random prompts, and file prompts without `max_tokens`).
    #[arg(long, default_value_t = 128)]
    random_output_len: usize,
    /// Random lengths spread uniformly over len·[1 − r, 1 + r].
    #[arg(long, default_value_t = 0.0)]
    random_range_ratio: f64,
    /// Keep generating past EOS, so every request produces its full output length.
    #[arg(long)]
    ignore_eos: bool,
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Seed of the random prompts and of the arrival times.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Percentiles to report, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "99")]
    percentiles: Vec<f64>,
    /// Print only the JSON result.
    #[arg(long)]
    json: bool,
}

/// One request to send.
struct Prompt {
    /// A string, or a list of token ids.
    prompt: Value,
    /// Tokens in the prompt when known before sending (token-id prompts).
    len: Option<usize>,
    max_tokens: usize,
}

/// What one request measured.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
    prompt_tokens: usize,
    output_tokens: usize,
    /// The server reported usage (else `output_tokens` counts content chunks).
    usage: bool,
    ttft: f64,
    itl: Vec<f64>,
    latency: f64,
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.num_prompts > 0, "`--num-prompts` must be >= 1. Given: 0");
    anyhow::ensure!(a.request_rate > 0.0, "`--request-rate` must be > 0 (or inf). Given: {}", a.request_rate);
    anyhow::ensure!(a.max_concurrency != Some(0), "`--max-concurrency` must be >= 1. Given: 0");
    anyhow::ensure!(
        (0.0..1.0).contains(&a.random_range_ratio),
        "`--random-range-ratio` must be in [0, 1). Given: {}",
        a.random_range_ratio
    );
    let chat = a.endpoint.trim_end_matches('/').ends_with("chat/completions");
    let prompts = prompts(&a)?;
    anyhow::ensure!(
        !(chat && a.dataset_path.is_none()),
        "random prompts are token ids, which `{}` cannot take; use /v1/completions or --dataset-path",
        a.endpoint
    );
    let base = a.base_url.trim_end_matches('/').to_owned();
    let key = a.api_key.clone().or_else(|| std::env::var("OPENAI_API_KEY").ok());
    let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(10)).build();
    let model = match &a.model {
        Some(m) => m.clone(),
        None => first_model(&agent, &base, key.as_deref())?,
    };
    let client = Client { agent, url: format!("{base}{}", a.endpoint), key, model, chat, a: &a };
    // One short request first: checks the endpoint and warms the server; not counted.
    let probe = Prompt { prompt: prompts[0].prompt.clone(), len: prompts[0].len, max_tokens: 2 };
    if let Some(e) = client.send(&probe).error {
        anyhow::bail!("the test request to {} failed: {e}", client.url);
    }
    if !a.json {
        println!(
            "{} requests to {} (model `{}`), rate {}, max concurrency {}",
            prompts.len(),
            client.url,
            client.model,
            a.request_rate,
            a.max_concurrency.map_or("unlimited".into(), |c| c.to_string())
        );
    }
    let (outcomes, duration) = dispatch(&client, &prompts, &a);
    let report = report(&a, &client, &outcomes, duration);
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report, &a.percentiles);
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    anyhow::ensure!(failed < outcomes.len(), "every request failed (first error: {})", report["errors"][0]);
    Ok(())
}

/// The prompts, in sending order.
fn prompts(a: &Args) -> Result<Vec<Prompt>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let mut len = |l: usize| -> usize {
        let r = a.random_range_ratio;
        let (lo, hi) = (((l as f64) * (1.0 - r)).floor() as usize, ((l as f64) * (1.0 + r)).ceil() as usize);
        rng.random_range(lo.max(1)..=hi.max(1))
    };
    let Some(path) = &a.dataset_path else {
        let mut ids = rand::rngs::StdRng::seed_from_u64(a.seed ^ 0x1d5);
        return Ok((0..a.num_prompts)
            .map(|_| {
                let (n, max_tokens) = (len(a.random_input_len), len(a.random_output_len));
                let p: Vec<u32> = (0..n).map(|_| ids.random_range(1000..31000)).collect();
                Prompt { prompt: json!(p), len: Some(n), max_tokens }
            })
            .collect());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut file = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let p = match serde_json::from_str::<Value>(line) {
            Ok(v @ Value::Object(_)) => {
                let prompt = v
                    .get("prompt")
                    .filter(|p| p.is_string())
                    .cloned()
                    .with_context(|| format!("{}: a JSON line needs a string `prompt`", at()))?;
                let max = v.get("max_tokens").or_else(|| v.get("output_len"));
                let max_tokens = match max {
                    None => a.random_output_len,
                    Some(m) => m
                        .as_u64()
                        .filter(|&m| m > 0)
                        .with_context(|| format!("{}: `max_tokens` must be an integer >= 1. Given: {m}", at()))?
                        as usize,
                };
                Prompt { prompt, len: None, max_tokens }
            }
            _ => Prompt { prompt: json!(line), len: None, max_tokens: a.random_output_len },
        };
        file.push(p);
    }
    anyhow::ensure!(!file.is_empty(), "{} has no prompts", path.display());
    // Cycle through the file to `--num-prompts`, as vLLM samples a dataset.
    Ok((0..a.num_prompts)
        .map(|i| {
            let p = &file[i % file.len()];
            Prompt { prompt: p.prompt.clone(), len: p.len, max_tokens: p.max_tokens }
        })
        .collect())
}

fn first_model(agent: &ureq::Agent, base: &str, key: Option<&str>) -> Result<String> {
    let url = format!("{base}/v1/models");
    let mut req = agent.get(&url);
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    let v: Value = req.call().with_context(|| format!("GET {url}"))?.into_json().context("reading /v1/models")?;
    v["data"][0]["id"].as_str().map(str::to_owned).with_context(|| format!("{url} lists no model; pass --model"))
}

struct Client<'a> {
    agent: ureq::Agent,
    url: String,
    key: Option<String>,
    model: String,
    chat: bool,
    a: &'a Args,
}

impl Client<'_> {
    fn body(&self, p: &Prompt) -> Value {
        let mut b = json!({
            "model": self.model,
            "max_tokens": p.max_tokens,
            "temperature": self.a.temperature,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if self.chat {
            b["messages"] = json!([{"role": "user", "content": p.prompt}]);
        } else {
            b["prompt"] = p.prompt.clone();
        }
        if self.a.ignore_eos {
            b["ignore_eos"] = json!(true);
        }
        b
    }

    /// Sends one streaming request and times its chunks. Never fails: errors are recorded.
    fn send(&self, p: &Prompt) -> Outcome {
        let t0 = Instant::now();
        let mut o = Outcome { prompt_tokens: p.len.unwrap_or(0), ..Outcome::default() };
        if let Err(e) = self.stream(p, t0, &mut o) {
            o.error = Some(format!("{e:#}"));
        }
        o.latency = t0.elapsed().as_secs_f64();
        o
    }

    fn stream(&self, p: &Prompt, t0: Instant, o: &mut Outcome) -> Result<()> {
        let mut req = self.agent.post(&self.url);
        if let Some(k) = &self.key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let resp = match req.send_json(self.body(p)) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                anyhow::bail!("HTTP {code}: {}", r.into_string().unwrap_or_default().trim())
            }
            Err(e) => return Err(e.into()),
        };
        let (mut last, mut chunks) = (t0, 0usize);
        for line in BufReader::new(resp.into_reader()).lines() {
            let line = line.context("reading the stream")?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                break;
            }
            let v: Value = serde_json::from_str(data).with_context(|| format!("a stream chunk is not JSON: {data}"))?;
            if let Some(e) = v.get("error") {
                anyhow::bail!("error in the stream: {e}");
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                o.usage = true;
                o.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
                o.prompt_tokens = u["prompt_tokens"].as_u64().map_or(o.prompt_tokens, |n| n as usize);
            }
            let c = &v["choices"][0];
            let text = if self.chat { &c["delta"]["content"] } else { &c["text"] };
            if text.as_str().is_some_and(|t| !t.is_empty()) {
                let now = Instant::now();
                if chunks == 0 {
                    o.ttft = (now - t0).as_secs_f64();
                } else {
                    o.itl.push((now - last).as_secs_f64());
                }
                last = now;
                chunks += 1;
            }
        }
        anyhow::ensure!(chunks > 0, "the stream carried no content");
        if !o.usage {
            o.output_tokens = chunks;
        }
        Ok(())
    }
}

/// A counting semaphore for `--max-concurrency`.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn take(&self) {
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *f == 0 {
            f = self.freed.wait(f).unwrap_or_else(|e| e.into_inner());
        }
        *f -= 1;
    }

    fn give(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }
}

/// Sends every prompt on its arrival schedule; the outcomes in prompt order and the wall time
/// from the first send to the last response.
fn dispatch(client: &Client, prompts: &[Prompt], a: &Args) -> (Vec<Outcome>, f64) {
    let slots = Slots { free: Mutex::new(a.max_concurrency.unwrap_or(usize::MAX)), freed: Condvar::new() };
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed ^ 0xa771);
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::scope(|s| {
        let mut at = 0.0f64;
        for (i, p) in prompts.iter().enumerate() {
            if i > 0 && a.request_rate.is_finite() {
                // Exponential gaps: a Poisson process of rate `request_rate`.
                at += -(1.0 - rng.random::<f64>()).ln() / a.request_rate;
                let due = start + Duration::from_secs_f64(at);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            slots.take();
            let (tx, slots) = (tx.clone(), &slots);
            s.spawn(move || {
                let o = client.send(p);
                slots.give();
                let _ = tx.send((i, o));
            });
        }
    });
    let duration = start.elapsed().as_secs_f64();
    drop(tx);
    let mut got: Vec<(usize, Outcome)> = rx.into_iter().collect();
    got.sort_by_key(|(i, _)| *i);
    (got.into_iter().map(|(_, o)| o).collect(), duration)
}

/// vLLM's result fields (milliseconds for latencies), plus the per-request lists.
fn report(a: &Args, c: &Client, outcomes: &[Outcome], duration: f64) -> Value {
    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
    let ms = |v: Vec<f64>| v.into_iter().map(|x| x * 1e3).collect::<Vec<_>>();
    let ttft = ms(ok.iter().map(|o| o.ttft).collect());
    let e2el = ms(ok.iter().map(|o| o.latency).collect());
    let tpot = ms(ok
        .iter()
        .filter(|o| o.output_tokens > 1)
        .map(|o| (o.latency - o.ttft) / (o.output_tokens - 1) as f64)
        .collect());
    let itl = ms(ok.iter().flat_map(|o| o.itl.iter().copied()).collect());
    let input: usize = ok.iter().map(|o| o.prompt_tokens).sum();
    let output: usize = ok.iter().map(|o| o.output_tokens).sum();
    let mut r = json!({
        "base_url": a.base_url,
        "endpoint": a.endpoint,
        "model": c.model,
        "num_prompts": outcomes.len(),
        "request_rate": if a.request_rate.is_finite() { json!(a.request_rate) } else { json!("inf") },
        "max_concurrency": a.max_concurrency,
        "duration": duration,
        "completed": ok.len(),
        "failed": outcomes.len() - ok.len(),
        "total_input_tokens": input,
        "total_output_tokens": output,
        "usage_reported": ok.iter().all(|o| o.usage),
        "request_throughput": ok.len() as f64 / duration,
        "output_throughput": output as f64 / duration,
        "total_token_throughput": (input + output) as f64 / duration,
        "input_lens": ok.iter().map(|o| o.prompt_tokens).collect::<Vec<_>>(),
        "output_lens": ok.iter().map(|o| o.output_tokens).collect::<Vec<_>>(),
        "ttfts": ttft,
        "itl_counts": ok.iter().map(|o| o.itl.len()).collect::<Vec<_>>(),
        "errors": outcomes.iter().filter_map(|o| o.error.clone()).take(10).collect::<Vec<_>>(),
    });
    for (name, v) in [("ttft", &ttft), ("tpot", &tpot), ("itl", &itl), ("e2el", &e2el)] {
        r[format!("mean_{name}_ms")] = json!(mean(v));
        r[format!("median_{name}_ms")] = json!(median(v));
        r[format!("std_{name}_ms")] = json!(std_population(v));
        for &p in &a.percentiles {
            r[format!("p{}_{name}_ms", fmt_pct(p))] = json!(percentile(v, p));
        }
    }
    r
}

/// `99` → "99", `99.9` → "99.9" (vLLM's key names).
fn fmt_pct(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

fn print_report(r: &Value, percentiles: &[f64]) {
    let line = |k: &str, v: String| println!("{k:<40}{v:<10}");
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!("{:=^50}", " Serving Benchmark Result ");
    line("Successful requests:", r["completed"].to_string());
    line("Failed requests:", r["failed"].to_string());
    line("Benchmark duration (s):", format!("{:.2}", f("duration")));
    line("Total input tokens:", r["total_input_tokens"].to_string());
    line("Total generated tokens:", r["total_output_tokens"].to_string());
    line("Request throughput (req/s):", format!("{:.2}", f("request_throughput")));
    line("Output token throughput (tok/s):", format!("{:.2}", f("output_throughput")));
    line("Total Token throughput (tok/s):", format!("{:.2}", f("total_token_throughput")));
    for (name, title) in [
        ("ttft", "Time to First Token"),
        ("tpot", "Time per Output Token (excl. 1st token)"),
        ("itl", "Inter-token Latency"),
        ("e2el", "End-to-end Latency"),
    ] {
        println!("{:-^50}", title);
        let up = name.to_uppercase();
        line(&format!("Mean {up} (ms):"), format!("{:.2}", f(&format!("mean_{name}_ms"))));
        line(&format!("Median {up} (ms):"), format!("{:.2}", f(&format!("median_{name}_ms"))));
        for &p in percentiles {
            let p = fmt_pct(p);
            line(&format!("P{p} {up} (ms):"), format!("{:.2}", f(&format!("p{p}_{name}_ms"))));
        }
    }
    println!("{:=^50}", "");
    if let Some(e) = r["errors"].as_array().filter(|e| !e.is_empty()) {
        println!("first errors: {}", serde_json::to_string(e).unwrap_or_default());
    }
}

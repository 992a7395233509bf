//! Shared by the engine's integration tests: the real SmolLM2-135M-Instruct Q4_1 model, engines
//! over it, and collectors that turn a request's events into one [`Output`] under a deadline, so
//! a hung engine fails its test instead of stalling CI.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use prom_engine::{
    Engine, EngineConfig, EngineStats, Error, Event, FinishReason, KvCacheMemory, RequestStream, TokenLogprob, Usage,
};
use prom_models::load::load_gguf;
use prom_models::loader::GgufWeights;
use prom_models::nn::{KvDtype, KvSpec, LogitsFor, Model};
use prom_models::Tokenizer;

/// Longest any single request may take to finish in these tests (release build, 2 busy cores).
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn model_path() -> PathBuf {
    let root = std::env::var_os("PROM_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/prometheus/artifacts")
    });
    let p = root.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run scripts/fetch-artifacts.sh first", p.display());
    p
}

/// The model with its KV cache stored as `kv` (the GGUF loader's default is f16).
pub fn model(kv: impl Into<KvDtype>) -> Model {
    let (model, _) = load_gguf(&model_path(), &Device::Cpu).expect("load SmolLM2");
    model.with_kv_dtype(kv)
}

pub fn tokenizer() -> Arc<Tokenizer> {
    static TOK: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    Arc::clone(TOK.get_or_init(|| {
        let path = model_path();
        let weights = GgufWeights::open(&path).expect("open SmolLM2");
        Arc::new(Tokenizer::from_gguf(weights.content(), &path).expect("SmolLM2 tokenizer"))
    }))
}

/// A fixed, modest pool: big enough for every test that does not size its own.
pub fn config() -> EngineConfig {
    EngineConfig { kv_cache_memory: KvCacheMemory::Bytes(64 << 20), ..EngineConfig::default() }
}

/// A KV pool of exactly `blocks` blocks of 16 tokens stored as `kv`.
pub fn pool_of(kv: impl Into<KvDtype>, blocks: usize) -> KvCacheMemory {
    static SPEC: OnceLock<KvSpec> = OnceLock::new();
    let spec = KvSpec { dtype: kv.into(), ..SPEC.get_or_init(|| model(DType::F32).kv_spec(16)).clone() };
    KvCacheMemory::Bytes((blocks * spec.bytes_per_block()) as u64)
}

pub fn engine(kv: impl Into<KvDtype>, cfg: EngineConfig) -> Engine {
    Engine::start(model(kv), tokenizer(), cfg).expect("start the engine")
}

pub fn encode(text: &str) -> Vec<u32> {
    tokenizer().encode(text, true).expect("encode")
}

/// Everything a request's stream said, gathered per sequence index.
#[derive(Debug, Default)]
pub struct Output {
    pub tokens: Vec<Vec<u32>>,
    pub text: Vec<String>,
    pub finish: Vec<Option<FinishReason>>,
    pub logprobs: Vec<Vec<TokenLogprob>>,
    /// `(token ids, logprobs)` counts of each delta, per sequence.
    pub deltas: Vec<Vec<(usize, usize)>>,
    pub prompt_logprobs: Option<Vec<Option<TokenLogprob>>>,
    pub usage: Option<Usage>,
    pub error: Option<Error>,
}

impl Output {
    fn seq(&mut self, index: usize) {
        while self.tokens.len() <= index {
            self.tokens.push(vec![]);
            self.text.push(String::new());
            self.finish.push(None);
            self.logprobs.push(vec![]);
            self.deltas.push(vec![]);
        }
    }

    /// Adds one event; true when the stream is over.
    pub fn push(&mut self, e: Event) -> bool {
        match e {
            Event::PromptLogprobs(p) => {
                assert!(self.prompt_logprobs.is_none(), "prompt logprobs sent twice");
                assert!(self.tokens.is_empty(), "prompt logprobs after a delta");
                self.prompt_logprobs = Some(p);
            }
            Event::Delta(d) => {
                self.seq(d.index);
                let i = d.index;
                assert!(self.finish[i].is_none(), "sequence {i} got a delta after its finish_reason");
                self.deltas[i].push((d.token_ids.len(), d.logprobs.len()));
                self.tokens[i].extend_from_slice(&d.token_ids);
                self.text[i].push_str(&d.text);
                self.finish[i] = d.finish_reason;
                self.logprobs[i].extend(d.logprobs);
            }
            Event::Finished { usage, .. } => {
                self.usage = Some(usage);
                return true;
            }
            Event::Error(e) => {
                self.error = Some(e);
                return true;
            }
        }
        false
    }

    /// The only sequence's tokens, after checking the request finished cleanly.
    pub fn ok(&self) -> &[u32] {
        assert!(self.error.is_none(), "request failed: {:?}", self.error);
        assert!(self.usage.is_some(), "request never finished");
        assert_eq!(self.tokens.len(), 1, "expected one sequence");
        &self.tokens[0]
    }
}

/// Drains every stream on its own thread; panics if any is not over by `DEADLINE`.
pub fn collect_all(streams: Vec<RequestStream>) -> Vec<Output> {
    let n = streams.len();
    let (tx, rx) = mpsc::channel();
    for (i, mut s) in streams.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut out = Output::default();
            while let Some(e) = s.blocking_next() {
                if out.push(e) {
                    break;
                }
            }
            let _ = tx.send((i, out));
        });
    }
    let end = Instant::now() + DEADLINE;
    let mut outs: Vec<Option<Output>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let left = end.saturating_duration_since(Instant::now());
        let (i, o) = rx.recv_timeout(left).unwrap_or_else(|_| panic!("requests still unfinished after {DEADLINE:?}"));
        outs[i] = Some(o);
    }
    outs.into_iter().map(|o| o.expect("every stream reported")).collect()
}

pub fn collect(stream: RequestStream) -> Output {
    collect_all(vec![stream]).pop().expect("one output")
}

/// Polls the engine's stats until `ok` holds; panics with the last snapshot after `timeout`.
pub fn wait_for(engine: &Engine, timeout: Duration, ok: impl Fn(&EngineStats) -> bool) -> EngineStats {
    let end = Instant::now() + timeout;
    loop {
        let s = engine.stats();
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < end, "engine stats never reached the expected state: {s:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Nothing running, nothing waiting, no KV block referenced (only cached ones remain).
pub fn wait_idle(engine: &Engine) -> EngineStats {
    wait_for(engine, Duration::from_secs(10), |s| s.running == 0 && s.waiting == 0 && s.kv_usage == 0.0)
}

/// log_softmax of every row of one sequence's forward pass over `tokens` (`LogitsFor::All`).
/// Every position's log-softmax over `tokens`, of which the first `prompt` are the prompt (the
/// rest computed as generated tokens, as the engine does).
pub fn reference_log_softmax(model: &Model, tokens: &[u32], prompt: usize) -> Vec<Vec<f64>> {
    let mut cache = model.new_cache().expect("cache");
    let mut rows: Vec<Vec<f32>> =
        model.forward(&tokens[..prompt], &mut cache, LogitsFor::All).expect("forward").to_vec2().expect("logits");
    if prompt < tokens.len() {
        cache.end_prompt();
        let rest = model.forward(&tokens[prompt..], &mut cache, LogitsFor::All).expect("forward");
        rows.extend(rest.to_vec2::<f32>().expect("logits"));
    }
    rows.iter().map(|r| log_softmax(r)).collect()
}

pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// Greedy continuation by the plain single-sequence model (no engine).
pub fn reference_greedy(model: &Model, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let mut cache = model.new_cache().expect("cache");
    let mut out = Vec::with_capacity(max_tokens);
    let mut logits = model.forward(prompt, &mut cache, LogitsFor::Last).expect("forward");
    cache.end_prompt();
    loop {
        let row: Vec<f32> = logits.get(0).and_then(|r| r.to_vec1()).expect("row");
        // ties to the lowest id, as the sampler's argmax
        let next = row.iter().enumerate().fold(0, |best, (i, &x)| if x > row[best] { i } else { best }) as u32;
        out.push(next);
        if out.len() == max_tokens {
            return out;
        }
        logits = model.forward(&[next], &mut cache, LogitsFor::Last).expect("forward");
    }
}

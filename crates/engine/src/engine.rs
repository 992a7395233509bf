//! The engine handle: a model served to many concurrent requests by one engine thread.
//!
//! [`Engine::submit`] validates a request, hands it to the engine thread and returns its
//! [`RequestStream`] of [`Event`]s (usable from async code or blocking code). Dropping the stream
//! aborts the request, which frees its KV blocks at once; that is how a client disconnect
//! propagates. The engine thread owns the model, the KV cache and the scheduler; nothing else
//! touches them, so there are no locks on the hot path.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prom_models::nn::{Model, PagedKvCache};
use prom_models::Tokenizer;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::core::Core;
use crate::request::{Event, Request, RequestId};
use crate::scheduler::{Policy, Scheduler, SchedulerConfig};
use crate::{Error, Result};

/// How much memory the KV block pool takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvCacheMemory {
    Bytes(u64),
    /// A fraction of the memory available when the engine starts (`MemAvailable`).
    FractionOfAvailable(f64),
}

impl FromStr for KvCacheMemory {
    type Err = Error;

    /// `0.25` (a fraction), `4GiB`, `512MiB`, `2GB`, `1000000` (bytes).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidRequest(format!(
                "`kv-cache-memory` must be a fraction in (0, 1] or a size like 4GiB. Given: {s}"
            ))
        };
        let t = s.trim();
        if t.contains('.') && !t.chars().any(|c| c.is_ascii_alphabetic()) {
            let f: f64 = t.parse().map_err(|_| bad())?;
            return if f > 0.0 && f <= 1.0 { Ok(Self::FractionOfAvailable(f)) } else { Err(bad()) };
        }
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            _ => return Err(bad()),
        };
        let n: f64 = num.trim().parse().map_err(|_| bad())?;
        if !(n > 0.0) {
            return Err(bad());
        }
        Ok(Self::Bytes((n * mult as f64) as u64))
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    pub kv_cache_memory: KvCacheMemory,
    /// Token budget per step (prefill chunks and decode tokens together).
    pub max_num_batched_tokens: usize,
    /// Most sequences in flight at once.
    pub max_num_seqs: usize,
    /// Longest prompt + generation; default the model's context length.
    pub max_model_len: Option<usize>,
    pub enable_prefix_caching: bool,
    pub policy: Policy,
    /// Schedule each step while the one before runs on the device, its sampled ids going
    /// straight to the next step's input (vLLM's async scheduling). `None`: on wherever the
    /// model can take its ids from the device (a GPU), unless `PROM_ASYNC_SCHEDULING=0`. On
    /// the CPU a step runs as it is launched, so it gains nothing there (tests turn it on).
    pub async_scheduling: Option<bool>,
    /// Capture the CUDA graphs of every decode batch size up to `max_num_seqs` at start-up
    /// instead of on each size's first step (no effect on the CPU or with graphs off).
    pub capture_graphs_at_start: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            block_size: 16,
            kv_cache_memory: KvCacheMemory::FractionOfAvailable(0.2),
            max_num_batched_tokens: 2048,
            max_num_seqs: 128,
            max_model_len: None,
            enable_prefix_caching: true,
            policy: Policy::Fcfs,
            async_scheduling: None,
            capture_graphs_at_start: true,
        }
    }
}

/// A snapshot of the engine's state, refreshed after every step.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub running: usize,
    pub waiting: usize,
    /// Fraction of KV blocks referenced by sequences.
    pub kv_usage: f64,
    pub num_blocks: usize,
    pub block_size: usize,
    pub prefix_queried_tokens: u64,
    pub prefix_hit_tokens: u64,
    pub steps: u64,
    /// Sequences preempted by recompute when the KV pool ran out.
    pub preemptions: u64,
    /// Steps scheduled and launched while the step before them still ran (async scheduling).
    pub steps_ahead: u64,
}

/// Facts about the served model that callers validate against.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub max_model_len: usize,
    pub vocab_size: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub kv_bytes_per_token: usize,
}

enum Command {
    Submit(RequestId, Box<Request>, tokio::sync::mpsc::UnboundedSender<Event>),
    Abort(RequestId),
    Shutdown,
}

pub struct Engine {
    tx: mpsc::Sender<Command>,
    /// False once the engine thread has ended (shutdown or a panic).
    alive: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    stats: Arc<Mutex<EngineStats>>,
    info: EngineInfo,
    tokenizer: Arc<Tokenizer>,
}

impl Engine {
    /// Sizes the KV pool, builds the scheduler and starts the engine thread.
    pub fn start(model: Model, tokenizer: Arc<Tokenizer>, cfg: EngineConfig) -> Result<Self> {
        let max_model_len = cfg.max_model_len.unwrap_or(model.config().max_position_embeddings);
        let spec = model.kv_spec(cfg.block_size);
        let per_block = spec.bytes_per_block().max(1) as u64;
        let bytes = match cfg.kv_cache_memory {
            KvCacheMemory::Bytes(b) => b,
            KvCacheMemory::FractionOfAvailable(f) => (available_memory()? as f64 * f) as u64,
        };
        // More blocks than every sequence at full length could use would only waste memory.
        let useful = (cfg.max_num_seqs * max_model_len.div_ceil(cfg.block_size.max(1))) as u64;
        let num_blocks = (bytes / per_block).min(useful).min(u32::MAX as u64) as usize;
        if num_blocks == 0 {
            return Err(Error::InvalidRequest(format!(
                "`kv-cache-memory` of {bytes} bytes holds no KV block ({per_block} bytes each)"
            )));
        }
        let sched = Scheduler::new(SchedulerConfig {
            block_size: cfg.block_size,
            num_blocks,
            max_num_batched_tokens: cfg.max_num_batched_tokens,
            max_num_seqs: cfg.max_num_seqs,
            max_model_len,
            enable_prefix_caching: cfg.enable_prefix_caching,
            policy: cfg.policy,
        })
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let mut kv = PagedKvCache::new(spec.clone(), num_blocks)?;
        tracing::info!(
            num_blocks,
            block_size = cfg.block_size,
            kv_bytes = kv.bytes(),
            tokens = num_blocks * cfg.block_size,
            "KV cache"
        );
        if cfg.capture_graphs_at_start {
            let t = std::time::Instant::now();
            let sizes = model.capture_decode_graphs(&mut kv, cfg.max_num_seqs);
            if !sizes.is_empty() {
                tracing::info!(graphs = sizes.len(), ms = t.elapsed().as_millis() as u64, "CUDA graphs captured");
            }
        }
        let async_scheduling = cfg.async_scheduling.unwrap_or_else(|| {
            model.takes_device_ids() && std::env::var("PROM_ASYNC_SCHEDULING").map_or(true, |v| v != "0")
        });
        let info = EngineInfo {
            max_model_len,
            vocab_size: model.config().vocab_size,
            num_blocks,
            block_size: cfg.block_size,
            kv_bytes_per_token: spec.bytes_per_token(),
        };
        let stats = Arc::new(Mutex::new(EngineStats { num_blocks, block_size: cfg.block_size, ..Default::default() }));
        let (tx, rx) = mpsc::channel();
        let mut core = Core::new(model, Arc::clone(&tokenizer), kv, sched);
        core.set_async_scheduling(async_scheduling);
        let thread_stats = Arc::clone(&stats);
        let alive = Arc::new(AtomicBool::new(true));
        let guard = AliveGuard(Arc::clone(&alive));
        let thread = std::thread::Builder::new()
            .name("prom-engine".into())
            .spawn(move || {
                // A tuple drops in field order: the engine is marked dead before the request
                // senders inside `core` close, so streams report an error, not an abort.
                let mut state = (guard, core);
                run(&mut state.1, rx, thread_stats)
            })
            .map_err(|e| Error::Engine(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { tx, alive, thread: Some(thread), next_id: AtomicU64::new(1), stats, info, tokenizer })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn stats(&self) -> EngineStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the request against the model and queues it. Errors here name the field, the
    /// limit and the value; errors found later arrive on the stream as [`Event::Error`].
    pub fn submit(&self, req: Request) -> Result<RequestStream> {
        self.validate(&req)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (etx, erx) = unbounded_channel();
        self.tx
            .send(Command::Submit(id, Box::new(req), etx))
            .map_err(|_| Error::Engine("the engine has stopped".into()))?;
        Ok(RequestStream { id, rx: erx, tx: self.tx.clone(), alive: Arc::clone(&self.alive), done: false })
    }

    fn validate(&self, req: &Request) -> Result<()> {
        let p = &req.params;
        p.validate()?;
        let bad = |m: String| Err(Error::InvalidRequest(m));
        if req.prompt.is_empty() {
            return bad("the prompt is empty".into());
        }
        let vocab = self.info.vocab_size;
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return bad(format!("prompt token id {t} is outside the vocabulary (size {vocab})"));
        }
        let (len, max) = (req.prompt.len(), self.info.max_model_len);
        if len + p.max_tokens > max {
            return bad(format!(
                "the prompt ({len} tokens) plus `max_tokens` ({}) exceeds the model's context length of {max} tokens",
                p.max_tokens
            ));
        }
        Ok(())
    }

    /// Aborts a request by id: its blocks are freed at once and its stream ends (`None`) after
    /// the events already sent.
    pub fn abort(&self, id: RequestId) {
        let _ = self.tx.send(Command::Abort(id));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request's events. Dropping it before the end aborts the request.
pub struct RequestStream {
    id: RequestId,
    rx: UnboundedReceiver<Event>,
    tx: mpsc::Sender<Command>,
    alive: Arc<AtomicBool>,
    done: bool,
}

/// Marks the engine dead when its thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl RequestStream {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The next event; `None` after `Finished` or `Error`, or once the request was aborted.
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let e = self.rx.recv().await;
        self.observe(e)
    }

    /// The next event, blocking the thread (not for use inside an async runtime).
    pub fn blocking_next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let e = self.rx.blocking_recv();
        self.observe(e)
    }

    fn observe(&mut self, e: Option<Event>) -> Option<Event> {
        match e {
            Some(e @ (Event::Finished { .. } | Event::Error(_))) => {
                self.done = true;
                Some(e)
            }
            Some(e) => Some(e),
            None => {
                self.done = true;
                // The engine dropped the request: an abort while it runs, or its thread ended.
                if self.alive.load(Ordering::SeqCst) {
                    None
                } else {
                    Some(Event::Error(Error::Engine("the engine stopped before the request finished".into())))
                }
            }
        }
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(Command::Abort(self.id));
        }
    }
}

/// The engine thread: take commands (sleeping when idle), step, publish stats.
fn run(core: &mut Core, rx: mpsc::Receiver<Command>, stats: Arc<Mutex<EngineStats>>) {
    let mut steps = 0u64;
    // false on shutdown (or when every sender is gone)
    let handle = |core: &mut Core, c: Result<Command, ()>| -> bool {
        match c {
            Ok(Command::Submit(id, req, tx)) => core.add(id, *req, tx),
            Ok(Command::Abort(id)) => core.abort(id),
            Ok(Command::Shutdown) | Err(()) => return false,
        }
        true
    };
    loop {
        if !core.has_work() && !handle(core, rx.recv().map_err(|_| ())) {
            break;
        }
        let mut open = true;
        loop {
            match rx.try_recv() {
                Ok(c) => open = handle(core, Ok(c)),
                Err(TryRecvError::Disconnected) => open = false,
                Err(TryRecvError::Empty) => break,
            }
            if !open {
                break;
            }
        }
        if !open {
            break;
        }
        let worked = core.step();
        steps += worked as u64;
        publish(core, &stats, steps);
        if !worked && core.has_work() {
            // Requests wait on something other than compute (a fork's leader): don't spin.
            let open = match rx.recv_timeout(Duration::from_millis(2)) {
                Ok(c) => handle(core, Ok(c)),
                Err(RecvTimeoutError::Disconnected) => false,
                Err(RecvTimeoutError::Timeout) => true,
            };
            if !open {
                break;
            }
        }
    }
    core.fail_all("the engine is shutting down");
    publish(core, &stats, steps);
}

fn publish(core: &Core, stats: &Mutex<EngineStats>, steps: u64) {
    let s = core.scheduler();
    let p = s.prefix_cache_stats();
    let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
    st.running = s.num_running();
    st.waiting = s.num_waiting();
    st.kv_usage = s.kv_usage();
    st.prefix_queried_tokens = p.queried_tokens;
    st.prefix_hit_tokens = p.hit_tokens;
    st.steps = steps;
    st.preemptions = core.preemptions();
    st.steps_ahead = core.steps_ahead();
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn available_memory() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| Error::Engine(format!("cannot read /proc/meminfo to size the KV cache: {e}; pass a size")))?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| Error::Engine("no MemAvailable in /proc/meminfo; pass `kv-cache-memory` as a size".into()))
}

#[cfg(test)]
mod tests {
    use super::KvCacheMemory::{self, *};

    #[test]
    fn kv_cache_memory_parses_fractions_and_sizes() {
        let p = |s: &str| s.parse::<KvCacheMemory>();
        assert_eq!(p("0.25").unwrap(), FractionOfAvailable(0.25));
        assert_eq!(p("4GiB").unwrap(), Bytes(4 << 30));
        assert_eq!(p("512 MiB").unwrap(), Bytes(512 << 20));
        assert_eq!(p("2GB").unwrap(), Bytes(2_000_000_000));
        assert_eq!(p("123456").unwrap(), Bytes(123_456));
        for bad in ["0.0", "1.5", "-3", "4XB", "", "GiB"] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains("kv-cache-memory") && e.contains(bad), "{bad}: {e}");
        }
    }
}

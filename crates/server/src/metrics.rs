//! Prometheus metrics, rendered in the text exposition format (version 0.0.4).
//!
//! Names follow Prometheus conventions (a `prom_` prefix, base units, `_total` counters) and
//! vLLM's metric set (`vllm:time_to_first_token_seconds` → `prom_time_to_first_token_seconds`, ...),
//! with vLLM's histogram buckets. Request-level numbers are recorded by the server as streams end;
//! engine gauges (running, waiting, KV usage, prefix cache) are read from the engine at scrape
//! time. Each metric is documented in the README's metrics table.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prom_engine::{EngineStats, FinishReason};

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
];

struct Histogram {
    buckets: &'static [f64],
    inner: Mutex<HistogramInner>,
}

#[derive(Default)]
struct HistogramInner {
    /// Per bucket (not cumulative); the last entry is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Self { buckets, inner: Mutex::new(HistogramInner { counts: vec![0; buckets.len() + 1], ..Default::default() }) }
    }

    fn observe(&self, d: Duration) {
        let v = d.as_secs_f64();
        let i = self.buckets.partition_point(|&b| b < v);
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        h.counts[i] += 1;
        h.sum += v;
        h.count += 1;
    }

    fn mean(&self) -> Option<f64> {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (h.count > 0).then(|| h.sum / h.count as f64)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.buckets.iter().zip(&h.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
    }
}

/// How one sequence (one choice) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ending {
    Stop,
    Length,
    /// The client went away (or the server gave up on it) before the end.
    Abort,
    /// The engine failed it.
    Error,
}

impl Ending {
    fn label(self) -> &'static str {
        match self {
            Ending::Stop => "stop",
            Ending::Length => "length",
            Ending::Abort => "abort",
            Ending::Error => "error",
        }
    }
}

impl From<FinishReason> for Ending {
    fn from(r: FinishReason) -> Self {
        match r {
            FinishReason::Stop => Ending::Stop,
            FinishReason::Length => Ending::Length,
        }
    }
}

pub struct Metrics {
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    endings: Mutex<BTreeMap<Ending, u64>>,
    /// (route, status) → count.
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Guardrail decisions: (rail, check, action) → count.
    guard: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(REQUEST_BUCKETS),
            queue: Histogram::new(REQUEST_BUCKETS),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            endings: Mutex::new(BTreeMap::new()),
            http: Mutex::new(BTreeMap::new()),
            guard: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Engine state and server state sampled at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub engine: EngineStats,
    /// Sequences admitted by the server and not yet finished (running, waiting, or being sent).
    pub in_flight: usize,
    pub capacity: usize,
}

impl Metrics {
    pub fn prompt_tokens(&self, n: usize) {
        self.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn generation_tokens(&self, n: usize) {
        self.generation_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn inter_token(&self, d: Duration) {
        self.itl.observe(d);
    }

    /// A finished engine request's timings (submission to first step, first token, end).
    pub fn request_done(&self, queued: Duration, first_token: Duration, total: Duration) {
        self.queue.observe(queued);
        self.ttft.observe(first_token);
        self.e2e.observe(total);
    }

    pub fn ended(&self, e: Ending, sequences: usize) {
        if sequences > 0 {
            *self.endings.lock().unwrap_or_else(|e| e.into_inner()).entry(e).or_default() += sequences as u64;
        }
    }

    pub fn http(&self, route: &str, status: u16) {
        *self.http.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_owned(), status)).or_default() += 1;
    }

    /// A guardrail check fired on the input or output rail with this action.
    pub fn guard_decision(&self, rail: &'static str, check: &'static str, action: &'static str) {
        *self.guard.lock().unwrap_or_else(|e| e.into_inner()).entry((rail, check, action)).or_default() += 1;
    }

    /// A `Retry-After` estimate: the mean end-to-end latency so far, 1 to 60 seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.e2e.mean().map_or(1, |m| m.ceil().clamp(1.0, 60.0) as u64)
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let e = &g.engine;
        gauge(
            &mut out,
            "prom_num_requests_running",
            "Sequences the engine is running (in the current batch).",
            e.running as f64,
        );
        gauge(&mut out, "prom_num_requests_waiting", "Sequences waiting in the engine's queue.", e.waiting as f64);
        gauge(
            &mut out,
            "prom_server_requests_in_flight",
            "Sequences admitted by the server and not yet finished (bounded by prom_server_capacity).",
            g.in_flight as f64,
        );
        gauge(
            &mut out,
            "prom_server_capacity",
            "Sequences the server admits at once (--max-num-seqs + --max-queue).",
            g.capacity as f64,
        );
        gauge(
            &mut out,
            "prom_kv_cache_usage_ratio",
            "Fraction of KV-cache blocks held by sequences (0 to 1).",
            e.kv_usage,
        );
        gauge(&mut out, "prom_kv_cache_blocks", "KV-cache blocks in the pool.", e.num_blocks as f64);
        let rate = if e.prefix_queried_tokens == 0 {
            0.0
        } else {
            e.prefix_hit_tokens as f64 / e.prefix_queried_tokens as f64
        };
        gauge(
            &mut out,
            "prom_prefix_cache_hit_rate",
            "Prompt tokens found in the prefix cache / prompt tokens looked up, since start.",
            rate,
        );
        counter(
            &mut out,
            "prom_prefix_cache_queries_total",
            "Prompt tokens looked up in the prefix cache.",
            e.prefix_queried_tokens,
        );
        counter(
            &mut out,
            "prom_prefix_cache_hits_total",
            "Prompt tokens found in the prefix cache.",
            e.prefix_hit_tokens,
        );
        counter(&mut out, "prom_engine_steps_total", "Engine steps (batched forward passes) run.", e.steps);
        counter(
            &mut out,
            "prom_prompt_tokens_total",
            "Prompt tokens of requests that started generating.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "prom_generation_tokens_total",
            "Tokens generated.",
            self.generation_tokens.load(Ordering::Relaxed),
        );
        let name = "prom_request_finished_total";
        let _ =
            writeln!(out, "# HELP {name} Sequences (choices) ended, by finish reason (stop, length, abort, error).");
        let _ = writeln!(out, "# TYPE {name} counter");
        let endings = self.endings.lock().unwrap_or_else(|e| e.into_inner());
        for e in [Ending::Stop, Ending::Length, Ending::Abort, Ending::Error] {
            let _ =
                writeln!(out, "{name}{{finish_reason=\"{}\"}} {}", e.label(), endings.get(&e).copied().unwrap_or(0));
        }
        drop(endings);
        let name = "prom_http_requests_total";
        let _ = writeln!(out, "# HELP {name} HTTP requests answered, by route and status code.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for ((route, status), n) in self.http.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "{name}{{route=\"{}\",status=\"{status}\"}} {n}", escape(route));
        }
        let guard = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        if !guard.is_empty() {
            let name = "prom_guard_decisions_total";
            let _ = writeln!(
                out,
                "# HELP {name} Guardrail checks that fired, by rail, check and action (block, redact, warn)."
            );
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((rail, check, action), n) in guard.iter() {
                let _ = writeln!(out, "{name}{{rail=\"{rail}\",check=\"{check}\",action=\"{action}\"}} {n}");
            }
        }
        drop(guard);
        self.ttft.render(
            &mut out,
            "prom_time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
        );
        self.itl.render(&mut out, "prom_inter_token_latency_seconds", "Time between consecutive tokens of a sequence.");
        self.e2e.render(
            &mut out,
            "prom_e2e_request_latency_seconds",
            "Time from arrival to the last token of a request.",
        );
        self.queue.render(
            &mut out,
            "prom_request_queue_time_seconds",
            "Time from arrival to the first engine step that ran the request.",
        );
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_le_inclusive() {
        let m = Metrics::default();
        m.request_done(Duration::from_millis(300), Duration::from_millis(10), Duration::from_secs(2));
        m.request_done(Duration::from_millis(100), Duration::from_millis(3), Duration::from_secs(100_000));
        let text = m.render(&Gauges::default());
        assert!(text.contains("prom_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("prom_time_to_first_token_seconds_bucket{le=\"0.01\"} 2\n"));
        assert!(text.contains("prom_request_queue_time_seconds_bucket{le=\"0.3\"} 2\n"));
        assert!(text.contains("prom_e2e_request_latency_seconds_bucket{le=\"7680\"} 1\n"));
        assert!(text.contains("prom_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("prom_e2e_request_latency_seconds_count 2\n"));
    }

    #[test]
    fn counters_and_labels() {
        let m = Metrics::default();
        m.ended(Ending::Stop, 2);
        m.ended(Ending::Abort, 1);
        m.http("/v1/completions", 429);
        m.generation_tokens(5);
        m.guard_decision("input", "injection", "block");
        m.guard_decision("input", "injection", "block");
        m.guard_decision("output", "pii", "redact");
        let g = Gauges {
            engine: EngineStats { prefix_queried_tokens: 4, prefix_hit_tokens: 1, ..Default::default() },
            ..Default::default()
        };
        let text = m.render(&g);
        assert!(text.contains("prom_request_finished_total{finish_reason=\"stop\"} 2\n"));
        assert!(text.contains("prom_request_finished_total{finish_reason=\"length\"} 0\n"));
        assert!(text.contains("prom_request_finished_total{finish_reason=\"abort\"} 1\n"));
        assert!(text.contains("prom_http_requests_total{route=\"/v1/completions\",status=\"429\"} 1\n"));
        assert!(text.contains("prom_generation_tokens_total 5\n"));
        assert!(text.contains("prom_guard_decisions_total{rail=\"input\",check=\"injection\",action=\"block\"} 2\n"));
        assert!(text.contains("prom_guard_decisions_total{rail=\"output\",check=\"pii\",action=\"redact\"} 1\n"));
        assert!(text.contains("prom_prefix_cache_hit_rate 0.25\n"));
        // Every sample line belongs to a metric with a TYPE line.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {name} ")) || text.contains(&format!("# TYPE {base} histogram")),
                "{line}"
            );
        }
    }

    #[test]
    fn retry_after_tracks_mean_latency() {
        let m = Metrics::default();
        assert_eq!(m.retry_after_secs(), 1);
        m.request_done(Duration::ZERO, Duration::ZERO, Duration::from_millis(4200));
        assert_eq!(m.retry_after_secs(), 5);
    }
}

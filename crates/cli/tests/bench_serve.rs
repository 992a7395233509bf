//! `prom bench serve` against a real `prom serve` (default model), and `prom bench` in its
//! llama-bench mode: the reports must account for every request and token they claim. Times are
//! not checked, only their consistency (TTFT within the end-to-end latency, percentiles ordered).

mod serve_common;

use std::process::Command;

use serde_json::Value;
use serve_common::{gguf, Server};

fn prom(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prom")).args(args).env_remove("PROM_LOG").output().expect("run prom");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn bench_serve(s: &Server, extra: &[&str]) -> Value {
    let mut args = vec!["bench", "serve", "--base-url", &s.base, "--json"];
    args.extend_from_slice(extra);
    let (ok, out, err) = prom(&args);
    assert!(ok, "prom bench serve failed:\n{err}\nserver:\n{}", s.logs());
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn nums(v: &Value) -> Vec<u64> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("integer")).collect()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("`{k}` is not a number in {v}"))
}

/// Latency summaries are internally consistent.
fn check_latencies(r: &Value) {
    for m in ["ttft", "tpot", "itl", "e2el"] {
        let (med, p99) = (f(r, &format!("median_{m}_ms")), f(r, &format!("p99_{m}_ms")));
        assert!(med > 0.0 && med <= p99, "{m}: median {med} p99 {p99}");
    }
    for (t, e) in r["ttfts"].as_array().unwrap().iter().zip(r["output_lens"].as_array().unwrap()) {
        assert!(t.as_f64().unwrap() > 0.0 && e.as_u64().unwrap() > 0);
    }
    assert!(f(r, "mean_ttft_ms") <= f(r, "mean_e2el_ms"));
}

#[test]
fn bench_serve_counts_every_request_and_token() {
    let s = Server::start(&[]);
    // Random token-id prompts, EOS ignored: exact input and output lengths.
    let r = bench_serve(
        &s,
        &[
            "--num-prompts",
            "6",
            "--max-concurrency",
            "3",
            "--random-input-len",
            "24",
            "--random-output-len",
            "8",
            "--ignore-eos",
        ],
    );
    assert_eq!(r["completed"], 6, "{r}");
    assert_eq!(r["failed"], 0);
    assert_eq!(r["model"], serve_common::MODEL, "the model name comes from /v1/models");
    assert_eq!(r["usage_reported"], true);
    assert_eq!(nums(&r["input_lens"]), vec![24; 6]);
    assert_eq!(nums(&r["output_lens"]), vec![8; 6]);
    assert_eq!(r["total_input_tokens"], 6 * 24);
    assert_eq!(r["total_output_tokens"], 6 * 8);
    // At most one gap per token after the first (the server may merge tokens into one chunk).
    assert!(nums(&r["itl_counts"]).iter().all(|&n| (1..=7).contains(&n)), "{}", r["itl_counts"]);
    let tput = f(&r, "output_throughput") * f(&r, "duration");
    assert!((tput - 48.0).abs() < 1e-6, "output_throughput × duration = {tput}");
    check_latencies(&r);

    // File prompts (JSONL with per-line max_tokens, and a plain-text line), Poisson arrivals,
    // cycled to --num-prompts.
    let dir = std::env::temp_dir().join(format!("prom-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prompts.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\": \"The capital of France is\", \"max_tokens\": 5}\n\nOnce upon a time\n{\"prompt\": \"1, 2, 3,\", \"output_len\": 3}\n",
    )
    .unwrap();
    let r = bench_serve(
        &s,
        &[
            "--dataset-path",
            file.to_str().unwrap(),
            "--num-prompts",
            "4",
            "--request-rate",
            "50",
            "--random-output-len",
            "6",
            "--ignore-eos",
            "--percentiles",
            "50,99",
        ],
    );
    assert_eq!(r["completed"], 4, "{r}");
    assert_eq!(nums(&r["output_lens"]), vec![5, 6, 3, 5]);
    assert_eq!(r["total_output_tokens"], 19);
    let inputs = nums(&r["input_lens"]);
    assert!(inputs.iter().all(|&n| n > 0) && inputs[0] == inputs[3], "{inputs:?}");
    assert_eq!(f(&r, "p50_ttft_ms"), f(&r, "median_ttft_ms"));
    check_latencies(&r);
    let _ = std::fs::remove_dir_all(&dir);

    // A bad request is reported per request, not as a crash; a bad flag is a clear error.
    let (ok, _, err) = prom(&["bench", "serve", "--base-url", &s.base, "--model", "nope", "--num-prompts", "2"]);
    assert!(!ok && err.contains("test request") && err.contains("HTTP 4"), "{err}");
    let (ok, _, err) = prom(&["bench", "serve", "--base-url", &s.base, "--num-prompts", "0"]);
    assert!(!ok && err.contains("`--num-prompts` must be >= 1"), "{err}");
}

#[test]
fn bench_serve_unreachable_server_is_a_clear_error() {
    // Port 9 (discard) on localhost: nothing listens there in the test environment.
    let (ok, _, err) = prom(&["bench", "serve", "--base-url", "http://127.0.0.1:9", "--num-prompts", "1"]);
    assert!(!ok && err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn bench_model_reports_llama_bench_rows() {
    let model = gguf();
    let m = model.to_str().unwrap();
    let (ok, out, err) =
        prom(&["bench", "--offline", "-m", m, "-p", "16,8", "-n", "4", "-r", "2", "-t", "1", "--json"]);
    assert!(ok, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let tests: Vec<&str> = rows.iter().map(|r| r["test"].as_str().unwrap()).collect();
    assert_eq!(tests, ["pp16", "pp8", "tg4"]);
    for r in &rows {
        assert_eq!(r["n_threads"], 1);
        assert_eq!(r["model_type"], "llama 135M Q4_1");
        assert_eq!(r["model_n_params"], 134_515_008u64);
        let ns = nums(&r["samples_ns"]);
        let ts: Vec<f64> = r["samples_ts"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!((ns.len(), ts.len()), (2, 2));
        let tokens = (r["n_prompt"].as_u64().unwrap() + r["n_gen"].as_u64().unwrap()) as f64;
        for (n, t) in ns.iter().zip(&ts) {
            assert!((tokens * 1e9 / *n as f64 - t).abs() / t < 1e-6, "t/s is tokens / time");
        }
        assert!((f(r, "avg_ts") - (ts[0] + ts[1]) / 2.0).abs() < 1e-6);
    }
    // A list of thread counts runs once per count (in child processes); the table is the default.
    let (ok, out, err) = prom(&["bench", "--offline", "-m", m, "-p", "8", "-n", "0", "-r", "1", "-t", "1,1"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("pp8")).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(out.starts_with("| model") && rows.iter().all(|r| r.contains("| CPU ")), "{out}");
    // More threads than CPUs, and nothing to time, are refused.
    let (ok, _, err) = prom(&["bench", "--offline", "-m", m, "-t", "100000"]);
    assert!(!ok && err.contains("`-t` must be between 1 and"), "{err}");
    let (ok, _, err) = prom(&["bench", "--offline", "-m", m, "-p", "0", "-n", "0"]);
    assert!(!ok && err.contains("nothing to time"), "{err}");
}

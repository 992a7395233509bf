//! `prom bench --scenario model`: llama-bench's measurement on our model.
//!
//! Per test and repetition the single-sequence cache is cleared, `-d` tokens of depth are
//! prefilled untimed, then the timer covers only forward passes: `ppP` is one prefill of P token
//! ids (in `-b` chunks, logits for the last position, as llama-bench's batches), `tgN` is N
//! single-token decode steps. The ids are pseudo-random (seeded, so every run sends the same),
//! so there is no tokenizer, no sampler and no engine in the loop. Before the repetitions, one
//! warm-up like llama-bench's: a full prompt pass and one decode step. t/s per repetition is
//! tokens / seconds; the table gives the mean ± the sample standard deviation, like llama-bench.
//!
//! Threads: our kernel pool sizes itself from the CPU affinity mask and candle from
//! `RAYON_NUM_THREADS`, both fixed at first use. So `-t T` sets `RAYON_NUM_THREADS=T` and, when T
//! is below the CPUs this process may use, pins it to the first T of them (llama-bench leaves
//! placement to the OS); T above that is refused (it would need a pool-size knob in
//! `prom_models::kernels`). A comma list of thread counts runs one child `prom bench` per count.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file;
use prom_models::load::LoadedModel;
use prom_models::nn::{KvCache, LogitsFor, Model};
use prom_models::source::ModelFiles;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::stats::{mean, stddev};
use super::Args;

#[derive(clap::Args, Clone, Default)]
#[command(next_help_heading = "Model scenario (llama-bench)")]
pub struct LlamaBenchArgs {
    /// Prompt lengths to time (ppP), comma-separated [default: 512].
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',')]
    n_prompt: Vec<usize>,
    /// Generation lengths to time (tgN), comma-separated [default: 128].
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',')]
    n_gen: Vec<usize>,
    /// Tokens already in the cache before each test (untimed), comma-separated [default: 0].
    #[arg(short = 'd', long = "n-depth", value_delimiter = ',')]
    n_depth: Vec<usize>,
    /// Thread counts, comma-separated [default: the CPUs this process may use].
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Most tokens per prefill forward pass (llama-bench's `-b`).
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    batch_size: usize,
    /// Print a JSON array with llama-bench's `-o json` field names instead of the table.
    #[arg(long)]
    json: bool,
}

impl LlamaBenchArgs {
    /// Whether any flag that only the model scenario reads was given.
    pub fn given(&self) -> bool {
        !(self.n_prompt.is_empty() && self.n_gen.is_empty() && self.n_depth.is_empty() && self.threads.is_empty())
    }
}

/// One test: `pp{n_prompt}`, `tg{n_gen}`, at `n_depth`.
#[derive(Clone, Copy)]
struct Test {
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
}

impl Test {
    /// llama-bench's name: `pp512`, `tg128`, `pp512 @ d1024`.
    fn name(&self) -> String {
        let base = if self.n_prompt > 0 { format!("pp{}", self.n_prompt) } else { format!("tg{}", self.n_gen) };
        if self.n_depth > 0 {
            format!("{base} @ d{}", self.n_depth)
        } else {
            base
        }
    }
}

pub(super) fn run(a: &Args) -> Result<()> {
    let l = &a.llama;
    let reps = a.reps.unwrap_or(5);
    let or = |v: &[usize], d: usize| if v.is_empty() { vec![d] } else { v.to_vec() };
    let (ps, ns, ds) = (or(&l.n_prompt, 512), or(&l.n_gen, 128), or(&l.n_depth, 0));
    anyhow::ensure!(l.batch_size > 0, "`--batch-size` must be >= 1. Given: 0");
    let cpus = allowed_cpus()?;
    let threads = or(&l.threads, cpus.len());
    if let Some(&t) = threads.iter().find(|&&t| t == 0 || t > cpus.len()) {
        anyhow::bail!("`-t` must be between 1 and {} (the CPUs this process may run on). Given: {t}", cpus.len());
    }
    let mut tests = Vec::new();
    for &n_depth in &ds {
        tests.extend(ps.iter().filter(|&&p| p > 0).map(|&n_prompt| Test { n_prompt, n_gen: 0, n_depth }));
        tests.extend(ns.iter().filter(|&&n| n > 0).map(|&n_gen| Test { n_prompt: 0, n_gen, n_depth }));
    }
    anyhow::ensure!(!tests.is_empty(), "nothing to time: every `-p` and `-n` value is 0");
    if !l.json {
        print_header();
    }
    let rows = if let [t] = threads[..] {
        use_threads(t, &cpus)?;
        measure_all(a, &tests, reps, t)?
    } else {
        let mut rows = Vec::new();
        for &t in &threads {
            rows.extend(child(t, l.json)?);
        }
        rows
    };
    if l.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// Loads the model once and times every test; prints each table row as it completes (unless
/// `--json`).
fn measure_all(a: &Args, tests: &[Test], reps: usize, threads: usize) -> Result<Vec<Value>> {
    let m = a.model.load()?;
    let info = ModelInfo::of(&m, &a.model.model)?;
    let model = &m.model;
    let vocab = model.config().vocab_size as u32;
    let mut rows = Vec::new();
    for test in tests {
        // The same ids every run; llama-bench draws from `std::rand()` the same way.
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut ids = |n: usize| (0..n).map(|_| rng.random_range(0..vocab)).collect::<Vec<u32>>();
        let (prompt, gen, depth) = (ids(test.n_prompt), ids(test.n_gen.max(1)), ids(test.n_depth));
        let mut cache = model.new_cache()?;
        // Warm-up, as llama-bench: one prompt pass, one decode step.
        if test.n_prompt > 0 {
            prefill(model, &mut cache, &prompt, a.llama.batch_size)?;
        }
        if test.n_gen > 0 {
            decode(model, &mut cache, &gen[..1])?;
        }
        let mut samples_ns = Vec::with_capacity(reps);
        for _ in 0..reps {
            cache.clear();
            prefill(model, &mut cache, &depth, a.llama.batch_size)?;
            let t0 = Instant::now();
            prefill(model, &mut cache, &prompt, a.llama.batch_size)?;
            decode(model, &mut cache, &gen[..test.n_gen])?;
            samples_ns.push(t0.elapsed().as_nanos() as f64);
        }
        let row = info.row(test, threads, a.llama.batch_size, &samples_ns);
        if !a.llama.json {
            print_row(&row);
        }
        rows.push(row);
    }
    Ok(rows)
}

fn prefill(model: &Model, cache: &mut KvCache, ids: &[u32], batch: usize) -> Result<()> {
    for chunk in ids.chunks(batch) {
        model.forward(chunk, cache, LogitsFor::Last)?;
    }
    Ok(())
}

fn decode(model: &Model, cache: &mut KvCache, ids: &[u32]) -> Result<()> {
    // Generated tokens, as the engine computes them (not through the prompt kernels).
    cache.end_prompt();
    for id in ids {
        model.forward(std::slice::from_ref(id), cache, LogitsFor::Last)?;
    }
    Ok(())
}

/// What llama-bench prints about the model: a description, bytes of tensor data, parameters.
struct ModelInfo {
    filename: String,
    desc: String,
    size: u64,
    params: u64,
}

impl ModelInfo {
    fn of(m: &LoadedModel, spec: &str) -> Result<Self> {
        let w = &m.weights;
        // storage type → (parameters, bytes)
        let mut by_type: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        let gguf = match &m.files {
            ModelFiles::Gguf { path } => {
                let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
                Some(gguf_file::Content::read(&mut f).with_context(|| format!("reading {}", path.display()))?)
            }
            ModelFiles::HfDir { .. } => None,
        };
        for name in w.names() {
            let n: u64 = w.shape(&name).map_or(0, |s| s.iter().map(|&d| d as u64).product());
            let bytes = match gguf.as_ref().and_then(|g| g.tensor_infos.get(&name)) {
                Some(i) => n / i.ggml_dtype.block_size() as u64 * i.ggml_dtype.type_size() as u64,
                None => n * dense_bytes(&w.dtype_name(&name).unwrap_or_default()),
            };
            let e = by_type.entry(w.dtype_name(&name).unwrap_or_default()).or_default();
            e.0 += n;
            e.1 += bytes;
        }
        let params = by_type.values().map(|v| v.0).sum();
        let size = by_type.values().map(|v| v.1).sum();
        // The type holding most parameters names the file, as llama.cpp's ftype does.
        let main_type = by_type.iter().max_by_key(|(_, v)| v.0).map_or("?".into(), |(t, _)| t.clone());
        let family = &m.model.config().family;
        Ok(Self {
            filename: spec.to_owned(),
            desc: format!("{family} {} {main_type}", human_params(params)),
            size,
            params,
        })
    }

    /// One result in llama-bench's `-o json` field names (the subset that applies to us).
    fn row(&self, t: &Test, threads: usize, batch: usize, samples_ns: &[f64]) -> Value {
        let tokens = (t.n_prompt + t.n_gen) as f64;
        let samples_ts: Vec<f64> = samples_ns.iter().map(|ns| tokens * 1e9 / ns).collect();
        json!({
            "build_version": env!("CARGO_PKG_VERSION"),
            "model_filename": self.filename,
            "model_type": self.desc,
            "model_size": self.size,
            "model_n_params": self.params,
            "backend": "CPU",
            "n_threads": threads,
            "n_batch": batch,
            "n_prompt": t.n_prompt,
            "n_gen": t.n_gen,
            "n_depth": t.n_depth,
            "test": t.name(),
            "avg_ns": mean(samples_ns) as u64,
            "stddev_ns": stddev(samples_ns) as u64,
            "avg_ts": mean(&samples_ts),
            "stddev_ts": stddev(&samples_ts),
            "samples_ns": samples_ns.iter().map(|&x| x as u64).collect::<Vec<_>>(),
            "samples_ts": samples_ts,
        })
    }
}

/// Bytes per value of a dense safetensors dtype name (`F32`, `BF16`, ...).
fn dense_bytes(name: &str) -> u64 {
    match name {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    }
}

/// `134515008` → `135M`, `1235814400` → `1.2B`.
fn human_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

fn print_header() {
    println!(
        "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} | {:>15} | {:>20} |",
        "model", "size", "params", "backend", "threads", "test", "t/s"
    );
    println!(
        "| {} | {}: | {}: | {} | {}: | {}: | {}: |",
        "-".repeat(30),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(10),
        "-".repeat(6),
        "-".repeat(14),
        "-".repeat(19)
    );
}

fn print_row(r: &Value) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let size = format!("{:.2} MiB", f("model_size") / (1024.0 * 1024.0));
    let size = if f("model_size") >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", f("model_size") / (1u64 << 30) as f64)
    } else {
        size
    };
    let params = if f("model_n_params") >= 1e9 {
        format!("{:.2} B", f("model_n_params") / 1e9)
    } else {
        format!("{:.2} M", f("model_n_params") / 1e6)
    };
    let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    println!(
        "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} | {:>15} | {:>20} |",
        s("model_type"),
        size,
        params,
        s("backend"),
        r["n_threads"].as_u64().unwrap_or(0),
        s("test"),
        format!("{:.2} ± {:.2}", f("avg_ts"), f("stddev_ts"))
    );
}

/// The CPUs this process may run on (its affinity mask).
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a properly sized, writable cpu_set_t.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    anyhow::ensure!(rc == 0, "sched_getaffinity: {}", std::io::Error::last_os_error());
    // SAFETY: reading bits of an initialised set.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Result<Vec<usize>> {
    Ok((0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect())
}

/// Makes every thread pool this process starts later use `t` threads. Must run before the
/// model loads (the pools start at first use).
fn use_threads(t: usize, cpus: &[usize]) -> Result<()> {
    std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    if t == cpus.len() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: building a cpu_set_t from valid CPU numbers, then setting this thread's mask
        // (threads started afterwards inherit it).
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in &cpus[..t] {
                libc::CPU_SET(c, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        anyhow::ensure!(rc == 0, "sched_setaffinity: {}", std::io::Error::last_os_error());
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    anyhow::bail!("`-t {t}` below the number of CPUs needs CPU affinity, which is only set on Linux")
}

/// Runs this command again with `-t t --json` in place of its `-t` list; its rows.
fn child(t: usize, print_json: bool) -> Result<Vec<Value>> {
    let mut args: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        if x == "-t" || x == "--threads" {
            it.next();
        } else if !(x.starts_with("--threads=") || x.starts_with("-t") && !x.starts_with("--") || x == "--json") {
            args.push(x);
        }
    }
    let exe = std::env::current_exe().context("finding the prom executable")?;
    let out = Command::new(exe)
        .args(&args)
        .args(["-t", &t.to_string(), "--json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running prom bench for one thread count")?;
    anyhow::ensure!(out.status.success(), "prom bench -t {t} failed ({})", out.status);
    let rows: Vec<Value> =
        serde_json::from_slice(&out.stdout).context("reading the JSON of prom bench for one thread count")?;
    if !print_json {
        rows.iter().for_each(print_row);
    }
    Ok(rows)
}

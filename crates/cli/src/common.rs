//! What every subcommand shares: resolving and loading a model, sampling flags.

use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

use prom_engine::{
    Engine, EngineConfig, Event, FinishReason, KvCacheMemory, Policy, Request, SamplingParams, Timings, Usage,
};
use prom_models::load::{LoadFormat, LoadOptions, LoadedModel};
use prom_models::nn::KvDtype;
use prom_models::source::{self, ResolveOptions};

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Model: a .gguf file, an HF directory, `org/name`, or the default model's name.
    #[arg(long, short, default_value = source::DEFAULT_MODEL)]
    pub model: String,
    /// Never touch the network (same as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Where the model runs: `cpu`, `cuda` or `cuda:N` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Activations and dense weights: auto (f32 on the CPU and for GGUF, bf16 for HF checkpoints
    /// on a GPU), f32, bf16 or f16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Quantize an HF checkpoint's linear weights at load: `int8` (per output channel).
    #[arg(long, value_parser = |s: &str| s.parse::<prom_models::quant::WeightQuant>())]
    pub quantize: Option<prom_models::quant::WeightQuant>,
    /// Split the model over this many GPUs (`--device cuda:N` takes N.. N+size-1) with tensor
    /// parallelism over NCCL; on the CPU the ranks are threads (docs/parallel.md). HF checkpoints.
    #[arg(long, default_value_t = 1)]
    pub tensor_parallel_size: usize,
    /// KV cache storage: auto (f16 for GGUF models, f32 for HF checkpoints on the CPU, the
    /// activation type on a GPU), f32, f16, bf16 (GPU) or int8 (CPU: per-vector scales, half
    /// of f16's bytes per token).
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: String,
    /// On a GPU, run decode steps kernel by kernel instead of replaying them as CUDA graphs
    /// (vLLM's flag).
    #[arg(long)]
    pub enforce_eager: bool,
    /// Where the weights come from: `auto` (the model's files) or `dummy` (vLLM's name: seeded
    /// made-up weights in the shapes an HF directory's config.json implies, which needs no weight
    /// files; for speed measurements).
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<LoadFormat>())]
    pub load_format: LoadFormat,
}

impl ModelArgs {
    /// Resolves and loads the model on the chosen device, in the chosen dtype.
    pub fn load(&self) -> Result<LoadedModel> {
        let dtype = match self.dtype.as_str() {
            "auto" => None,
            "f32" => Some(DType::F32),
            "bf16" => Some(DType::BF16),
            "f16" => Some(DType::F16),
            other => anyhow::bail!("--dtype must be auto, f32, bf16 or f16, got `{other}`"),
        };
        let kv: Option<KvDtype> = match self.kv_cache_dtype.as_str() {
            "auto" => None,
            kv => Some(kv.parse().context("--kv-cache-dtype")?),
        };
        let device = prom_models::cuda::parse_device(&self.device)?;
        let opts = LoadOptions { device, dtype, load_format: self.load_format, cuda_graphs: !self.enforce_eager };
        let loaded = load_model_with(&self.model, self.offline, &opts, self.quantize, self.tensor_parallel_size)?;
        Ok(match kv {
            Some(kv) => LoadedModel { model: loaded.model.with_kv_dtype(kv), ..loaded },
            None => loaded,
        })
    }
}

pub fn load_model(spec: &str, offline: bool) -> Result<LoadedModel> {
    load_model_with(spec, offline, &LoadOptions::on(&Device::Cpu), None, 1)
}

fn load_model_with(
    spec: &str,
    offline: bool,
    opts: &LoadOptions,
    quant: Option<prom_models::quant::WeightQuant>,
    tensor_parallel: usize,
) -> Result<LoadedModel> {
    anyhow::ensure!(tensor_parallel >= 1, "--tensor-parallel-size must be >= 1. Given: {tensor_parallel}");
    anyhow::ensure!(
        tensor_parallel == 1 || quant.is_none(),
        "--quantize cannot be combined with --tensor-parallel-size {tensor_parallel}: the split cuts dense weights"
    );
    let resolve = ResolveOptions { offline, ..ResolveOptions::default() };
    let files = match opts.load_format {
        LoadFormat::Dummy if std::path::Path::new(spec).is_dir() => source::resolve_config_dir(spec.as_ref()),
        _ => source::resolve(spec, &resolve),
    }
    .with_context(|| format!("resolving model `{spec}`"))?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("loading {spec}"));
    bar.enable_steady_tick(Duration::from_millis(100));
    let loaded = match tensor_parallel {
        1 => prom_models::load::load_quantized(&files, opts, quant),
        n => prom_models::parallel::load_tensor_parallel(&files, opts, n),
    }
    .with_context(|| format!("loading model `{spec}`"));
    bar.finish_and_clear();
    loaded
}

#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// Maximum new tokens.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 = greedy. Default: the model's generation_config, else 0.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Seed for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Penalize tokens already in the prompt or output (1 = off; HF semantics).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Penalize tokens already generated, once each (OpenAI semantics, -2..2).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Penalize tokens already generated, per occurrence (OpenAI semantics, -2..2).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Never stop on EOS before this many tokens.
    #[arg(long, default_value_t = 0)]
    pub min_tokens: usize,
    /// Stop when the output contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    /// Flags win; then the model's generation_config.json (when it asks for sampling); then greedy.
    pub fn params(&self, m: &LoadedModel) -> SamplingParams {
        let g = &m.generation_config;
        let sample = g.do_sample.unwrap_or(false);
        let from_model = |v: Option<f32>| if sample { v } else { None };
        SamplingParams {
            temperature: self.temperature.or(from_model(g.temperature)).unwrap_or(0.0),
            top_k: self.top_k.or(if sample { g.top_k } else { None }).unwrap_or(0),
            top_p: self.top_p.or(from_model(g.top_p)).unwrap_or(1.0),
            min_p: self.min_p.or(from_model(g.min_p)).unwrap_or(0.0),
            seed: self.seed,
            repetition_penalty: self.repetition_penalty.or(g.repetition_penalty).unwrap_or(1.0),
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            min_tokens: self.min_tokens,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            stop_token_ids: g.eos_token_ids.clone(),
            ignore_eos: self.ignore_eos,
            ..SamplingParams::default()
        }
    }
}

pub fn tokenizer(m: &LoadedModel) -> Result<&prom_models::Tokenizer> {
    m.tokenizer.as_ref().context("this model has no tokenizer (no tokenizer.json); use token ids instead")
}

/// Engine sizing flags (vLLM's names).
#[derive(clap::Args, Clone)]
pub struct EngineArgs {
    /// KV cache size: a fraction of available memory (0.2) or a size (4GiB, 512MiB).
    #[arg(long, default_value = "0.2")]
    pub kv_cache_memory: String,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Token budget of one engine step (prefill chunks and decode tokens together).
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    /// Most sequences in flight at once.
    #[arg(long, default_value_t = 128)]
    pub max_num_seqs: usize,
    /// Longest prompt + output (default: the model's context length).
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Turn off reuse of cached prompt prefixes across requests.
    #[arg(long)]
    pub no_prefix_caching: bool,
    /// Admit and preempt by request priority instead of arrival order.
    #[arg(long)]
    pub priority_scheduling: bool,
    /// Wait for each step's tokens before scheduling the next (on a GPU the next step is
    /// otherwise scheduled while one runs, its input ids taken from the device).
    #[arg(long)]
    pub no_async_scheduling: bool,
}

impl EngineArgs {
    pub fn config(&self) -> Result<EngineConfig> {
        Ok(EngineConfig {
            block_size: self.block_size,
            kv_cache_memory: self.kv_cache_memory.parse::<KvCacheMemory>()?,
            max_num_batched_tokens: self.max_num_batched_tokens,
            max_num_seqs: self.max_num_seqs,
            max_model_len: self.max_model_len,
            enable_prefix_caching: !self.no_prefix_caching,
            policy: if self.priority_scheduling { Policy::Priority } else { Policy::Fcfs },
            async_scheduling: self.no_async_scheduling.then_some(false),
            ..EngineConfig::default()
        })
    }
}

/// The model moved into a running engine, with what the CLI still needs from the load.
pub struct Served {
    pub engine: Engine,
    pub tokenizer: Arc<prom_models::Tokenizer>,
    pub chat_template: Option<prom_models::chat::ChatTemplate>,
}

pub fn start_engine(m: LoadedModel, args: &EngineArgs) -> Result<Served> {
    let tokenizer = Arc::new(m.tokenizer.context("this model has no tokenizer (no tokenizer.json)")?);
    let mut config = args.config()?;
    // On a GPU the fraction is of the device memory still free once the weights are loaded
    // (the engine's default reads the host's MemAvailable).
    if let (KvCacheMemory::FractionOfAvailable(f), Some((free, _))) =
        (config.kv_cache_memory, prom_models::cuda::memory_info(m.model.device())?)
    {
        config.kv_cache_memory = KvCacheMemory::Bytes((free as f64 * f) as u64);
    }
    let engine = Engine::start(m.model, Arc::clone(&tokenizer), config)?;
    Ok(Served { engine, tokenizer, chat_template: m.chat_template })
}

/// One finished generation.
pub struct Generated {
    pub text: String,
    pub tokens: usize,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
    pub timings: Timings,
}

/// Runs one request through the engine, calling `on_text` with each final piece of text.
/// `max_tokens` is capped to what the context leaves after the prompt.
pub fn generate(
    engine: &Engine,
    prompt: Vec<u32>,
    mut params: SamplingParams,
    mut on_text: impl FnMut(&str),
) -> Result<Generated> {
    let room = engine.info().max_model_len.saturating_sub(prompt.len());
    anyhow::ensure!(
        room > 0,
        "the prompt has {} tokens; the model's context length is {}",
        prompt.len(),
        engine.info().max_model_len
    );
    params.max_tokens = params.max_tokens.min(room);
    let mut stream = engine.submit(Request::new(prompt, params))?;
    let (mut text, mut tokens, mut finish) = (String::new(), 0, None);
    while let Some(event) = stream.blocking_next() {
        match event {
            Event::Delta(d) => {
                on_text(&d.text);
                text.push_str(&d.text);
                tokens += d.token_ids.len();
                finish = d.finish_reason.or(finish);
            }
            Event::Finished { usage, timings } => return Ok(Generated { text, tokens, finish, usage, timings }),
            Event::Error(e) => return Err(e.into()),
            Event::PromptLogprobs(_) => {}
        }
    }
    anyhow::bail!("the engine ended the request without finishing it")
}

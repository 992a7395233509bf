//! What every subcommand shares: resolving and loading a model, sampling flags.

use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use prom_engine::SamplingParams;
use prom_models::load::LoadedModel;
use prom_models::source::{self, ResolveOptions};

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Model: a .gguf file, an HF directory, `org/name`, or the default model's name.
    #[arg(long, short, default_value = source::DEFAULT_MODEL)]
    pub model: String,
    /// Never touch the network (same as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
}

pub fn load_model(spec: &str, offline: bool) -> Result<LoadedModel> {
    let opts = ResolveOptions { offline, ..ResolveOptions::default() };
    let files = source::resolve(spec, &opts).with_context(|| format!("resolving model `{spec}`"))?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("loading {spec}"));
    bar.enable_steady_tick(Duration::from_millis(100));
    let loaded = prom_models::load::load(&files, &Device::Cpu).with_context(|| format!("loading model `{spec}`"));
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

//! Files → a runnable [`Model`]: parse the config once, map the family, load the tensors.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::config::gguf::{from_gguf_metadata, Meta};
use crate::config::hf::{from_hf_config, HfConfig};
use crate::loader::{GgufWeights, SafetensorsWeights, Weights};
use crate::nn::Model;
use crate::{Error, Result};

/// Where a model runs and in which precision.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Activations and dense weights. `None`: f32 on the CPU and for GGUF files (candle's
    /// quantized matmuls take f32), bf16 for HF checkpoints on a GPU.
    pub dtype: Option<DType>,
}

impl LoadOptions {
    pub fn on(device: &Device) -> Self {
        Self { device: device.clone(), dtype: None }
    }
}

/// An HF checkpoint: `config.json` plus its safetensors files (one, or the shards of an index).
pub fn load_hf(config: &Path, weight_files: &[PathBuf], device: &Device) -> Result<(Model, SafetensorsWeights)> {
    load_hf_with(config, weight_files, &LoadOptions::on(device))
}

pub fn load_hf_with(config: &Path, weight_files: &[PathBuf], o: &LoadOptions) -> Result<(Model, SafetensorsWeights)> {
    load_hf_quantized(config, weight_files, o, None)
}

/// [`load_hf_with`], with the linear weights quantized at load (`--quantize int8`).
pub fn load_hf_quantized(
    config: &Path,
    weight_files: &[PathBuf],
    o: &LoadOptions,
    quant: Option<crate::quant::WeightQuant>,
) -> Result<(Model, SafetensorsWeights)> {
    let raw = HfConfig::from_file(config)?;
    let weights = SafetensorsWeights::open(weight_files)?.with_weight_quant(quant);
    let (cfg, names) = from_hf_config(&raw, &|n| weights.contains(n)).map_err(|e| with_file(e, config))?;
    let dtype = o.dtype.unwrap_or_else(|| crate::cuda::default_dtype(&o.device));
    let model = Model::load_as(cfg, &names, &weights, &o.device, dtype)?;
    crate::cuda::synchronize(&o.device)?;
    Ok((model, weights))
}

/// A GGUF file: config from its metadata, tensors from its data section.
pub fn load_gguf(path: &Path, device: &Device) -> Result<(Model, GgufWeights)> {
    load_gguf_with(path, &LoadOptions::on(device))
}

pub fn load_gguf_with(path: &Path, o: &LoadOptions) -> Result<(Model, GgufWeights)> {
    let device = &o.device;
    let weights = GgufWeights::open(path)?;
    let meta = Meta { map: &weights.content().metadata, path };
    let factors = |name: &str| -> Result<Vec<f32>> {
        let t = weights.load(name, device)?.to_dense(device)?;
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::bad_file(path, format!("tensor `{name}`: {e}")))
    };
    let (cfg, names) = from_gguf_metadata(&meta, &|n| weights.contains(n), &factors).map_err(|e| with_file(e, path))?;
    // llama.cpp's default cache type (f16 K/V): half the memory, and the numerics GGUF users
    // compare against.
    let dtype = o.dtype.unwrap_or(DType::F32);
    let model = Model::load_as(cfg, &names, &weights, device, dtype)?.with_kv_dtype(DType::F16);
    crate::cuda::synchronize(device)?;
    Ok((model, weights))
}

/// Config errors do not know their file; attach it.
fn with_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Config { .. } | Error::UnknownArchitecture { .. } => Error::bad_file(path, e.to_string()),
        other => other,
    }
}

/// Everything a model directory or GGUF file provides, ready to run.
pub struct LoadedModel {
    pub model: Model,
    /// `None` for weight-only directories (e.g. the golden fixtures): text in/out is unavailable.
    pub tokenizer: Option<crate::Tokenizer>,
    /// `None` when the model ships no template.
    pub chat_template: Option<crate::chat::ChatTemplate>,
    pub generation_config: crate::generation_config::GenerationConfig,
    /// The tensors as stored, for `prom inspect`.
    pub weights: Box<dyn Weights>,
    pub files: crate::source::ModelFiles,
}

/// Loads model, tokenizer, chat template and generation defaults from resolved files.
pub fn load(files: &crate::source::ModelFiles, device: &Device) -> Result<LoadedModel> {
    load_with(files, &LoadOptions::on(device))
}

/// [`load`] on a chosen device and dtype.
pub fn load_with(files: &crate::source::ModelFiles, opts: &LoadOptions) -> Result<LoadedModel> {
    load_quantized(files, opts, None)
}

/// [`load_with`], with an HF checkpoint's linear weights quantized at load (`--quantize int8`);
/// GGUF files are refused with `quant` set (their weights are already quantized).
pub fn load_quantized(
    files: &crate::source::ModelFiles,
    opts: &LoadOptions,
    quant: Option<crate::quant::WeightQuant>,
) -> Result<LoadedModel> {
    use crate::chat::ChatTemplate;
    use crate::generation_config::GenerationConfig;
    use crate::source::ModelFiles;
    match files {
        ModelFiles::HfDir {
            config,
            weights,
            tokenizer_json,
            tokenizer_config,
            generation_config,
            chat_template_jinja,
            ..
        } => {
            let (model, w) = load_hf_quantized(config, weights, opts, quant)?;
            let tokenizer = tokenizer_json
                .as_deref()
                .map(|t| crate::Tokenizer::from_hf_files(t, tokenizer_config.as_deref()))
                .transpose()?;
            let chat_template =
                ChatTemplate::from_hf_files(tokenizer_config.as_deref(), chat_template_jinja.as_deref())?;
            let generation_config = match generation_config {
                Some(p) => GenerationConfig::from_file(p)?,
                None => GenerationConfig::default(),
            };
            Ok(LoadedModel {
                model,
                tokenizer,
                chat_template,
                generation_config,
                weights: Box::new(w),
                files: files.clone(),
            })
        }
        ModelFiles::Gguf { path } => {
            if let Some(q) = quant {
                return Err(Error::InvalidInput(format!(
                    "--quantize {q:?} applies to HF safetensors checkpoints; {} is a GGUF file whose weights are \
                     already stored quantized (use `prom quantize` to change its type)",
                    path.display()
                )));
            }
            let (model, w) = load_gguf_with(path, opts)?;
            let tokenizer = crate::Tokenizer::from_gguf(w.content(), path)?;
            let chat_template = tokenizer
                .chat_template()
                .map(|src| ChatTemplate::new(src, tokenizer.bos_token(), tokenizer.eos_token()))
                .transpose()?;
            let generation_config = GenerationConfig {
                bos_token_id: tokenizer.bos_token_id(),
                eos_token_ids: tokenizer.eos_token_ids().to_vec(),
                ..GenerationConfig::default()
            };
            Ok(LoadedModel {
                model,
                tokenizer: Some(tokenizer),
                chat_template,
                generation_config,
                weights: Box::new(w),
                files: files.clone(),
            })
        }
    }
}

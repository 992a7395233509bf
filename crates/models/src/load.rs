//! Files → a runnable [`Model`]: parse the config once, map the family, load the tensors.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::config::gguf::{from_gguf_metadata, Meta};
use crate::config::hf::{from_hf_config, HfConfig};
use crate::loader::{DummyWeights, GgufWeights, SafetensorsWeights, Weights};
use crate::nn::Model;
use crate::{Error, Result};

/// Where a model runs and in which precision.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Activations and dense weights. `None`: f32 on the CPU and for GGUF files (candle's
    /// quantized matmuls take f32), bf16 for HF checkpoints on a GPU.
    pub dtype: Option<DType>,
    /// Where the weights come from.
    pub load_format: LoadFormat,
    /// Replay GPU decode steps as CUDA graphs (`--enforce-eager` turns this off). Split models
    /// (tensor parallelism) always run eagerly for now.
    pub cuda_graphs: bool,
}

impl LoadOptions {
    pub fn on(device: &Device) -> Self {
        Self { device: device.clone(), dtype: None, load_format: LoadFormat::Auto, cuda_graphs: true }
    }

    /// `device` in `dtype` (`None`: the default for the device and format), weights from the files.
    pub fn with_dtype(device: &Device, dtype: Option<DType>) -> Self {
        Self { dtype, ..Self::on(device) }
    }
}

/// Where a model's weights come from (vLLM's `--load-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadFormat {
    /// The checkpoint's files (safetensors or GGUF).
    #[default]
    Auto,
    /// Seeded made-up weights in the shapes `config.json` implies ([`DummyWeights`]); an HF
    /// model directory needs nothing but its config. For speed measurements.
    Dummy,
}

impl std::str::FromStr for LoadFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "dummy" => Ok(Self::Dummy),
            other => Err(Error::config("load_format", format!("expected auto or dummy, got `{other}`"))),
        }
    }
}

/// The seed of `--load-format dummy` weights.
pub const DUMMY_SEED: u64 = 0;

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
    let weights = SafetensorsWeights::open(weight_files)?.with_weight_quant(quant);
    Ok((hf_model(config, &weights, o)?, weights))
}

/// The decoder `config` describes, its tensors from `weights`.
fn hf_model(config: &Path, weights: &dyn Weights, o: &LoadOptions) -> Result<Model> {
    let raw = HfConfig::from_file(config)?;
    let (cfg, names) = from_hf_config(&raw, &|n| weights.contains(n)).map_err(|e| with_file(e, config))?;
    let dtype = o.dtype.unwrap_or_else(|| crate::cuda::default_dtype(&o.device));
    let model = Model::load_as(cfg, &names, weights, &o.device, dtype)?;
    model.set_cuda_graphs(o.cuda_graphs);
    crate::cuda::synchronize(&o.device)?;
    Ok(model)
}

/// The weights of an HF directory as `load_format` says: its safetensors files, or made up.
pub(crate) fn hf_weights(
    dir: &Path,
    files: &[PathBuf],
    load_format: LoadFormat,
    quant: Option<crate::quant::WeightQuant>,
) -> Result<Box<dyn Weights + Send + Sync>> {
    Ok(match load_format {
        LoadFormat::Auto => Box::new(SafetensorsWeights::open(files)?.with_weight_quant(quant)),
        LoadFormat::Dummy => Box::new(DummyWeights::new(dir, DUMMY_SEED)),
    })
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
    model.set_cuda_graphs(o.cuda_graphs);
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
            dir,
            config,
            weights,
            tokenizer_json,
            tokenizer_config,
            generation_config,
            chat_template_jinja,
        } => {
            if opts.load_format == LoadFormat::Dummy && quant.is_some() {
                return Err(Error::InvalidInput("--quantize needs stored weights, not --load-format dummy".into()));
            }
            let w = hf_weights(dir, weights, opts.load_format, quant)?;
            let model = hf_model(config, w.as_ref(), opts)?;
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
            Ok(LoadedModel { model, tokenizer, chat_template, generation_config, weights: w, files: files.clone() })
        }
        ModelFiles::Gguf { path } => {
            if opts.load_format == LoadFormat::Dummy {
                return Err(Error::InvalidInput(format!(
                    "--load-format dummy makes up an HF checkpoint's weights from its config.json; {} is a GGUF file",
                    path.display()
                )));
            }
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

//! Files → a runnable [`Model`]: parse the config once, map the family, load the tensors.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::config::gguf::{from_gguf_metadata, Meta};
use crate::config::hf::{from_hf_config, HfConfig};
use crate::loader::{GgufWeights, SafetensorsWeights, Weights};
use crate::nn::Model;
use crate::{Error, Result};

/// An HF checkpoint: `config.json` plus its safetensors files (one, or the shards of an index).
pub fn load_hf(config: &Path, weight_files: &[PathBuf], device: &Device) -> Result<(Model, SafetensorsWeights)> {
    let raw = HfConfig::from_file(config)?;
    let weights = SafetensorsWeights::open(weight_files)?;
    let (cfg, names) = from_hf_config(&raw, &|n| weights.contains(n))
        .map_err(|e| with_file(e, config))?;
    let model = Model::load(cfg, &names, &weights, device)?;
    Ok((model, weights))
}

/// A GGUF file: config from its metadata, tensors from its data section.
pub fn load_gguf(path: &Path, device: &Device) -> Result<(Model, GgufWeights)> {
    let weights = GgufWeights::open(path)?;
    let meta = Meta { map: &weights.content().metadata, path };
    let factors = |name: &str| -> Result<Vec<f32>> {
        let t = weights.load(name, device)?.to_dense(device)?;
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::bad_file(path, format!("tensor `{name}`: {e}")))
    };
    let (cfg, names) = from_gguf_metadata(&meta, &|n| weights.contains(n), &factors)?;
    let model = Model::load(cfg, &names, &weights, device)?;
    Ok((model, weights))
}

/// Config errors do not know their file; attach it.
fn with_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Config { .. } | Error::UnknownArchitecture { .. } => Error::bad_file(path, e.to_string()),
        other => other,
    }
}

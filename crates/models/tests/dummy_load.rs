//! `--load-format dummy`: a directory holding only a `config.json` loads as a model with seeded
//! made-up weights (vLLM's dummy format), for every family; the same seed gives the same
//! logits, and a tensor-parallel split of the dummy model computes what the whole one does
//! (each tensor's values depend on its name, not on the rank that makes it).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use prom_models::load::{load_with, LoadFormat, LoadOptions};
use prom_models::nn::{LogitsFor, Model};
use prom_models::parallel::load_tensor_parallel;
use prom_models::source::{resolve_config_dir, ModelFiles};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(name)
}

/// A directory with the fixture's `config.json` and nothing else.
fn config_only(name: &str) -> (tempfile::TempDir, ModelFiles) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(name).join("config.json"), tmp.path().join("config.json")).unwrap();
    let files = resolve_config_dir(tmp.path()).unwrap();
    (tmp, files)
}

fn dummy() -> LoadOptions {
    LoadOptions { load_format: LoadFormat::Dummy, ..LoadOptions::with_dtype(&Device::Cpu, Some(DType::F32)) }
}

fn logits(model: &Model) -> Vec<f32> {
    let mut cache = model.new_cache().unwrap();
    let mut out: Vec<Tensor> = vec![model.forward(&[1, 17, 42, 9, 3], &mut cache, LogitsFor::All).unwrap()];
    out.push(model.forward(&[5], &mut cache, LogitsFor::Last).unwrap());
    out.iter().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

#[test]
fn every_family_loads_from_its_config_alone() {
    for name in
        ["llama_gqa", "gpt2", "bloom", "gemma2", "qwen3", "phi3", "mixtral", "qwen2_moe", "deepseek_v2", "olmo2"]
    {
        let (_tmp, files) = config_only(name);
        let ModelFiles::HfDir { weights, .. } = &files else { panic!("{name}: not an HF dir") };
        assert!(weights.is_empty());
        let a = logits(&load_with(&files, &dummy()).unwrap_or_else(|e| panic!("{name}: {e}")).model);
        let b = logits(&load_with(&files, &dummy()).unwrap().model);
        assert_eq!(a, b, "{name}: the same seed must give the same logits");
        assert!(a.iter().all(|x| x.is_finite()), "{name}: non-finite logits");
        let spread = a.iter().fold(f32::MIN, |m, &x| m.max(x)) - a.iter().fold(f32::MAX, |m, &x| m.min(x));
        assert!(spread > 1e-3, "{name}: logits do not vary ({spread})");
    }
}

#[test]
fn a_split_dummy_model_matches_the_whole() {
    for name in ["llama_gqa", "qwen3", "mixtral"] {
        let (_tmp, files) = config_only(name);
        let whole = logits(&load_with(&files, &dummy()).unwrap().model);
        let split = logits(&load_tensor_parallel(&files, &dummy(), 2).unwrap_or_else(|e| panic!("{name}: {e}")).model);
        let worst = whole.iter().zip(&split).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 2e-5, "{name}: split differs from whole by {worst}");
    }
}

#[test]
fn without_dummy_a_weightless_directory_is_a_clear_error() {
    let (_tmp, files) = config_only("llama_gqa");
    let e = load_with(&files, &LoadOptions::with_dtype(&Device::Cpu, None)).err().unwrap().to_string();
    assert!(e.contains("no safetensors files"), "{e}");
    let e = prom_models::source::resolve(&_tmp.path().to_string_lossy(), &Default::default()).unwrap_err().to_string();
    assert!(e.contains("without weights"), "{e}");
}

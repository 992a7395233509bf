//! `prom quantize` from an HF directory: the golden tiny Llama checkpoints converted to GGUF
//! (names, the RoPE row permutation, metadata) and run by our GGUF loader give the HF
//! checkpoint's logits; Q8_0 stays close; a GGUF→GGUF pass copies blocks bit for bit.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use prom_models::load::{load_gguf, load_hf};
use prom_models::loader::{GgufWeights, Weights};
use prom_models::nn::LogitsFor;
use prom_models::quant::{quantize_file, FileType, QuantizeOptions};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(name)
}

fn logits_hf(dir: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let (m, _) = load_hf(&dir.join("config.json"), &[dir.join("model.safetensors")], &Device::Cpu).unwrap();
    // GGUF models run with llama.cpp's f16 K/V cache (load_gguf); compare like with like.
    let m = m.with_kv_dtype(DType::F16);
    let mut c = m.new_cache().unwrap();
    m.forward(ids, &mut c, LogitsFor::All).unwrap().to_vec2().unwrap()
}

fn logits_gguf(path: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let (m, _) = load_gguf(path, &Device::Cpu).unwrap();
    let mut c = m.new_cache().unwrap();
    m.forward(ids, &mut c, LogitsFor::All).unwrap().to_vec2().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn hf_llama_to_gguf_gives_the_hf_logits() {
    let ids = [1u32, 17, 200, 3, 99, 42, 7, 250, 11];
    for name in ["llama_gqa", "llama_bf16"] {
        let dir = golden(name);
        let tmp = tempfile::tempdir().unwrap();
        let want = logits_hf(&dir, &ids);
        let scale = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        // F32 must be exact up to summation order. Q8_0 rounds weights and (in the kernel)
        // activations to 8 bits; on these random 64-wide layers that moves logits by ~2% of the
        // largest: allow 5% (a wrong layout moves them by ~100%).
        for (ftype, tol) in [(FileType::F32, 1e-4), (FileType::Q8_0, 0.05 * scale)] {
            let out = tmp.path().join(format!("{name}.{ftype}.gguf"));
            quantize_file(&dir, &out, &QuantizeOptions::new(ftype), &mut |_| {}).unwrap();
            let got = logits_gguf(&out, &ids);
            let d = max_diff(&want, &got);
            eprintln!("{name} {ftype}: max |logit diff| vs HF = {d:.2e} (largest |logit| {scale:.2})");
            assert!(d <= tol, "{name} {ftype}: logits differ by {d} (> {tol})");
        }
    }
}

#[test]
fn gguf_to_gguf_same_type_copies_blocks() {
    let dir = golden("llama_gqa");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.gguf"), tmp.path().join("b.gguf"));
    quantize_file(&dir, &a, &QuantizeOptions::new(FileType::Q4_K_M), &mut |_| {}).unwrap();
    quantize_file(&a, &b, &QuantizeOptions::new(FileType::Q4_K_M), &mut |_| {}).unwrap();
    let (wa, wb) = (GgufWeights::open(&a).unwrap(), GgufWeights::open(&b).unwrap());
    assert_eq!(wa.names(), wb.names());
    for n in wa.names() {
        assert_eq!(wa.dtype_name(&n), wb.dtype_name(&n), "{n}");
        assert_eq!(wa.raw(&n).unwrap(), wb.raw(&n).unwrap(), "{n}: requantizing to the same type changed blocks");
    }
}

#[test]
fn unconvertible_family_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let err =
        quantize_file(&golden("gpt2"), &tmp.path().join("x.gguf"), &QuantizeOptions::new(FileType::Q8_0), &mut |_| {})
            .expect_err("GPT-2 is not converted")
            .to_string();
    assert!(err.contains("GPT2LMHeadModel"), "{err}");
}

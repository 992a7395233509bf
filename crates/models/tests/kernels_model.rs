//! Whole models on our CPU weight kernels (`prom_models::kernels`): a Q5_0/Q5_1 GGUF gives the
//! logits of its own dequantized F32 twin (the same weights run by candle's f32 matmul).
//!
//! The golden tiny Llama is converted by `prom quantize` (HF dir → GGUF of the type), then that
//! GGUF to F32, which dequantizes every tensor exactly. The only difference left is the
//! activations: the block kernels quantize them to 8 bits per 32 values as llama.cpp does
//! (~1–2% of the largest logit on these random 64-wide layers; a wrong fifth bit moves logits by
//! tens of percent).
//!
//! (Dense F16/BF16 weights have no such twin: an F32 copy of 16-bit values is run by the same
//! 16-bit kernel. The golden tests cover them against transformers: `llama_bf16`, `qwen2_f16`.)

use std::path::{Path, PathBuf};

use candle_core::Device;
use prom_models::load::load_gguf;
use prom_models::loader::{GgufWeights, Weights};
use prom_models::nn::LogitsFor;
use prom_models::quant::{quantize_file, FileType, QuantizeOptions};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(name)
}

fn logits(path: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let (m, _) = load_gguf(path, &Device::Cpu).unwrap();
    let mut c = m.new_cache().unwrap();
    m.forward(ids, &mut c, LogitsFor::All).unwrap().to_vec2().unwrap()
}

#[test]
fn kernel_types_give_their_dequantized_twins_logits() {
    let ids = [1u32, 17, 200, 3, 99, 42, 7, 250, 11];
    let tmp = tempfile::tempdir().unwrap();
    for (ftype, dtype, rel_tol) in [(FileType::Q5_0, "Q5_0", 0.05), (FileType::Q5_1, "Q5_1", 0.05)] {
        let typed = tmp.path().join(format!("llama_gqa.{ftype}.gguf"));
        let twin = tmp.path().join(format!("llama_gqa.{ftype}.f32.gguf"));
        quantize_file(&golden("llama_gqa"), &typed, &QuantizeOptions::new(ftype), &mut |_| {}).unwrap();
        quantize_file(&typed, &twin, &QuantizeOptions::new(FileType::F32), &mut |_| {}).unwrap();
        // Precondition: the layers really are of this type (not kept at a fallback type).
        let g = GgufWeights::open(&typed).unwrap();
        let n_typed = g.names().iter().filter(|n| g.dtype_name(n).as_deref() == Some(dtype)).count();
        assert!(n_typed >= 7, "{ftype}: only {n_typed} tensors are {dtype}");
        let (got, want) = (logits(&typed, &ids), logits(&twin, &ids));
        let scale = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        let d = got.iter().flatten().zip(want.iter().flatten()).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{ftype}: max |logit diff| vs dequantized F32 twin = {d:.2e} (largest |logit| {scale:.2})");
        assert!(d <= rel_tol * scale, "{ftype}: logits differ by {d} (> {rel_tol} x {scale})");
    }
}

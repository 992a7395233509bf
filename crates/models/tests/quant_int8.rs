//! `--quantize int8`: per-output-channel int8 weights at load for HF checkpoints.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use prom_models::load::{load_hf_quantized, load_quantized, LoadOptions};
use prom_models::nn::LogitsFor;
use prom_models::quant::{self, WeightQuant};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(name)
}

#[test]
fn per_channel_int8_has_one_scale_per_row_and_rounds_to_it() {
    let (n, k) = (5, 96);
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * (1.0 + (i / k) as f32)).collect();
    let bytes = quant::per_channel_int8(&w, n, k);
    assert_eq!(bytes.len(), n * k / 32 * 34);
    let back = quant::dequantize(candle_core::quantized::GgmlDType::Q8_0, &bytes, &[n, k]).unwrap();
    for r in 0..n {
        let blocks: Vec<&[u8]> = bytes[r * (k / 32) * 34..][..(k / 32) * 34].chunks(34).collect();
        assert!(blocks.iter().all(|b| b[..2] == blocks[0][..2]), "row {r}: blocks carry different scales");
        let d = half::f16::from_le_bytes([blocks[0][0], blocks[0][1]]).to_f32();
        let amax = w[r * k..][..k].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((d - amax / 127.0).abs() <= amax / 127.0 * 1e-3, "row {r}: scale {d}, max {amax}");
        for c in 0..k {
            let (a, b) = (w[r * k + c], back[r * k + c]);
            assert!((a - b).abs() <= 0.5 * d * 1.001 + 1e-6, "({r}, {c}): {a} → {b} (scale {d})");
        }
    }
}

#[test]
fn int8_llama_stays_close_to_f32() {
    let dir = golden("llama_gqa");
    let files = [dir.join("model.safetensors")];
    let opts = LoadOptions::on(&Device::Cpu);
    let ids = [1u32, 17, 200, 3, 99, 42, 7];
    let run = |q| {
        let (m, w) = load_hf_quantized(&dir.join("config.json"), &files, &opts, q).unwrap();
        let m = m.with_kv_dtype(DType::F32);
        let mut c = m.new_cache().unwrap();
        let l: Vec<Vec<f32>> = m.forward(&ids, &mut c, LogitsFor::All).unwrap().to_vec2().unwrap();
        (l, w)
    };
    let (want, _) = run(None);
    let (got, w) = run(Some(WeightQuant::Int8));
    // The projections are int8 now; the embedding (and the LM head tied to it) is not.
    use prom_models::loader::{WeightData, Weights};
    let q = w.load("model.layers.0.self_attn.q_proj.weight", &Device::Cpu).unwrap();
    assert!(matches!(q, WeightData::Quantized(_)), "q_proj was not quantized");
    let e = w.load("model.embed_tokens.weight", &Device::Cpu).unwrap();
    assert!(matches!(e, WeightData::Dense(_)), "the embedding must stay dense");
    let scale = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let diff = want.iter().flatten().zip(got.iter().flatten()).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("int8 vs f32: max |logit diff| {diff:.3e} (largest |logit| {scale:.2})");
    assert!(diff > 0.0 && diff <= 0.05 * scale, "int8 logits moved by {diff}");
}

#[test]
fn int8_on_a_gguf_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tmp.path().join("m.gguf");
    quant::quantize_file(&golden("llama_gqa"), &g, &quant::QuantizeOptions::new(quant::FileType::F32), &mut |_| {})
        .unwrap();
    let files = prom_models::source::ModelFiles::Gguf { path: g };
    let err = load_quantized(&files, &LoadOptions::on(&Device::Cpu), Some(WeightQuant::Int8)).err().unwrap();
    assert!(err.to_string().contains("already stored quantized"), "{err}");
}

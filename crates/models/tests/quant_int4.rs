//! AWQ and GPTQ 4-bit checkpoints (fixtures from scripts/quant/make_int4_fixtures.py): the
//! unpacked weights equal the script's dequantization bit for bit for every layout, group size
//! (32/64/128) and act-order; the kernel's matmul matches dequantize-then-f32; a tiny Llama in
//! each layout gives the logits of its dequantized f32 twin.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use prom_models::load::load_hf;
use prom_models::loader::{SafetensorsWeights, WeightData, Weights};
use prom_models::nn::LogitsFor;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/quant")
}

const CASES: [&str; 7] = ["awq_g32", "awq_g64", "awq_g128", "gptq_g32", "gptq_g64_act", "gptq_g128", "gptq_g128_act"];

fn expected(w: &SafetensorsWeights, case: &str) -> Vec<f32> {
    match w.load(&format!("{case}.expected"), &Device::Cpu).unwrap() {
        WeightData::Dense(t) => t.flatten_all().unwrap().to_vec1().unwrap(),
        WeightData::Quantized(_) => unreachable!("f32 tensor"),
    }
}

#[test]
fn every_layout_dequantizes_bit_exact() {
    let w = SafetensorsWeights::open(&[fixtures().join("int4_layers.safetensors")]).unwrap();
    for case in CASES {
        let name = format!("{case}.weight");
        assert_eq!(w.shape(&name), Some(vec![24, 256]), "{case}");
        let kind = w.dtype_name(&name).unwrap();
        let want_kind = if case.starts_with("awq") { "AWQ" } else { "GPTQ" };
        assert!(kind.starts_with(want_kind), "{case} detected as {kind}");
        let m = w.int4_linear(&name).unwrap().expect("an int4 layer");
        let got = m.dequantize();
        let want = expected(&w, case);
        let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{case} ({kind}): {differ} of {} weights differ from the reference", want.len());
    }
}

#[test]
fn int4_matmul_matches_dequantized_f32() {
    let w = SafetensorsWeights::open(&[fixtures().join("int4_layers.safetensors")]).unwrap();
    for case in CASES {
        let m = w.int4_linear(&format!("{case}.weight")).unwrap().unwrap();
        let (n, k) = m.dims();
        let deq = m.dequantize();
        for rows in [1usize, 3, 17] {
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
            let mut y = vec![0f32; rows * n];
            m.matmul(&x, rows, &mut y);
            for i in 0..rows {
                for o in 0..n {
                    let want: f64 = (0..k).map(|j| x[i * k + j] as f64 * deq[o * k + j] as f64).sum();
                    let mag: f64 = (0..k).map(|j| (x[i * k + j] as f64 * deq[o * k + j] as f64).abs()).sum();
                    let err = (y[i * n + o] as f64 - want).abs();
                    assert!(err <= 1e-5 * mag + 1e-7, "{case} rows {rows} ({i}, {o}): {} vs {want}", y[i * n + o]);
                }
            }
        }
    }
}

fn logits(dir: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let (m, _) = load_hf(&dir.join("config.json"), &[dir.join("model.safetensors")], &Device::Cpu).unwrap();
    let m = m.with_kv_dtype(DType::F32);
    let mut c = m.new_cache().unwrap();
    m.forward(ids, &mut c, LogitsFor::All).unwrap().to_vec2().unwrap()
}

#[test]
fn tiny_llama_in_awq_and_gptq_layouts_gives_reference_logits() {
    let ids = [1u32, 5, 77, 200, 31, 2, 140, 9];
    for d in ["llama_gqa_awq_g32", "llama_gqa_gptq_g64_act"] {
        let got = logits(&fixtures().join(d), &ids);
        let want = logits(&fixtures().join(format!("{d}_ref")), &ids);
        let diff = got.iter().flatten().zip(want.iter().flatten()).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{d}: max |logit diff| vs dequantized f32 = {diff:.2e}");
        assert!(diff <= 1e-4, "{d}: logits differ by {diff}");
        // Exactly equal logits would mean the layers were dequantized at load (the dense path),
        // not run on the int4 kernel, whose summation order differs from the dense matmul's.
        assert!(diff > 0.0, "{d}: identical logits: the int4 kernel was not used");
    }
}

#[test]
fn bad_int4_checkpoints_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("llama_gqa_awq_g32");
    std::fs::copy(src.join("model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap().replace("\"bits\": 4", "\"bits\": 3");
    std::fs::write(tmp.path().join("config.json"), cfg).unwrap();
    let err = SafetensorsWeights::open(&[tmp.path().join("model.safetensors")]).err().unwrap().to_string();
    assert!(err.contains("bits = 3") && err.contains("4-bit"), "{err}");
}

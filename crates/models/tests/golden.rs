//! Golden parity against HF transformers: for every tiny seeded model written by
//! `scripts/golden/gen_golden.py`, our f32 logits for the prompt (all positions) and for 8
//! greedy decode steps through the KV cache match transformers' within 1e-4.
//!
//! The same cases run on a GPU (scripts/gpu/golden.sh, a `--features cuda` build):
//! `PROM_TEST_DEVICE=cuda` and `PROM_TEST_DTYPE=f32|bf16|f16`. In f32 the bound stays 1e-4; in
//! bf16/f16 each row's relative error ‖ours − ref‖ / ‖ref‖ must stay under 20 unit roundoffs of
//! the dtype (2⁻⁸ for bf16, 2⁻¹¹ for f16: 7.8e-2 and 9.8e-3; on an H200, 2026-11-29, the worst
//! case, smollm3, reached 4.5e-2 and 6.8e-3, every other family ≤ 2.4e-2 and 2.6e-3, and f32
//! ≤ 1e-5 — errors that scale with the dtype's precision, where a wrong mask or rotation would
//! be O(1)). Decode steps feed transformers' tokens (greedy picks may differ on near-ties at that
//! precision; they are counted, not failed). `PROM_GOLDEN_DIR` points at the fixtures when the binary
//! runs away from its checkout.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use prom_models::load::{load_with, LoadOptions};
use prom_models::nn::LogitsFor;
use prom_models::source::{resolve, ResolveOptions};

const TOL: f32 = 1e-4;
/// Bound on the relative error, in unit roundoffs of the half-precision dtype.
const ROUNDOFFS: f32 = 20.0;

fn fixtures() -> PathBuf {
    match std::env::var_os("PROM_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden"),
    }
}

/// Device and dtype under test (CPU f32 unless the environment says otherwise).
fn target() -> (Device, Option<DType>) {
    let dev = std::env::var("PROM_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let dev = prom_models::cuda::parse_device(&dev).unwrap_or_else(|e| panic!("PROM_TEST_DEVICE: {e}"));
    let dtype = match std::env::var("PROM_TEST_DTYPE").as_deref() {
        Ok("bf16") => Some(DType::BF16),
        Ok("f16") => Some(DType::F16),
        Ok("f32") => Some(DType::F32),
        Ok(other) => panic!("PROM_TEST_DTYPE must be f32, bf16 or f16, got `{other}`"),
        Err(_) => None,
    };
    (dev, dtype)
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let n = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
    n(&(a - b).unwrap()) / n(b).max(f32::MIN_POSITIVE)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn argmax(row: &Tensor) -> u32 {
    row.argmax(0).unwrap().to_scalar::<u32>().unwrap()
}

fn check_case(name: &str) -> Result<(), String> {
    let dir = fixtures().join(name);
    let dev = Device::Cpu;
    let (target, dtype) = target();
    let half = !matches!(dtype, None | Some(DType::F32)) || (dtype.is_none() && !target.is_cpu());
    // Unit roundoff: bf16 keeps 8 significant bits, f16 11.
    let rel_tol = ROUNDOFFS * if dtype == Some(DType::F16) { 2f32.powi(-11) } else { 2f32.powi(-8) };
    let files = resolve(&dir.to_string_lossy(), &ResolveOptions { offline: true, ..Default::default() })
        .map_err(|e| e.to_string())?;
    let opts = LoadOptions::with_dtype(&target, dtype);
    let model = load_with(&files, &opts).map_err(|e| e.to_string())?.model;
    // Logits back on the host, where the references are.
    let host = |t: Tensor| t.to_device(&dev).unwrap();
    // Within bounds: |Δ| ≤ 1e-4 in f32, relative error ≤ 2e-2 in half precision.
    let within = |ours: &Tensor, want: &Tensor| -> (f32, bool) {
        if half {
            let e = rel_err(ours, want);
            (e, e <= rel_tol)
        } else {
            let d = max_abs_diff(ours, want);
            (d, d <= TOL)
        }
    };
    let expected = candle_core::safetensors::load(dir.join("expected.safetensors"), &dev).unwrap();
    let prompt: Vec<u32> = expected["prompt_ids"].to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect();
    let decode_ids: Vec<u32> = expected["decode_ids"].to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect();

    let mut cache = model.new_cache().map_err(|e| e.to_string())?;
    let prefill = host(model.forward(&prompt, &mut cache, LogitsFor::All).map_err(|e| e.to_string())?);
    let (d, mut ok) = within(&prefill, &expected["prefill_logits"]);
    let metric = if half { "relerr" } else { "maxdiff" };
    let mut report = format!("{name}: prefill {metric} {d:.2e}");
    let p = prompt.len();
    let mut next = argmax(&prefill.get(p - 1).unwrap());
    let mut other_picks = 0;
    for (i, &id) in decode_ids.iter().enumerate() {
        if next != id {
            if !half {
                return Err(format!("{report}; step {i}: greedy token {next}, transformers chose {id}"));
            }
            other_picks += 1;
        }
        let logits = host(model.forward(&[id], &mut cache, LogitsFor::Last).map_err(|e| e.to_string())?);
        let row = logits.get(0).unwrap();
        let (d, row_ok) = within(&row, &expected["decode_logits"].get(i).unwrap());
        report.push_str(&format!(", d{i} {d:.1e}"));
        ok &= row_ok;
        next = argmax(&row);
    }
    if half {
        report.push_str(&format!(", greedy picks differing from transformers: {other_picks}"));
    }
    eprintln!("{report}");
    if ok {
        Ok(())
    } else {
        let tol = if half { rel_tol } else { TOL };
        Err(format!("{report} (tolerance {tol:e})"))
    }
}

#[test]
fn every_golden_case_matches_transformers() {
    let mut cases: Vec<String> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/golden exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(cases.len() >= 16, "expected the 16 golden cases, found {cases:?}");
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c).err()).collect();
    assert!(failures.is_empty(), "golden parity failures:\n{}", failures.join("\n"));
}

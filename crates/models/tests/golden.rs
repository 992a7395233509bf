//! Golden parity against HF transformers: for every tiny seeded model written by
//! `scripts/golden/gen_golden.py`, our f32 logits for the prompt (all positions) and for 8
//! greedy decode steps through the KV cache match transformers' within 1e-4.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use prom_models::load::load;
use prom_models::nn::LogitsFor;
use prom_models::source::{resolve, ResolveOptions};

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden")
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
    let files = resolve(&dir.to_string_lossy(), &ResolveOptions { offline: true, ..Default::default() })
        .map_err(|e| e.to_string())?;
    let model = load(&files, &dev).map_err(|e| e.to_string())?.model;
    let expected = candle_core::safetensors::load(dir.join("expected.safetensors"), &dev).unwrap();
    let prompt: Vec<u32> = expected["prompt_ids"].to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect();
    let decode_ids: Vec<u32> = expected["decode_ids"].to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect();

    let mut cache = model.new_cache().map_err(|e| e.to_string())?;
    let prefill = model.forward(&prompt, &mut cache, LogitsFor::All).map_err(|e| e.to_string())?;
    let d = max_abs_diff(&prefill, &expected["prefill_logits"]);
    let mut report = format!("{name}: prefill maxdiff {d:.2e}");
    let mut ok = d <= TOL;
    let p = prompt.len();
    let mut next = argmax(&prefill.get(p - 1).unwrap());
    for (i, &id) in decode_ids.iter().enumerate() {
        if next != id {
            return Err(format!("{report}; step {i}: greedy token {next}, transformers chose {id}"));
        }
        let logits = model.forward(&[id], &mut cache, LogitsFor::Last).map_err(|e| e.to_string())?;
        let row = logits.get(0).unwrap();
        let d = max_abs_diff(&row, &expected["decode_logits"].get(i).unwrap());
        report.push_str(&format!(", d{i} {d:.1e}"));
        ok &= d <= TOL;
        next = argmax(&row);
    }
    eprintln!("{report}");
    if ok {
        Ok(())
    } else {
        Err(format!("{report} (tolerance {TOL:e})"))
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

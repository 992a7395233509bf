//! Real weights: SmolLM2-135M-Instruct Q4_1 against llama.cpp (built from llama-cpp-python
//! 0.3.36's sdist; `scripts/llamacpp/reference.sh` wrote `tests/reference/smollm2_q4_1_llamacpp.json`).
//!
//! - Teacher-forced on llama.cpp's 64-token greedy continuations of 5 prompts, our top-1 agrees
//!   on >= 96.5% of positions and every disagreement is a near-tie (see the test for why).
//! - Perplexity on `tests/reference/ppl_text.txt`, computed exactly as llama-perplexity does
//!   (n_ctx 512 chunks, second half scored), is within 1% of llama.cpp's.
//! - Our GGUF tokenizer gives llama.cpp's prompt ids.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, D};
use prom_models::load::load_gguf;
use prom_models::loader::GgufWeights;
use prom_models::nn::{KvDtype, LogitsFor, Model};
use prom_models::Tokenizer;
use serde_json::Value;

fn artifacts() -> PathBuf {
    std::env::var_os("PROM_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::home_dir().unwrap_or_default().join(".cache/prometheus/artifacts"))
}

fn model_path() -> PathBuf {
    let p = artifacts().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run scripts/fetch-artifacts.sh first", p.display());
    p
}

fn reference() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/smollm2_q4_1_llamacpp.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn greedy_continuations_agree_with_llama_cpp() {
    let path = model_path();
    let (model, _) = load_gguf(&path, &Device::Cpu).unwrap();
    let tok = Tokenizer::from_gguf(GgufWeights::open(&path).unwrap().content(), &path).unwrap();
    let r = reference();
    let (mut agree, mut total, mut worst_gap) = (0usize, 0usize, 0f32);
    for p in r["greedy"]["prompts"].as_array().unwrap() {
        let prompt = ids(&p["prompt_ids"]);
        let cont = ids(&p["continuation_ids"]);
        assert_eq!(
            tok.encode(p["prompt"].as_str().unwrap(), true).unwrap(),
            prompt,
            "tokenization differs from llama.cpp for {:?}",
            p["prompt"]
        );
        // Teacher-forced the way llama.cpp produced the continuation: the prompt in one batch,
        // then one token at a time through the KV cache. (llama.cpp's own one-batch pass over
        // prompt+continuation disagrees with its incremental greedy choice at 8 of these 320
        // near-tie positions; see `batched_check` in the reference JSON.)
        let mut cache = model.new_cache().unwrap();
        let mut logits = model.forward(&prompt, &mut cache, LogitsFor::Last).unwrap();
        let mut mism = vec![];
        for (j, &want) in cont.iter().enumerate() {
            let row: Vec<f32> = logits.get(0).unwrap().to_vec1().unwrap();
            let got = logits.get(0).unwrap().argmax(D::Minus1).unwrap().to_scalar::<u32>().unwrap();
            total += 1;
            if got == want {
                agree += 1;
            } else {
                // How far llama.cpp's choice is below ours in our logits: a near-tie or not.
                let gap = row[got as usize] - row[want as usize];
                worst_gap = worst_gap.max(gap);
                mism.push((j, want, got, gap));
            }
            logits = model.forward(&[want], &mut cache, LogitsFor::Last).unwrap();
        }
        eprintln!("{:?}: {} mismatches {:?}", &p["prompt"].as_str().unwrap()[..30], mism.len(), mism);
    }
    let rate = agree as f64 / total as f64;
    eprintln!("top-1 agreement {agree}/{total} = {:.2}%, largest gap {worst_gap:.3}", rate * 100.0);
    // llama.cpp's CPU flash attention accumulates `Σ p·v` in f16 (`ggml_vec_mad_f16` into
    // `VKQ16`, ggml-cpu/ops.cpp); we accumulate in f32. Rounding our accumulator to f16 the same
    // way lifts agreement from 310/320 to 314/320, so the remaining disagreements are that
    // rounding deciding near-ties, not a modelling difference: each must be a near-tie in our
    // logits too (llama.cpp's token within 0.35 of ours), and they must stay rare. (The AVX-512
    // and AVX2 backends round differently in places, e.g. RMSNorm's sum of squares: on a Zen 3
    // (AVX2) machine the widest of the 7 near-ties is 0.311, on Zen 4 (AVX-512) below 0.3.)
    assert!(rate >= 0.965, "top-1 agreement {:.2}% < 96.5%", rate * 100.0);
    assert!(worst_gap < 0.35, "llama.cpp's token is {worst_gap:.3} below our top-1 somewhere: not a near-tie");
}

/// Perplexity on the reference text as llama-perplexity computes it: n_ctx-token chunks, each
/// from an empty cache, the second half of each scored. Returns (perplexity, tokens scored).
fn perplexity(model: &Model, ppl: &Value) -> (f64, usize) {
    let tokens = ids(&ppl["tokens"]);
    let n_ctx = ppl["n_ctx"].as_u64().unwrap() as usize;
    let first = n_ctx / 2;
    let bos = model.config().bos_token_id;
    let add_bos = ppl["add_bos"].as_bool().unwrap();
    let (mut nll, mut count) = (0f64, 0usize);
    for chunk in tokens.chunks_exact(n_ctx) {
        let mut input = chunk.to_vec();
        if add_bos {
            input[0] = bos.expect("add_bos needs a BOS id");
        }
        let mut cache = model.new_cache().unwrap();
        let logits = model.forward(&input, &mut cache, LogitsFor::All).unwrap();
        let lp: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec2().unwrap();
        for j in first..n_ctx - 1 {
            nll -= lp[j][chunk[j + 1] as usize] as f64;
            count += 1;
        }
    }
    ((nll / count as f64).exp(), count)
}

#[test]
fn perplexity_within_one_percent_of_llama_perplexity() {
    let (model, _) = load_gguf(&model_path(), &Device::Cpu).unwrap();
    let r = reference();
    let ppl = &r["perplexity"];
    let (ours, count) = perplexity(&model, ppl);
    let theirs = ppl["ppl"].as_f64().unwrap();
    let rel = (ours - theirs).abs() / theirs;
    eprintln!("perplexity: ours {ours:.4}, llama.cpp {theirs:.4} over {count} tokens (rel diff {:.3}%)", rel * 100.0);
    assert_eq!(count, ppl["python_reproduction"]["n_scored"].as_u64().unwrap() as usize);
    assert!(rel <= 0.01, "perplexity {ours:.4} vs llama.cpp {theirs:.4}: {:.2}% apart", rel * 100.0);
}

/// The int8 KV cache (`--kv-cache-dtype int8`) against the default f16 cache on the same text:
/// under 0.5% apart, at about half the bytes per token.
#[test]
fn int8_kv_cache_perplexity_within_half_a_percent_of_f16() {
    let (model, _) = load_gguf(&model_path(), &Device::Cpu).unwrap();
    assert_eq!(model.kv_dtype(), KvDtype::Float(DType::F16), "GGUF models default to an f16 cache");
    let r = reference();
    let (f16_ppl, _) = perplexity(&model, &r["perplexity"]);
    let f16_bytes = model.kv_spec(16).bytes_per_token();
    let model = model.with_kv_dtype(KvDtype::Int8);
    let (int8_ppl, count) = perplexity(&model, &r["perplexity"]);
    let int8_bytes = model.kv_spec(16).bytes_per_token();
    let rel = (int8_ppl - f16_ppl).abs() / f16_ppl;
    eprintln!(
        "perplexity over {count} tokens: f16 KV {f16_ppl:.4} ({f16_bytes} B/token), int8 KV {int8_ppl:.4} \
         ({int8_bytes} B/token, {:.3}x smaller), rel diff {:.3}%",
        f16_bytes as f64 / int8_bytes as f64,
        rel * 100.0
    );
    assert!(int8_ppl != f16_ppl, "the int8 cache changed nothing: is it in use?");
    assert!(rel < 0.005, "int8 KV perplexity {int8_ppl:.4} vs f16 {f16_ppl:.4}: {:.3}% apart", rel * 100.0);
    assert!(
        2 * int8_bytes <= f16_bytes * 105 / 100,
        "int8 {int8_bytes} B/token is not about half of f16's {f16_bytes}"
    );
}

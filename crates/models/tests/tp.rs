//! Tensor parallelism on the CPU with a simulated world: the golden fixtures' tiny seeded models
//! split over 2 and 4 ranks (threads exchanging tensors in memory, `parallel::LocalWorld`) give
//! the unsplit model's logits within f32 rounding — prefill, decode through the KV cache, and a
//! mixed batch of two sequences through the paged pool, as the engine runs it.
//!
//! The families cover every cut: GQA with KV heads split (2 ranks) and replicated (4 ranks),
//! MQA, an untied and a tied (vocabulary-parallel) head, qkv bias, GPT-2's fused transposed
//! qkv and row-parallel biases, Phi-3's fused qkv and gate/up, Gemma 2's sandwich norms and
//! softcaps, Qwen 3's per-head QK-norm, and the MoE blocks of Mixtral and Qwen2-MoE (experts
//! split across ranks, Qwen2-MoE's gated shared expert split like a dense MLP).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use prom_models::load::{load_with, LoadOptions};
use prom_models::nn::{LogitsFor, Model, PagedKvCache, SeqChunk};
use prom_models::parallel::load_tensor_parallel;
use prom_models::source::{resolve, ModelFiles, ResolveOptions};

/// f32 rounding: the ranks sum partial products in another order than one matmul does.
const TOL: f32 = 2e-5;

fn files(name: &str) -> ModelFiles {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(name);
    resolve(&dir.to_string_lossy(), &ResolveOptions { offline: true, ..Default::default() }).unwrap()
}

fn load(name: &str, world: usize) -> prom_models::Result<Model> {
    load_tensor_parallel(&files(name), &LoadOptions::on(&Device::Cpu), world).map(|m| m.model)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Prefill logits for every position, then 6 greedy decode steps, one sequence.
fn run_single(model: &Model, prompt: &[u32]) -> Vec<Tensor> {
    let mut cache = model.new_cache().unwrap();
    let mut out = vec![model.forward(prompt, &mut cache, LogitsFor::All).unwrap()];
    for _ in 0..6 {
        let last = out.last().unwrap();
        let next = last.get(last.dim(0).unwrap() - 1).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
        out.push(model.forward(&[next], &mut cache, LogitsFor::Last).unwrap());
    }
    out
}

/// Two sequences in one pass through a shared paged pool (one prefilling, one after a first
/// chunk), then both decoding together: the engine's shape of work.
fn run_batched(model: &Model) -> Vec<Tensor> {
    let mut kv = PagedKvCache::new(model.kv_spec(4), 16).unwrap();
    let (a, b): (Vec<u32>, Vec<u32>) = ((1..14).collect(), (100..106).collect());
    let (ta, tb) = ([0u32, 1, 2, 3], [7u32, 6, 5, 4]);
    let chunk = |tokens, start, block_table, logits| SeqChunk { tokens, start, block_table, logits };
    let mut out = vec![model.forward_batch(&[chunk(&b[..3], 0, &tb, LogitsFor::Last)], &mut kv).unwrap()];
    let both = [chunk(&a, 0, &ta, LogitsFor::All), chunk(&b[3..], 3, &tb, LogitsFor::Last)];
    out.push(model.forward_batch(&both, &mut kv).unwrap());
    let decode = [chunk(&[5], 13, &ta, LogitsFor::Last), chunk(&[9], 6, &tb, LogitsFor::Last)];
    out.push(model.forward_batch(&decode, &mut kv).unwrap());
    out
}

fn check(name: &str, worlds: &[usize]) {
    let whole = load_with(&files(name), &LoadOptions::on(&Device::Cpu)).unwrap().model;
    assert!(whole.tensor_parallel().is_none());
    let prompt: Vec<u32> = vec![1, 17, 42, 99, 3, 250, 7, 7, 64, 128, 5];
    let (want, want_batch) = (run_single(&whole, &prompt), run_batched(&whole));
    for &w in worlds {
        let split = load(name, w).unwrap_or_else(|e| panic!("{name} over {w} ranks: {e}"));
        assert_eq!(split.tensor_parallel().map(|t| t.shard().world), Some(w));
        let got = run_single(&split, &prompt);
        let got_batch = run_batched(&split);
        for (i, (g, e)) in got.iter().chain(&got_batch).zip(want.iter().chain(&want_batch)).enumerate() {
            let d = max_diff(g, e);
            assert!(d <= TOL, "{name} over {w} ranks, pass {i}: maxdiff {d:e} against the unsplit model");
        }
        eprintln!("{name}: {w} ranks equal the unsplit model within {TOL:e}");
    }
}

#[test]
fn dense_gqa_llama() {
    // 4 heads, 2 KV heads: split at 2 ranks, each KV head on two ranks at 4. Tied head.
    check("llama_gqa", &[2, 4]);
}

#[test]
fn dense_mqa_untied_head() {
    check("llama_mqa_untied", &[2, 4]);
}

#[test]
fn dense_biases_softcaps_and_fused_projections() {
    check("qwen2", &[2, 4]);
    check("gpt2", &[2, 4]);
    check("gemma2", &[2, 4]);
    check("qwen3", &[2, 4]);
    check("phi3", &[2]);
}

#[test]
fn moe_experts_split() {
    check("mixtral", &[2, 4]);
    check("qwen3_moe", &[2, 4]);
}

#[test]
fn moe_shared_expert_split() {
    check("qwen2_moe", &[2, 4]);
}

/// What cannot be split is a load error naming the reason, never a wrong answer.
#[test]
fn unsplittable_models_are_clear_errors() {
    let err = |name: &str, w: usize| load(name, w).err().map(|e| e.to_string()).unwrap_or_default();
    let e = err("llama_gqa", 3);
    assert!(
        e.contains("num_attention_heads") && e.contains("4 does not divide over a tensor-parallel size of 3"),
        "{e}"
    );
    let e = err("phi3", 4);
    assert!(e.contains("num_attention_heads"), "{e}");
    let e = err("deepseek_v2", 2);
    assert!(e.contains("multi-head latent attention"), "{e}");
    let e = err("olmo2", 2);
    assert!(e.contains("QK-norm over the whole projection"), "{e}");
    let e = err("bloom", 2);
    assert!(e.contains("per-head fused qkv"), "{e}");
    let gguf = ModelFiles::Gguf { path: PathBuf::from("/nonexistent/model.gguf") };
    let e = load_tensor_parallel(&gguf, &LoadOptions::on(&Device::Cpu), 2).err().unwrap().to_string();
    assert!(e.contains("GGUF model cannot be split"), "{e}");
}

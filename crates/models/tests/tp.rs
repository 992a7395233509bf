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
//!
//! On GPUs (bench/gpu_tp.sh, a `--features cuda` build): `PROM_TEST_DEVICE=cuda` and
//! `PROM_TEST_DTYPE=bf16|f16|f32` split each model over GPUs 0 and 1 (NCCL) and compare with the
//! whole model on GPU 0; in half precision each pass's relative error ‖split − whole‖ / ‖whole‖
//! must stay under 20 unit roundoffs of the dtype, as in golden.rs. `PROM_TP_MODEL=DIR` adds
//! any HF checkpoint (the Llama-3-8B-shape bench model) to the check. `PROM_TP_IN_PROCESS=1`
//! keeps every rank on the one GPU with in-memory collectives (the sharded decoder on a GPU
//! without NCCL, for a machine with one GPU).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use prom_models::load::{load_with, LoadOptions};
use prom_models::nn::{LogitsFor, Model, PagedKvCache, SeqChunk};
use prom_models::parallel::{load_tensor_parallel, load_tensor_parallel_in_process};
use prom_models::source::{resolve, ModelFiles, ResolveOptions};

/// f32 rounding on the CPU: the ranks sum partial products in another order than one matmul.
const TOL: f32 = 2e-5;
/// f32 on a GPU (cuBLAS picks its reduction order by shape).
const TOL_GPU_F32: f32 = 1e-4;
/// Half precision: relative error bound in unit roundoffs of the dtype.
const ROUNDOFFS: f32 = 20.0;

/// Device, dtype and the world sizes under test: CPU f32 at 2 and 4 ranks unless
/// `PROM_TEST_DEVICE` / `PROM_TEST_DTYPE` say otherwise (GPUs over NCCL: 2 ranks).
fn target() -> (Device, DType, Vec<usize>) {
    let dev = std::env::var("PROM_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let dev = prom_models::cuda::parse_device(&dev).unwrap_or_else(|e| panic!("PROM_TEST_DEVICE: {e}"));
    let dtype = match std::env::var("PROM_TEST_DTYPE").as_deref() {
        Ok("bf16") => DType::BF16,
        Ok("f16") => DType::F16,
        Ok("f32") | Err(_) => DType::F32,
        Ok(other) => panic!("PROM_TEST_DTYPE must be f32, bf16 or f16, got `{other}`"),
    };
    let in_process = std::env::var("PROM_TP_IN_PROCESS").as_deref() == Ok("1");
    let worlds = if dev.is_cpu() || in_process { vec![2, 4] } else { vec![2] };
    (dev, dtype, worlds)
}

/// A golden fixture (`PROM_GOLDEN_DIR` points at them when the binary runs away from its checkout).
fn fixture(name: &str) -> PathBuf {
    match std::env::var_os("PROM_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d).join(name),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(name),
    }
}

fn files(dir: &Path) -> ModelFiles {
    resolve(&dir.to_string_lossy(), &ResolveOptions { offline: true, ..Default::default() }).unwrap()
}

fn load(dir: &Path, world: usize) -> prom_models::Result<Model> {
    let (device, dtype, _) = target();
    let opts = LoadOptions::with_dtype(&device, Some(dtype));
    let split = match std::env::var("PROM_TP_IN_PROCESS").as_deref() {
        Ok("1") => load_tensor_parallel_in_process,
        _ => load_tensor_parallel,
    };
    split(&files(dir), &opts, world).map(|m| m.model)
}

fn host(t: &Tensor) -> Tensor {
    t.to_device(&Device::Cpu).unwrap()
}

/// How far `got` is from `want`, and whether that is within the bound for `dtype`.
fn compare(got: &Tensor, want: &Tensor, dtype: DType, gpu: bool) -> (f32, bool) {
    assert_eq!(got.dims(), want.dims());
    let (got, want) = (host(got), host(want));
    let diff = (&got - &want).unwrap();
    if dtype == DType::F32 {
        let d = diff.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        return (d, d <= if gpu { TOL_GPU_F32 } else { TOL });
    }
    let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
    let e = norm(&diff) / norm(&want).max(f32::MIN_POSITIVE);
    let u = if dtype == DType::F16 { 2f32.powi(-11) } else { 2f32.powi(-8) };
    (e, e <= ROUNDOFFS * u)
}

/// Prefill logits for every position, then decode steps through the KV cache, one sequence
/// (fixed tokens: the two models are compared on the same inputs).
fn run_single(model: &Model, prompt: &[u32]) -> Vec<Tensor> {
    let mut cache = model.new_cache().unwrap();
    let mut out = vec![model.forward(prompt, &mut cache, LogitsFor::All).unwrap()];
    for next in [5, 9, 77, 130, 2, 255] {
        out.push(model.forward(&[next], &mut cache, LogitsFor::Last).unwrap());
    }
    out
}

/// Two sequences in one pass through a shared paged pool (one prefilling, one after a first
/// chunk), then both decoding together: the engine's shape of work.
fn run_batched(model: &Model) -> Vec<Tensor> {
    // Blocks of 8: sequence a spans two blocks, each sequence's table out of order.
    let mut kv = PagedKvCache::new(model.kv_spec(8), 8).unwrap();
    let (a, b): (Vec<u32>, Vec<u32>) = ((1..14).collect(), (100..106).collect());
    let (ta, tb) = ([3u32, 0], [7u32, 6]);
    let chunk =
        |tokens, start, block_table, logits| SeqChunk { tokens, start, block_table, logits, prompt_len: usize::MAX };
    let mut out = vec![model.forward_batch(&[chunk(&b[..3], 0, &tb, LogitsFor::Last)], &mut kv).unwrap()];
    let both = [chunk(&a, 0, &ta, LogitsFor::All), chunk(&b[3..], 3, &tb, LogitsFor::Last)];
    out.push(model.forward_batch(&both, &mut kv).unwrap());
    let decode = [chunk(&[5], 13, &ta, LogitsFor::Last), chunk(&[9], 6, &tb, LogitsFor::Last)];
    out.push(model.forward_batch(&decode, &mut kv).unwrap());
    out
}

fn check(name: &str, worlds: &[usize]) {
    check_dir(name, &fixture(name), worlds)
}

fn check_dir(name: &str, dir: &Path, worlds: &[usize]) {
    let (device, dtype, targets) = target();
    let gpu = !device.is_cpu();
    let worlds: Vec<usize> = worlds.iter().copied().filter(|w| targets.contains(w)).collect();
    let whole = load_with(&files(dir), &LoadOptions::with_dtype(&device, Some(dtype))).unwrap().model;
    assert!(whole.tensor_parallel().is_none());
    let prompt: Vec<u32> = vec![1, 17, 42, 99, 3, 250, 7, 7, 64, 128, 5];
    let (want, want_batch) = (run_single(&whole, &prompt), run_batched(&whole));
    drop(whole);
    let metric = if dtype == DType::F32 { "maxdiff" } else { "relerr" };
    for w in worlds {
        let split = load(dir, w).unwrap_or_else(|e| panic!("{name} over {w} ranks: {e}"));
        assert_eq!(split.tensor_parallel().map(|t| t.shard().world), Some(w));
        let got = run_single(&split, &prompt);
        let got_batch = run_batched(&split);
        let mut worst = 0f32;
        for (i, (g, e)) in got.iter().chain(&got_batch).zip(want.iter().chain(&want_batch)).enumerate() {
            let (d, ok) = compare(g, e, dtype, gpu);
            assert!(ok, "{name} over {w} ranks ({dtype:?}), pass {i}: {metric} {d:e} against the unsplit model");
            worst = worst.max(d);
        }
        eprintln!("{name}: {w} ranks ({dtype:?}) vs the unsplit model: worst {metric} {worst:.2e} over 10 passes");
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
    let err = |name: &str, w: usize| load(&fixture(name), w).err().map(|e| e.to_string()).unwrap_or_default();
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

/// The checkpoint at `PROM_TP_MODEL`, split over 2 ranks (bench/gpu_tp.sh: the Llama-3-8B-shape
/// model on two GPUs). Without the variable there is nothing to check, and the test says so.
#[test]
fn external_model() {
    let Some(dir) = std::env::var_os("PROM_TP_MODEL") else {
        eprintln!("PROM_TP_MODEL is not set: no external model to check");
        return;
    };
    check_dir("PROM_TP_MODEL", Path::new(&dir), &[2]);
}

/// Bad input is refused by rank 0 before any rank starts the step, so the split model keeps
/// working afterwards (a failure inside a step would leave it failed).
#[test]
fn bad_input_leaves_the_split_model_working() {
    let (device, dtype, _) = target();
    let gpu = !device.is_cpu();
    let dir = fixture("llama_gqa");
    let whole = load_with(&files(&dir), &LoadOptions::with_dtype(&device, Some(dtype))).unwrap().model;
    let split = load(&dir, 2).unwrap();
    let mut cache = split.new_cache().unwrap();
    let e = split.forward(&[1, 999], &mut cache, LogitsFor::Last).unwrap_err().to_string();
    assert!(e.contains("token id 999 >= vocab_size 256"), "{e}");
    let mut kv = PagedKvCache::new(split.kv_spec(8), 2).unwrap();
    let chunk = SeqChunk { tokens: &[1, 2, 3], start: 0, block_table: &[5], logits: LogitsFor::Last, prompt_len: 3 };
    let e = split.forward_batch(&[chunk], &mut kv).unwrap_err().to_string();
    assert!(e.contains("block 5 is outside the KV pool of 2 blocks"), "{e}");
    let got = split.forward(&[1, 2, 3], &mut split.new_cache().unwrap(), LogitsFor::All).unwrap();
    let want = whole.forward(&[1, 2, 3], &mut whole.new_cache().unwrap(), LogitsFor::All).unwrap();
    let (d, ok) = compare(&got, &want, dtype, gpu);
    assert!(ok, "after refused input: {d:e}");
}

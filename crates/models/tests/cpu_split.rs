//! A CPU batch split by sequence over the cores (`Model::forward_split`: each core runs its
//! sequences' whole forward pass against a view of the one KV pool, the parts meeting only at
//! the end of the step) gives the unsplit step's logits bit for bit, and leaves the same K/V:
//! the steps after it agree too.
//!
//! The golden fixtures' tiny seeded models cover GQA, MQA with an untied head, MLA (DeepSeek-V2,
//! its latent cache), MoE (Mixtral), ALiBi (BLOOM), learned positions (GPT-2), sliding windows
//! and softcaps (Gemma 2); the f16 and int8 caches; and a Q4_1 GGUF on our block kernels. The
//! workload is the engine's: sequences prefilling in chunks beside others decoding, tables out
//! of order, then decode steps of every sequence at once.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use prom_models::load::{load_gguf, load_with, LoadOptions};
use prom_models::nn::{KvDtype, LogitsFor, Model, PagedKvCache, SeqChunk};
use prom_models::quant::{quantize_file, FileType, QuantizeOptions};
use prom_models::source::{resolve, ResolveOptions};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden").join(name)
}

fn load(name: &str) -> Model {
    load_dir(&golden(name))
}

fn load_dir(dir: &Path) -> Model {
    let files = resolve(&dir.to_string_lossy(), &ResolveOptions { offline: true, ..Default::default() }).unwrap();
    load_with(&files, &LoadOptions::on(&Device::Cpu)).unwrap().model
}

/// The fixture with every weight rounded to a bf16 value (still stored as f32): such weights
/// go to our 16-bit dense kernels, whose rows do not depend on the batch. The fixture's own f32
/// weights run through candle's f32 matmul, whose rounding may change with the row count, so
/// no batch of those is bit-for-bit invariant, split or not.
fn bf16_twin(name: &str, tmp: &Path) -> PathBuf {
    let (src, dst) = (golden(name), tmp.join(format!("{name}-bf16")));
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        let file = f.file_name().unwrap().to_owned();
        if file == "model.safetensors" {
            let tensors = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
            let rounded: std::collections::HashMap<String, candle_core::Tensor> = tensors
                .into_iter()
                .map(|(k, t)| {
                    let r = match t.dtype() {
                        DType::F32 => t.to_dtype(DType::BF16).and_then(|t| t.to_dtype(DType::F32)).unwrap(),
                        _ => t,
                    };
                    (k, r)
                })
                .collect();
            candle_core::safetensors::save(&rounded, dst.join(&file)).unwrap();
        } else if file != "expected.safetensors" {
            std::fs::copy(&f, dst.join(&file)).unwrap();
        }
    }
    dst
}

/// Six sequences through one pool in three steps: (1) four prefill chunks of 3–13 tokens, (2) two
/// of them continuing with a second chunk beside two new prompts and two decodes, (3) a decode
/// step of all six. Returns every step's logits.
fn run(model: &Model) -> Vec<Vec<Vec<f32>>> {
    let mut kv = PagedKvCache::new(model.kv_spec(4), 40).unwrap();
    // Blocks of 4, each sequence's table out of order and no block in two tables.
    let tables: [Vec<u32>; 6] = [
        vec![9, 2, 30, 17, 5],
        vec![1, 22, 8, 36, 14],
        vec![3, 27, 11, 0, 39],
        vec![20, 6, 33, 12, 25],
        vec![7, 31, 15, 24, 4],
        vec![10, 19, 37, 28, 21],
    ];
    let toks: Vec<Vec<u32>> = (0..6).map(|s| (0..16).map(|i| (s * 37 + i * 11 + 1) as u32 % 250).collect()).collect();
    // Prompt lengths: sequence 1's second chunk is part prompt, part generated tokens (as a
    // recomputation after preemption is), and the last step decodes generated tokens only.
    let prompts = [13, 6, 12, 5, 6, 2];
    let chunk = |s: usize, from: usize, to: usize, logits| SeqChunk {
        tokens: &toks[s][from..to],
        start: from,
        block_table: &tables[s],
        logits,
        prompt_len: prompts[s],
    };
    let steps: Vec<Vec<SeqChunk>> = vec![
        vec![
            chunk(0, 0, 13, LogitsFor::All),
            chunk(1, 0, 3, LogitsFor::Last),
            chunk(2, 0, 7, LogitsFor::None),
            chunk(3, 0, 5, LogitsFor::Last),
        ],
        vec![
            chunk(0, 13, 14, LogitsFor::Last),
            chunk(1, 3, 9, LogitsFor::All),
            chunk(4, 0, 6, LogitsFor::Last),
            chunk(2, 7, 12, LogitsFor::Last),
            chunk(5, 0, 2, LogitsFor::Last),
            chunk(3, 5, 6, LogitsFor::Last),
        ],
        vec![
            chunk(0, 14, 15, LogitsFor::Last),
            chunk(1, 9, 10, LogitsFor::Last),
            chunk(2, 12, 13, LogitsFor::Last),
            chunk(3, 6, 7, LogitsFor::Last),
            chunk(4, 6, 7, LogitsFor::Last),
            chunk(5, 2, 3, LogitsFor::Last),
        ],
    ];
    steps.iter().map(|c| model.forward_batch(c, &mut kv).unwrap().to_vec2().unwrap()).collect()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `make()` twice, one never splitting and one splitting every batch of two sequences or more:
/// the same logits, bit for bit, and the split one really split (on a machine of 2+ cores).
fn check(what: &str, make: impl Fn() -> Model) {
    check_within(what, 0.0, make)
}

/// [`check`], the logits within `tol` (absolute) instead of bit for bit.
fn check_within(what: &str, tol: f32, make: impl Fn() -> Model) {
    let whole = make().with_cpu_split_min_rows(usize::MAX);
    let split = make().with_cpu_split_min_rows(1);
    let want = run(&whole);
    let got = run(&split);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: step {i} rows");
        for (r, (gr, wr)) in g.iter().zip(w).enumerate() {
            let same = gr.iter().zip(wr).all(|(a, b)| a.to_bits() == b.to_bits() || (a - b).abs() <= tol);
            let worst = gr.iter().zip(wr).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(same, "{what}: step {i}, logits row {r} differ from the unsplit step by up to {worst}");
        }
    }
    assert_eq!(whole.cpu_split_steps(), 0);
    if cores() >= 2 {
        assert_eq!(split.cpu_split_steps(), 3, "{what}: every step should have run split");
    } else {
        eprintln!("{what}: one core, so nothing ran split");
    }
}

/// One test, so that no other test of this binary holds the CPU pool meanwhile (a busy pool
/// runs the step whole, and the split count would not be 3): the other checks run from here.
#[test]
fn split_steps_match_unsplit() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = |name: &str, ftype: FileType| {
        let path = tmp.path().join(format!("{name}.{ftype}.gguf"));
        quantize_file(&golden(name), &path, &QuantizeOptions::new(ftype), &mut |_| {})
            .unwrap_or_else(|e| panic!("{name} → {ftype}: {e}"));
        path
    };
    for name in ["llama_gqa", "qwen2", "mistral_swa"] {
        let path = gguf(name, FileType::F16);
        check(&format!("{name} F16 GGUF"), || load_gguf(&path, &Device::Cpu).unwrap().0);
    }
    for name in ["llama_mqa_untied", "bloom_alibi6", "gpt2", "gemma2"] {
        let dir = bf16_twin(name, tmp.path());
        check(&format!("{name} (bf16 values)"), || load_dir(&dir));
    }
    // Three products still go through candle's f32 matmul, whose rounding may change with the
    // row count (and the cache sizes gemm detects): MLA's absorbed `q·W_uk` and `o·W_uv`, and
    // the MoE router. No batching of these is bitwise invariant, split or not; what these
    // check is MLA's latent cache through the views and MoE's grouped experts within a part.
    for name in ["deepseek_v2", "mixtral", "qwen3_moe"] {
        let dir = bf16_twin(name, tmp.path());
        check_within(&format!("{name} (bf16 values)"), 1e-4, || load_dir(&dir));
    }
    let q4 = gguf("llama_gqa", FileType::Q4_1);
    let q4_model = || load_gguf(&q4, &Device::Cpu).unwrap().0;
    check("llama_gqa Q4_1", q4_model);
    check("llama_gqa Q4_1, f16 cache", || q4_model().with_kv_dtype(DType::F16));
    check("llama_gqa Q4_1, int8 cache", || q4_model().with_kv_dtype(KvDtype::Int8));
    a_block_written_by_two_parts_keeps_the_step_whole();
}

/// Two sequences writing into one block (which the engine never schedules) are not split: the
/// parts would write a block the other reads. The step runs whole, with the same result.
fn a_block_written_by_two_parts_keeps_the_step_whole() {
    let run = |model: &Model| {
        let mut kv = PagedKvCache::new(model.kv_spec(4), 8).unwrap();
        let (a, b): (Vec<u32>, Vec<u32>) = ((1..3).collect(), (7..9).collect());
        let t = [5u32, 6];
        let chunks = [
            SeqChunk { tokens: &a, start: 0, block_table: &t, logits: LogitsFor::Last, prompt_len: 2 },
            SeqChunk { tokens: &b, start: 2, block_table: &t, logits: LogitsFor::Last, prompt_len: 4 },
        ];
        model.forward_batch(&chunks, &mut kv).unwrap().to_vec2::<f32>().unwrap()
    };
    let whole = load("llama_gqa").with_cpu_split_min_rows(usize::MAX);
    let split = load("llama_gqa").with_cpu_split_min_rows(1);
    assert_eq!(run(&split), run(&whole));
    assert_eq!(split.cpu_split_steps(), 0);
}

//! Async scheduling on the model's device: each step is scheduled and launched while the one
//! before it runs, its sampled ids going to the next step's input where the logits are (on a GPU
//! they never cross to the host first). It must not change a token. Each request runs alone
//! (so every step's batch is the same with and without it, whatever the device's arithmetic
//! does with batch size): greedy, seeded random sampling (drawn on the device on a GPU) and a
//! stop token, each once with async scheduling and once without. Then all at once, which must
//! finish every request and leave the pool idle; and with requests aborted or hung up on while
//! a step runs ahead for them.
//!
//! The model is a tiny seeded Llama (tests/fixtures/golden/llama_gqa) with a word-level
//! tokenizer written here. `PROM_TEST_DEVICE=cuda` runs it on the GPU in bf16 (through
//! scripts/gpu, as the models crate's GPU tests); on the CPU it runs in f32 with async
//! scheduling forced on, where the ids come back at once.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use common::{collect, collect_all, wait_idle};
use prom_engine::{Engine, EngineConfig, FinishReason, KvCacheMemory, Request, SamplingParams};
use prom_models::load::{load_with, LoadOptions};
use prom_models::source::{resolve, ResolveOptions};
use prom_models::Tokenizer;

const VOCAB: usize = 256;

fn fixture() -> PathBuf {
    let dir = match std::env::var_os("PROM_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden"),
    };
    dir.join("llama_gqa")
}

fn device() -> Device {
    let dev = std::env::var("PROM_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    prom_models::cuda::parse_device(&dev).unwrap_or_else(|e| panic!("PROM_TEST_DEVICE: {e}"))
}

/// A word-level tokenizer over the model's 256 ids (`w0` … `w255`): the engine detokenizes
/// every token it streams.
fn tokenizer() -> Arc<Tokenizer> {
    let vocab: serde_json::Map<String, serde_json::Value> = (0..VOCAB).map(|i| (format!("w{i}"), i.into())).collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": false},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
    });
    // One file per call: the tests run in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("prom-engine-async-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).expect("write tokenizer.json");
    Arc::new(Tokenizer::from_hf_files(&path, None).expect("word-level tokenizer"))
}

fn engine(dev: &Device, on: bool) -> Engine {
    let dtype = if dev.is_cuda() { DType::BF16 } else { DType::F32 };
    let files = resolve(&fixture().to_string_lossy(), &ResolveOptions { offline: true, ..Default::default() })
        .expect("resolve the fixture");
    let model = load_with(&files, &LoadOptions::with_dtype(dev, Some(dtype))).expect("load the fixture").model;
    assert_eq!(model.takes_device_ids(), dev.is_cuda());
    let cfg = EngineConfig {
        kv_cache_memory: KvCacheMemory::Bytes(16 << 20),
        max_num_seqs: 16,
        async_scheduling: Some(on),
        ..EngineConfig::default()
    };
    Engine::start(model, tokenizer(), cfg).expect("start the engine")
}

/// Prompts of 3–17 ids from a fixed generator, each with its sampling: greedy, seeded random
/// (temperature, top-k/top-p), and greedy with the stop token `stops[i]` (from a greedy run).
fn requests(stops: &[u32]) -> Vec<Request> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..8)
        .map(|i| {
            let len = 3 + (next() % 15) as usize;
            let prompt: Vec<u32> = (0..len).map(|_| (next() % VOCAB as u64) as u32).collect();
            let base = SamplingParams { max_tokens: 24 + i, ignore_eos: true, ..SamplingParams::greedy() };
            let params = match i % 3 {
                0 => base,
                1 => SamplingParams { temperature: 0.9, top_k: 40, top_p: 0.9, seed: Some(i as u64), ..base },
                _ => SamplingParams {
                    ignore_eos: false,
                    stop_token_ids: stops.get(i).copied().into_iter().collect(),
                    ..base
                },
            };
            Request::new(prompt, params)
        })
        .collect()
}

/// Each request alone → (tokens, finish reason), and how many steps ran ahead.
fn one_by_one(e: &Engine, reqs: &[Request]) -> (Vec<(Vec<u32>, Vec<Option<FinishReason>>)>, u64) {
    let outs = reqs
        .iter()
        .map(|r| {
            let o = collect(e.submit(r.clone()).expect("submit"));
            (o.ok().to_vec(), o.finish.clone())
        })
        .collect();
    (outs, wait_idle(e).steps_ahead)
}

#[test]
fn async_scheduling_changes_no_token() {
    let dev = device();
    let sync = engine(&dev, false);
    // Stop tokens greedy decoding meets: the middle token of each request's greedy output.
    let (probe, _) = one_by_one(&sync, &requests(&[]));
    let stops: Vec<u32> = probe.iter().map(|(t, _)| t[t.len() / 2]).collect();
    let reqs = requests(&stops);
    let (want, ahead) = one_by_one(&sync, &reqs);
    assert_eq!(ahead, 0);
    let stopped =
        want.iter().zip(&reqs).filter(|((t, f), r)| f == &[Some(FinishReason::Stop)] && t.len() < r.params.max_tokens);
    assert!(stopped.count() >= 2, "{want:?}");
    drop(sync);

    let e = engine(&dev, true);
    let (got, ahead) = one_by_one(&e, &reqs);
    assert_eq!(got, want);
    assert!(ahead > 0, "no step was launched ahead");

    // All at once: admissions mix with steps launched ahead; every request finishes.
    let outs = collect_all(reqs.iter().map(|r| e.submit(r.clone()).expect("submit")).collect());
    for (o, r) in outs.iter().zip(&reqs) {
        assert!(o.error.is_none(), "{:?}", o.error);
        let n = o.ok().len();
        match o.finish[..] {
            [Some(FinishReason::Length)] => assert_eq!(n, r.params.max_tokens),
            [Some(FinishReason::Stop)] => {
                assert!(n <= r.params.max_tokens && r.params.stop_token_ids.contains(&o.ok()[n - 1]))
            }
            ref f => panic!("finish {f:?}"),
        }
    }
    wait_idle(&e);
}

/// Requests that go away while a step is launched ahead for them: one aborted, one whose
/// client drops its stream after a few tokens. The others finish unchanged and the pool ends
/// idle (their blocks freed while a step still wrote into them, which nothing reads after).
#[test]
fn async_scheduling_survives_aborts_and_disconnects() {
    let dev = device();
    let e = engine(&dev, true);
    let reqs = requests(&[]);
    let (want, _) = one_by_one(&e, &reqs[..2]);
    let mut streams: Vec<_> = reqs.iter().map(|r| e.submit(r.clone()).expect("submit")).collect();
    // Read a few tokens of the third, then hang up; abort the fourth at once.
    let mut third = streams.remove(2);
    for _ in 0..3 {
        assert!(third.blocking_next().is_some());
    }
    drop(third);
    let fourth = streams.remove(2);
    e.abort(fourth.id());
    drop(fourth);
    let outs = collect_all(streams);
    // Batched with others: the same tokens where each row's arithmetic ignores the batch (the
    // CPU's kernels); on a GPU the GEMM changes with the batch size, so only the lengths.
    for (o, (w, _)) in outs.iter().zip(&want) {
        match dev.is_cuda() {
            false => assert_eq!(o.ok(), w.as_slice()),
            true => assert_eq!(o.ok().len(), w.len()),
        }
    }
    for o in &outs[2..] {
        assert!(o.error.is_none() && o.usage.is_some(), "{:?}", o.error);
    }
    let stats = wait_idle(&e);
    assert!(stats.steps_ahead > 0, "{stats:?}");
}

//! Decode steps replayed as CUDA graphs give the logits of the same steps run kernel by kernel.
//!
//! Two copies of a tiny seeded model (tests/fixtures/golden) each get their own KV pool; both
//! prefill the same 17 sequences of different lengths, then decode batches of 17, 1, 3, 8, 5,
//! 17, 1, 4 sequences (padded to the captured sizes 24, 1, 4, 8, 8, 24, 1, 4: every size is
//! first run eagerly and captured, then replayed). One copy replays graphs, the other runs
//! eagerly (`set_cuda_graphs(false)`); both follow the eager copy's greedy tokens. Every step's
//! logits must agree to 1e-4 in f32. Padding rows must write no K/V: the first sequence's
//! first key is what they attend to, and a later step of that sequence would see any write.
//! A MoE model (host-side routing) cannot be captured: graphs switch off and it must still
//! agree. Runs on the GPU (`PROM_TEST_DEVICE=cuda`, scripts/gpu/golden.sh); on the CPU there
//! are no graphs and the test says so.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use prom_models::load::{load_with, LoadOptions};
use prom_models::nn::{LogitsFor, Model, PagedKvCache, SeqChunk};
use prom_models::source::{resolve, ResolveOptions};

const BLOCK: usize = 16;
const BLOCKS_PER_SEQ: usize = 8;
const SEQS: usize = 17;

fn fixtures() -> PathBuf {
    match std::env::var_os("PROM_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden"),
    }
}

fn device() -> Device {
    let dev = std::env::var("PROM_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    prom_models::cuda::parse_device(&dev).unwrap_or_else(|e| panic!("PROM_TEST_DEVICE: {e}"))
}

fn load(name: &str, dev: &Device) -> Model {
    let files =
        resolve(&fixtures().join(name).to_string_lossy(), &ResolveOptions { offline: true, ..Default::default() })
            .unwrap();
    load_with(&files, &LoadOptions::with_dtype(dev, Some(DType::F32))).unwrap().model
}

struct Run {
    model: Model,
    kv: PagedKvCache,
}

impl Run {
    fn new(name: &str, dev: &Device, graphs: bool) -> Self {
        let model = load(name, dev);
        model.set_cuda_graphs(graphs);
        let kv = PagedKvCache::new(model.kv_spec(BLOCK), SEQS * BLOCKS_PER_SEQ).unwrap();
        Self { model, kv }
    }

    /// `(token, start)` per sequence → f32 logits of each on the host.
    fn step(&mut self, seqs: &[(Vec<u32>, usize, Vec<u32>)]) -> Tensor {
        let chunks: Vec<SeqChunk> = seqs
            .iter()
            .map(|(tokens, start, table)| SeqChunk {
                tokens,
                start: *start,
                block_table: table,
                logits: LogitsFor::Last,
                prompt_len: *start,
            })
            .collect();
        self.model.forward_batch(&chunks, &mut self.kv).unwrap().to_device(&Device::Cpu).unwrap()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Runs the schedule on both copies; returns the sizes the graph copy captured.
fn compare(name: &str, dev: &Device) -> Vec<usize> {
    let (mut graph, mut eager) = (Run::new(name, dev, true), Run::new(name, dev, false));
    let vocab = graph.model.config().vocab_size as u32;
    let tables: Vec<Vec<u32>> =
        (0..SEQS).map(|i| (0..BLOCKS_PER_SEQ).map(|b| (i * BLOCKS_PER_SEQ + b) as u32).collect()).collect();
    // Prompts of 3..=51 tokens: several blocks, partial last blocks.
    let mut lens: Vec<usize> = (0..SEQS).map(|i| 3 + (i * 7) % 49).collect();
    let prompts: Vec<(Vec<u32>, usize, Vec<u32>)> = (0..SEQS)
        .map(|i| ((0..lens[i]).map(|j| ((i * 31 + j * 17) as u32 + 5) % vocab).collect(), 0, tables[i].clone()))
        .collect();
    let (g, e) = (graph.step(&prompts), eager.step(&prompts));
    assert!(max_abs_diff(&g, &e) <= 1e-4, "{name}: prefill differs");
    let mut next: Vec<u32> =
        (0..SEQS).map(|i| e.get(i).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap()).collect();
    for (step, n) in [17, 1, 3, 8, 5, 17, 1, 4].into_iter().enumerate() {
        let batch: Vec<(Vec<u32>, usize, Vec<u32>)> =
            (0..n).map(|i| (vec![next[i]], lens[i], tables[i].clone())).collect();
        let (g, e) = (graph.step(&batch), eager.step(&batch));
        assert_eq!(g.dims(), [n, vocab as usize], "{name}: step {step}");
        let d = max_abs_diff(&g, &e);
        eprintln!("{name}: step {step}, {n} sequences: max |graph - eager| {d:.2e}");
        assert!(d <= 1e-4, "{name}: step {step} ({n} sequences): graph and eager logits differ by {d}");
        for i in 0..n {
            next[i] = e.get(i).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
            lens[i] += 1;
        }
    }
    graph.model.cuda_graph_sizes()
}

#[test]
fn graph_replays_match_eager_decode_steps() {
    let dev = device();
    if dev.is_cpu() {
        eprintln!("no CUDA device under test (PROM_TEST_DEVICE=cuda): CUDA graphs exist only there");
        return;
    }
    // Dense GQA (fused projection into the cache), QK-norm (split path: candle's strided
    // copies, whose layout uploads the capture must find cached), sliding window + softcap +
    // local rotary, learned positions.
    for name in ["llama_gqa", "qwen3", "gemma2", "gpt2"] {
        let sizes = compare(name, &dev);
        assert_eq!(sizes, [1, 4, 8, 24], "{name}: captured sizes");
    }
    // Host-side routing cannot be captured: graphs switch themselves off, results stay right.
    assert_eq!(compare("mixtral", &dev), Vec::<usize>::new(), "mixtral captured a graph");
}

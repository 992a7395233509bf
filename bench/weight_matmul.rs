//! Kernel micro-benchmark for every weight type `prom_models::kernels` runs (Q4_0, Q4_1, Q5_0,
//! Q5_1, Q8_0, F16, BF16) against what `Linear` ran before: candle's `QMatMul` for the same
//! QTensor (for F16/BF16 that is candle's f32 matmul over the dequantized copy, which is how
//! candle loads them). Same weights, same inputs, both on every core.
//!
//!     cargo bench -p prom-models --bench weight_matmul                    # SmolLM2-135M shapes
//!     cargo bench -p prom-models --bench weight_matmul -- --shapes llama1b --types Q4_0,Q8_0 --no-candle
//!
//! Prints the median time per call over ~0.5 s of calls (at least 5 calls), the multiply-add
//! rate and the weight bytes streamed per second (our packed bytes: the bound for matvec).
//! Weights are random; the kernels' cost does not depend on the values.

use std::hint::black_box;
use std::time::{Duration, Instant};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use prom_models::kernels::{Backend, QMatrix};

/// (label, m activation rows, n outputs, k inputs)
type Case = (&'static str, usize, usize, usize);

const SMOLLM2: &[Case] = &[
    ("tg 576->1536 (gate/up)", 1, 1536, 576),
    ("tg 1536->576 (down)", 1, 576, 1536),
    ("tg 576->49152 (lm head)", 1, 49152, 576),
    ("pp64 576->1536", 64, 1536, 576),
    ("pp64 1536->576", 64, 576, 1536),
];

/// Llama-3.2-1B: hidden 2048, 32 q heads / 8 kv heads of 64, ffn 8192, vocab 128256.
const LLAMA1B: &[Case] = &[
    ("tg 2048->2048 (q, o)", 1, 2048, 2048),
    ("tg 2048->512 (k, v)", 1, 512, 2048),
    ("tg 2048->8192 (gate/up)", 1, 8192, 2048),
    ("tg 8192->2048 (down)", 1, 2048, 8192),
    ("tg 2048->128256 (lm head)", 1, 128256, 2048),
    ("pp512 2048->2048 (q, o)", 512, 2048, 2048),
    ("pp512 2048->8192 (gate/up)", 512, 8192, 2048),
    ("pp512 8192->2048 (down)", 512, 2048, 8192),
];

fn median_time(mut f: impl FnMut()) -> Duration {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) || times.len() < 5 {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn parse_type(s: &str) -> GgmlDType {
    match s {
        "Q4_0" => GgmlDType::Q4_0,
        "Q4_1" => GgmlDType::Q4_1,
        "Q5_0" => GgmlDType::Q5_0,
        "Q5_1" => GgmlDType::Q5_1,
        "Q8_0" => GgmlDType::Q8_0,
        "F16" => GgmlDType::F16,
        "BF16" => GgmlDType::BF16,
        "Q4_K" => GgmlDType::Q4K,
        "Q5_K" => GgmlDType::Q5K,
        "Q6_K" => GgmlDType::Q6K,
        other => {
            panic!("unknown type {other}: one of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 F16 BF16 Q4_K Q5_K Q6_K")
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let types: Vec<GgmlDType> =
        opt("--types").unwrap_or_else(|| "Q5_0,Q5_1,F16,BF16".into()).split(',').map(parse_type).collect();
    let cases = match opt("--shapes").as_deref() {
        Some("llama1b") => LLAMA1B,
        None | Some("smollm2") => SMOLLM2,
        Some(other) => panic!("unknown shape set {other}: smollm2 or llama1b"),
    };
    let with_candle = !args.iter().any(|a| a == "--no-candle");
    let all_backends = args.iter().any(|a| a == "--all-backends");
    let dev = Device::Cpu;
    println!(
        "threads: {} (candle {}), backend: {:?}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        candle_core::utils::get_num_threads(),
        Backend::detect()
    );
    println!(
        "{:<28} {:>5} {:>16} {:>10} {:>8} {:>7} {:>9}",
        "case", "type", "impl", "us/call", "GMAC/s", "GB/s", "vs candle"
    );
    let mut seed = 1u32;
    let mut rand = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
    };
    for &(label, m, n, k) in cases {
        let w = Tensor::from_vec((0..n * k).map(|_| rand()).collect::<Vec<f32>>(), (n, k), &dev).unwrap();
        let x = Tensor::from_vec((0..m * k).map(|_| rand()).collect::<Vec<f32>>(), (m, k), &dev).unwrap();
        for &dtype in &types {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let weight_bytes = q.storage_size_in_bytes() as f64;
            // None where our kernels do not run the type (k-quants without AVX-512 VNNI).
            let ours = QMatrix::from_qtensor(&q).unwrap();
            let report = |name: &str, t: Duration, base: Option<Duration>| {
                let s = t.as_secs_f64();
                let ratio = base.map_or("-".to_string(), |b| format!("{:.2}x", b.as_secs_f64() / s));
                println!(
                    "{:<28} {:>5} {:>16} {:>10.1} {:>8.1} {:>7.1} {:>9}",
                    label,
                    format!("{dtype:?}"),
                    name,
                    s * 1e6,
                    (m * n * k) as f64 / s / 1e9,
                    weight_bytes / s / 1e9,
                    ratio
                );
            };
            let t_candle = with_candle.then(|| {
                let candle = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
                let t = median_time(|| {
                    black_box(candle.forward(black_box(&x)).unwrap());
                });
                report("candle", t, Some(t));
                if let Some(ours) = &ours {
                    let want: Vec<Vec<f32>> = candle.forward(&x).unwrap().to_vec2().unwrap();
                    let got: Vec<Vec<f32>> = ours.forward(&x).unwrap().to_vec2().unwrap();
                    let diff =
                        got.iter().flatten().zip(want.iter().flatten()).fold(0f32, |a, (g, w)| a.max((g - w).abs()));
                    println!("{:<28} {:>5} max |ours - candle| = {diff:.2e}", "", "");
                }
                t
            });
            if ours.is_none() {
                continue;
            }
            let backends = if all_backends { Backend::available() } else { vec![Backend::detect()] };
            for backend in backends.into_iter().rev() {
                if backend == Backend::Scalar && m * n * k > 1 << 24 {
                    continue; // minutes of scalar work teach nothing new
                }
                let w = QMatrix::from_qtensor(&q).unwrap().unwrap().with_backend(backend).unwrap();
                let t = median_time(|| {
                    black_box(w.forward(black_box(&x)).unwrap());
                });
                report(&format!("ours {backend:?}"), t, t_candle);
            }
        }
    }
}

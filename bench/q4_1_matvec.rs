//! Kernel micro-benchmark: our Q4_1 matmul (`prom_models::kernels`) against candle's `QMatMul`
//! on SmolLM2-135M's shapes, same weights, same inputs, both using every core.
//!
//!     cargo bench -p prom-models --bench q4_1_matvec
//!     COLD=1 cargo bench -p prom-models --bench q4_1_matvec   # only the weights-from-DRAM cases
//!
//! Prints the median time per call over ~0.5 s of calls, the multiply-add rate, and the weight
//! bytes streamed per second (the bound for matvec). Weights are random; the kernels' cost
//! does not depend on the values.

use std::hint::black_box;
use std::time::{Duration, Instant};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use prom_models::kernels::{Backend, QMatrix};

/// (label, m activation rows, n outputs, k inputs)
const CASES: &[(&str, usize, usize, usize)] = &[
    ("matvec 576->1536 (gate/up)", 1, 1536, 576),
    ("matvec 1536->576 (down)", 1, 576, 1536),
    ("matvec 576->49152 (lm head)", 1, 49152, 576),
    ("decode 16 x 576->1536", 16, 1536, 576),
    ("decode 16 x 1536->576", 16, 576, 1536),
    ("decode 16 x 576->49152 (head)", 16, 49152, 576),
    ("prefill 64 x 576->1536", 64, 1536, 576),
    ("prefill 64 x 1536->576", 64, 576, 1536),
];

/// Seeded uniform values in -0.5..0.5.
fn rand_source() -> impl FnMut() -> f32 {
    let mut seed = 1u32;
    move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
    }
}

fn median_time(mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) || times.len() < 10 {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    if let Ok(spec) = std::env::var("SWEEP") {
        return sweep(&spec);
    }
    if std::env::var_os("COLD").is_some() {
        return cold(&mut rand_source());
    }
    let dev = Device::Cpu;
    println!(
        "threads: {} (candle {}), backend: {:?}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        candle_core::utils::get_num_threads(),
        Backend::detect()
    );
    println!("{:<30} {:>14} {:>10} {:>9} {:>8} {:>9}", "case", "impl", "us/call", "GMAC/s", "GB/s", "vs candle");
    let mut rand = rand_source();
    for &(label, m, n, k) in CASES {
        let w = Tensor::from_vec((0..n * k).map(|_| rand()).collect::<Vec<f32>>(), (n, k), &dev).unwrap();
        let x = Tensor::from_vec((0..m * k).map(|_| rand()).collect::<Vec<f32>>(), (m, k), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let weight_bytes = q.storage_size_in_bytes() as f64;
        let ours = QMatrix::from_qtensor(&q).unwrap().expect("Q4_1 is supported");
        let candle = QMatMul::from_qtensor(q).unwrap();

        let want: Vec<Vec<f32>> = candle.forward(&x).unwrap().to_vec2().unwrap();
        let got: Vec<Vec<f32>> = ours.forward(&x).unwrap().to_vec2().unwrap();
        let max_diff = got.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);

        let t_candle = median_time(|| {
            black_box(candle.forward(black_box(&x)).unwrap());
        });
        let report = |name: &str, t: Duration| {
            let s = t.as_secs_f64();
            println!(
                "{:<30} {:>14} {:>10.1} {:>9.1} {:>8.1} {:>8.2}x",
                label,
                name,
                s * 1e6,
                (m * n * k) as f64 / s / 1e9,
                weight_bytes / s / 1e9,
                t_candle.as_secs_f64() / s
            );
        };
        report("candle", t_candle);
        for backend in Backend::available().into_iter().rev() {
            if backend == Backend::Scalar && m * n * k > 1 << 24 {
                continue; // minutes of scalar work teach nothing new
            }
            let w = QMatrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap().unwrap();
            let w = w.with_backend(backend).unwrap();
            let t = median_time(|| {
                black_box(w.forward(black_box(&x)).unwrap());
            });
            report(&format!("ours {backend:?}"), t);
        }
        println!("{:<30} max |ours - candle| = {max_diff:.2e}", "");
    }
    cold(&mut rand);
}

/// Decode as the engine sees it: every weight comes from DRAM, because a step walks ~80 MB of
/// weights, more than the L3. Here a ring of copies of one matrix, 64 MB in all, is walked
/// call after call, so no call finds its weights cached.
fn cold(rand: &mut impl FnMut() -> f32) {
    const RING_BYTES: usize = 64 << 20;
    let dev = Device::Cpu;
    println!("{:<30} {:>14} {:>10} {:>9} {:>8}", "weights from DRAM (ring)", "impl", "us/call", "GMAC/s", "GB/s");
    for &(label, m, n, k) in &[
        ("decode 1 x 576->3072", 1, 3072, 576),
        ("decode 16 x 576->3072", 16, 3072, 576),
        ("decode 16 x 1536->576", 16, 576, 1536),
        ("decode 16 x 576->49152 (head)", 16, 49152, 576),
        ("prefill 64 x 576->3072", 64, 3072, 576),
    ] {
        let w = Tensor::from_vec((0..n * k).map(|_| rand()).collect::<Vec<f32>>(), (n, k), &dev).unwrap();
        let x = Tensor::from_vec((0..m * k).map(|_| rand()).collect::<Vec<f32>>(), (m, k), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let bytes = q.storage_size_in_bytes();
        let ring: Vec<QMatrix> =
            (0..RING_BYTES.div_ceil(bytes).max(2)).map(|_| QMatrix::from_qtensor(&q).unwrap().unwrap()).collect();
        let mut at = 0;
        let t = median_time(|| {
            black_box(ring[at].forward(black_box(&x)).unwrap());
            at = (at + 1) % ring.len();
        });
        let s = t.as_secs_f64();
        println!(
            "{:<30} {:>14} {:>10.1} {:>9.1} {:>8.1}",
            label,
            format!("ours {:?}", Backend::detect()),
            s * 1e6,
            (m * n * k) as f64 / s / 1e9,
            bytes as f64 / s / 1e9
        );
    }
}

/// `SWEEP=n,k` times our kernel alone at 1..128 rows (weights warm): how the rate depends on rows.
fn sweep(spec: &str) {
    let v: Vec<usize> = spec.split(',').map(|x| x.parse().expect("SWEEP=n,k")).collect();
    let (n, k) = (v[0], v[1]);
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
    let q = QMatrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap().unwrap();
    for m in [1, 8, 16, 24, 32, 48, 64, 128, 256] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let t = median_time(|| {
            black_box(q.forward(black_box(&x)).unwrap());
        });
        println!(
            "m {m:4} n {n} k {k}: {:8.1} us {:7.1} GMAC/s",
            t.as_secs_f64() * 1e6,
            (m * n * k) as f64 / t.as_secs_f64() / 1e9
        );
    }
}

//! Grouped MoE dispatch (each expert one matmul over its routed tokens) against the naive
//! reference (every expert on every token) for a Mixtral-like block shrunk to hidden 512,
//! 8 experts, top-2, expert width 1024, on the CPU.
//!
//! `cargo bench -p prom-models --bench moe_grouped`

use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};
use prom_models::config::moe::MoeConfig;
use prom_models::config::Activation;
use prom_models::nn::moe::{GatedFfn, Moe, MoeParts};
use prom_models::nn::Linear;

const HIDDEN: usize = 512;
const EXPERTS: usize = 8;
const TOP_K: usize = 2;
const FF: usize = 1024;

fn linear(out: usize, inp: usize, dev: &Device) -> Result<Linear> {
    // std 1/sqrt(in) keeps activations O(1) through the block.
    let w = Tensor::randn(0f32, 1.0 / (inp as f32).sqrt(), (out, inp), dev)?;
    Ok(Linear::new(QMatMul::Tensor(w), None, out))
}

/// Median wall time of `f` over enough runs to fill about `budget`.
fn time(budget: Duration, mut f: impl FnMut() -> Result<Tensor>) -> Result<Duration> {
    f()?; // warm-up: first-touch allocation, gemm thread pool start.
    let once = {
        let t = Instant::now();
        f()?;
        t.elapsed()
    };
    let runs = (budget.as_secs_f64() / once.as_secs_f64().max(1e-6)).clamp(5.0, 2000.0) as usize;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[runs / 2])
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let cfg = MoeConfig::softmax_top_k(EXPERTS, TOP_K, FF, Activation::Silu);
    let experts = (0..EXPERTS)
        .map(|_| {
            Ok(GatedFfn {
                gate: linear(FF, HIDDEN, &dev)?,
                up: linear(FF, HIDDEN, &dev)?,
                down: linear(HIDDEN, FF, &dev)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let parts = MoeParts {
        router: Tensor::randn(0f32, 1.0, (EXPERTS, HIDDEN), &dev)?,
        correction_bias: None,
        experts,
        shared: None,
        shared_gate: None,
    };
    let moe = Moe::new(cfg, parts)?;

    println!("MoE block: hidden {HIDDEN}, {EXPERTS} experts, top-{TOP_K}, expert width {FF}, f32, CPU");
    println!(
        "{:>7} | {:>12} | {:>12} | {:>13} | {:>9}",
        "tokens", "grouped ms", "naive ms", "naive/grouped", "maxdiff"
    );
    println!("{:->7}-|-{:->12}-|-{:->12}-|-{:->13}-|-{:->9}", "", "", "", "", "");
    for t in [1usize, 16, 128] {
        let x = Tensor::randn(0f32, 1.0, (1, t, HIDDEN), &dev)?;
        let diff = (moe.forward(&x)? - moe.forward_naive(&x)?)?.abs()?.flatten_all()?.max(0)?;
        let diff = diff.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let budget = Duration::from_secs(2);
        let grouped = time(budget, || Ok(moe.forward(&x)?))?;
        let naive = time(budget, || Ok(moe.forward_naive(&x)?))?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{t:>7} | {:>12.3} | {:>12.3} | {:>12.2}x | {diff:>9.1e}",
            ms(grouped),
            ms(naive),
            naive.as_secs_f64() / grouped.as_secs_f64()
        );
    }
    Ok(())
}

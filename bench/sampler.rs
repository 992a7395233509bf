//! Host sampler micro-benchmark: one random-path step (`Sampler::sample`: temperature, top-k,
//! top-p, min-p, one draw) on a logits row of SmolLM2's (49152) and Llama 3's (128256)
//! vocabulary, one core. The engine samples every non-greedy row this way, one after another,
//! after each forward pass, so at batch B a step spends B times this on the host.
//!
//!     cargo bench -p prom-engine --bench sampler
//!
//! The logits are seeded pseudo-random: a 16-nat spread with a few hundred tokens 8 nats above
//! it, so nearly the whole row survives the 2^-45 weight floor (≈ 31 nats), as at temperature 1 on a real model.
//! Prints the median µs a row over ~0.3 s of calls.

use std::hint::black_box;
use std::time::{Duration, Instant};

use prom_engine::{Sampler, SamplingParams};

fn row(vocab: usize) -> Vec<f32> {
    let mut x = 0x1234_5678_9abc_def0u64;
    (0..vocab)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let spike = if x.is_multiple_of(509) { 8.0 } else { 0.0 };
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 16.0 - 8.0 + spike
        })
        .collect()
}

fn main() {
    let cases: &[(&str, SamplingParams)] = &[
        ("temperature 1", SamplingParams { temperature: 1.0, ..SamplingParams::default() }),
        ("temperature 0.7, top_p 0.95", SamplingParams { temperature: 0.7, top_p: 0.95, ..SamplingParams::default() }),
        ("temperature 1, top_k 50", SamplingParams { temperature: 1.0, top_k: 50, ..SamplingParams::default() }),
        ("temperature 1, min_p 0.05", SamplingParams { temperature: 1.0, min_p: 0.05, ..SamplingParams::default() }),
    ];
    for vocab in [49152, 128256] {
        let logits = row(vocab);
        for (label, p) in cases {
            let p = SamplingParams { seed: Some(7), ..p.clone() };
            let Ok(mut s) = Sampler::new(&p, &[], vocab, &[]) else {
                eprintln!("{label}: invalid parameters");
                continue;
            };
            let mut times = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(300) {
                let t = Instant::now();
                black_box(s.sample(black_box(&logits), &[]).map(|x| x.token).ok());
                times.push(t.elapsed());
            }
            times.sort();
            let median = times[times.len() / 2];
            println!("vocab {vocab:6}  {label:30} {:8.1} µs a row", median.as_secs_f64() * 1e6);
        }
    }
}

//! Kernel micro-benchmark: CPU paged decode attention (`prom_models::kernels::attention`) on
//! SmolLM2-135M's shape (9 query heads, 3 kv heads, head dim 64, f16 cache, 16-token blocks),
//! for a batch of decoding sequences whose blocks lie scattered over a pool the size of a
//! 30-layer cache, so that, as in the engine, a step's keys and values come from DRAM.
//!
//!     cargo bench -p prom-models --bench attention_decode
//!     SEQS=16 CTX=112 ROUNDS=15 cargo bench -p prom-models --bench attention_decode
//!     SEQS=1 CTX=512 LEN=512 cargo bench -p prom-models --bench attention_decode   # a prefill
//!
//! `BS` sets the block size (16). `LEN` query tokens per sequence (default 1: decode) attend to
//! the last `LEN` positions of their `CTX`, causally. One "step" is the 30 layers' calls, each on
//! its own layer of the pool. Prints the minimum and median step time over the rounds, and the
//! K/V bytes a step reads per second.

use std::time::Instant;

use half::f16;
use prom_models::kernels::attention::{paged_attention, AttnParams, AttnSeq, KvBlocks, KvSlice};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let (seqs, ctx, rounds) = (env("SEQS", 16), env("CTX", 112), env("ROUNDS", 15));
    let len = env("LEN", 1).clamp(1, ctx);
    let (layers, heads, kvh, dim, bs) = (30, 9, 3, 64, env("BS", 16));
    let blocks_per_seq = ctx.div_ceil(bs);
    // A pool with room for twice the batch's blocks, as a pool sized from free memory would be.
    let num_blocks = 2 * seqs * blocks_per_seq;
    let per_layer = num_blocks * kvh * dim * bs;
    let mut seed = 7u64;
    let mut rand = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as u32
    };
    let k: Vec<Vec<f16>> = (0..layers)
        .map(|_| (0..per_layer).map(|_| f16::from_f32((rand() % 1000) as f32 / 1000.0 - 0.5)).collect())
        .collect();
    let v = k.clone();
    // Blocks dealt out in a shuffled order, as a pool in use hands them out.
    let mut ids: Vec<u32> = (0..num_blocks as u32).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rand() as usize % (i + 1));
    }
    let tables: Vec<&[u32]> = ids.chunks(blocks_per_seq).take(seqs).collect();
    let q: Vec<f32> = (0..seqs * len * heads * dim).map(|_| (rand() % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut out = vec![0f32; seqs * len * heads * dim];
    let batch: Vec<AttnSeq> =
        (0..seqs).map(|s| AttnSeq { row: s * len, len, start: ctx - len, block_table: tables[s] }).collect();
    let p = AttnParams { heads, scale: 0.125, softcap: None, window: None, alibi: None };
    let step = |out: &mut [f32]| {
        for l in 0..layers {
            let kv = KvBlocks {
                k: KvSlice::F16(k[l][..].into()),
                v: KvSlice::F16(v[l][..].into()),
                block_size: bs,
                kv_heads: kvh,
                k_dim: dim,
                v_dim: dim,
            };
            paged_attention(&q, &batch, &kv, &p, out).expect("attention");
        }
    };
    // Evict the pool from the caches between rounds, as the rest of a decode step does.
    let mut flush = vec![0u8; 64 << 20];
    let mut times = Vec::new();
    for r in 0..rounds + 2 {
        if std::env::var_os("WARM").is_none() {
            flush.iter_mut().for_each(|b| *b = b.wrapping_add(r as u8));
        }
        let t = Instant::now();
        step(&mut out);
        if r >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let bytes = (layers * seqs * ctx * kvh * dim * 2 * 2) as f64;
    println!(
        "seqs {seqs} ctx {ctx} len {len}: step min {:.3} ms, median {:.3} ms, {:.1} GB/s of K/V at the median (checksum {:.3})",
        times[0] * 1e3,
        times[times.len() / 2] * 1e3,
        bytes / times[times.len() / 2] / 1e9,
        out.iter().sum::<f32>()
    );
}

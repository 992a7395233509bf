//! Our paged decode attention on the GPU against a host reference (f64 softmax over the same
//! pool), and split-K (flash-decoding) against the single-pass kernel: long contexts (up to
//! 4000 keys), several sequences with scattered block tables, GQA, a sliding window, softcap
//! and ALiBi, multi-token chunks, large decode batches (the decode kernel). Runs with
//! `PROM_TEST_DEVICE=cuda` (scripts/gpu/golden.sh); built only with the `cuda` feature, and a
//! no-op on the CPU.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use prom_models::cuda::{paged_attention_pool, parse_device, Split};
use prom_models::kernels::attention::{AttnParams, AttnSeq};

fn device() -> Device {
    let dev = std::env::var("PROM_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    parse_device(&dev).unwrap_or_else(|e| panic!("PROM_TEST_DEVICE: {e}"))
}

/// A xorshift stream of values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Case {
    heads: usize,
    kv_heads: usize,
    dim: usize,
    block: usize,
    /// (context before the chunk, chunk tokens) per sequence.
    seqs: Vec<(usize, usize)>,
    window: Option<usize>,
    softcap: Option<f32>,
    alibi: bool,
}

/// `out (tokens, heads, dim)` by the definition, in f64, from the pool as the kernel reads it
/// (values already rounded to the cache dtype).
#[allow(clippy::too_many_arguments)]
fn reference(c: &Case, q: &[f32], k: &[f32], v: &[f32], tables: &[Vec<u32>], p: &AttnParams) -> Vec<f32> {
    let (h, kvh, d, bs) = (c.heads, c.kv_heads, c.dim, c.block);
    let mut out = Vec::new();
    for (si, &(start, len)) in c.seqs.iter().enumerate() {
        for i in 0..len {
            let qpos = start + i;
            for head in 0..h {
                let g = head / (h / kvh);
                let row = |pool: &[f32], pos: usize| {
                    let blk = tables[si][pos / bs] as usize;
                    let at = ((blk * kvh + g) * bs + pos % bs) * d;
                    pool[at..at + d].to_vec()
                };
                let qr = &q[((out.len() / (h * d)) * h + head) * d..][..d];
                let lo = p.window.map_or(0, |w| (qpos + 1).saturating_sub(w));
                let mut scores = Vec::new();
                for pos in lo..=qpos {
                    let kr = row(k, pos);
                    let mut s = qr.iter().zip(&kr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * p.scale as f64;
                    if let Some(a) = p.alibi {
                        s += a[head] as f64 * pos as f64;
                    }
                    if let Some(cap) = p.softcap {
                        s = cap as f64 * (s / cap as f64).tanh();
                    }
                    scores.push((pos, s));
                }
                let mx = scores.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
                let mut acc = vec![0f64; d];
                let mut sum = 0f64;
                for &(pos, s) in &scores {
                    let w = (s - mx).exp();
                    sum += w;
                    for (a, x) in acc.iter_mut().zip(row(v, pos)) {
                        *a += w * x as f64;
                    }
                }
                out.extend(acc.iter().map(|a| (a / sum) as f32));
            }
        }
    }
    out
}

fn run(dev: &Device, c: &Case, dt: DType, seed: u64) {
    let (h, kvh, d, bs) = (c.heads, c.kv_heads, c.dim, c.block);
    // Scattered block tables: sequence i takes every n-th block of a shuffled pool.
    let need: Vec<usize> = c.seqs.iter().map(|&(s, l)| (s + l).div_ceil(bs)).collect();
    let blocks: usize = need.iter().sum::<usize>() + 3;
    let mut order: Vec<u32> = (0..blocks as u32).collect();
    let r = values(blocks, seed + 9);
    order.sort_by(|a, b| r[*a as usize].total_cmp(&r[*b as usize]));
    let mut it = order.into_iter();
    let tables: Vec<Vec<u32>> = need.iter().map(|&n| it.by_ref().take(n).collect()).collect();
    let round = |x: Vec<f32>, shape: &[usize]| {
        let t = Tensor::from_vec(x, shape, &Device::Cpu).unwrap().to_dtype(dt).unwrap();
        let host = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (t.to_device(dev).unwrap(), host)
    };
    let tokens: usize = c.seqs.iter().map(|s| s.1).sum();
    let (kt, k) = round(values(blocks * kvh * bs * d, seed + 1), &[blocks, kvh, bs, d]);
    let (vt, v) = round(values(blocks * kvh * bs * d, seed + 2), &[blocks, kvh, bs, d]);
    let (qt, q) = round(values(tokens * h * d, seed + 3), &[tokens, h, d]);
    let slopes: Vec<f32> = (0..h).map(|i| -0.01 / (i + 1) as f32).collect();
    let p = AttnParams {
        heads: h,
        scale: 1.0 / (d as f32).sqrt(),
        softcap: c.softcap,
        window: c.window,
        alibi: c.alibi.then_some(&slopes[..]),
    };
    let mut row = 0;
    let seqs: Vec<AttnSeq> = c
        .seqs
        .iter()
        .zip(&tables)
        .map(|(&(start, len), t)| {
            row += len;
            AttnSeq { row: row - len, len, start, block_table: t }
        })
        .collect();
    let want = reference(c, &q, &k, &v, &tables, &p);
    let get = |split| {
        let o = paged_attention_pool(&qt, &kt, &vt, &seqs, &p, split).unwrap();
        o.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let single = get(Split::Parts(1));
    let err = |got: &[f32]| {
        assert!(got.iter().all(|x| x.is_finite()), "non-finite output");
        got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    };
    // The kernels compute in f32 and round the output to the activation dtype.
    let bound = match dt {
        DType::F32 => 2e-5,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    };
    let e1 = err(&single);
    assert!(e1 <= bound, "{dt:?} single pass vs reference: {e1} (seed {seed}, seqs {:?})", c.seqs);
    for split in [Split::Auto, Split::Parts(2), Split::Parts(7), Split::Parts(64)] {
        let e = err(&get(split));
        assert!(e <= bound, "{dt:?} {split:?} vs reference: {e} (seed {seed}, seqs {:?})", c.seqs);
        let diff = get(split).iter().zip(&single).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff <= bound, "{dt:?} {split:?} vs single pass: {diff} (seed {seed})");
    }
}

#[test]
fn split_k_decode_attention_matches_the_single_pass_and_the_reference() {
    let dev = device();
    if dev.is_cpu() {
        return;
    }
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let base = |seqs: Vec<(usize, usize)>| Case {
        heads: 32,
        kv_heads: 8,
        dim: 128,
        block: 16,
        seqs,
        window: None,
        softcap: None,
        alibi: false,
    };
    let cases = [
        // bs 1 decode at long contexts (the case split-K is for), the Llama-3-8B attention shape.
        base(vec![(3999, 1)]),
        base(vec![(1000, 1)]),
        // Several sequences of different lengths, one of them shorter than a tile.
        base(vec![(2047, 1), (5, 1), (1200, 1), (3000, 1)]),
        // Multi-token chunks (prefill and decode mixed; Parts(n) splits them too).
        base(vec![(1500, 7), (0, 33), (700, 1)]),
        // MQA, a head dim of 66 (rows not a multiple of 16 bytes: scalar loads), block size 32,
        // sliding window, softcap, ALiBi.
        Case {
            heads: 8,
            kv_heads: 1,
            dim: 66,
            block: 32,
            window: Some(300),
            softcap: Some(30.0),
            alibi: true,
            ..base(vec![(1800, 1), (250, 3)])
        },
        Case { heads: 12, kv_heads: 4, dim: 64, block: 16, window: Some(1000), ..base(vec![(4000, 1)]) },
        // Decode batches large enough for paged_decode (a CTA for every SM without split-K: 70
        // sequences × 2 head chunks ≥ 132 SMs): mixed contexts at the 8B shape; 8 heads a CTA
        // with window, softcap and ALiBi at head dim 64; head dim 256 with GQA groups of 2.
        base((0..64).map(|i| ((i * 37) % 600, 1)).collect()),
        Case {
            heads: 16,
            kv_heads: 2,
            dim: 64,
            window: Some(200),
            softcap: Some(20.0),
            alibi: true,
            ..base((0..70).map(|i| ((i * 53) % 900, 1)).collect())
        },
        Case { heads: 4, kv_heads: 2, dim: 256, ..base((0..70).map(|i| ((i * 97) % 1300, 1)).collect()) },
        // Decode batches of a warp an SM or more in bf16/f16 take decode_mma (tensor cores; the
        // 64-sequence case above too, f32 keeps paged_decode): a sliding window at the 8B shape,
        // and a group of 16 query heads (every row of the mma) at head dim 64.
        Case { window: Some(150), ..base((0..40).map(|i| ((i * 29) % 500, 1)).collect()) },
        Case { heads: 32, kv_heads: 2, dim: 64, ..base((0..80).map(|i| ((i * 61) % 400, 1)).collect()) },
        // Small decode batches (paged_decode's 16-warp kernel): bs 1 at the contexts of
        // bench/gpu.sh (up to 512 keys are one CTA, no split-K merge), a context past one
        // partition, and two sequences with a window.
        base(vec![(200, 1)]),
        base(vec![(511, 1)]),
        base(vec![(600, 1), (31, 1)]),
        Case { heads: 16, kv_heads: 2, dim: 64, window: Some(100), alibi: true, ..base(vec![(450, 1), (90, 1)]) },
        // Prefill on tensor cores (bf16/f16, head dims 128 and 64): a 300-token prompt (five
        // 64-token tiles, the last partial), a chunk continuing a cached context, a decode row
        // in the same batch; a window shorter than a chunk, and chunks of exactly one tile.
        base(vec![(0, 300), (130, 70), (500, 1)]),
        Case { heads: 16, kv_heads: 2, dim: 64, window: Some(90), ..base(vec![(40, 129), (0, 64), (7, 65)]) },
        // SmolLM2's groups of 3 query heads, which paged_decode takes one at a time: bs 1, and a
        // batch of 48 for its 4-warp kernel (there a group of 3 was a kernel that did not exist).
        Case { heads: 9, kv_heads: 3, dim: 64, ..base(vec![(300, 1)]) },
        Case { heads: 9, kv_heads: 3, dim: 64, ..base((0..48).map(|i| ((i * 41) % 700, 1)).collect()) },
    ];
    for dt in [DType::F32, DType::BF16, DType::F16] {
        for (i, c) in cases.iter().enumerate() {
            run(&dev, c, dt, seed + i as u64);
        }
    }
}

/// The decode step from a fused `[q | k | v]` projection before rotary: the 16-warp decode
/// kernel's fused form (it rotates the queries and the new key, keeps the new key and value in
/// shared memory and writes them into the pool) against `qkv_rope_write` followed by the plain
/// kernel. The outputs and both pools must be the same bits. Small batches (split-K past 512
/// keys too), Llama-3-8B's and SmolLM2's head layouts, full, interleaved and partial rotary, a
/// sliding window; large batches (the 4-warp kernel) must take the unfused path.
#[test]
fn fused_rotary_decode_is_rope_write_then_attention_bitwise() {
    use prom_models::cuda::rope_attention_pool;
    let dev = device();
    if dev.is_cpu() {
        return;
    }
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    // (heads, kv heads, dim, rotary dims, interleaved, window, contexts, fused)
    type Shape = (usize, usize, usize, usize, bool, Option<usize>, Vec<usize>, bool);
    let shapes: Vec<Shape> = vec![
        (32, 8, 128, 128, false, None, vec![200], true),
        (32, 8, 128, 128, false, None, vec![1500], true),
        (32, 8, 128, 128, true, None, vec![3, 700, 129, 64], true),
        (9, 3, 64, 64, false, None, vec![300, 17], true),
        (32, 8, 128, 64, false, Some(100), vec![900, 40], true),
        (32, 8, 128, 128, false, None, (0..64).map(|i| (i * 37) % 600).collect(), false),
        (9, 3, 64, 64, true, None, (0..150).map(|i| (i * 13) % 300).collect(), false),
    ];
    for dt in [DType::BF16, DType::F16] {
        for (case, (h, kvh, d, rot, interleaved, window, ctx, small)) in shapes.iter().cloned().enumerate() {
            let s = seed + 100 * case as u64;
            let bs = 16;
            let n = ctx.len();
            // Sequence i holds positions 0..=ctx[i] (its new token at ctx[i]) in scattered blocks.
            let need: Vec<usize> = ctx.iter().map(|&c| (c + 1).div_ceil(bs)).collect();
            let blocks = need.iter().sum::<usize>() + 2;
            let mut order: Vec<u32> = (0..blocks as u32).collect();
            let r = values(blocks, s + 9);
            order.sort_by(|a, b| r[*a as usize].total_cmp(&r[*b as usize]));
            let mut it = order.into_iter();
            let tables: Vec<Vec<u32>> = need.iter().map(|&k| it.by_ref().take(k).collect()).collect();
            let seqs: Vec<AttnSeq> = ctx
                .iter()
                .zip(&tables)
                .enumerate()
                .map(|(i, (&c, t))| AttnSeq { row: i, len: 1, start: c, block_table: t })
                .collect();
            let slots: Vec<usize> = ctx.iter().zip(&tables).map(|(&c, t)| t[c / bs] as usize * bs + c % bs).collect();
            let on = |x: Vec<f32>, shape: &[usize]| {
                Tensor::from_vec(x, shape, &Device::Cpu).unwrap().to_dtype(dt).unwrap().to_device(&dev).unwrap()
            };
            let pool = |k: u64| on(values(blocks * kvh * bs * d, s + k), &[blocks, kvh, bs, d]);
            let qkv = on(values(n * (h + 2 * kvh) * d, s + 3), &[n, (h + 2 * kvh) * d]);
            let angles: Vec<f32> = (0..n * rot / 2).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let cos = on(angles.iter().map(|a| a.cos()).collect(), &[n, rot / 2]);
            let sin = on(angles.iter().map(|a| a.sin()).collect(), &[n, rot / 2]);
            let p = AttnParams { heads: h, scale: 1.0 / (d as f32).sqrt(), softcap: None, window, alibi: None };
            let run = |fuse: bool| {
                let (k, v) = (pool(1), pool(2));
                let (out, fused) =
                    rope_attention_pool(&qkv, h, &k, &v, &seqs, &slots, Some((&cos, &sin, rot, interleaved)), &p, fuse)
                        .unwrap();
                let host =
                    |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (host(&out), host(&k), host(&v), fused)
            };
            let (out_f, k_f, v_f, fused) = run(true);
            let (out_u, k_u, v_u, unfused) = run(false);
            assert!(fused == small && !unfused, "{dt:?} case {case}: the fused form ran ({fused}, {unfused} unasked)");
            assert!(out_f.iter().all(|x| x.is_finite()), "{dt:?} case {case}: non-finite output");
            let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same(&k_u, &k_f) && same(&v_u, &v_f), "{dt:?} case {case}: the pools differ (seed {s})");
            let worst = out_f.iter().zip(&out_u).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(same(&out_f, &out_u), "{dt:?} case {case}: outputs differ by up to {worst} (seed {s})");
        }
    }
}

//! Tests of the CPU paged attention (`kernels/attention.rs`) against a scalar reference.

use super::*;

fn values(n: usize, seed: u32) -> Vec<f32> {
    super::super::math::test_values(n, seed)
}

struct Case {
    heads: usize,
    kvh: usize,
    dk: usize,
    dv: usize,
    bs: usize,
    window: Option<usize>,
    softcap: Option<f32>,
    alibi: bool,
    f16: bool,
    int8: bool,
}

/// Every sequence's keys live in scattered blocks; the reference recomputes each row with a
/// plain two-pass softmax from per-position K/V.
fn check(c: &Case) {
    // (start, len); the last crosses two 64-key softmax spans.
    let seqs_spec = [(0usize, 5usize), (37, 1), (3, 19), (60, 3), (130, 9)];
    let num_blocks = 64;
    let block_vals = |dim| num_blocks * c.kvh * dim * c.bs;
    let mut kbuf = values(block_vals(c.dk), 1);
    let mut vbuf = values(block_vals(c.dv), 2);
    if c.f16 {
        for x in kbuf.iter_mut().chain(vbuf.iter_mut()) {
            *x = f16::from_f32(*x).to_f32();
        }
    }
    let (k16, v16): (Vec<f16>, Vec<f16>) =
        (kbuf.iter().map(|&x| f16::from_f32(x)).collect(), vbuf.iter().map(|&x| f16::from_f32(x)).collect());
    // int8: arbitrary quants and one scale per (block, head, offset); the reference reads
    // the dequantized values.
    let (k8, v8): (Vec<i8>, Vec<i8>) = (
        kbuf.iter().map(|&x| (x * 127.0).round() as i8).collect(),
        vbuf.iter().map(|&x| (x * 127.0).round() as i8).collect(),
    );
    let scales: Vec<f16> =
        values(num_blocks * c.kvh * c.bs, 4).iter().map(|&x| f16::from_f32(0.01 + x.abs() / 64.0)).collect();
    if c.int8 {
        for (i, x) in kbuf.iter_mut().enumerate() {
            let (bh, j) = (i / (c.dk * c.bs), i % c.bs);
            *x = k8[i] as f32 * scales[bh * c.bs + j].to_f32();
        }
        for (i, x) in vbuf.iter_mut().enumerate() {
            *x = v8[i] as f32 * scales[i / c.dv].to_f32();
        }
    }
    // Block tables: a fixed permutation of the pool, disjoint per sequence.
    let perm: Vec<u32> = (0..num_blocks as u32).map(|i| (i * 37 + 11) % num_blocks as u32).collect();
    let mut tables = vec![];
    let mut next = 0;
    for &(start, len) in &seqs_spec {
        let n = (start + len).div_ceil(c.bs);
        tables.push(perm[next..next + n].to_vec());
        next += n;
    }
    let rows: usize = seqs_spec.iter().map(|s| s.1).sum();
    let q = values(rows * c.heads * c.dk, 3);
    let mut seqs = vec![];
    let mut row = 0;
    for (i, &(start, len)) in seqs_spec.iter().enumerate() {
        seqs.push(AttnSeq { row, len, start, block_table: &tables[i] });
        row += len;
    }
    let slopes: Vec<f32> = (0..c.heads).map(|h| 0.5f32.powi(h as i32 + 1)).collect();
    let p = AttnParams {
        heads: c.heads,
        scale: 0.3,
        softcap: c.softcap,
        window: c.window,
        alibi: c.alibi.then_some(slopes.as_slice()),
    };
    let kv = KvBlocks {
        k: if c.f16 {
            KvSlice::F16(k16[..].into())
        } else if c.int8 {
            KvSlice::I8 { q: k8[..].into(), scale: scales[..].into() }
        } else {
            KvSlice::F32(kbuf[..].into())
        },
        v: if c.f16 {
            KvSlice::F16(v16[..].into())
        } else if c.int8 {
            KvSlice::I8 { q: v8[..].into(), scale: scales[..].into() }
        } else {
            KvSlice::F32(vbuf[..].into())
        },
        block_size: c.bs,
        kv_heads: c.kvh,
        k_dim: c.dk,
        v_dim: c.dv,
    };
    let mut out = vec![f32::NAN; rows * c.heads * c.dv];
    paged_attention(&q, &seqs, &kv, &p, &mut out).unwrap();

    // Each token alone (one row, its own call) gets the bits it got inside its tiles.
    let (qw, ow) = (c.heads * c.dk, c.heads * c.dv);
    for s in &seqs {
        for i in 0..s.len {
            let one = AttnSeq { row: 0, len: 1, start: s.start + i, block_table: s.block_table };
            let mut alone = vec![f32::NAN; ow];
            paged_attention(&q[(s.row + i) * qw..][..qw], &[one], &kv, &p, &mut alone).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&alone),
                bits(&out[(s.row + i) * ow..][..ow]),
                "token {} of the sequence at {}",
                i,
                s.start
            );
        }
    }

    let rep = c.heads / c.kvh;
    let mut worst = 0f32;
    for s in &seqs {
        let key = |pos: usize, g: usize, d: usize| {
            let b = s.block_table[pos / c.bs] as usize;
            kbuf[((b * c.kvh + g) * c.dk + d) * c.bs + pos % c.bs]
        };
        let val = |pos: usize, g: usize, d: usize| {
            let b = s.block_table[pos / c.bs] as usize;
            vbuf[((b * c.kvh + g) * c.bs + pos % c.bs) * c.dv + d]
        };
        for i in 0..s.len {
            let qpos = s.start + i;
            for h in 0..c.heads {
                let g = h / rep;
                let qr: Vec<f32> = q[((s.row + i) * c.heads + h) * c.dk..][..c.dk]
                    .iter()
                    .map(|&x| if c.f16 { f16::from_f32(x).to_f32() } else { x })
                    .collect();
                let lo = c.window.map_or(0, |w| (qpos + 1).saturating_sub(w));
                let sc: Vec<f32> = (lo..=qpos)
                    .map(|j| {
                        let mut x = (0..c.dk).map(|d| qr[d] * key(j, g, d)).sum::<f32>() * p.scale;
                        if c.alibi {
                            x += slopes[h] * j as f32;
                        }
                        if let Some(cap) = c.softcap {
                            x = (x / cap).tanh() * cap;
                        }
                        x
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = sc.iter().map(|x| (x - m).exp()).collect();
                let z: f32 = e.iter().sum();
                for d in 0..c.dv {
                    let want: f32 = (lo..=qpos).zip(&e).map(|(j, w)| w * val(j, g, d)).sum::<f32>() / z;
                    let got = out[((s.row + i) * c.heads + h) * c.dv + d];
                    worst = worst.max((got - want).abs());
                }
            }
        }
    }
    assert!(worst < 2e-5, "max abs diff {worst}");
}

#[test]
fn matches_reference_across_layouts() {
    let base = Case {
        heads: 6,
        kvh: 2,
        dk: 32,
        dv: 32,
        bs: 16,
        window: None,
        softcap: None,
        alibi: false,
        f16: false,
        int8: false,
    };
    check(&base);
    check(&Case { bs: 8, ..base });
    check(&Case { bs: 5, heads: 4, kvh: 4, dk: 20, dv: 12, ..base });
    check(&Case { window: Some(7), softcap: Some(5.0), ..base });
    check(&Case { alibi: true, heads: 3, kvh: 1, ..base });
    check(&Case { f16: true, ..base });
    check(&Case { f16: true, bs: 5, dv: 12, ..base }); // f16 converted into scratch
    check(&Case { f16: true, window: Some(9), alibi: true, bs: 32, ..base });
    // In registers: 5 rows per kv head (a group of 4 and a tail of 1), 3 value chunks.
    check(&Case { f16: true, heads: 10, kvh: 2, dv: 48, ..base });
    check(&Case { bs: 32, dk: 48, dv: 16, heads: 2, kvh: 1, ..base });
    check(&Case { int8: true, ..base });
    check(&Case { int8: true, bs: 5, heads: 4, kvh: 4, dk: 20, dv: 12, window: Some(7), ..base });
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_block_softmax_is_bitwise_the_scalar_one() {
    let (avx512, avx2) = (super::super::math::avx512_available(), super::super::math::fma_available());
    let slopes = [0.37f32];
    for (seed, stride) in [(1u32, 16usize), (2, 32), (3, 48)] {
        let row = values(stride, seed).iter().map(|x| x * 40.0).collect::<Vec<_>>();
        for (j0, j1) in [(0, stride), (0, 1), (3, 11), (5, stride - 2), (stride - 1, stride), (4, 4)] {
            for alibi in [false, true] {
                for m in [f32::NEG_INFINITY, 2.5, 1e3] {
                    let p = AttnParams {
                        heads: 1,
                        scale: 0.125,
                        softcap: None,
                        window: None,
                        alibi: alibi.then_some(&slopes[..]),
                    };
                    let mut a = row.clone();
                    let want = probs_scalar(&mut a, j0..j1, 37, &p, 0, m);
                    let slope = p.alibi.map(|a| a[0]);
                    let simd: [(&str, bool, unsafe fn(&mut [f32], _, _, _, _, _) -> _); 2] =
                        [("avx512", avx512, probs_avx512), ("avx2", avx2, probs_avx2)];
                    for (name, _, probs) in simd.into_iter().filter(|s| s.1) {
                        let mut b = row.clone();
                        // SAFETY: the backend's features were detected above.
                        let got = unsafe { probs(&mut b, j0..j1, 37, p.scale, slope, m) };
                        let case = format!("{name}: stride {stride}, keys {j0}..{j1}, alibi {alibi}, m {m}");
                        assert_eq!((got.0.to_bits(), got.1.to_bits()), (want.0.to_bits(), want.1.to_bits()), "{case}");
                        // Every value the scalar version leaves, inside the keys and outside.
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&b), bits(&a), "{case}");
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_block_scores_are_bitwise_the_scalar_ones() {
    let (avx512, avx2) = (super::super::math::avx512_available(), super::super::math::fma_available());
    for (dk, bs, rows) in [(64, 16, 3), (64, 32, 24), (1, 16, 5), (63, 16, 9), (128, 16, 17), (2, 32, 8)] {
        let stride = bs + 16;
        let q = values(rows * dk, 5);
        let k16: Vec<f16> = values(dk * bs, 6).iter().map(|&x| f16::from_f32(x * 4.0)).collect();
        let k32: Vec<f32> = k16.iter().map(|x| x.to_f32()).collect();
        let mut want = vec![0f32; rows * stride];
        block_scores(&q, dk, &k32, bs, stride, &mut want);
        let simd: [(&str, bool, unsafe fn(&[f32], usize, &[f16], usize, usize, &mut [f32])); 2] =
            [("avx512", avx512, block_scores_f16), ("avx2", avx2, block_scores_f16_avx2)];
        for (name, _, scores) in simd.into_iter().filter(|s| s.1) {
            let mut got = vec![0f32; rows * stride];
            // SAFETY: the backend's features were detected above; bs is a multiple of 16.
            unsafe { scores(&q, dk, &k16, bs, stride, &mut got) };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{name}: dk {dk}, bs {bs}, rows {rows}");
        }
    }
}

#[test]
fn simd_f16_rounding_is_halfs() {
    let mut src = values(1000, 9).iter().map(|x| x * 1e3).collect::<Vec<_>>();
    // Ties between f16 neighbours, f16 subnormals and overflow, signed zeros, NaN.
    src.extend([1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 3e-6, -7e-8, 7e4, -1e6, 0.0, -0.0, f32::NAN]);
    let (mut a, mut b) = (vec![0f32; src.len()], vec![0f32; src.len()]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    // SAFETY: SIMD only where AVX-512F/F16C are available, AVX2 only where F16C is.
    unsafe { round_to_f16::<false, false>(&src, &mut a) };
    if super::super::math::avx512_available() {
        unsafe { round_to_f16::<true, false>(&src, &mut b) };
        assert_eq!(bits(&a), bits(&b));
    }
    if super::super::math::fma_available() {
        unsafe { round_to_f16::<false, true>(&src, &mut b) };
        assert_eq!(bits(&a), bits(&b));
    }
    assert_eq!(a[1000], 1.0);
    assert_eq!(a[1004], f32::INFINITY);
}

#[test]
fn bad_tables_are_errors_not_panics() {
    let (k, v) = (vec![0f32; 2 * 16 * 8], vec![0f32; 2 * 16 * 8]);
    let kv = KvBlocks {
        k: KvSlice::F32(k[..].into()),
        v: KvSlice::F32(v[..].into()),
        block_size: 16,
        kv_heads: 1,
        k_dim: 8,
        v_dim: 8,
    };
    let p = AttnParams { heads: 1, scale: 1.0, softcap: None, window: None, alibi: None };
    let q = vec![0f32; 8];
    let mut out = vec![0f32; 8];
    let short = [0u32];
    let e = paged_attention(&q, &[AttnSeq { row: 0, len: 1, start: 20, block_table: &short }], &kv, &p, &mut out);
    assert!(e.unwrap_err().to_string().contains("block table of 1 blocks for 21 tokens"));
    let outside = [7u32];
    let e = paged_attention(&q, &[AttnSeq { row: 0, len: 1, start: 0, block_table: &outside }], &kv, &p, &mut out);
    assert!(e.unwrap_err().to_string().contains("block 7 outside a pool of 2"));
}

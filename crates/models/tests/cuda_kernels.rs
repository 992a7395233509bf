//! Our CUDA kernels other than attention against the host or candle's unfused ops, on fresh
//! random inputs: the greedy argmax the engine samples with (one CTA a row, and rows split over
//! several), the fused residual-add + RMSNorm (and the RMSNorm alone) and SwiGLU product, the
//! small-batch matmul of decode steps (its SwiGLU form, its form with a folded RMSNorm, and its
//! form with the residual add), the logits' cast to f32 and their
//! copy to the host, and the random sampling path (temperature, top-k, top-p, min-p, the draw)
//! against the host sampler's definition, token for token. Runs on the GPU with
//! `PROM_TEST_DEVICE=cuda` (scripts/gpu/golden.sh); elsewhere it checks the CPU side of the same
//! calls (argmax) and that the fused calls decline CPU tensors.

use candle_core::{DType, Device, Tensor, D};
use prom_models::cuda::filter::{self, Filters};
use prom_models::cuda::{
    add_rms_norm, argmax, argmax_rows, gemv, gemv_res, gemv_rms, gemv_silu, parse_device, pick_rows, rms_norm,
    silu_mul_fused, silu_mul_pair, to_f32, to_host_f32, RowPick,
};

fn device() -> Device {
    let dev = std::env::var("PROM_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    parse_device(&dev).unwrap_or_else(|e| panic!("PROM_TEST_DEVICE: {e}"))
}

/// A xorshift stream of values in [-4, 4): fresh per seed, no zeros to hide unwritten output.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        })
        .collect()
}

fn seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

#[test]
fn argmax_rows_is_the_host_argmax_with_ties_nan_and_inf() {
    let dev = device();
    let s = seed();
    for (rows, vocab) in [(1, 128_256), (7, 128_256), (33, 1000), (3, 5)] {
        let mut l = values(rows * vocab, s + vocab as u64);
        // Row 0: a tie for the maximum at two places (the lower id must win); row 1: NaN and
        // +inf above every finite value (both skipped); row 2: nothing finite (None).
        if rows >= 3 {
            let (a, b) = (vocab / 3, vocab - 1);
            l[a] = 9.0;
            l[b] = 9.0;
            l[vocab] = f32::NAN;
            l[vocab + 1] = f32::INFINITY;
            for x in &mut l[2 * vocab..3 * vocab] {
                *x = if vocab % 2 == 0 { f32::NEG_INFINITY } else { f32::NAN };
            }
        }
        let want: Vec<Option<u32>> = l.chunks_exact(vocab).map(argmax).collect();
        if rows >= 3 {
            assert_eq!(want[0], Some((vocab / 3) as u32));
            assert_eq!(want[2], None);
        }
        let t = Tensor::from_vec(l, (rows, vocab), &dev).unwrap();
        assert_eq!(argmax_rows(&t).unwrap(), want, "{rows} × {vocab} (seed {s})");
    }
}

/// Every row shape the random path must get right: a plain spread, ties (logits on a quarter
/// grid, so thousands of tokens share a weight and the cuts fall inside them), a peaked row (a
/// few tokens 20 nats up, most of the row below the 2^-45 floor at low temperature), NaN and ±inf
/// among finite values, nothing finite, and logits so large that dividing by the temperature
/// overflows.
fn sampling_rows(rows: usize, vocab: usize, seed: u64) -> Vec<f32> {
    let mut l = values(rows * vocab, seed);
    for (r, row) in l.chunks_exact_mut(vocab).enumerate() {
        match r % 7 {
            1 => row.iter_mut().for_each(|x| *x = (*x * 4.0).round() / 4.0),
            2 => row.iter_mut().step_by(97).for_each(|x| *x += 20.0),
            3 => {
                row[0] = f32::NAN;
                row[vocab / 2] = f32::INFINITY;
                row[vocab - 1] = f32::NEG_INFINITY;
            }
            4 => row.iter_mut().for_each(|x| *x = f32::NEG_INFINITY),
            5 => row.iter_mut().for_each(|x| *x *= 1e37),
            _ => {}
        }
    }
    l
}

#[test]
fn pick_rows_samples_what_the_host_sampler_samples() {
    let dev = device();
    let s = seed();
    let f = |temperature, top_k, top_p, min_p| Filters { temperature, top_k, top_p, min_p };
    let filters = [
        f(1.0, 0, 1.0, 0.0),
        f(0.7, 0, 0.95, 0.0),
        f(1.0, 50, 1.0, 0.0),
        f(1.0, 0, 1.0, 0.05),
        f(0.3, 40, 0.9, 0.02),
        f(2.5, 1000, 0.5, 0.0),
        f(1.0, 3, 1.0, 0.0),
        f(1.3, 0, 0.999, 0.0),
        f(0.05, 0, 0.6, 0.0),
        f(1.0, 200_000, 0.3, 0.5),
    ];
    let mut rng = s | 1;
    let mut u53 = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng >> 11
    };
    let mut sampled = 0;
    for (rows, vocab) in [(14, 128_256), (21, 49_152), (14, 1000), (7, 7)] {
        let l = sampling_rows(rows, vocab, s + vocab as u64);
        let t = Tensor::from_vec(l.clone(), (rows, vocab), &dev).unwrap();
        for round in 0..6 {
            let picks: Vec<RowPick> = (0..rows)
                .map(|r| match (r + round) % 5 {
                    0 => RowPick::Skip,
                    1 => RowPick::Argmax,
                    k => RowPick::Sample {
                        filters: filters[(r * 3 + round + k) % filters.len()],
                        // The ends of the draw's range too.
                        u53: match round {
                            0 => 0,
                            1 => (1 << 53) - 1,
                            _ => u53(),
                        },
                    },
                })
                .collect();
            let mut sc = filter::Scratch::default();
            let want: Vec<Option<u32>> = l
                .chunks_exact(vocab)
                .zip(&picks)
                .map(|(row, p)| match *p {
                    RowPick::Skip => None,
                    RowPick::Argmax => argmax(row),
                    RowPick::Sample { filters, u53 } => filter::sample(row, filters, u53, &mut sc),
                })
                .collect();
            let got = pick_rows(&t, &picks).unwrap();
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "seed {s}, vocab {vocab}, round {round}, row {r}: {:?}", picks[r]);
            }
            sampled += picks.iter().filter(|p| matches!(p, RowPick::Sample { .. })).count();
        }
    }
    // One tie-heavy row many times over, swept by the draw: every boundary between tokens
    // is crossed somewhere.
    let vocab = 3000;
    let row: Vec<f32> = values(vocab, s).iter().map(|x| (x * 2.0).round() / 2.0).collect();
    let rows = 256;
    let t = Tensor::from_vec(row.repeat(rows), (rows, vocab), &dev).unwrap();
    for filters in [f(1.0, 0, 0.9, 0.0), f(0.8, 100, 0.97, 0.001), f(1.0, 0, 1.0, 0.0)] {
        let picks: Vec<RowPick> =
            (0..rows as u64).map(|r| RowPick::Sample { filters, u53: (r << 45) + (u53() >> 8) }).collect();
        let mut sc = filter::Scratch::default();
        let want: Vec<Option<u32>> = picks
            .iter()
            .map(|p| match *p {
                RowPick::Sample { filters, u53 } => filter::sample(&row, filters, u53, &mut sc),
                _ => None,
            })
            .collect();
        assert_eq!(pick_rows(&t, &picks).unwrap(), want, "seed {s}, {filters:?}");
        assert!(want.iter().collect::<std::collections::HashSet<_>>().len() > 20, "the sweep spreads over tokens");
        sampled += rows;
    }
    assert!(sampled > 500);
}

fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (g, w) = (f(got), f(want));
    assert_eq!(g.len(), w.len());
    assert!(g.iter().all(|x| x.is_finite()), "non-finite output");
    let num: f32 = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f32 = w.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

/// The largest |got - want| (0 when the two are the same values).
fn max_abs_diff(got: &Tensor, want: &Tensor) -> f32 {
    let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    (f(got) - f(want)).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// Unit roundoff of each dtype, times a few: the fused kernels round where the unfused ops do,
/// but sum in another order.
fn bound(dt: DType) -> f32 {
    match dt {
        DType::BF16 => 4.0 * 2f32.powi(-8),
        DType::F16 => 4.0 * 2f32.powi(-11),
        _ => 1e-5,
    }
}

#[test]
fn fused_kernels_match_the_unfused_ops() {
    let dev = device();
    let x = Tensor::from_vec(values(2 * 4096, seed()), (1, 2, 4096), &Device::Cpu).unwrap();
    if dev.is_cpu() {
        let w = Tensor::ones(4096, DType::F32, &dev).unwrap();
        assert!(add_rms_norm(&x, &x, &w, 1e-5).is_none() && silu_mul_pair(&x, &x).is_none());
        return;
    }
    let s = seed();
    for dt in [DType::F32, DType::BF16, DType::F16] {
        let t = |shape: &[usize], k: u64| {
            let n = shape.iter().product();
            Tensor::from_vec(values(n, s + k), shape, &Device::Cpu)
                .unwrap()
                .to_dtype(dt)
                .unwrap()
                .to_device(&dev)
                .unwrap()
        };
        for rows in [1, 3, 64] {
            let (x, h, w) = (t(&[1, rows, 4096], 1), t(&[1, rows, 4096], 2), t(&[4096], 3));
            let (sum, normed) = add_rms_norm(&x, &h, &w, 1e-5).expect("covered").unwrap();
            let want_sum = (&x + &h).unwrap();
            let want = candle_nn::ops::rms_norm(&want_sum, &w, 1e-5).unwrap();
            // One rounding of the same sum (f32: bit for bit).
            let e = rel_err(&sum, &want_sum);
            assert!(if dt == DType::F32 { e == 0.0 } else { e <= bound(dt) }, "{dt:?} residual sum: {e}");
            let e = rel_err(&normed, &want);
            assert!(e <= bound(dt), "{dt:?} add_rms_norm, {rows} rows: {e} (seed {s})");
            // The norm alone, on the register path (4096) and the strided loop (an odd width).
            for dim in [4096, 4099] {
                let (x, w) = (t(&[1, rows, dim], 6), t(&[dim], 7));
                let want = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
                let e = rel_err(&rms_norm(&x, &w, 1e-5).expect("covered").unwrap(), &want);
                assert!(e <= bound(dt), "{dt:?} rms_norm, {rows} × {dim}: {e} (seed {s})");
            }

            // 16 bytes a thread (1000) and one value a thread (an odd width).
            for ff in [1000, 1001] {
                let (g, u) = (t(&[1, rows, ff], 4), t(&[1, rows, ff], 5));
                let want = (g.silu().unwrap() * &u).unwrap();
                let e = rel_err(&silu_mul_pair(&g, &u).expect("covered").unwrap(), &want);
                assert!(e <= bound(dt), "{dt:?} silu_mul_pair, {rows} × {ff}: {e} (seed {s})");
                let gu = Tensor::cat(&[&g, &u], D::Minus1).unwrap();
                let e = rel_err(&silu_mul_fused(&gu, ff).expect("covered").unwrap(), &want);
                assert!(e <= bound(dt), "{dt:?} silu_mul_fused, {rows} × {ff}: {e} (seed {s})");
            }
        }
    }
}

/// `silu_mul` in bf16 over every bf16 bit pattern of the gate (NaNs, infinities, subnormals
/// included), with fresh up values, must equal the unfused arithmetic bit for bit: candle's f32
/// silu (`g / (1 + expf(-g))`), rounded to bf16, times up in f32, rounded to bf16. (A faster
/// silu must keep this; one tried with the fast intrinsics and an exact fallback near rounding
/// ties passed it, but was slower: bench/RESULTS.md, 2026-12-03.)
#[test]
fn silu_mul_bf16_is_the_exact_f32_silu_bit_for_bit() {
    let dev = device();
    if !dev.is_cuda() {
        return;
    }
    let s = seed();
    let gate: Vec<half::bf16> = (0..=u16::MAX).map(half::bf16::from_bits).collect();
    let up: Vec<half::bf16> = values(gate.len(), s).into_iter().map(half::bf16::from_f32).collect();
    let (rows, ff) = (16, gate.len() / 16);
    let g = Tensor::from_vec(gate, (rows, ff), &Device::Cpu).unwrap().to_device(&dev).unwrap();
    let u = Tensor::from_vec(up, (rows, ff), &Device::Cpu).unwrap().to_device(&dev).unwrap();
    let silu = g.to_dtype(DType::F32).unwrap().silu().unwrap().to_dtype(DType::BF16).unwrap();
    let want =
        (silu.to_dtype(DType::F32).unwrap() * u.to_dtype(DType::F32).unwrap()).unwrap().to_dtype(DType::BF16).unwrap();
    let bits = |t: &Tensor| -> Vec<u16> {
        t.flatten_all().unwrap().to_vec1::<half::bf16>().unwrap().into_iter().map(half::bf16::to_bits).collect()
    };
    let want = bits(&want);
    let gu = Tensor::cat(&[&g, &u], D::Minus1).unwrap();
    for (what, got) in [
        ("silu_mul_pair", silu_mul_pair(&g, &u).expect("covered").unwrap()),
        ("silu_mul_fused", silu_mul_fused(&gu, ff).expect("covered").unwrap()),
    ] {
        let got = bits(&got);
        let nan = |b: u16| b & 0x7fff > 0x7f80;
        let bad: Vec<usize> =
            (0..want.len()).filter(|&i| got[i] != want[i] && !(nan(got[i]) && nan(want[i]))).collect();
        assert!(
            bad.is_empty(),
            "{what}: {} of 65536 gate values differ, first gate bits {:#06x}: {:#06x} against {:#06x} (seed {s})",
            bad.len(),
            bad[0],
            got[bad[0]],
            want[bad[0]]
        );
    }
}

/// Fresh values of `shape` on the host, rounded to `dt`.
fn rounded(shape: (usize, usize), seed: u64, dt: DType) -> Tensor {
    Tensor::from_vec(values(shape.0 * shape.1, seed), shape, &Device::Cpu).unwrap().to_dtype(dt).unwrap()
}

/// Off the GPU a kernel call declines, and the caller keeps its own path.
fn declines_cpu_tensors(f: fn(&Tensor, &Tensor) -> Option<prom_models::Result<Tensor>>) {
    let (x, w) = (
        Tensor::ones((1, 64), DType::F32, &Device::Cpu).unwrap(),
        Tensor::ones((8, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(f(&x, &w).is_none());
}

#[test]
fn gemv_matches_a_host_matmul_of_the_same_values() {
    let dev = device();
    let s = seed();
    if dev.is_cpu() {
        return declines_cpu_tensors(gemv);
    }
    for dt in [DType::BF16, DType::F16] {
        // (out, in): a decode-shaped projection, a long row (down), odd output counts, the
        // shortest row and a row with a tail of chunks past the unrolled loop.
        for (n, k) in [(1024, 4096), (300, 14336), (37, 8), (129, 4104)] {
            for rows in [1, 2, 3, 8] {
                // Rounded to dt on the host, so the reference multiplies the kernel's values.
                let (x, w) = (rounded((rows, k), s + 11, dt), rounded((n, k), s + 12, dt));
                let got = gemv(&x.to_device(&dev).unwrap(), &w.to_device(&dev).unwrap());
                if rows > 2 {
                    assert!(got.is_none(), "{rows} rows go to cuBLAS");
                    continue;
                }
                let got = got.expect("covered").unwrap();
                assert_eq!(got.dims(), [rows, n]);
                let f32_ = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
                let want = f32_(&x).matmul(&f32_(&w).t().unwrap()).unwrap();
                let e = rel_err(&got, &want);
                assert!(e <= bound(dt), "{dt:?} gemv {rows} × {k} · ({n} × {k})ᵀ: {e} (seed {s})");
                // Each row's sums run in the same order whatever the rows beside it.
                let last = x.narrow(0, rows - 1, 1).unwrap().to_device(&dev).unwrap();
                let alone = gemv(&last, &w.to_device(&dev).unwrap()).expect("covered").unwrap();
                let diff = max_abs_diff(&alone, &got.narrow(0, rows - 1, 1).unwrap());
                assert_eq!(diff, 0.0, "{dt:?} gemv row {} of {rows} differs from the row alone (seed {s})", rows - 1);
            }
        }
    }
}

#[test]
fn gemv_silu_is_gemv_then_silu_mul_exactly() {
    let dev = device();
    let s = seed();
    if dev.is_cpu() {
        return declines_cpu_tensors(gemv_silu);
    }
    for dt in [DType::BF16, DType::F16] {
        // (ff, in): the 8B shape's gate|up, odd feature counts, a row tail past the unrolled loop.
        for (ff, k) in [(14336, 4096), (37, 8), (129, 4104), (600, 1000)] {
            for rows in [1, 2, 3] {
                let on = |t: Tensor| t.to_device(&dev).unwrap();
                // Small weights keep the gate inside silu's interesting range.
                let (x, w) =
                    (on(rounded((rows, k), s + 21, dt)), on((rounded((2 * ff, k), s + 22, dt) * 0.05).unwrap()));
                let got = gemv_silu(&x, &w);
                if rows > 2 {
                    assert!(got.is_none(), "{rows} rows take the two-launch path");
                    continue;
                }
                let got = got.expect("covered").unwrap();
                let want = silu_mul_fused(&gemv(&x, &w).expect("covered").unwrap(), ff).expect("covered").unwrap();
                assert_eq!(got.dims(), [rows, ff]);
                let diff = max_abs_diff(&got, &want);
                assert_eq!(diff, 0.0, "{dt:?} gemv_silu {rows} × {k} · (2·{ff} × {k})ᵀ differs (seed {s})");
            }
        }
    }
}

/// The decode GEMV with an RMSNorm folded into its weight: `rms(x) · Wᵀ` against the host's
/// f32 arithmetic on the same values (the kernel scales the f32 dot products, the unfused pair
/// rounds the normalised x first, so the bound is a few roundings), the SwiGLU form against
/// that form's definition, and each row's output independent of the rows beside it.
#[test]
fn gemv_rms_is_the_norm_then_the_gemv() {
    let dev = device();
    let s = seed();
    if dev.is_cpu() {
        return declines_cpu_tensors(|x, w| gemv_rms(x, w, 1e-5, false));
    }
    let f32_ = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    for dt in [DType::BF16, DType::F16] {
        for (n, k) in [(1024, 4096), (300, 14336), (37, 8), (129, 4104)] {
            for rows in [1, 2, 3] {
                let on = |t: &Tensor| t.to_device(&dev).unwrap();
                let (x, w) = (rounded((rows, k), s + 31, dt), rounded((n, k), s + 32, dt));
                let got = gemv_rms(&on(&x), &on(&w), 1e-5, false);
                if rows > 2 {
                    assert!(got.is_none(), "{rows} rows go to the norm and cuBLAS");
                    continue;
                }
                let got = got.expect("covered").unwrap();
                assert_eq!(got.dims(), [rows, n]);
                let ones = Tensor::ones(k, DType::F32, &Device::Cpu).unwrap();
                let normed = candle_nn::ops::rms_norm(&f32_(&x), &ones, 1e-5).unwrap();
                let want = normed.matmul(&f32_(&w).t().unwrap()).unwrap();
                let e = rel_err(&got, &want);
                assert!(e <= bound(dt), "{dt:?} gemv_rms {rows} × {k} · ({n} × {k})ᵀ: {e} (seed {s})");
                let last = on(&x.narrow(0, rows - 1, 1).unwrap());
                let alone = gemv_rms(&last, &on(&w), 1e-5, false).expect("covered").unwrap();
                let diff = max_abs_diff(&alone, &got.narrow(0, rows - 1, 1).unwrap());
                assert_eq!(
                    diff,
                    0.0,
                    "{dt:?} gemv_rms row {} of {rows} differs from the row alone (seed {s})",
                    rows - 1
                );

                // SwiGLU's form over a `[gate | up]` of n features each.
                let wg = on(&(rounded((2 * n, k), s + 33, dt) * 0.05).unwrap());
                let got = gemv_rms(&on(&x), &wg, 1e-5, true).expect("covered").unwrap();
                assert_eq!(got.dims(), [rows, n]);
                let y = normed.matmul(&f32_(&wg).to_device(&Device::Cpu).unwrap().t().unwrap()).unwrap();
                let (g, u) = (y.narrow(1, 0, n).unwrap(), y.narrow(1, n, n).unwrap());
                let want = (g.silu().unwrap() * u).unwrap();
                let e = rel_err(&got, &want);
                assert!(e <= 2.0 * bound(dt), "{dt:?} gemv_rms silu {rows} × {k} · (2·{n} × {k})ᵀ: {e} (seed {s})");
            }
        }
    }
}

/// The decode GEMV with the residual add: the GEMV's values followed by the add, bit for bit.
#[test]
fn gemv_res_is_gemv_then_the_add_exactly() {
    let dev = device();
    let s = seed();
    if dev.is_cpu() {
        return declines_cpu_tensors(|x, w| gemv_res(x, w, &Tensor::ones((1, 8), DType::F32, &Device::Cpu).unwrap()));
    }
    for dt in [DType::BF16, DType::F16] {
        for (n, k) in [(4096, 4096), (4096, 14336), (37, 8), (129, 4104)] {
            for rows in [1, 2, 3] {
                let on = |t: Tensor| t.to_device(&dev).unwrap();
                let (x, w, r) = (
                    on(rounded((rows, k), s + 41, dt)),
                    on(rounded((n, k), s + 42, dt)),
                    on(rounded((rows, n), s + 43, dt)),
                );
                let got = gemv_res(&x, &w, &r);
                if rows > 2 {
                    assert!(got.is_none(), "{rows} rows go to cuBLAS and the add");
                    continue;
                }
                let got = got.expect("covered").unwrap();
                let want = (&r + gemv(&x, &w).expect("covered").unwrap()).unwrap();
                assert_eq!(got.dims(), [rows, n]);
                let diff = max_abs_diff(&got, &want);
                assert_eq!(diff, 0.0, "{dt:?} gemv_res {rows} × {k} · ({n} × {k})ᵀ differs (seed {s})");
                // A residual of another shape is declined, not read out of bounds.
                let short = on(rounded((rows, n - 1), s + 44, dt));
                assert!(n == 1 || gemv_res(&x, &w, &short).is_none());
            }
        }
    }
}

#[test]
fn to_f32_is_the_exact_cast() {
    let dev = device();
    let s = seed();
    if dev.is_cpu() {
        assert!(to_f32(&Tensor::ones(8, DType::BF16, &dev).unwrap()).is_none());
        return;
    }
    for dt in [DType::BF16, DType::F16] {
        // A logits-sized block, counts with a tail past the 8-value loads, a single value.
        for n in [128 * 128_256, 1000, 13, 1] {
            let x = Tensor::from_vec(values(n, s + n as u64), n, &Device::Cpu).unwrap().to_dtype(dt).unwrap();
            let want = x.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
            let xd = x.to_device(&dev).unwrap();
            let got = to_f32(&xd).expect("contiguous and aligned").unwrap();
            assert_eq!(got.dtype(), DType::F32);
            assert_eq!(got.to_vec1::<f32>().unwrap(), want, "{dt:?}, {n} values");
            // A view that starts one value in is not 16-byte aligned: declined.
            if n > 1 {
                assert!(to_f32(&xd.narrow(0, 1, n - 1).unwrap()).is_none(), "{dt:?}: unaligned view");
            }
        }
        assert!(to_f32(&Tensor::ones(8, DType::F32, &dev).unwrap()).is_none(), "f32 input");
    }
}

#[test]
fn to_host_f32_is_candles_copy() {
    let dev = device();
    let s = seed();
    if dev.is_cpu() {
        assert!(to_host_f32(&Tensor::ones(8, DType::F32, &dev).unwrap()).is_none());
        return;
    }
    // Growing, shrinking and growing again (the staging buffer is kept), a view with an offset.
    for n in [1000, 128 * 128_256, 13, 3 * 128_256 + 5] {
        let x = Tensor::from_vec(values(n, s + n as u64), n, &dev).unwrap();
        let want = x.to_vec1::<f32>().unwrap();
        assert_eq!(to_host_f32(&x).expect("f32, contiguous").unwrap(), want, "{n} values");
        if n > 1 {
            let v = x.narrow(0, 1, n - 1).unwrap();
            assert_eq!(to_host_f32(&v).expect("contiguous view").unwrap(), want[1..].to_vec(), "{n} values, offset 1");
        }
    }
    let m = Tensor::from_vec(values(12, s), (3, 4), &dev).unwrap();
    assert!(to_host_f32(&m.t().unwrap()).is_none(), "non-contiguous");
    assert!(to_host_f32(&m.to_dtype(DType::BF16).unwrap()).is_none(), "bf16");
}

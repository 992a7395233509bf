//! Every backend against a reference that dequantizes the raw GGUF blocks (not our tiles) and
//! dots them in f64 with the dequantized Q8_1 activations; and against candle's dequantization.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use super::act::QuantRows;
use super::*;

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

const KINDS: [QuantKind; 5] = [QuantKind::Q4_0, QuantKind::Q4_1, QuantKind::Q5_0, QuantKind::Q5_1, QuantKind::Q8_0];

/// Random GGUF blocks: arbitrary quant bytes, scales of both signs around 0.01, minima around
/// 0.1; dense kinds get values around 0.1 (sometimes 10) and some subnormals and signed zeros.
fn random_blocks(kind: QuantKind, n: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data = Vec::with_capacity(n * k / QK * kind.block_bytes());
    if kind.is_dense() {
        for i in 0..n * k {
            let v = match i % 29 {
                0 => -0.0,
                1 => 1e-6 * rng.unit(),
                _ => rng.unit() * if rng.next().is_multiple_of(16) { 10.0 } else { 0.1 },
            };
            let bits =
                if kind == QuantKind::BF16 { half::bf16::from_f32(v).to_bits() } else { f16::from_f32(v).to_bits() };
            data.extend_from_slice(&bits.to_le_bytes());
        }
        return data;
    }
    if kind.is_kquant() {
        // d (and dmin) around 0.01 of both signs, every other byte (quants, packed scales) arbitrary.
        for _ in 0..n * k / kind.block_len() {
            let mut blk: Vec<u8> = (0..kind.block_bytes()).map(|_| rng.next() as u8).collect();
            let at = if kind == QuantKind::Q6K { vec![208] } else { vec![0, 2] };
            for a in at {
                blk[a..a + 2].copy_from_slice(&f16::from_f32(0.01 * rng.unit()).to_le_bytes());
            }
            data.extend_from_slice(&blk);
        }
        return data;
    }
    for _ in 0..n * k / QK {
        data.extend_from_slice(&f16::from_f32(0.01 * rng.unit()).to_le_bytes());
        if kind.has_min() {
            data.extend_from_slice(&f16::from_f32(0.1 * rng.unit()).to_le_bytes());
        }
        let extra = if kind.has_high_bit() { 4 } else { 0 };
        for _ in 0..kind.qs_bytes() + extra {
            data.push(rng.next() as u8);
        }
    }
    data
}

/// Row `row` of the matrix, dequantized straight from GGUF blocks (llama.cpp's dequantize_row_*).
fn dequantize_row(kind: QuantKind, data: &[u8], k: usize, row: usize) -> Vec<f32> {
    let bb = kind.block_bytes();
    let mut w = vec![0f32; k];
    if kind.is_dense() {
        for (j, v) in w.iter_mut().enumerate() {
            let b = [data[2 * (row * k + j)], data[2 * (row * k + j) + 1]];
            *v = if kind == QuantKind::BF16 {
                half::bf16::from_le_bytes(b).to_f32()
            } else {
                f16::from_le_bytes(b).to_f32()
            };
        }
        return w;
    }
    if kind.is_kquant() {
        let bb = kind.block_bytes();
        for (sb, out) in w.chunks_exact_mut(256).enumerate() {
            dequantize_kquant(kind, &data[(row * (k / 256) + sb) * bb..][..bb], out);
        }
        return w;
    }
    for b in 0..k / QK {
        let blk = &data[(row * (k / QK) + b) * bb..][..bb];
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let out = &mut w[b * QK..][..QK];
        match kind {
            QuantKind::Q4_0 | QuantKind::Q4_1 => {
                let (m, qs) = match kind {
                    QuantKind::Q4_1 => (f16::from_le_bytes([blk[2], blk[3]]).to_f32(), &blk[4..]),
                    _ => (-8.0 * d, &blk[2..]),
                };
                for j in 0..16 {
                    out[j] = d * (qs[j] & 0x0F) as f32 + m;
                    out[j + 16] = d * (qs[j] >> 4) as f32 + m;
                }
            }
            QuantKind::Q5_0 | QuantKind::Q5_1 => {
                // ggml's dequantize_row_q5_0/1: `qh` bit j is weight j's fifth bit, bit j + 16
                // weight j + 16's.
                let (m, rest) = match kind {
                    QuantKind::Q5_1 => (f16::from_le_bytes([blk[2], blk[3]]).to_f32(), &blk[4..]),
                    _ => (-16.0 * d, &blk[2..]),
                };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..];
                for j in 0..16 {
                    let lo = (qs[j] & 0x0F) as u32 | (qh >> j & 1) << 4;
                    let hi = (qs[j] >> 4) as u32 | (qh >> (j + 16) & 1) << 4;
                    out[j] = d * lo as f32 + m;
                    out[j + 16] = d * hi as f32 + m;
                }
            }
            QuantKind::Q8_0 => {
                for j in 0..QK {
                    out[j] = d * blk[2 + j] as i8 as f32;
                }
            }
            QuantKind::F16 | QuantKind::BF16 | QuantKind::Q4K | QuantKind::Q5K | QuantKind::Q6K => {
                unreachable!("handled above")
            }
        }
    }
    w
}

/// One 256-weight k-quant super-block, as ggml's `dequantize_row_q{4,5,6}_K`.
fn dequantize_kquant(kind: QuantKind, blk: &[u8], y: &mut [f32]) {
    let h = |at: usize| f16::from_le_bytes([blk[at], blk[at + 1]]).to_f32();
    if kind == QuantKind::Q6K {
        let (d, sc) = (h(208), &blk[192..208]);
        for n in 0..2 {
            let (ql, qh, sc, y) = (&blk[64 * n..], &blk[128 + 32 * n..], &sc[8 * n..], &mut y[128 * n..]);
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | (qh[l] & 3) << 4) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) as i32 - 32;
                let q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i32 - 32;
                y[l] = d * (sc[is] as i8 as f32) * q1 as f32;
                y[l + 32] = d * (sc[is + 2] as i8 as f32) * q2 as f32;
                y[l + 64] = d * (sc[is + 4] as i8 as f32) * q3 as f32;
                y[l + 96] = d * (sc[is + 6] as i8 as f32) * q4 as f32;
            }
        }
        return;
    }
    let (d, dmin, scales) = (h(0), h(2), &blk[4..16]);
    let (qh, qs) = if kind == QuantKind::Q5K { (&blk[16..48], &blk[48..]) } else { (&blk[..0], &blk[16..]) };
    // get_scale_min_k4
    let scale_min = |j: usize| {
        if j < 4 {
            (scales[j] & 63, scales[j + 4] & 63)
        } else {
            ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
        }
    };
    for c in 0..4 {
        let ((sc1, m1), (sc2, m2)) = (scale_min(2 * c), scale_min(2 * c + 1));
        for l in 0..32 {
            let q = qs[32 * c + l];
            let (h1, h2) =
                if qh.is_empty() { (0, 0) } else { ((qh[l] >> (2 * c) & 1) << 4, (qh[l] >> (2 * c + 1) & 1) << 4) };
            y[64 * c + l] = d * sc1 as f32 * ((q & 0xF) | h1) as f32 - dmin * m1 as f32;
            y[64 * c + 32 + l] = d * sc2 as f32 * ((q >> 4) | h2) as f32 - dmin * m2 as f32;
        }
    }
}

/// `y` from dequantized weights and dequantized activation quants (dense kinds: the f32
/// activations themselves), in f64, and each output's
/// tolerance: f32 rounding of its terms (1e-5 · Σ|w·x|) plus, for Q4_1/Q5_1, the f16 rounding of
/// llama.cpp's Q8_1 block sums `s` that the minimum multiplies: `f16(d·Σq)` against our
/// reference's `f16(d)·Σq` is two f16 roundings apart, ≤ 2⁻¹⁰ · Σ_blocks |m · s|.
fn reference(kind: QuantKind, data: &[u8], x: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut acts = QuantRows::default();
    acts.quantize(x, m, k, false);
    let xq: Vec<f64> = if kind.is_dense() {
        x.iter().map(|&v| v as f64).collect()
    } else {
        (0..m * k).map(|i| acts.qs[i] as f64 * acts.d[i / QK] as f64).collect()
    };
    let (mut y, mut tol) = (vec![0f64; m * n], vec![0f64; m * n]);
    for r in 0..n {
        let w = dequantize_row(kind, data, k, r);
        for i in 0..m {
            let (mut sum, mut mag) = (0f64, 0f64);
            for j in 0..k {
                let p = w[j] as f64 * xq[i * k + j];
                sum += p;
                mag += p.abs();
            }
            let mut t = 1e-5 * mag + 1e-6;
            if kind.has_min() {
                for b in 0..k / QK {
                    let blk = &data[(r * (k / QK) + b) * kind.block_bytes()..];
                    let min = f16::from_le_bytes([blk[2], blk[3]]).to_f32() as f64;
                    t += (min * acts.s[i * (k / QK) + b] as f64).abs() * 2f64.powi(-10);
                }
            }
            y[i * n + r] = sum;
            tol[i * n + r] = t;
        }
    }
    (y, tol)
}

fn random_x(m: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    (0..m * k).map(|_| rng.unit() * if rng.next().is_multiple_of(16) { 8.0 } else { 1.0 }).collect()
}

#[test]
fn every_backend_matches_the_dequantizing_reference_on_odd_shapes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // n and m straddle the 16-row tile, the 8-row register block and the 64-row chunk.
    for &(m, n, k) in
        &[(1, 1, 32), (3, 17, 64), (7, 15, 96), (9, 33, 576), (13, 100, 160), (16, 20, 64), (70, 47, 1536)]
    {
        for kind in KINDS.into_iter().chain([QuantKind::F16, QuantKind::BF16]) {
            let data = random_blocks(kind, n, k, &mut rng);
            let x = random_x(m, k, &mut rng);
            let (want, tol) = reference(kind, &data, &x, m, n, k);
            for backend in Backend::available() {
                let w = QMatrix::from_ggml(kind, n, k, &data).unwrap().with_backend(backend).unwrap();
                let mut y = vec![f32::NAN; m * n];
                w.matmul(&x, m, &mut y).unwrap();
                for (idx, ((&got, &want), &tol)) in y.iter().zip(&want).zip(&tol).enumerate() {
                    assert!(
                        (got as f64 - want).abs() <= tol,
                        "{kind:?} {backend:?} (m, n, k) = ({m}, {n}, {k}) y[{}][{}]: got {got}, want {want} ± {tol}",
                        idx / n,
                        idx % n
                    );
                }
            }
        }
    }
}

#[test]
fn concatenated_rows_give_the_parts_outputs_side_by_side() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    // q | k | v shapes of SmolLM2 and an odd last part; 5 rows (a decode batch).
    let (m, k) = (5, 576);
    for kind in KINDS.into_iter().chain([QuantKind::F16]) {
        let ns = [576, 192, 37];
        let parts: Vec<QMatrix> =
            ns.iter().map(|&n| QMatrix::from_ggml(kind, n, k, &random_blocks(kind, n, k, &mut rng)).unwrap()).collect();
        let x = random_x(m, k, &mut rng);
        let refs: Vec<&QMatrix> = parts.iter().collect();
        let joined = QMatrix::concat_rows(&refs).expect("same kind and k, whole tiles");
        let total: usize = ns.iter().sum();
        assert_eq!(joined.dims(), (total, k));
        let mut y = vec![f32::NAN; m * total];
        joined.matmul(&x, m, &mut y).unwrap();
        let mut col = 0;
        for (p, &n) in parts.iter().zip(&ns) {
            let mut yp = vec![f32::NAN; m * n];
            p.matmul(&x, m, &mut yp).unwrap();
            for r in 0..m {
                assert_eq!(&y[r * total + col..][..n], &yp[r * n..][..n], "{kind:?} row {r}, part at {col}");
            }
            col += n;
        }
        // A part that ends mid-tile can only come last.
        assert!(QMatrix::concat_rows(&[&parts[2], &parts[0]]).is_none());
    }
}

#[test]
fn simd_backends_agree_with_scalar_to_rounding() {
    let mut rng = Rng(7);
    let (m, n, k) = (11, 40, 320);
    for kind in KINDS.into_iter().chain([QuantKind::F16, QuantKind::BF16]) {
        let data = random_blocks(kind, n, k, &mut rng);
        let x = random_x(m, k, &mut rng);
        let run = |b| {
            let mut y = vec![0f32; m * n];
            QMatrix::from_ggml(kind, n, k, &data).unwrap().with_backend(b).unwrap().matmul(&x, m, &mut y).unwrap();
            y
        };
        let scalar = run(Backend::Scalar);
        for b in Backend::available() {
            for (got, want) in run(b).iter().zip(&scalar) {
                assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{kind:?} {b:?}: {got} vs scalar {want}");
            }
        }
    }
}

#[test]
fn reads_candle_qtensors_as_candle_dequantizes_them() {
    // candle packs and dequantizes independently of our reference, so this pins our reading of
    // the GGUF layout to a second implementation. The only error left is activation rounding,
    // bounded per output by Σ_j |w_j| · amax(block of x_j) / 254 (half a quantization step).
    let mut rng = Rng(42);
    let (m, n, k) = (5, 48, 256);
    let dev = Device::Cpu;
    let w: Vec<f32> = (0..n * k).map(|_| rng.unit()).collect();
    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
    let wt = Tensor::from_vec(w, (n, k), &dev).unwrap();
    let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
    let half_step: Vec<f32> = x
        .chunks(QK)
        .flat_map(|b| std::iter::repeat_n(b.iter().fold(0f32, |a, v| a.max(v.abs())) / 254.0, QK))
        .collect();
    for (dtype, kind) in [
        (GgmlDType::Q4_0, QuantKind::Q4_0),
        (GgmlDType::Q4_1, QuantKind::Q4_1),
        (GgmlDType::Q5_0, QuantKind::Q5_0),
        (GgmlDType::Q5_1, QuantKind::Q5_1),
        (GgmlDType::Q8_0, QuantKind::Q8_0),
    ] {
        let q = QTensor::quantize(&wt, dtype).unwrap();
        let deq: Vec<Vec<f32>> = q.dequantize(&dev).unwrap().to_vec2().unwrap();
        let ours = QMatrix::from_qtensor(&q).unwrap().expect("supported dtype");
        assert_eq!((ours.kind(), ours.dims()), (kind, (n, k)));
        let got: Vec<Vec<f32>> = ours.forward(&xt).unwrap().to_vec2().unwrap();
        for i in 0..m {
            for (r, wr) in deq.iter().enumerate() {
                let xi = &x[i * k..][..k];
                let want: f64 = wr.iter().zip(xi).map(|(&w, &x)| w as f64 * x as f64).sum();
                let bound: f64 = wr.iter().zip(&half_step[i * k..]).map(|(&w, &h)| (w.abs() * h) as f64).sum();
                let g = got[i][r] as f64;
                assert!((g - want).abs() <= bound * 1.01 + 1e-4, "{dtype:?} y[{i}][{r}]: ours {g} vs {want} ± {bound}");
            }
        }
    }
}

#[test]
fn forward_keeps_leading_dims_and_dtype() {
    let mut rng = Rng(3);
    let (n, k) = (20, 64);
    let w = QMatrix::from_ggml(QuantKind::Q4_1, n, k, &random_blocks(QuantKind::Q4_1, n, k, &mut rng)).unwrap();
    let x = Tensor::from_vec(random_x(6, k, &mut rng), (2, 3, k), &Device::Cpu).unwrap();
    assert_eq!(w.forward(&x).unwrap().dims(), &[2, 3, n]);
    let y16 = w.forward(&x.to_dtype(candle_core::DType::F16).unwrap()).unwrap();
    assert_eq!(y16.dtype(), candle_core::DType::F16);
    // A transposed (non-contiguous) input gives the same result as its contiguous copy.
    let xt = Tensor::from_vec(random_x(k * 4, 1, &mut rng), (k, 4), &Device::Cpu).unwrap().t().unwrap();
    let a: Vec<Vec<f32>> = w.forward(&xt).unwrap().to_vec2().unwrap();
    let b: Vec<Vec<f32>> = w.forward(&xt.contiguous().unwrap()).unwrap().to_vec2().unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let blocks = vec![0u8; 2 * QuantKind::Q4_1.block_bytes()];
    assert!(QMatrix::from_ggml(QuantKind::Q4_1, 2, 48, &blocks).is_err(), "k not a multiple of 32");
    assert!(QMatrix::from_ggml(QuantKind::Q4_1, 3, 32, &blocks).is_err(), "too few bytes");
    let w = QMatrix::from_ggml(QuantKind::Q4_1, 2, 32, &blocks).unwrap();
    assert!(w.matmul(&[0.0; 32], 1, &mut [0.0; 3]).is_err());
    assert!(w.forward(&Tensor::zeros((1, 31), candle_core::DType::F32, &Device::Cpu).unwrap()).is_err());
    let q2k =
        QTensor::quantize(&Tensor::zeros((2, 256), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::Q2K)
            .unwrap();
    assert!(QMatrix::from_qtensor(&q2k).unwrap().is_none());
    let q6k = vec![0u8; 2 * QuantKind::Q6K.block_bytes()];
    assert!(QMatrix::from_ggml(QuantKind::Q6K, 4, 128, &q6k).is_err(), "k not a multiple of 256");
    assert!(QMatrix::from_ggml(QuantKind::Q6K, 3, 256, &q6k).is_err(), "too few bytes");
}

#[test]
fn q5_matmul_matches_candles_q5_kernel() {
    // candle's own Q5_0/Q5_1 vec_dot (what `Linear` ran before these kernels) on the same
    // blocks: both quantize activations to 8 bits, candle rounding half away from zero and
    // ours half to even, so they differ by at most a rounding step of x per block (as in
    // `reads_candle_qtensors_as_candle_dequantizes_them`) and usually far less.
    let mut rng = Rng(11);
    let (m, n, k) = (3, 37, 512);
    let dev = Device::Cpu;
    let w = Tensor::from_vec((0..n * k).map(|_| rng.unit()).collect::<Vec<f32>>(), (n, k), &dev).unwrap();
    let x: Vec<f32> = random_x(m, k, &mut rng);
    let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
    for dtype in [GgmlDType::Q5_0, GgmlDType::Q5_1] {
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq: Vec<Vec<f32>> = q.dequantize(&dev).unwrap().to_vec2().unwrap();
        let ours: Vec<Vec<f32>> = QMatrix::from_qtensor(&q).unwrap().unwrap().forward(&xt).unwrap().to_vec2().unwrap();
        let candle = candle_core::quantized::QMatMul::from_qtensor(q).unwrap();
        let theirs: Vec<Vec<f32>> = candle_core::Module::forward(&candle, &xt).unwrap().to_vec2().unwrap();
        for i in 0..m {
            for r in 0..n {
                let step: f64 = x[i * k..][..k]
                    .chunks(QK)
                    .zip(deq[r].chunks(QK))
                    .map(|(xb, wb)| {
                        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                        wb.iter().map(|w| w.abs() as f64).sum::<f64>() * amax / 127.0
                    })
                    .sum();
                let (a, b) = (ours[i][r] as f64, theirs[i][r] as f64);
                assert!((a - b).abs() <= step + 1e-4, "{dtype:?} y[{i}][{r}]: ours {a} vs candle {b} ± {step}");
            }
        }
    }
}

#[test]
fn dense_f32_becomes_16_bit_only_when_lossless() {
    let dev = Device::Cpu;
    let mut rng = Rng(5);
    let (n, k) = (19, 96);
    let vals: Vec<f32> = (0..n * k).map(|_| rng.unit()).collect();
    let as_kind = |v: Vec<f32>| {
        QMatrix::from_f32_lossless(&Tensor::from_vec(v, (n, k), &dev).unwrap()).unwrap().map(|q| q.kind())
    };
    let bf: Vec<f32> = vals.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
    let h: Vec<f32> = vals.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    assert_eq!(as_kind(bf), Some(QuantKind::BF16));
    assert_eq!(as_kind(h.clone()), Some(QuantKind::F16));
    assert_eq!(as_kind(vals.clone()), None, "f32 values that no 16-bit type holds stay f32");
    let mut big = h;
    big[n * k - 1] = 1e6; // beyond f16's range: the last value decides
    assert_eq!(as_kind(big), None);
    // Shapes and dtypes this module does not run.
    assert!(QMatrix::from_f32_lossless(&Tensor::zeros((4, 48), candle_core::DType::F32, &dev).unwrap())
        .unwrap()
        .is_none());
    assert!(QMatrix::from_f32_lossless(&Tensor::zeros((4, 64), candle_core::DType::F16, &dev).unwrap())
        .unwrap()
        .is_none());
    assert!(QMatrix::from_f32_lossless(&Tensor::zeros(64, candle_core::DType::F32, &dev).unwrap()).unwrap().is_none());
    // And the packed copy computes with exactly those values.
    let x = random_x(2, k, &mut rng);
    let w16: Vec<f32> = vals.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    let q = QMatrix::from_f32_lossless(&Tensor::from_vec(w16.clone(), (n, k), &dev).unwrap()).unwrap().unwrap();
    let mut y = vec![0f32; 2 * n];
    q.matmul(&x, 2, &mut y).unwrap();
    for i in 0..2 {
        for r in 0..n {
            let want: f64 = (0..k).map(|j| w16[r * k + j] as f64 * x[i * k + j] as f64).sum();
            let mag: f64 = (0..k).map(|j| (w16[r * k + j] as f64 * x[i * k + j] as f64).abs()).sum();
            assert!((y[i * n + r] as f64 - want).abs() <= 1e-5 * mag + 1e-7, "y[{i}][{r}]");
        }
    }
}

#[test]
fn dense_rows_do_not_depend_on_the_batch_beside_them() {
    // One row alone and the same row inside batches of every register-block size give the same
    // bits: each row is summed in one fixed order.
    let mut rng = Rng(9);
    let (n, k) = (33, 160);
    for kind in [QuantKind::F16, QuantKind::BF16] {
        let data = random_blocks(kind, n, k, &mut rng);
        for backend in Backend::available() {
            let w = QMatrix::from_ggml(kind, n, k, &data).unwrap().with_backend(backend).unwrap();
            let x = random_x(11, k, &mut rng);
            let mut all = vec![0f32; 11 * n];
            w.matmul(&x, 11, &mut all).unwrap();
            for i in 0..11 {
                let mut one = vec![0f32; n];
                w.matmul(&x[i * k..][..k], 1, &mut one).unwrap();
                assert_eq!(one, all[i * n..][..n], "{kind:?} {backend:?} row {i}");
            }
        }
    }
}

#[test]
fn quantized_rows_do_not_depend_on_the_batch_beside_them() {
    // A row alone and the same row inside batches that take every register-block path (one
    // 8-row block, one wide pass of 9–16 rows, several blocks, AMX from 32 rows) give the same
    // bits.
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let (n, k) = (40, 576);
    for kind in KINDS {
        let data = random_blocks(kind, n, k, &mut rng);
        for backend in Backend::available() {
            let w = QMatrix::from_ggml(kind, n, k, &data).unwrap().with_backend(backend).unwrap();
            let x = random_x(48, k, &mut rng);
            let alone: Vec<Vec<f32>> = (0..48)
                .map(|i| {
                    let mut one = vec![0f32; n];
                    w.matmul(&x[i * k..][..k], 1, &mut one).unwrap();
                    one
                })
                .collect();
            for m in [5, 8, 9, 12, 16, 17, 24, 33, 48] {
                let mut all = vec![f32::NAN; m * n];
                w.matmul(&x[..m * k], m, &mut all).unwrap();
                for (i, one) in alone.iter().enumerate().take(m) {
                    assert_eq!(one[..], all[i * n..][..n], "{kind:?} {backend:?} row {i} of {m}");
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn prompt_rows_take_bfloat16_tiles_and_keep_their_bits_in_any_batch() {
    // Marked prompt rows go through the bfloat16 AMX tiles: each is the f64 dot of the bfloat16
    // weights and activations to f32 rounding, and has the same bits alone, in a run of prompt
    // rows, or between generated rows (which keep the quantized path's bits). Partial 16-row
    // groups, a partial last weight tile (n = 40) and k = 576 (18 blocks) are covered.
    if !amx::wide_available() {
        eprintln!("skipped: this CPU has no AMX-BF16");
        return;
    }
    let bf = |v: f32| half::bf16::from_f32(v).to_f32() as f64;
    let mut rng = Rng(0x0B1F_16A3_5EED_0001);
    let (n, k, m) = (40, 576, 70);
    let prompt = vec![0..5, 9..50, 60..70];
    for kind in KINDS {
        let data = random_blocks(kind, n, k, &mut rng);
        let w = QMatrix::from_ggml(kind, n, k, &data).unwrap();
        assert!(w.wide.is_some(), "{kind:?}: no bfloat16 tiles on an AMX-BF16 CPU");
        let x = random_x(m, k, &mut rng);
        let run = |x: &[f32], rows: usize, marked: Vec<std::ops::Range<usize>>| {
            let mut y = vec![f32::NAN; rows * n];
            with_prompt_rows(rows, marked, || w.matmul(x, rows, &mut y)).unwrap();
            y
        };
        let mixed = run(&x, m, prompt.clone());
        let plain = run(&x, m, vec![]);
        let dq: Vec<Vec<f32>> = (0..n).map(|j| dequantize_row(kind, &data, k, j)).collect();
        for i in 0..m {
            let row = &mixed[i * n..][..n];
            if !prompt.iter().any(|r| r.contains(&i)) {
                assert_eq!(row, &plain[i * n..][..n], "{kind:?} generated row {i}");
                continue;
            }
            for (j, &got) in row.iter().enumerate() {
                let want: f64 = (0..k).map(|c| bf(dq[j][c]) * bf(x[i * k + c])).sum();
                let scale: f64 = (0..k).map(|c| (bf(dq[j][c]) * bf(x[i * k + c])).abs()).sum();
                assert!((got as f64 - want).abs() <= 1e-5 * scale + 1e-30, "{kind:?} row {i} col {j}: {got} vs {want}");
            }
            // Alone, as a one-row prompt.
            assert_eq!(run(&x[i * k..][..k], 1, vec![0..1]), row, "{kind:?} prompt row {i} alone");
        }
        // The 41-row run alone: full 16-row groups and a partial one at other offsets.
        let run41 = run(&x[9 * k..50 * k], 41, vec![0..41]);
        assert_eq!(run41, mixed[9 * n..50 * n], "{kind:?} rows 9..50 alone");
    }
}

const KQUANTS: [QuantKind; 3] = [QuantKind::Q4K, QuantKind::Q5K, QuantKind::Q6K];

#[test]
fn kquants_match_the_dequantizing_reference_and_scalar_on_odd_shapes() {
    let mut rng = Rng(0x005E_ED6B);
    // n and m straddle the 16-row tile, the 8-row register block and the 64-row chunk; k covers
    // one to six super-blocks.
    for &(m, n, k) in &[(1, 1, 256), (3, 17, 512), (7, 15, 256), (9, 33, 768), (13, 100, 256), (70, 47, 1536)] {
        for kind in KQUANTS {
            let data = random_blocks(kind, n, k, &mut rng);
            let x = random_x(m, k, &mut rng);
            let (want, tol) = reference(kind, &data, &x, m, n, k);
            let mut scalar = vec![f32::NAN; m * n];
            let w = QMatrix::from_ggml(kind, n, k, &data).unwrap().with_backend(Backend::Scalar).unwrap();
            w.matmul(&x, m, &mut scalar).unwrap();
            for backend in Backend::available() {
                let w = QMatrix::from_ggml(kind, n, k, &data).unwrap().with_backend(backend).unwrap();
                let mut y = vec![f32::NAN; m * n];
                w.matmul(&x, m, &mut y).unwrap();
                for (idx, ((&got, &want), &tol)) in y.iter().zip(&want).zip(&tol).enumerate() {
                    let (i, r) = (idx / n, idx % n);
                    assert!(
                        (got as f64 - want).abs() <= tol,
                        "{kind:?} {backend:?} (m, n, k) = ({m}, {n}, {k}) y[{i}][{r}]: got {got}, want {want} ± {tol}"
                    );
                    let s = scalar[idx];
                    // The same integer sums; only the f32 rounding of the terms may differ.
                    assert!((got - s).abs() as f64 <= tol, "{kind:?} {backend:?} y[{i}][{r}]: {got} vs scalar {s}");
                }
            }
        }
    }
}

#[test]
fn kquants_read_candle_qtensors_and_agree_with_candles_kernels() {
    // candle quantizes and dequantizes k-quants independently of our reference, and its
    // QMatMul (what `Linear` ran before these kernels) quantizes activations to Q8_K (one scale
    // per 256 values) where we use one per 32. Against candle's dequantized weights our only
    // error is our activation rounding (half a step per 32-block); against candle's kernel, at
    // most a step of the 256-block rounding more.
    let mut rng = Rng(13);
    let (m, n, k) = (5, 37, 768);
    let dev = Device::Cpu;
    let w = Tensor::from_vec((0..n * k).map(|_| rng.unit()).collect::<Vec<f32>>(), (n, k), &dev).unwrap();
    let x = random_x(m, k, &mut rng);
    let xt = Tensor::from_vec(x.clone(), (m, k), &dev).unwrap();
    let amax = |xb: &[f32]| xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
    for (dtype, kind) in
        [(GgmlDType::Q4K, QuantKind::Q4K), (GgmlDType::Q5K, QuantKind::Q5K), (GgmlDType::Q6K, QuantKind::Q6K)]
    {
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq: Vec<Vec<f32>> = q.dequantize(&dev).unwrap().to_vec2().unwrap();
        let ours = QMatrix::from_ggml(kind, n, k, &q.data().unwrap()).unwrap();
        let from_q = QMatrix::from_qtensor(&q).unwrap();
        assert_eq!(from_q.map(|q| q.kind()), kquant::accelerated(Backend::detect()).then_some(kind));
        let got: Vec<Vec<f32>> = ours.forward(&xt).unwrap().to_vec2().unwrap();
        let candle = candle_core::quantized::QMatMul::from_qtensor(q).unwrap();
        let theirs: Vec<Vec<f32>> = candle_core::Module::forward(&candle, &xt).unwrap().to_vec2().unwrap();
        for i in 0..m {
            let xi = &x[i * k..][..k];
            for (r, wr) in deq.iter().enumerate() {
                let step = |len: usize| -> f64 {
                    xi.chunks(len)
                        .zip(wr.chunks(len))
                        .map(|(xb, wb)| wb.iter().map(|w| w.abs() as f64).sum::<f64>() * amax(xb) / 127.0)
                        .sum()
                };
                let want: f64 = wr.iter().zip(xi).map(|(&w, &x)| w as f64 * x as f64).sum();
                let g = got[i][r] as f64;
                let half = step(QK) / 2.0;
                assert!(
                    (g - want).abs() <= half * 1.01 + 1e-4,
                    "{dtype:?} y[{i}][{r}]: ours {g} vs dequantized {want} ± {half}"
                );
                let t = theirs[i][r] as f64;
                let both = half + step(256) / 2.0;
                assert!((g - t).abs() <= both * 1.01 + 1e-4, "{dtype:?} y[{i}][{r}]: ours {g} vs candle {t} ± {both}");
            }
        }
    }
}

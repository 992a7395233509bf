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

const KINDS: [QuantKind; 3] = [QuantKind::Q4_0, QuantKind::Q4_1, QuantKind::Q8_0];

/// Random GGUF blocks: arbitrary quant bytes, scales of both signs around 0.01, minima around 0.1.
fn random_blocks(kind: QuantKind, n: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data = Vec::with_capacity(n * k / QK * kind.block_bytes());
    for _ in 0..n * k / QK {
        data.extend_from_slice(&f16::from_f32(0.01 * rng.unit()).to_le_bytes());
        if kind == QuantKind::Q4_1 {
            data.extend_from_slice(&f16::from_f32(0.1 * rng.unit()).to_le_bytes());
        }
        for _ in 0..kind.qs_bytes() {
            data.push(rng.next() as u8);
        }
    }
    data
}

/// Row `row` of the matrix, dequantized straight from GGUF blocks (llama.cpp's dequantize_row_*).
fn dequantize_row(kind: QuantKind, data: &[u8], k: usize, row: usize) -> Vec<f32> {
    let bb = kind.block_bytes();
    let mut w = vec![0f32; k];
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
            QuantKind::Q8_0 => {
                for j in 0..QK {
                    out[j] = d * blk[2 + j] as i8 as f32;
                }
            }
        }
    }
    w
}

/// `y` from dequantized weights and dequantized activation quants, in f64, and each output's
/// tolerance: f32 rounding of its terms (1e-5 · Σ|w·x|) plus, for Q4_1, the f16 rounding of
/// llama.cpp's Q8_1 block sums `s` that the minimum multiplies: `f16(d·Σq)` against our
/// reference's `f16(d)·Σq` is two f16 roundings apart, ≤ 2⁻¹⁰ · Σ_blocks |m · s|.
fn reference(kind: QuantKind, data: &[u8], x: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut acts = QuantRows::default();
    acts.quantize(x, m, k, false);
    let xq: Vec<f64> = (0..m * k).map(|i| acts.qs[i] as f64 * acts.d[i / QK] as f64).collect();
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
            if kind == QuantKind::Q4_1 {
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
    for &(m, n, k) in &[(1, 1, 32), (3, 17, 64), (7, 15, 96), (9, 33, 576), (13, 100, 160), (70, 47, 1536)] {
        for kind in KINDS {
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
fn simd_backends_agree_with_scalar_to_rounding() {
    let mut rng = Rng(7);
    let (m, n, k) = (11, 40, 320);
    for kind in KINDS {
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
    for (dtype, kind) in
        [(GgmlDType::Q4_0, QuantKind::Q4_0), (GgmlDType::Q4_1, QuantKind::Q4_1), (GgmlDType::Q8_0, QuantKind::Q8_0)]
    {
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
    let f16q =
        QTensor::quantize(&Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F16)
            .unwrap();
    assert!(QMatrix::from_qtensor(&f16q).unwrap().is_none());
}

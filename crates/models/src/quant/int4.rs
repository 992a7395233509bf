//! AWQ and GPTQ 4-bit checkpoints: their safetensors layouts unpacked once into one form (a
//! nibble per weight, per-group 16-entry value tables, a group index per input channel), and a
//! matmul that dequantizes each weight row on the fly into a scratch row (never the whole
//! matrix) and takes its dot products with every activation row.
//!
//! Layouts (PyTorch shapes, `in` inputs, `out` outputs, groups `g = in / group_size`):
//! - AWQ (AutoAWQ GEMM): `qweight` i32 `(in, out/8)`, eight outputs per word in the nibble order
//!   `[0, 2, 4, 6, 1, 3, 5, 7]` (output `8c + AWQ_ORDER[s]` at bits `4s`); `qzeros` i32
//!   `(g, out/8)` packed the same way; `scales` f16 `(g, out)`. Group of input `i`: `i / group_size`.
//! - GPTQ (AutoGPTQ): `qweight` i32 `(in/8, out)`, input `8r + s` at bits `4s` of row `r`;
//!   `qzeros` i32 `(g, out/8)`, output `8c + s` at bits `4s`, stored minus one in the original
//!   (`gptq`, v1) format and as is in `gptq_v2`; `scales` f16 `(g, out)`; `g_idx` i32 `(in,)`,
//!   the group of each input, in any order when the checkpoint was quantized with act-order.
//!
//! Weight value: `w = f16((q − z) · s)`, the product rounded to f16 as the reference torch
//! dequantizers (AutoAWQ `dequantize_gemm`, AutoGPTQ's `scales[g_idx] * (w − zeros[g_idx])`,
//! both in fp16) compute it; `scripts/quant/make_int4_fixtures.py` produces the same values.

use candle_core::{DType, Device, Tensor};
use half::f16;

use crate::{Error, Result};

const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int4Format {
    Awq,
    /// `zeros_stored_minus_one`: the original GPTQ (v1) convention.
    Gptq {
        zeros_stored_minus_one: bool,
    },
}

/// The packed tensors of one AWQ/GPTQ linear layer, as little-endian bytes from the file.
pub struct Int4Parts<'a> {
    pub qweight: &'a [u8],
    pub qzeros: &'a [u8],
    pub scales: &'a [u8],
    pub g_idx: Option<&'a [u8]>,
}

/// An `n × k` (outputs × inputs) 4-bit weight matrix.
pub struct Int4Matrix {
    n: usize,
    k: usize,
    groups: usize,
    /// `[n][k / 2]`, input `2j` in the low nibble.
    qs: Vec<u8>,
    /// `[n][groups][16]`: the weight value of each 4-bit code in each group.
    lut: Vec<f32>,
    /// `[k]`: the group of each input.
    g_idx: Vec<u32>,
}

fn words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn nib(w: u32, s: usize) -> u8 {
    ((w >> (4 * s)) & 0xf) as u8
}

impl Int4Matrix {
    /// Unpacks one layer of `n` outputs and `k` inputs.
    pub fn new(format: Int4Format, n: usize, k: usize, group_size: usize, p: &Int4Parts) -> Result<Self> {
        let bad = |m: String| Error::InvalidInput(format!("{format:?} int4 layer ({n} outputs, {k} inputs): {m}"));
        if !n.is_multiple_of(8) || !k.is_multiple_of(8) || group_size == 0 || !k.is_multiple_of(group_size) {
            return Err(bad(format!("shape not a multiple of 8 or of the group size {group_size}")));
        }
        let groups = k / group_size;
        let need = |what: &str, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(bad(format!("`{what}` has {got} bytes, expected {want}")))
            }
        };
        need("qweight", p.qweight.len(), n * k / 2)?;
        need("qzeros", p.qzeros.len(), groups * n / 2)?;
        need("scales", p.scales.len(), groups * n * 2)?;
        let qw: Vec<u32> = words(p.qweight).collect();
        let qz: Vec<u32> = words(p.qzeros).collect();
        let mut q = vec![0u8; n * k]; // [n][k]
        let mut z = vec![0u8; groups * n]; // [g][n]
        match format {
            Int4Format::Awq => {
                for i in 0..k {
                    for c in 0..n / 8 {
                        let w = qw[i * (n / 8) + c];
                        for (s, &o) in AWQ_ORDER.iter().enumerate() {
                            q[(8 * c + o) * k + i] = nib(w, s);
                        }
                    }
                }
                for g in 0..groups {
                    for c in 0..n / 8 {
                        for (s, &o) in AWQ_ORDER.iter().enumerate() {
                            z[g * n + 8 * c + o] = nib(qz[g * (n / 8) + c], s);
                        }
                    }
                }
            }
            Int4Format::Gptq { .. } => {
                for r in 0..k / 8 {
                    for o in 0..n {
                        let w = qw[r * n + o];
                        for s in 0..8 {
                            q[o * k + 8 * r + s] = nib(w, s);
                        }
                    }
                }
                for g in 0..groups {
                    for c in 0..n / 8 {
                        for s in 0..8 {
                            z[g * n + 8 * c + s] = nib(qz[g * (n / 8) + c], s);
                        }
                    }
                }
            }
        }
        let zero_offset = matches!(format, Int4Format::Gptq { zeros_stored_minus_one: true }) as i32;
        let g_idx: Vec<u32> = match (format, p.g_idx) {
            (Int4Format::Gptq { .. }, Some(b)) => {
                need("g_idx", b.len(), 4 * k)?;
                let v: Vec<u32> = words(b).collect();
                if let Some(bad_g) = v.iter().find(|&&g| g as usize >= groups) {
                    return Err(bad(format!("`g_idx` names group {bad_g}, there are {groups}")));
                }
                v
            }
            _ => (0..k).map(|i| (i / group_size) as u32).collect(),
        };
        let mut lut = vec![0f32; n * groups * 16];
        for o in 0..n {
            for g in 0..groups {
                let s = f16::from_le_bytes([p.scales[2 * (g * n + o)], p.scales[2 * (g * n + o) + 1]]).to_f32();
                let zz = z[g * n + o] as i32 + zero_offset;
                for code in 0..16 {
                    lut[(o * groups + g) * 16 + code] = f16::from_f32((code as i32 - zz) as f32 * s).to_f32();
                }
            }
        }
        let qs = q.chunks_exact(2).map(|p| p[0] | (p[1] << 4)).collect();
        Ok(Self { n, k, groups, qs, lut, g_idx })
    }

    /// (n, k): outputs and inputs.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Weight row `o` into `out` (`k` values).
    fn row(&self, o: usize, out: &mut [f32]) {
        let qs = &self.qs[o * self.k / 2..][..self.k / 2];
        let lut = &self.lut[o * self.groups * 16..][..self.groups * 16];
        for (j, &b) in qs.iter().enumerate() {
            let (i0, i1) = (2 * j, 2 * j + 1);
            out[i0] = lut[self.g_idx[i0] as usize * 16 + (b & 0xf) as usize];
            out[i1] = lut[self.g_idx[i1] as usize * 16 + (b >> 4) as usize];
        }
    }

    /// The whole matrix, `[n][k]` row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for (o, r) in w.chunks_exact_mut(self.k).enumerate() {
            self.row(o, r);
        }
        w
    }

    /// `y (m, n) = x (m, k) · Wᵀ`.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let threads = if m * n * k < 1 << 18 {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |t| t.get()).min(n / 8).max(1)
        };
        let per = n.div_ceil(threads);
        // Each thread owns output columns [c0, c1): it writes only those, via its own buffer.
        let parts: Vec<(usize, Vec<f32>)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let (c0, c1) = (t * per, n.min((t + 1) * per));
                        let mut out = vec![0f32; m * (c1.saturating_sub(c0))];
                        let mut w = vec![0f32; k];
                        for o in c0..c1 {
                            self.row(o, &mut w);
                            for i in 0..m {
                                out[i * (c1 - c0) + o - c0] = dot(&x[i * k..][..k], &w);
                            }
                        }
                        (c0, out)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        for (c0, out) in parts {
            let w = out.len().checked_div(m).unwrap_or(0);
            for i in 0..m {
                y[i * n + c0..][..w].copy_from_slice(&out[i * w..][..w]);
            }
        }
    }

    /// `x (.., k) → (.., n)` for a CPU tensor of any float dtype (computed in f32).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let op = || format!("int4 linear ({}, {})", self.n, self.k);
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.k) {
            return Err(Error::InvalidInput(format!("{}: input of shape {dims:?}", op())));
        }
        let m = x.elem_count() / self.k;
        let xs: Vec<f32> = x
            .to_dtype(DType::F32)
            .and_then(|t| t.to_device(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(|e| Error::Tensor { op: op(), source: e })?;
        let mut y = vec![0f32; m * self.n];
        self.matmul(&xs, m, &mut y);
        let mut shape = dims;
        if let Some(l) = shape.last_mut() {
            *l = self.n;
        }
        Tensor::from_vec(y, shape, &Device::Cpu)
            .and_then(|t| t.to_device(x.device()))
            .and_then(|t| t.to_dtype(x.dtype()))
            .map_err(|e| Error::Tensor { op: op(), source: e })
    }
}

/// f32 dot product in 8 independent lanes (vectorizes; the order is fixed, so results are
/// deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

//! Weight-only int8 at load time (`--quantize int8`): each output channel (row) of a linear
//! weight gets one scale, `d = f16(max|w_row| / 127)`, and `q = round(w / d)` clamped to ±127.
//!
//! The rows are stored as GGUF Q8_0 blocks that all carry their row's scale, so they run on
//! the Q8_0 kernel (8-bit activations too, as llama.cpp's Q8_0). Memory: 8.5 bits per weight
//! (the scale repeats every 32 weights) against 32 for f32.

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;
use half::f16;

use crate::{Error, Result};

/// Load-time weight quantization of dense checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightQuant {
    /// Per-output-channel symmetric int8.
    Int8,
}

impl std::str::FromStr for WeightQuant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "int8" => Ok(WeightQuant::Int8),
            other => Err(format!("unknown weight quantization `{other}` (supported: int8)")),
        }
    }
}

/// Whether a checkpoint tensor is a linear weight that `--quantize int8` converts: 2-D, a
/// `.weight`, a whole number of 32-blocks per row, and not an embedding, a norm or an MoE router
/// (routing decisions are too sensitive to round).
pub fn int8_eligible(name: &str, shape: &[usize]) -> bool {
    let skip = ["embed", "wte", "wpe", "norm", "ln_", "router", ".gate.weight"];
    shape.len() == 2
        && shape[1].is_multiple_of(32)
        && name.ends_with(".weight")
        && !skip.iter().any(|s| name.contains(s))
}

/// Per-row int8 of an `(n, k)` row-major matrix, as Q8_0 blocks.
pub fn per_channel_int8(w: &[f32], n: usize, k: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * k / 32 * 34);
    for row in w.chunks_exact(k).take(n) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 127.0);
        let df = d.to_f32();
        let id = if df != 0.0 { 1.0 / df } else { 0.0 };
        for b in row.chunks_exact(32) {
            out.extend_from_slice(&d.to_le_bytes());
            out.extend(b.iter().map(|&v| (v * id).round().clamp(-127.0, 127.0) as i8 as u8));
        }
    }
    out
}

/// [`per_channel_int8`] as a Q8_0 tensor on `device`.
pub fn int8_qtensor(w: &[f32], n: usize, k: usize, device: &Device) -> Result<QTensor> {
    let bytes = per_channel_int8(w, n, k);
    QStorage::from_data(std::borrow::Cow::Owned(bytes), device, GgmlDType::Q8_0)
        .and_then(|s| QTensor::new(s, (n, k)))
        .map_err(|e| Error::Tensor { op: format!("int8 weight ({n}, {k})"), source: e })
}

//! Quantization: llama.cpp's reference block quantizers, its per-tensor type recipes, a
//! streaming GGUF writer and the `prom quantize` pipeline (GGUF or HF safetensors in, GGUF out);
//! plus the int4 (AWQ, GPTQ) and int8 weight formats that run dequantizing on the fly.
//!
//! Invariant: for the same f32 input, [`quantize_rows`] produces the bytes `llama-quantize`
//! (without an importance matrix) produces; `scripts/quant/check_llamacpp.sh` checks it on a
//! real model tensor by tensor.

mod blocks;
mod convert;
pub mod ggml;
mod gguf_write;
mod int4;
mod int8;
mod k_quants;
mod pipeline;
pub mod recipe;

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;

pub use self::ggml::FileType;
pub use self::gguf_write::{GgufWriter, TensorEntry};
pub use self::int4::{Int4Format, Int4Matrix, Int4Parts};
pub use self::int8::{int8_eligible, int8_qtensor, per_channel_int8, WeightQuant};
pub use self::pipeline::{quantize_file, Progress, QuantizeOptions, Summary};
use crate::{Error, Result};

/// Quantizes `x` (whole rows: `x.len()` a multiple of the type's block size) to GGUF blocks of
/// `t`, exactly as llama.cpp's reference quantizer for `t` does.
pub fn quantize_rows(t: GgmlDType, x: &[f32]) -> Result<Vec<u8>> {
    let bs = t.block_size();
    if !x.len().is_multiple_of(bs) {
        return Err(Error::InvalidInput(format!(
            "{} quantization needs whole blocks of {bs} values, got {}",
            ggml::name(t),
            x.len()
        )));
    }
    let mut out = Vec::with_capacity(x.len() / bs * t.type_size());
    match t {
        GgmlDType::F32 => blocks::f32_row(x, &mut out),
        GgmlDType::F16 => blocks::f16_row(x, &mut out),
        GgmlDType::BF16 => blocks::bf16_row(x, &mut out),
        GgmlDType::Q4_0 => blocks::q4_0(x, &mut out),
        GgmlDType::Q4_1 => blocks::q4_1(x, &mut out),
        GgmlDType::Q5_0 => blocks::q5_0(x, &mut out),
        GgmlDType::Q5_1 => blocks::q5_1(x, &mut out),
        GgmlDType::Q8_0 => blocks::q8_0(x, &mut out),
        GgmlDType::Q2K => k_quants::q2_k(x, &mut out),
        GgmlDType::Q3K => k_quants::q3_k(x, &mut out),
        GgmlDType::Q4K => k_quants::q4_k(x, &mut out),
        GgmlDType::Q5K => k_quants::q5_k(x, &mut out),
        GgmlDType::Q6K => k_quants::q6_k(x, &mut out),
        GgmlDType::Q8_1 | GgmlDType::Q8K => {
            return Err(Error::InvalidInput(format!("{} is an activation type, not a storage type", ggml::name(t))))
        }
    }
    debug_assert_eq!(out.len(), x.len() / bs * t.type_size());
    Ok(out)
}

/// [`quantize_rows`] over `rows` rows of `cols`, split across the machine's cores (rows are
/// independent, so the bytes do not depend on the split).
pub fn quantize_rows_parallel(t: GgmlDType, x: &[f32], cols: usize) -> Result<Vec<u8>> {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(rows.max(1));
    if threads <= 1 || x.len() < 1 << 16 {
        return quantize_rows(t, x);
    }
    let per = rows.div_ceil(threads) * cols;
    let parts: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = x.chunks(per).map(|c| s.spawn(move || quantize_rows(t, c))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::InvalidInput("quantizer thread panicked".into()))))
            .collect()
    });
    let mut out = Vec::with_capacity(x.len() / t.block_size() * t.type_size());
    for p in parts {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}

/// GGUF blocks of `t` back to f32 (candle's dequantizers, ports of ggml's `to_float`).
pub fn dequantize(t: GgmlDType, bytes: &[u8], shape: &[usize]) -> Result<Vec<f32>> {
    let q = qtensor(t, bytes, shape)?;
    let op = || format!("dequantize {} {shape:?}", ggml::name(t));
    q.dequantize(&Device::Cpu)
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.to_vec1::<f32>())
        .map_err(|e| Error::Tensor { op: op(), source: e })
}

/// A CPU `QTensor` over raw GGUF blocks.
pub fn qtensor(t: GgmlDType, bytes: &[u8], shape: &[usize]) -> Result<QTensor> {
    let op = || format!("{} tensor {shape:?}", ggml::name(t));
    let n: usize = shape.iter().product();
    let want = n / t.block_size() * t.type_size();
    if !n.is_multiple_of(t.block_size()) || bytes.len() != want {
        return Err(Error::InvalidInput(format!("{}: expected {want} bytes, got {}", op(), bytes.len())));
    }
    QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, t)
        .and_then(|s| QTensor::new(s, shape))
        .map_err(|e| Error::Tensor { op: op(), source: e })
}

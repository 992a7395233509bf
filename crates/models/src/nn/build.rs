//! Builds blocks from named tensors, checking every shape against the config so a wrong or
//! truncated checkpoint fails at load with the tensor's name, never later inside a matmul.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{Device, Tensor};

use super::linear::Linear;
use super::norm::Norm;
use crate::config::NormConfig;
use crate::loader::{WeightData, Weights};
use crate::{Error, Result};

pub struct Builder<'a> {
    pub weights: &'a dyn Weights,
    pub device: &'a Device,
}

impl Builder<'_> {
    fn check_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        let found = self
            .weights
            .shape(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into(), path: self.weights.path().into() })?;
        if found != expected {
            return Err(Error::ShapeMismatch {
                name: name.into(),
                path: self.weights.path_of(name).into(),
                expected: expected.to_vec(),
                found,
            });
        }
        Ok(())
    }

    /// A dense f32 tensor of exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.raw(name, shape)?.to_dense(self.device)
    }

    /// The raw stored form (quantized stays quantized) of a tensor of exactly `shape`.
    pub fn raw(&self, name: &str, shape: &[usize]) -> Result<WeightData> {
        if let Some(made) = self.weights.synthesize(name, shape, self.device)? {
            return Ok(made);
        }
        self.check_shape(name, shape)?;
        self.weights.load(name, self.device)
    }

    /// `prefix.weight` (out, in) — or (in, out) when `transposed` — and `prefix.bias` (out).
    pub fn linear(&self, prefix: &str, out: usize, inp: usize, bias: bool, transposed: bool) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let bias_of = || if bias { self.tensor(&format!("{prefix}.bias"), &[out]).map(Some) } else { Ok(None) };
        // AWQ/GPTQ layers run on their own kernel (dequantized row by row as they are used).
        if !transposed {
            if let Some(m) = self.weights.int4_linear(&name)? {
                self.check_shape(&name, &[out, inp])?;
                return Ok(Linear::int4(m, bias_of()?, out));
            }
        }
        let weight = if transposed {
            let t = self.tensor(&name, &[inp, out])?;
            let t = t.t().and_then(|t| t.contiguous()).map_err(|e| Error::Tensor { op: name.clone(), source: e })?;
            QMatMul::Tensor(t)
        } else {
            match self.raw(&name, &[out, inp])? {
                WeightData::Dense(t) => QMatMul::Tensor(t),
                WeightData::Quantized(q) => QMatMul::from_arc(Arc::clone(&q))?,
            }
        };
        Ok(Linear::new(weight, bias_of()?, out))
    }

    /// A fused qkv projection stored per head as `[q0 k0 v0 | q1 k1 v1 | ...]` (BLOOM), with its
    /// rows reordered to `[q | k | v]` so the attention can split it like any fused projection.
    pub fn linear_per_head_qkv(
        &self,
        prefix: &str,
        heads: usize,
        head_dim: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let out = 3 * heads * head_dim;
        let reorder = |t: Tensor, cols: usize| -> Result<Tensor> {
            // (heads, 3, head_dim, cols) → (3, heads, head_dim, cols)
            t.reshape((heads, 3, head_dim, cols))
                .and_then(|t| t.transpose(0, 1))
                .and_then(|t| t.contiguous())
                .and_then(|t| t.reshape((out, cols)))
                .map_err(|e| Error::Tensor { op: format!("{prefix}: reorder per-head qkv"), source: e })
        };
        let w = reorder(self.tensor(&format!("{prefix}.weight"), &[out, inp])?, inp)?;
        let b = if bias {
            let b = reorder(self.tensor(&format!("{prefix}.bias"), &[out])?, 1)?;
            Some(b.flatten_all().map_err(|e| Error::Tensor { op: prefix.to_string(), source: e })?)
        } else {
            None
        };
        Ok(Linear::new(QMatMul::Tensor(w), b, out))
    }

    pub fn norm(&self, prefix: &str, dim: usize, cfg: &NormConfig) -> Result<Norm> {
        let mut weight = self.tensor(&format!("{prefix}.weight"), &[dim])?;
        if cfg.weight_offset != 0.0 {
            weight = (weight + cfg.weight_offset as f64)?;
        }
        let bias_name = format!("{prefix}.bias");
        let bias = if cfg.bias { Some(self.tensor(&bias_name, &[dim])?) } else { None };
        Ok(Norm::new(cfg.kind, weight, bias, cfg.eps))
    }
}

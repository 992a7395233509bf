//! RMSNorm and LayerNorm, computed in f32.

use candle_core::Tensor;

use crate::config::NormKind;
use crate::kernels::fused;
use crate::{Result, TensorContext};

pub struct Norm {
    kind: NormKind,
    /// Already includes any family weight offset (Gemma's `1 + w`).
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f32,
}

impl Norm {
    pub fn new(kind: NormKind, weight: Tensor, bias: Option<Tensor>, eps: f64) -> Self {
        Self { kind, weight, bias, eps: eps as f32 }
    }

    /// `x`: (.., dim), normalised over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous().ctx("norm input")?;
        match self.kind {
            NormKind::RmsNorm => fused::rms_norm(&x, &self.weight, self.eps)
                .or_else(|| crate::cuda::rms_norm(&x, &self.weight, self.eps))
                .unwrap_or_else(|| candle_nn::ops::rms_norm(&x, &self.weight, self.eps).ctx("rms_norm")),
            NormKind::LayerNorm => {
                let bias = match &self.bias {
                    Some(b) => b.clone(),
                    None => self.weight.zeros_like().ctx("layer_norm bias")?,
                };
                candle_nn::ops::layer_norm(&x, &self.weight, &bias, self.eps).ctx("layer_norm")
            }
        }
    }

    /// `s = x + h` and `self(s)`: a residual add followed by this norm, fused into one pass for
    /// RMSNorm on the CPU and on CUDA. Returns `(s, norm(s))`.
    pub fn forward_residual(&self, x: &Tensor, h: &Tensor) -> Result<(Tensor, Tensor)> {
        if self.kind == NormKind::RmsNorm {
            if let Some(r) = fused::add_rms_norm(x, h, &self.weight, self.eps)
                .or_else(|| crate::cuda::add_rms_norm(x, h, &self.weight, self.eps))
            {
                return r;
            }
        }
        let s = (x + h).ctx("residual add")?;
        let n = self.forward(&s)?;
        Ok((s, n))
    }
}

//! RMSNorm and LayerNorm, computed in f32.

use candle_core::Tensor;

use crate::config::NormKind;
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
            NormKind::RmsNorm => candle_nn::ops::rms_norm(&x, &self.weight, self.eps).ctx("rms_norm"),
            NormKind::LayerNorm => {
                let bias = match &self.bias {
                    Some(b) => b.clone(),
                    None => self.weight.zeros_like().ctx("layer_norm bias")?,
                };
                candle_nn::ops::layer_norm(&x, &self.weight, &bias, self.eps).ctx("layer_norm")
            }
        }
    }
}

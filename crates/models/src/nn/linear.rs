//! `y = x Wᵀ + b` over dense f32 or GGUF-quantized weights (candle's `QMatMul`).

use candle_core::quantized::QMatMul;
use candle_core::{Module, Tensor};

use crate::{Result, TensorContext};

pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
    /// Output features, for splitting fused projections.
    out_features: usize,
}

impl Linear {
    pub fn new(weight: QMatMul, bias: Option<Tensor>, out_features: usize) -> Self {
        Self { weight, bias, out_features }
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// `x`: (.., in) → (.., out)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x).ctx("linear")?;
        match &self.bias {
            Some(b) => y.broadcast_add(b).ctx("linear bias"),
            None => Ok(y),
        }
    }

    /// Whether the weight is block-quantized (for `prom inspect`).
    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, QMatMul::QTensor(_))
    }
}

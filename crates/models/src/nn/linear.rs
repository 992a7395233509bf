//! `y = x Wᵀ + b` over dense f32 or GGUF-quantized weights.
//!
//! Q4_0, Q4_1 and Q8_0 weights run on our own kernels ([`crate::kernels`]); AWQ/GPTQ 4-bit
//! weights on [`crate::quant::Int4Matrix`]; every other format (Q5_0/Q5_1, k-quants, dense
//! f32/f16) and non-CPU devices stay with candle's `QMatMul`.

use candle_core::quantized::QMatMul;
use candle_core::{Module, Tensor};

use std::sync::Arc;

use crate::kernels::QMatrix;
use crate::quant::Int4Matrix;
use crate::{Result, TensorContext};

pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    /// Output features, for splitting fused projections.
    out_features: usize,
}

enum Weight {
    Packed(QMatrix),
    Int4(Arc<Int4Matrix>),
    Candle(QMatMul),
}

impl Linear {
    /// Takes candle's weight form; CPU Q4_0/Q4_1/Q8_0 tensors are repacked for our kernels here
    /// (a byte permutation: the repacked copy replaces the GGUF one, it does not add to it).
    pub fn new(weight: QMatMul, bias: Option<Tensor>, out_features: usize) -> Self {
        let weight = match &weight {
            QMatMul::QTensor(q) => match QMatrix::from_qtensor(q) {
                Ok(Some(packed)) => Weight::Packed(packed),
                Ok(None) => Weight::Candle(weight),
                Err(e) => {
                    // candle can still run it; only the speed is lost.
                    tracing::warn!("keeping candle's matmul for a {:?} weight: {e}", q.dtype());
                    Weight::Candle(weight)
                }
            },
            _ => Weight::Candle(weight),
        };
        Self { weight, bias, out_features }
    }

    /// An AWQ/GPTQ 4-bit weight.
    pub fn int4(weight: Arc<Int4Matrix>, bias: Option<Tensor>, out_features: usize) -> Self {
        Self { weight: Weight::Int4(weight), bias, out_features }
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// `x`: (.., in) → (.., out)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Packed(w) => w.forward(x)?,
            Weight::Int4(w) => w.forward(x)?,
            Weight::Candle(w) => w.forward(x).ctx("linear")?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b).ctx("linear bias"),
            None => Ok(y),
        }
    }

    /// Whether the weight is block-quantized (for `prom inspect`).
    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Packed(_) | Weight::Int4(_) | Weight::Candle(QMatMul::QTensor(_)))
    }
}

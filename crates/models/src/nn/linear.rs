//! `y = x Wᵀ + b` over dense f32 or GGUF-quantized weights.
//!
//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights, and Q4_K/Q5_K/Q6_K where the CPU has AVX-512 VNNI, run
//! on our own kernels ([`crate::kernels`]), and so do dense weights whose values are all exact BF16 or F16 (GGUF F16/BF16 tensors and 16-bit HF
//! checkpoints, which the loaders widen to f32): they are stored as 16-bit again, halving the
//! bytes a decode step streams. AWQ/GPTQ 4-bit weights run on [`crate::quant::Int4Matrix`];
//! Q2_K/Q3_K (and the other k-quants without AVX-512 VNNI), true f32 weights and non-CPU devices
//! stay with candle's `QMatMul`.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Tensor};

use std::sync::Arc;

use super::norm::LayerInput;
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
    /// Takes candle's weight form; CPU tensors of the kinds above are repacked for our kernels
    /// here (a permutation of the GGUF blocks, or the 16-bit values: the repacked copy replaces
    /// candle's, it does not add to it).
    pub fn new(weight: QMatMul, bias: Option<Tensor>, out_features: usize) -> Self {
        let packed = match &weight {
            QMatMul::QTensor(q) => QMatrix::from_qtensor(q),
            QMatMul::Tensor(t) => QMatrix::from_f32_lossless(t),
            QMatMul::TensorF16(_) => Ok(None),
        };
        let weight = match packed {
            Ok(Some(packed)) => Weight::Packed(packed),
            Ok(None) => Weight::Candle(weight),
            Err(e) => {
                // candle can still run it; only the speed is lost.
                tracing::warn!("keeping candle's matmul for a weight our kernels could not pack: {e}");
                Weight::Candle(weight)
            }
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
            Weight::Candle(w) => {
                // Decode-sized batches on a GPU: our weight-streaming kernel instead of cuBLAS.
                let small = match w {
                    QMatMul::Tensor(t) => crate::cuda::gemv(x, t),
                    _ => None,
                };
                match small {
                    Some(y) => y?,
                    None => w.forward(x).ctx("linear")?,
                }
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b).ctx("linear bias"),
            None => Ok(y),
        }
    }

    /// [`Linear::forward`] of a layer half's input: for [`LayerInput::Folded`], the decode GEMV
    /// that applies the norm's scale itself, or else the norm then this projection.
    pub(crate) fn forward_input(&self, x: LayerInput<'_>) -> Result<Tensor> {
        if let (LayerInput::Folded(x, n), Weight::Candle(QMatMul::Tensor(w))) = (x, &self.weight) {
            if let Some(y) = crate::cuda::gemv_rms(x, w, n.eps(), false) {
                return match &self.bias {
                    Some(b) => y?.broadcast_add(b).ctx("linear bias"),
                    None => y,
                };
            }
        }
        self.forward(&x.normed()?)
    }

    /// `silu(x·gateᵀ) · (x·upᵀ)` for a fused `[gate | up]` weight, when the GPU's decode GEMV
    /// covers it (dense 16-bit weight on CUDA, no bias, a few rows), the norm of a
    /// [`LayerInput::Folded`] input applied inside it; `None`: use [`Linear::forward_input`].
    pub(crate) fn silu_gemv(&self, x: LayerInput<'_>) -> Option<Result<Tensor>> {
        let (Weight::Candle(QMatMul::Tensor(w)), None) = (&self.weight, &self.bias) else { return None };
        match x {
            LayerInput::Normed(x) => crate::cuda::gemv_silu(x, w),
            LayerInput::Folded(x, n) => crate::cuda::gemv_rms(x, w, n.eps(), true),
        }
    }

    /// `residual + self(x)`, in one decode GEMV where it covers it (dense 16-bit weight on
    /// CUDA, no bias, a few rows); without a residual, [`Linear::forward`].
    pub(crate) fn forward_add(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let Some(r) = residual else { return self.forward(x) };
        if let (Weight::Candle(QMatMul::Tensor(w)), None) = (&self.weight, &self.bias) {
            if let Some(y) = crate::cuda::gemv_res(x, w, r) {
                return y;
            }
        }
        super::layer::add(r, &self.forward(x)?)
    }

    /// Whether [`Norm::fold_into`](super::norm::Norm::fold_into) can fold a norm over `dim`
    /// features of `dtype` into this weight: a dense 16-bit weight of `dim` inputs on a CUDA
    /// device, the form the decode GEMV reads.
    pub(crate) fn fold_target(&self, dim: usize, dtype: DType) -> bool {
        match &self.weight {
            Weight::Candle(QMatMul::Tensor(w)) => {
                w.device().is_cuda()
                    && matches!(w.dtype(), DType::BF16 | DType::F16)
                    && w.dtype() == dtype
                    && w.dims2().is_ok_and(|(_, k)| k == dim)
            }
            _ => false,
        }
    }

    /// `W ← W · diag(s)`: each input feature's column scaled (in f32, rounded once); only for
    /// [`Linear::fold_target`] weights.
    pub(crate) fn scale_inputs(&mut self, s: &Tensor) -> Result<()> {
        let Weight::Candle(QMatMul::Tensor(w)) = &self.weight else {
            return Err(crate::Error::config("norm folding", "only dense weights take a folded norm"));
        };
        let dt = w.dtype();
        let scaled = (|| w.to_dtype(DType::F32)?.broadcast_mul(&s.to_dtype(DType::F32)?.unsqueeze(0)?)?.to_dtype(dt))()
            .ctx("folding a norm into a weight")?;
        self.weight = Weight::Candle(QMatMul::Tensor(scaled));
        Ok(())
    }

    /// One linear whose outputs are `parts`' outputs one after another (`[q | k | v]`,
    /// `[gate | up]`): for dense weights on a GPU one launch instead of several, and one stream
    /// over the weights at decode; for our CPU kernels' weights ([`QMatrix::concat_rows`]) one
    /// quantization of the input and one pool dispatch. `Err` gives the parts back unchanged
    /// when they are neither, or disagree on a bias.
    pub fn concat_outputs<const N: usize>(parts: [Linear; N]) -> std::result::Result<Linear, [Linear; N]> {
        let packed: Option<Vec<&QMatrix>> = parts
            .iter()
            .map(|l| match &l.weight {
                Weight::Packed(w) if l.bias.is_none() => Some(w),
                _ => None,
            })
            .collect();
        if let Some(w) = packed.filter(|_| N > 1).and_then(|ws| QMatrix::concat_rows(&ws)) {
            let out_features = parts.iter().map(|l| l.out_features).sum();
            return Ok(Self { weight: Weight::Packed(w), bias: None, out_features });
        }
        let dense = |l: &Linear| match &l.weight {
            Weight::Candle(QMatMul::Tensor(w)) if w.device().is_cuda() => Some(w.clone()),
            _ => None,
        };
        let ws: Option<Vec<Tensor>> = parts.iter().map(dense).collect();
        let Some(ws) = ws.filter(|_| N > 1) else { return Err(parts) };
        let same = ws.iter().all(|w| w.dims().get(1) == ws[0].dims().get(1) && w.dtype() == ws[0].dtype());
        let biased = parts.iter().filter(|l| l.bias.is_some()).count();
        if !same || (biased != 0 && biased != parts.len()) {
            return Err(parts);
        }
        let Ok(weight) = Tensor::cat(&ws, 0) else { return Err(parts) };
        let bias = match biased {
            0 => None,
            _ => {
                let bs: Vec<&Tensor> = parts.iter().filter_map(|l| l.bias.as_ref()).collect();
                match Tensor::cat(&bs, 0) {
                    Ok(b) => Some(b),
                    Err(_) => return Err(parts),
                }
            }
        };
        let out_features = parts.iter().map(|l| l.out_features).sum();
        Ok(Self { weight: Weight::Candle(QMatMul::Tensor(weight)), bias, out_features })
    }

    /// Whether the weight is block-quantized (for `prom inspect`).
    pub fn is_quantized(&self) -> bool {
        match &self.weight {
            Weight::Packed(w) => !w.is_dense(),
            Weight::Int4(_) | Weight::Candle(QMatMul::QTensor(_)) => true,
            Weight::Candle(_) => false,
        }
    }
}

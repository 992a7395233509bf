//! RMSNorm and LayerNorm, computed in f32.

use candle_core::Tensor;

use super::linear::Linear;
use crate::config::NormKind;
use crate::kernels::fused;
use crate::{Result, TensorContext};

pub struct Norm {
    kind: NormKind,
    /// Already includes any family weight offset (Gemma's `1 + w`). Ones once folded.
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f32,
    /// The weight lives in the projections that read this norm's output ([`Norm::fold_into`]).
    folded: bool,
}

/// What a layer half's input projections read.
#[derive(Clone, Copy)]
pub(crate) enum LayerInput<'a> {
    /// Normalised activations.
    Normed(&'a Tensor),
    /// The residual stream itself, under a norm folded into the projections that read it
    /// ([`Norm::fold_into`]): a projection applies the norm's scale itself where its kernel
    /// does (the decode GEMV, [`Linear::forward_input`]), and otherwise reads `norm(x)`.
    Folded(&'a Tensor, &'a Norm),
}

impl LayerInput<'_> {
    /// The normalised activations.
    pub fn normed(&self) -> Result<Tensor> {
        match self {
            LayerInput::Normed(x) => Ok((*x).clone()),
            LayerInput::Folded(x, n) => n.forward(x),
        }
    }
}

impl Norm {
    pub fn new(kind: NormKind, weight: Tensor, bias: Option<Tensor>, eps: f64) -> Self {
        Self { kind, weight, bias, eps: eps as f32, folded: false }
    }

    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// Moves this RMSNorm's weight into the projections that read its output: each weight
    /// `W (out, in)` becomes `W · diag(w)` (the product in f32, rounded to W's dtype once), and
    /// this norm's weight becomes ones. `norm(x) · Wᵀ` is unchanged up to that rounding, and a
    /// decode GEMV can then read the residual stream itself and scale its dot products by the
    /// row's `rsqrt(mean(x²) + eps)` ([`LayerInput::Folded`]): the norm's launch goes away.
    /// The readers must be every consumer of the norm's output. Does nothing unless
    /// [`Norm::can_fold_into`] them; returns whether it folded.
    pub(crate) fn fold_into(&mut self, readers: &mut [&mut Linear]) -> Result<bool> {
        let shared: Vec<&Linear> = readers.iter().map(|l| &**l).collect();
        if !self.can_fold_into(&shared) {
            return Ok(false);
        }
        for l in readers.iter_mut() {
            l.scale_inputs(&self.weight)?;
        }
        self.weight = self.weight.ones_like().ctx("folded norm weight")?;
        self.folded = true;
        Ok(true)
    }

    /// Whether [`Norm::fold_into`] folds into `readers`: an RMSNorm without bias, not yet
    /// folded, whose every reader is a dense 16-bit weight on a CUDA device
    /// ([`Linear::fold_target`]), and folding not switched off (`PROM_FOLD_NORMS=0`).
    pub(crate) fn can_fold_into(&self, readers: &[&Linear]) -> bool {
        let dim = self.weight.elem_count();
        self.kind == NormKind::RmsNorm
            && self.bias.is_none()
            && !self.folded
            && !readers.is_empty()
            && readers.iter().all(|l| l.fold_target(dim, self.weight.dtype()))
            && crate::cuda::fold_norms_enabled()
    }

    pub(crate) fn is_folded(&self) -> bool {
        self.folded
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

//! One decoder layer; norm placement is a parameter: pre-norm, sandwich (Gemma 2/3: pre and
//! post) or post-norm (OLMo 2), by which norms are present.

use std::sync::Arc;

use candle_core::{Tensor, D};

use super::attention::{Attention, QkvProj};
use super::batch::BatchMeta;
use super::kv_cache::PagedKvCache;
use super::mlp::{GateUp, Mlp};
use super::moe::Moe;
use super::norm::{LayerInput, Norm};
use super::rope::{Rope, RopeTables};
use crate::parallel::Communicator;
use crate::{Result, TensorContext};

pub struct DecoderLayer {
    /// Pre-norms (absent in post-norm layers).
    pub(super) attn_norm: Option<Norm>,
    pub(super) attn: Attention,
    /// Sandwich norm on the attention output, before the residual add.
    pub(super) post_attn_norm: Option<Norm>,
    pub(super) ffn_norm: Option<Norm>,
    pub(super) mlp: FeedForward,
    pub(super) post_ffn_norm: Option<Norm>,
    /// Tensor parallelism: attention and feed-forward end in a row-parallel projection, whose
    /// per-rank partial sums are added up here, before any norm or residual sees them.
    pub(super) reduce: Option<Arc<dyn Communicator>>,
}

/// The feed-forward half of a layer: the dense MLP or the mixture of experts.
pub enum FeedForward {
    Dense(Mlp),
    Moe(Box<Moe>),
}

impl DecoderLayer {
    /// Folds the two norms of a plain pre-norm layer into the projections that read them
    /// ([`Norm::fold_into`]): the fused q|k|v and `[gate | up]`, dense 16-bit weights on a CUDA
    /// device. Both or neither. Then decode-sized batches run each half as two GEMVs and the
    /// attention between them: the first applies the norm, the last adds the residual.
    pub(crate) fn fold_norms(&mut self) -> Result<()> {
        if self.post_attn_norm.is_some() || self.post_ffn_norm.is_some() || self.reduce.is_some() {
            return Ok(());
        }
        let (Some(an), Some(fnorm), QkvProj::Fused(qkv), FeedForward::Dense(Mlp { gate_up: GateUp::Fused(gu), .. })) =
            (&mut self.attn_norm, &mut self.ffn_norm, &mut self.attn.qkv, &mut self.mlp)
        else {
            return Ok(());
        };
        if an.can_fold_into(&[&*qkv]) && fnorm.can_fold_into(&[&*gu]) {
            an.fold_into(&mut [qkv])?;
            fnorm.fold_into(&mut [gu])?;
        }
        Ok(())
    }

    /// The two norms when [`DecoderLayer::fold_norms`] folded them.
    fn folded_norms(&self) -> Option<(&Norm, &Norm)> {
        let (Some(a), Some(f)) = (&self.attn_norm, &self.ffn_norm) else { return None };
        (a.is_folded() && f.is_folded()).then_some((a, f))
    }

    /// `x`: (1, T, hidden). The layer's input is `x + pending` (the previous layer's last
    /// residual add, left to this layer so that it runs fused with the input norm); it returns
    /// `(x', h)` the same way, its output being `x' + h` (or `x'` when `h` is `None`).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        pending: Option<Tensor>,
        index: usize,
        rope: Option<(&Rope, &RopeTables)>,
        batch: &BatchMeta,
        kv: &mut PagedKvCache,
    ) -> Result<(Tensor, Option<Tensor>)> {
        // Folded norms at decode-sized batches: the q|k|v and gate|up GEMVs read the residual
        // stream and apply the norms, and the o and down GEMVs add the residual: two launches
        // a layer fewer than norm kernels between them.
        if let (Some((an, fnorm)), FeedForward::Dense(mlp)) = (self.folded_norms(), &self.mlp) {
            if crate::cuda::gemv_takes_rows(x.elem_count() / x.dim(D::Minus1).ctx("layer input")?.max(1)) {
                let x = match pending {
                    Some(h) => add(x, &h)?,
                    None => x.clone(),
                };
                let s = self.attn.forward(LayerInput::Folded(&x, an), Some(&x), index, rope, batch, kv)?;
                let s = mlp.forward_in(LayerInput::Folded(&s, fnorm), Some(&s))?;
                return Ok((s, None));
            }
        }
        let (x, normed) = match (&self.attn_norm, pending) {
            (Some(n), Some(h)) => n.forward_residual(x, &h)?,
            (Some(n), None) => (x.clone(), n.forward(x)?),
            (None, Some(h)) => {
                let s = add(x, &h)?;
                (s.clone(), s)
            }
            (None, None) => (x.clone(), x.clone()),
        };
        let reduced = |h: Tensor| match &self.reduce {
            Some(c) => c.all_reduce_sum(&h),
            None => Ok(h),
        };
        let mut h = reduced(self.attn.forward(LayerInput::Normed(&normed), None, index, rope, batch, kv)?)?;
        if let Some(n) = &self.post_attn_norm {
            h = n.forward(&h)?;
        }
        let (x, normed_x) = match &self.ffn_norm {
            Some(n) => n.forward_residual(&x, &h)?,
            None => {
                let x = add(&x, &h)?;
                (x.clone(), x)
            }
        };
        let ffn = match &self.mlp {
            FeedForward::Dense(m) => m.forward(&normed_x)?,
            FeedForward::Moe(m) => m.forward(&normed_x)?,
        };
        let mut h = reduced(ffn)?;
        if let Some(n) = &self.post_ffn_norm {
            h = n.forward(&h)?;
        }
        Ok((x, Some(h)))
    }
}

/// `x + h`, fused on the CPU.
pub(super) fn add(x: &Tensor, h: &Tensor) -> Result<Tensor> {
    crate::kernels::fused::add(x, h).unwrap_or_else(|| (x + h).ctx("residual add"))
}

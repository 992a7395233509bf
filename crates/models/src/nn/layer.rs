//! One decoder layer; norm placement is a parameter: pre-norm, sandwich (Gemma 2/3: pre and
//! post) or post-norm (OLMo 2), by which norms are present.

use std::sync::Arc;

use candle_core::Tensor;

use super::attention::Attention;
use super::batch::BatchMeta;
use super::kv_cache::PagedKvCache;
use super::mlp::Mlp;
use super::moe::Moe;
use super::norm::Norm;
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

impl FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Dense(m) => m.forward(x),
            FeedForward::Moe(m) => m.forward(x),
        }
    }
}

impl DecoderLayer {
    /// `x`: (1, T, hidden). The layer's input is `x + pending` (the previous layer's last
    /// residual add, left to this layer so that it runs fused with the input norm); it returns
    /// `(x', h)` the same way, its output being `x' + h`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        pending: Option<Tensor>,
        index: usize,
        rope: Option<(&Rope, &RopeTables)>,
        batch: &BatchMeta,
        kv: &mut PagedKvCache,
    ) -> Result<(Tensor, Tensor)> {
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
        let mut h = reduced(self.attn.forward(&normed, index, rope, batch, kv)?)?;
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
        let mut h = reduced(self.mlp.forward(&normed_x)?)?;
        if let Some(n) = &self.post_ffn_norm {
            h = n.forward(&h)?;
        }
        Ok((x, h))
    }
}

/// `x + h`, fused on the CPU.
pub(super) fn add(x: &Tensor, h: &Tensor) -> Result<Tensor> {
    crate::kernels::fused::add(x, h).unwrap_or_else(|| (x + h).ctx("residual add"))
}

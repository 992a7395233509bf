//! Multi-head latent attention (DeepSeek-V2/V3) projections. The KV cache stores the normed
//! compressed latent `(b, 1, T, kv_lora_rank)` and the shared rotary key `(b, 1, T, rope_dim)`
//! instead of full per-head K and V; they are expanded with `kv_b_proj` when attending. The
//! score/softmax part is the shared attention's.

use candle_core::{Tensor, D};

use super::kv_cache::KvCache;
use super::linear::Linear;
use super::norm::Norm;
use super::rope::{Rope, RopeTables};
use crate::config::MlaConfig;
use crate::{Result, TensorContext};

pub enum MlaQuery {
    Direct(Linear),
    /// `q_b(norm(q_a(x)))`
    LowRank {
        a: Linear,
        norm: Norm,
        b: Linear,
    },
}

pub struct Mla {
    pub(super) q: MlaQuery,
    /// hidden → kv_lora_rank + rope_dim
    pub(super) kv_a: Linear,
    pub(super) kv_norm: Norm,
    /// kv_lora_rank → heads * (nope_dim + v_dim)
    pub(super) kv_b: Linear,
    pub(super) heads: usize,
    pub(super) cfg: MlaConfig,
}

impl Mla {
    /// Returns q `(b, h, t, nope + rope)`, k `(b, h, T, nope + rope)`, v `(b, h, T, v_dim)`.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        rope: Option<(&Rope, &RopeTables)>,
        cache: &mut KvCache,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3().ctx("mla input")?;
        let c = &self.cfg;
        let h = self.heads;
        let (nope, rd, vd, rank) = (c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank);
        let q = match &self.q {
            MlaQuery::Direct(q) => q.forward(x)?,
            MlaQuery::LowRank { a, norm, b } => b.forward(&norm.forward(&a.forward(x)?)?)?,
        };
        // (b, t, h * (nope + rd)) → (b, h, t, nope + rd)
        let q = q.reshape((b, t, h, nope + rd)).and_then(|q| q.transpose(1, 2)).ctx("mla q heads")?;
        let q_nope = q.narrow(D::Minus1, 0, nope).ctx("q_nope")?;
        let mut q_pe = q.narrow(D::Minus1, nope, rd).ctx("q_pe")?;

        let ckv = self.kv_a.forward(x)?;
        // (b, t, rank) → (b, 1, t, rank); (b, t, rd) → (b, 1, t, rd)
        let latent = self.kv_norm.forward(&ckv.narrow(D::Minus1, 0, rank).ctx("latent")?)?;
        let latent = latent.unsqueeze(1).ctx("latent")?;
        let mut k_pe = ckv.narrow(D::Minus1, rank, rd).and_then(|k| k.unsqueeze(1)).ctx("k_pe")?;
        if let Some((rope, tables)) = rope {
            q_pe = rope.apply(&q_pe, tables)?;
            k_pe = rope.apply(&k_pe, tables)?;
        }
        // The cache's two slots hold the latent and the rotary key.
        let (latent, k_pe) = cache.append(layer, &latent.contiguous().ctx("latent")?, &k_pe)?;
        let total = latent.dim(2).ctx("mla total")?;
        // (b, 1, T, rank) → (b, T, h, nope + vd) → (b, h, T, nope + vd)
        let kv = self
            .kv_b
            .forward(&latent.squeeze(1).ctx("latent")?)?
            .reshape((b, total, h, nope + vd))
            .and_then(|kv| kv.transpose(1, 2))
            .ctx("mla kv heads")?;
        let k_nope = kv.narrow(D::Minus1, 0, nope).ctx("k_nope")?;
        let v = kv.narrow(D::Minus1, nope, vd).and_then(|v| v.contiguous()).ctx("v")?;
        let k_pe = k_pe.broadcast_as((b, h, total, rd)).ctx("k_pe heads")?;
        let k = Tensor::cat(&[&k_nope, &k_pe], D::Minus1).ctx("k")?;
        let q = Tensor::cat(&[&q_nope, &q_pe], D::Minus1).ctx("q")?;
        Ok((q, k, v))
    }
}

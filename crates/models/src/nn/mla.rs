//! Multi-head latent attention (DeepSeek-V2/V3). The KV cache stores the normed compressed
//! latent and the shared rotary key instead of full per-head K and V, and attention runs in the
//! absorbed form on the same paged kernel as every other layer.

use candle_core::{Tensor, D};

use super::batch::BatchMeta;
use super::kv_cache::PagedKvCache;
use super::linear::Linear;
use super::norm::Norm;
use super::rope::{Rope, RopeTables};
use crate::config::MlaConfig;
use crate::kernels::attention::AttnParams;
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
    /// `kv_b_proj` split per head and absorbed into the query and the output:
    /// `w_uk (h, nope_dim, rank)` and `w_uv_t (h, rank, v_dim)`.
    pub(super) w_uk: Tensor,
    pub(super) w_uv_t: Tensor,
    pub(super) heads: usize,
    pub(super) cfg: MlaConfig,
}

impl Mla {
    /// Splits `kv_b_proj`'s weight `(h * (nope + v_dim), rank)` into the absorbed halves.
    pub(super) fn split_kv_b(kv_b: &Tensor, heads: usize, cfg: &MlaConfig) -> Result<(Tensor, Tensor)> {
        let (nope, vd, rank) = (cfg.qk_nope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank);
        let w = kv_b.reshape((heads, nope + vd, rank)).ctx("kv_b heads")?;
        let w_uk = w.narrow(1, 0, nope).and_then(|w| w.contiguous()).ctx("w_uk")?;
        let w_uv_t = w.narrow(1, nope, vd).and_then(|w| w.transpose(1, 2)).and_then(|w| w.contiguous()).ctx("w_uv")?;
        Ok((w_uk, w_uv_t))
    }

    /// The attention of `x (1, T, hidden)` before the output projection: `(1, T, h * v_dim)`.
    ///
    /// Absorbed form (DeepSeek-V2 §2.1.2): the cache holds one "kv head" per token, key
    /// `[latent | k_pe]` and value `latent`; each head's query becomes `[q_nope · W_uk | q_pe]`,
    /// so `q·k = q_nope·(W_uk c) + q_pe·k_pe` without ever expanding the latent, and the output
    /// `W_uv (Σ p c)` is applied once per query instead of once per cached token.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        rope: Option<(&Rope, &RopeTables)>,
        batch: &BatchMeta,
        kv: &mut PagedKvCache,
        scale: f32,
    ) -> Result<Tensor> {
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
        // (b, t, rank) normed; (b, t, rd) → (b, 1, t, rd) for the rotation
        let latent = self.kv_norm.forward(&ckv.narrow(D::Minus1, 0, rank).ctx("latent")?)?;
        let mut k_pe = ckv.narrow(D::Minus1, rank, rd).and_then(|k| k.unsqueeze(1)).ctx("k_pe")?;
        if let Some((rope, tables)) = rope {
            q_pe = rope.apply(&q_pe, tables)?;
            k_pe = rope.apply(&k_pe, tables)?;
        }
        // key (1, t, rank + rd), value (1, t, rank): one kv head.
        let key = Tensor::cat(&[&latent, &k_pe.squeeze(1).ctx("k_pe")?], D::Minus1).ctx("mla key")?;

        // (h, t, nope) · (h, nope, rank) → (h, t, rank); with q_pe → (h, t, rank + rd) → (t, h, rank + rd)
        let q_abs = q_nope.squeeze(0).and_then(|q| q.contiguous()).and_then(|q| q.matmul(&self.w_uk)).ctx("q·W_uk")?;
        let q_pe = q_pe.squeeze(0).ctx("q_pe")?;
        let q_full = Tensor::cat(&[&q_abs, &q_pe], D::Minus1).and_then(|q| q.transpose(0, 1)).ctx("mla q")?;
        let params = AttnParams { heads: h, scale, softcap: None, window: None, alibi: None };
        // key (1, t, rank + rd) and latent (1, t, rank) are already (kv_heads = 1, t, dim).
        let out = kv.attend(layer, &q_full, &key, &latent, batch, &params)?;
        // (t, h · rank) → (h, t, rank) · (h, rank, vd) → (h, t, vd) → (1, t, h * vd)
        out.reshape((t, h, rank))
            .and_then(|o| o.transpose(0, 1))
            .and_then(|o| o.contiguous())
            .and_then(|o| o.matmul(&self.w_uv_t))
            .and_then(|o| o.transpose(0, 1))
            .and_then(|o| o.reshape((1, t, h * vd)))
            .ctx("mla output")
    }
}

//! Causal self-attention for every family: MHA/MQA/GQA, optional qkv bias, QK-norm (per head or
//! over the whole projection), sliding window, ALiBi and score softcapping. K/V come from the
//! paged cache ([`PagedKvCache`]) through each sequence's block table.

use candle_core::{DType, Tensor, D};

use super::batch::BatchMeta;
use super::kv_cache::PagedKvCache;
use super::linear::Linear;
use super::mla::Mla;
use super::norm::{LayerInput, Norm};
use super::rope::{Rope, RopeTables};
use crate::config::{AttentionConfig, QkNorm};
use crate::kernels::attention::AttnParams;
use crate::{Result, TensorContext};

pub enum QkvProj {
    Separate {
        q: Linear,
        k: Linear,
        v: Linear,
    },
    /// Output `[q | k | v]` along the feature dim.
    Fused(Linear),
    /// Multi-head latent attention (DeepSeek-V2/V3): the cache holds the compressed latent.
    Mla(Box<Mla>),
}

impl QkvProj {
    /// Separate q, k, v projections become one `[q | k | v]` projection where
    /// [`Linear::concat_outputs`] can join them (dense weights on a GPU: one launch, one stream
    /// over the weights; our CPU kernels' weights: one quantization, one dispatch); anything else
    /// is returned as it is.
    pub(super) fn fused(self) -> Self {
        let QkvProj::Separate { q, k, v } = self else { return self };
        match Linear::concat_outputs([q, k, v]) {
            Ok(qkv) => QkvProj::Fused(qkv),
            Err([q, k, v]) => QkvProj::Separate { q, k, v },
        }
    }
}

pub struct Attention {
    pub(super) qkv: QkvProj,
    pub(super) o: Linear,
    pub(super) q_norm: Option<Norm>,
    pub(super) k_norm: Option<Norm>,
    pub(super) cfg: AttentionConfig,
    pub(super) sliding_window: Option<usize>,
    /// ALiBi slopes, one per query head.
    pub(super) alibi_slopes: Option<Vec<f32>>,
}

impl Attention {
    /// `x`: (1, T, hidden), the batch's tokens one after another. Writes their K/V into `kv`
    /// and attends each to its own sequence through its block table. → (1, T, hidden), plus
    /// `residual` when given (added by the output projection's kernel where it can).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        x: LayerInput<'_>,
        residual: Option<&Tensor>,
        layer: usize,
        rope: Option<(&Rope, &RopeTables)>,
        batch: &BatchMeta,
        kv: &mut PagedKvCache,
    ) -> Result<Tensor> {
        let (LayerInput::Normed(input) | LayerInput::Folded(input, _)) = x;
        let (_, t, _) = input.dims3().ctx("attention input")?;
        if let QkvProj::Mla(m) = &self.qkv {
            let out = m.forward(&x.normed()?, layer, rope, batch, kv, self.cfg.scale)?;
            return self.o.forward_add(&out, residual);
        }
        let h = self.cfg.num_heads;
        let params = AttnParams {
            heads: h,
            scale: self.cfg.scale,
            softcap: self.cfg.softcap,
            window: self.sliding_window,
            alibi: self.alibi_slopes.as_deref(),
        };
        // A GPU pool takes the fused projection as it comes: one kernel rotates q and k and
        // writes k and v into the cache (no head-split copies, no separate rotary launches).
        if let (QkvProj::Fused(qkv), None, None, true) =
            (&self.qkv, &self.q_norm, &self.k_norm, input.device().is_cuda())
        {
            let y = qkv.forward_input(x)?;
            let packed = rope.map(|(r, tables)| {
                let (rot, interleaved) = r.rotary();
                crate::cuda::PackedRope { cos: &tables.cos, sin: &tables.sin, rot, interleaved }
            });
            if let Some(out) = kv.attend_packed(layer, &y, h, packed, batch, &params)? {
                let out = out.reshape((1, t, h * self.cfg.head_dim)).ctx("attention output")?;
                return self.o.forward_add(&out, residual);
            }
            let (q, k, v) = self.split(y, rope)?;
            return self.attend_split(q, k, v, residual, layer, batch, kv, &params);
        }
        let (q, k, v) = self.project(x, rope)?;
        self.attend_split(q, k, v, residual, layer, batch, kv, &params)
    }

    /// Attention over projected heads: q (1, h, T, d), k and v (1, kvh, T, d).
    #[allow(clippy::too_many_arguments)]
    fn attend_split(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        residual: Option<&Tensor>,
        layer: usize,
        batch: &BatchMeta,
        kv: &mut PagedKvCache,
        params: &AttnParams,
    ) -> Result<Tensor> {
        let h = self.cfg.num_heads;
        let t = q.dim(2).ctx("q rows")?;
        // q: (1, h, T, d) → (T, h, d); k, v: (1, kvh, T, d) → (kvh, T, d)
        let q = q.squeeze(0).and_then(|q| q.transpose(0, 1)).ctx("q rows")?;
        let (k, v) = (k.squeeze(0).ctx("k")?, v.squeeze(0).ctx("v")?);
        // (T, h * dv) → (1, T, h * dv)
        let out = kv.attend(layer, &q, &k, &v, batch, params)?.reshape((1, t, h * self.cfg.head_dim));
        self.o.forward_add(&out.ctx("attention output")?, residual)
    }

    /// Standard projections: q (b, h, t, d), k and v (b, kvh, t, d), normed and rotated.
    fn project(&self, x: LayerInput<'_>, rope: Option<(&Rope, &RopeTables)>) -> Result<(Tensor, Tensor, Tensor)> {
        match &self.qkv {
            QkvProj::Separate { q, k, v } => {
                let x = &x.normed()?;
                self.heads((q.forward(x)?, k.forward(x)?, v.forward(x)?), rope)
            }
            QkvProj::Fused(qkv) => self.split(qkv.forward_input(x)?, rope),
            QkvProj::Mla(_) => Err(crate::Error::config("attention", "MLA layers do not use standard projections")),
        }
    }

    /// [`Attention::project`] from the fused projection's output `[q | k | v]`.
    fn split(&self, y: Tensor, rope: Option<(&Rope, &RopeTables)>) -> Result<(Tensor, Tensor, Tensor)> {
        let (h, kvh, d) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        if y.device().is_cpu() && self.cfg.qk_norm != QkNorm::Full {
            // On the CPU the heads stay views of the projection's rows, (b, t, heads, d)
            // narrowed: rotary reads them in place and the cache copies what it keeps, where
            // reshaping a narrowed `[q | k | v]` would copy each part first (~2% of a 16-prompt
            // prefill's samples, on one core).
            let (b, t, _) = y.dims3().ctx("attention input")?;
            let y = y.reshape((b, t, h + 2 * kvh, d)).ctx("split heads")?;
            let q = y.narrow(2, 0, h).ctx("split q")?;
            let k = y.narrow(2, h, kvh).ctx("split k")?;
            let v = y.narrow(2, h + kvh, kvh).ctx("split v")?;
            return self.rotate((q, k, v), rope);
        }
        let q = y.narrow(D::Minus1, 0, h * d).ctx("split q")?;
        let k = y.narrow(D::Minus1, h * d, kvh * d).ctx("split k")?;
        let v = y.narrow(D::Minus1, (h + kvh) * d, kvh * d).ctx("split v")?;
        self.heads((q, k, v), rope)
    }

    /// Projections (b, seq, heads·d) → q (b, h, t, d), k and v (b, kvh, t, d), normed and rotated.
    fn heads(
        &self,
        qkv: (Tensor, Tensor, Tensor),
        rope: Option<(&Rope, &RopeTables)>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v) = qkv;
        let (b, t, _) = q.dims3().ctx("attention input")?;
        let (h, kvh, d) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        let (mut q, mut k) = (q, k);
        let full_norm = self.cfg.qk_norm == QkNorm::Full;
        if full_norm {
            // OLMo 2: over the whole (b, seq, heads*d) projection.
            if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
                q = qn.forward(&q)?;
                k = kn.forward(&k)?;
            }
        }
        // (b, seq, heads*d) → (b, seq, heads, d)
        let heads = |x: Tensor, n: usize| x.reshape((b, t, n, d)).ctx("split heads");
        self.rotate((heads(q, h)?, heads(k, kvh)?, heads(v, kvh)?), rope)
    }

    /// Heads (b, seq, heads, d) → q (b, h, t, d), k and v (b, kvh, t, d), with the per-head
    /// norms (unless over the whole projection, done before) and rotary applied.
    fn rotate(
        &self,
        qkv: (Tensor, Tensor, Tensor),
        rope: Option<(&Rope, &RopeTables)>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let full_norm = self.cfg.qk_norm == QkNorm::Full;
        let heads = |x: Tensor| x.transpose(1, 2).ctx("split heads");
        let (mut q, mut k, v) = (heads(qkv.0)?, heads(qkv.1)?, heads(qkv.2)?);
        if !full_norm {
            if let Some(n) = &self.q_norm {
                q = n.forward(&q)?;
            }
            if let Some(n) = &self.k_norm {
                k = n.forward(&k)?;
            }
        }
        if let Some((rope, tables)) = rope {
            q = rope.apply(&q, tables)?;
            k = rope.apply(&k, tables)?;
        }
        Ok((q, k, v))
    }
}

/// A tensor's values in row-major order, as f32.
pub(super) fn flat(x: &Tensor, what: &str) -> Result<Vec<f32>> {
    x.to_dtype(DType::F32).and_then(|x| x.flatten_all()).and_then(|x| x.to_vec1()).ctx(what)
}

/// Runs `f` over `x`'s values as f32, row-major: read in place when `x` is a contiguous f32 CPU
/// tensor (the queries and keys after rotary), through a [`flat`] copy otherwise.
pub(super) fn with_flat<R>(x: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if x.dtype() == DType::F32 && x.device().is_cpu() {
        let (storage, layout) = x.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&*storage, layout.contiguous_offsets()) {
            if let Ok(s) = cpu.as_slice::<f32>() {
                return Ok(f(&s[a..b]));
            }
        }
    }
    Ok(f(&flat(x, what)?))
}

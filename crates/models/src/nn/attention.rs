//! Causal self-attention for every family: MHA/MQA/GQA, optional qkv bias, QK-norm (per head or
//! over the whole projection), sliding window, ALiBi and score softcapping. K/V come from the
//! [`KvCache`].

use candle_core::{Device, Tensor, D};

use super::kv_cache::KvCache;
use super::linear::Linear;
use super::mla::Mla;
use super::norm::Norm;
use super::rope::{Rope, RopeTables};
use crate::config::{AttentionConfig, QkNorm};
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

pub struct Attention {
    pub(super) qkv: QkvProj,
    pub(super) o: Linear,
    pub(super) q_norm: Option<Norm>,
    pub(super) k_norm: Option<Norm>,
    pub(super) cfg: AttentionConfig,
    pub(super) sliding_window: Option<usize>,
    /// ALiBi slopes, one per query head, `(heads,)`.
    pub(super) alibi_slopes: Option<Tensor>,
}

impl Attention {
    /// `x`: (b, seq, hidden) for positions `cache.len()..cache.len() + seq`.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        rope: Option<(&Rope, &RopeTables)>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3().ctx("attention input")?;
        let h = self.cfg.num_heads;
        let start = cache.len();
        // q: (b, h, t, dq); k, v: (b, kvh, total, dq | dv) — everything the cache holds.
        let (q, k, v, kvh) = match &self.qkv {
            QkvProj::Mla(m) => {
                let (q, k, v) = m.forward(x, layer, rope, cache)?;
                (q, k, v, h)
            }
            _ => {
                let (mut q, k, v) = self.project(x, rope)?;
                if cache.dtype() != candle_core::DType::F32 {
                    // Same precision on both sides of q·k as the cache holds.
                    q = q.to_dtype(cache.dtype()).and_then(|q| q.to_dtype(candle_core::DType::F32)).ctx("q round")?;
                }
                let (k, v) = cache.append(layer, &k, &v.contiguous().ctx("v")?)?;
                (q, k, v, self.cfg.num_kv_heads)
            }
        };
        let total = start + t;
        let (dq, dv) = (q.dim(D::Minus1).ctx("q dim")?, v.dim(D::Minus1).ctx("v dim")?);

        // GQA without copying K/V: fold each kv head's query group into the row dim.
        // q: (b, h, t, d) → (b, kvh, rep * t, d); rows ordered (rep, t).
        let rep = h / kvh;
        let q = q.contiguous().and_then(|q| q.reshape((b, kvh, rep * t, dq))).ctx("group q")?;
        // (b, kvh, rep * t, total)
        let mut scores = (q.matmul(&k.t().ctx("kᵀ")?).ctx("q·kᵀ")? * self.cfg.scale as f64).ctx("scale")?;
        if let Some(slopes) = &self.alibi_slopes {
            // BLOOM adds slope·j for key position j; constant per query row, so softmax sees
            // the same thing as slope·(j - i). Shape (1, kvh, rep, 1, total) over (rep, t) rows.
            let pos = Tensor::arange(0u32, total as u32, x.device())
                .and_then(|p| p.to_dtype(candle_core::DType::F32))
                .ctx("alibi positions")?;
            let bias = slopes
                .reshape((kvh, rep, 1, 1))
                .and_then(|s| s.broadcast_mul(&pos.reshape((1, 1, 1, total))?))
                .and_then(|bias| bias.broadcast_as((kvh, rep, t, total)))
                .and_then(|bias| bias.reshape((1, kvh, rep * t, total)))
                .ctx("alibi bias")?;
            scores = scores.broadcast_add(&bias).ctx("alibi")?;
        }
        if let Some(cap) = self.cfg.softcap {
            scores = ((scores / cap as f64).ctx("softcap")?.tanh().ctx("softcap")? * cap as f64).ctx("softcap")?;
        }
        if let Some(mask) = causal_mask(start, t, total, self.sliding_window, rep, x.device())? {
            scores = scores.broadcast_add(&mask).ctx("mask")?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores).ctx("softmax")?;
        // (b, kvh, rep * t, dv) → (b, h, t, dv) → (b, t, h * dv)
        let out = probs
            .matmul(&v)
            .and_then(|o| o.reshape((b, h, t, dv)))
            .and_then(|o| o.transpose(1, 2))
            .and_then(|o| o.reshape((b, t, h * dv)))
            .ctx("attention output")?;
        self.o.forward(&out)
    }

    /// Standard projections: q (b, h, t, d), k and v (b, kvh, t, d), normed and rotated.
    fn project(&self, x: &Tensor, rope: Option<(&Rope, &RopeTables)>) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3().ctx("attention input")?;
        let (h, kvh, d) = (self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim);
        let (q, k, v) = match &self.qkv {
            QkvProj::Separate { q, k, v } => (q.forward(x)?, k.forward(x)?, v.forward(x)?),
            QkvProj::Fused(qkv) => {
                let y = qkv.forward(x)?;
                (
                    y.narrow(D::Minus1, 0, h * d).ctx("split q")?,
                    y.narrow(D::Minus1, h * d, kvh * d).ctx("split k")?,
                    y.narrow(D::Minus1, (h + kvh) * d, kvh * d).ctx("split v")?,
                )
            }
            QkvProj::Mla(_) => {
                return Err(crate::Error::config("attention", "MLA layers do not use standard projections"))
            }
        };
        let (mut q, mut k) = (q, k);
        let full_norm = self.cfg.qk_norm == QkNorm::Full;
        if full_norm {
            // OLMo 2: over the whole (b, seq, heads*d) projection.
            if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
                q = qn.forward(&q)?;
                k = kn.forward(&k)?;
            }
        }
        // (b, seq, heads*d) → (b, heads, seq, d)
        let heads = |x: Tensor, n: usize| -> Result<Tensor> {
            x.reshape((b, t, n, d)).and_then(|x| x.transpose(1, 2)).ctx("split heads")
        };
        let (mut q, mut k, v) = (heads(q, h)?, heads(k, kvh)?, heads(v, kvh)?);
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

/// Additive mask `(rep * t, total)` with `-inf` where query `start + i` may not see key `j`:
/// `j > start + i` (future) or `start + i - j >= window` (outside the sliding window).
/// `None` when nothing is masked (a single decode token inside the window).
fn causal_mask(
    start: usize,
    t: usize,
    total: usize,
    window: Option<usize>,
    rep: usize,
    device: &Device,
) -> Result<Option<Tensor>> {
    let window = window.unwrap_or(usize::MAX);
    if t == 1 && total <= window {
        return Ok(None);
    }
    let mut m = vec![0f32; t * total];
    for i in 0..t {
        let qpos = start + i;
        for j in 0..total {
            if j > qpos || qpos - j >= window {
                m[i * total + j] = f32::NEG_INFINITY;
            }
        }
    }
    let mask = Tensor::from_vec(m, (t, total), device).ctx("mask")?;
    let mask = if rep > 1 { Tensor::cat(&vec![&mask; rep], 0).ctx("mask repeat")? } else { mask };
    Ok(Some(mask))
}

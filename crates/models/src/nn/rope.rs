//! Rotary position embedding at run time: cos/sin for a span of positions, applied to q and k.

use candle_core::{Device, Tensor, D};

use crate::config::RopeConfig;
use crate::kernels::fused;
use crate::{Result, TensorContext};

pub struct Rope {
    cfg: RopeConfig,
    /// `inv_freq` for schemes that do not depend on the sequence length.
    fixed_inv_freq: Option<Vec<f32>>,
}

/// cos and sin, each `(seq, rotary_dim / 2)`, already multiplied by the attention factor.
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope {
    pub fn new(cfg: RopeConfig) -> Self {
        let fixed_inv_freq = (!cfg.is_dynamic()).then(|| cfg.inv_freq(0));
        Self { cfg, fixed_inv_freq }
    }

    /// Tables for positions `start..start + len`; `total_len` (usually `start + len`) selects the
    /// dynamic-NTK base or the longrope factor set.
    pub fn tables(&self, start: usize, len: usize, total_len: usize, device: &Device) -> Result<RopeTables> {
        self.tables_for(&[(start, len, total_len)], device)
    }

    /// Tables for several spans `(start, len, total_len)` one after another: the rows of a batch
    /// that mixes sequences at different positions.
    pub fn tables_for(&self, spans: &[(usize, usize, usize)], device: &Device) -> Result<RopeTables> {
        let (cos, sin) = self.host_tables(spans);
        let rows: usize = spans.iter().map(|s| s.1).sum();
        let half = cos.len() / rows.max(1);
        Ok(RopeTables {
            cos: Tensor::from_vec(cos, (rows, half), device).ctx("rope cos")?,
            sin: Tensor::from_vec(sin, (rows, half), device).ctx("rope sin")?,
        })
    }

    /// Rotated dims per head / 2: the width of a table row.
    pub fn half(&self) -> usize {
        self.cfg.rotary_dim / 2
    }

    /// [`Rope::tables_for`]'s values on the host, row after row: `(cos, sin)`.
    pub fn host_tables(&self, spans: &[(usize, usize, usize)]) -> (Vec<f32>, Vec<f32>) {
        let rows: usize = spans.iter().map(|s| s.1).sum();
        let scale = self.cfg.attention_factor() as f32;
        let mut cos = Vec::with_capacity(rows * self.cfg.rotary_dim / 2);
        let mut sin = Vec::with_capacity(rows * self.cfg.rotary_dim / 2);
        for &(start, len, total_len) in spans {
            let dynamic;
            let inv_freq = match &self.fixed_inv_freq {
                Some(f) => f,
                None => {
                    dynamic = self.cfg.inv_freq(total_len);
                    &dynamic
                }
            };
            for p in start..start + len {
                for f in inv_freq {
                    // Same f32 product as transformers' `inv_freq @ position_ids.float()`.
                    let angle = p as f32 * f;
                    cos.push(angle.cos() * scale);
                    sin.push(angle.sin() * scale);
                }
            }
        }
        (cos, sin)
    }

    /// Rotated dims per head, and whether they pair as (2j, 2j + 1) rather than (j, j + rot/2).
    pub fn rotary(&self) -> (usize, bool) {
        (self.cfg.rotary_dim, self.cfg.interleaved)
    }

    /// `x`: (b, heads, seq, head_dim); rotates the leading `rotary_dim` dims of each head.
    pub fn apply(&self, x: &Tensor, t: &RopeTables) -> Result<Tensor> {
        let head_dim = x.dim(D::Minus1).ctx("rope")?;
        let rot = self.cfg.rotary_dim;
        let rotate = |x: &Tensor| -> Result<Tensor> {
            if let Some(y) = fused::rope(x, &t.cos, &t.sin, self.cfg.interleaved) {
                return y;
            }
            let x = x.contiguous().ctx("rope input")?;
            if self.cfg.interleaved {
                candle_nn::rotary_emb::rope_i(&x, &t.cos, &t.sin).ctx("rope_i")
            } else {
                candle_nn::rotary_emb::rope(&x, &t.cos, &t.sin).ctx("rope")
            }
        };
        if rot == head_dim {
            return rotate(x);
        }
        // Partial rotary (Phi-3.5, GPT-NeoX style): only the first `rot` dims turn.
        let rotated = rotate(&x.narrow(D::Minus1, 0, rot).ctx("rope narrow")?)?;
        let pass = x.narrow(D::Minus1, rot, head_dim - rot).ctx("rope narrow")?;
        Tensor::cat(&[&rotated, &pass], D::Minus1).ctx("rope cat")
    }
}

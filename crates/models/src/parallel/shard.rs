//! Which slice of each weight a rank holds, cut at load time from the full tensors the loaders
//! return (each rank reads only the tensors it needs and keeps only its slice).
//!
//! - Column-parallel (output features split): q/k/v by heads, gate/up by intermediate features,
//!   the untied LM head by vocabulary rows. No communication after them.
//! - Row-parallel (input features split): o_proj and down_proj. Each rank's output is a partial
//!   sum; the layer all-reduces it. Their bias is added by rank 0 only.
//! - Replicated: norms, routers, rotary tables.
//!
//! Dense weights only: block-quantized (GGUF, `--quantize int8`) and AWQ/GPTQ layers are refused
//! with an error naming the tensor, since their blocks would have to be cut on block boundaries.

use std::ops::Range;

use candle_core::quantized::QMatMul;
use candle_core::{Tensor, D};

use super::TensorParallel;
use crate::config::{ModelConfig, QkNorm, QkvNames, WeightNames};
use crate::loader::WeightData;
use crate::nn::build::Builder;
use crate::nn::Linear;
use crate::{Error, Result, TensorContext};

/// This process's place in a tensor-parallel world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// The whole model on one rank.
    pub const SINGLE: Shard = Shard { rank: 0, world: 1 };

    pub fn is_single(self) -> bool {
        self.world == 1
    }

    /// This rank's contiguous part of `0..n` when `n` divides evenly, else an error naming `what`.
    pub fn even_part(self, n: usize, what: &str) -> Result<Range<usize>> {
        if !n.is_multiple_of(self.world) {
            return Err(Error::config(
                what,
                format!("{n} does not divide over a tensor-parallel size of {}", self.world),
            ));
        }
        let per = n / self.world;
        Ok(self.rank * per..(self.rank + 1) * per)
    }

    /// This rank's part of `0..n` in contiguous pieces of `ceil(n / world)` (the last ranks may
    /// get fewer, or none): for experts and vocabulary rows, which need not divide evenly.
    pub fn ceil_part(self, n: usize) -> Range<usize> {
        let per = n.div_ceil(self.world);
        (self.rank * per).min(n)..((self.rank + 1) * per).min(n)
    }
}

/// The query and KV heads a rank attends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heads {
    pub q: Range<usize>,
    pub kv: Range<usize>,
}

impl Heads {
    /// Query heads split evenly. KV heads split evenly too when they divide; with fewer KV heads
    /// than ranks (GQA/MQA at a large world) each rank holds the one KV head its query heads
    /// share, replicated across the ranks of that group, as vLLM does. Anything else (e.g. 6
    /// KV heads over 4 ranks) would put one rank's query heads in two groups, half of another
    /// group's: an error.
    pub fn of(shard: Shard, heads: usize, kv_heads: usize) -> Result<Heads> {
        let q = shard.even_part(heads, "num_attention_heads")?;
        let w = shard.world;
        let kv = if kv_heads.is_multiple_of(w) {
            shard.even_part(kv_heads, "num_key_value_heads")?
        } else if w.is_multiple_of(kv_heads) {
            let kv = shard.rank / (w / kv_heads);
            kv..kv + 1
        } else {
            return Err(Error::config(
                "num_key_value_heads",
                format!("{kv_heads} KV heads over a tensor-parallel size of {w}: one must divide the other"),
            ));
        };
        Ok(Heads { q, kv })
    }
}

/// How a linear weight `(out, in)` is cut for this rank.
#[derive(Debug, Clone)]
pub enum Cut {
    /// Replicated.
    Whole,
    /// Column-parallel: these output-feature ranges, concatenated (a fused `[q | k | v]` or
    /// `[gate | up]` projection keeps one range per part).
    Out(Vec<Range<usize>>),
    /// Row-parallel: this input-feature range; the bias goes to rank 0 only.
    In(Range<usize>),
}

impl Cut {
    /// Output features after the cut, of `out` in all.
    fn out_features(&self, out: usize) -> usize {
        match self {
            Cut::Out(parts) => parts.iter().map(|r| r.len()).sum(),
            _ => out,
        }
    }
}

/// `prefix.weight` (and `prefix.bias`) as [`Builder::linear`] loads them, cut for `shard`.
/// The full shapes are checked first, so a wrong checkpoint names the tensor as unsharded.
pub fn linear(
    b: &Builder,
    shard: Shard,
    prefix: &str,
    full: (usize, usize),
    bias: bool,
    tr: bool,
    cut: Cut,
) -> Result<Linear> {
    let (out, inp) = full;
    if shard.is_single() || matches!(cut, Cut::Whole) {
        return b.linear(prefix, out, inp, bias, tr);
    }
    let name = format!("{prefix}.weight");
    if b.weights.int4_linear(&name)?.is_some() {
        return Err(quantized(&name, "AWQ/GPTQ 4-bit"));
    }
    let w = if tr {
        b.tensor(&name, &[inp, out])?.t().and_then(|t| t.contiguous()).ctx(format!("{name}: transpose"))?
    } else {
        match b.raw(&name, &[out, inp])? {
            WeightData::Dense(t) => t,
            WeightData::Quantized(q) => return Err(quantized(&name, &format!("{:?}", q.dtype()))),
        }
    };
    let w = cut_dim(&w, 0, &cut, &name)?;
    let w = match &cut {
        Cut::In(r) => w.narrow(1, r.start, r.len()).and_then(|t| t.contiguous()).ctx(format!("{name}: columns"))?,
        _ => w,
    };
    let bias = if !bias || matches!(cut, Cut::In(_)) && shard.rank != 0 {
        None
    } else {
        let bname = format!("{prefix}.bias");
        Some(cut_dim(&b.tensor(&bname, &[out])?, 0, &cut, &bname)?)
    };
    Ok(Linear::new(QMatMul::Tensor(w), bias, cut.out_features(out)))
}

/// Rows `ranges` of `t` along `dim` (only for [`Cut::Out`]), in a fresh allocation: a view would
/// keep the whole tensor alive.
fn cut_dim(t: &Tensor, dim: usize, cut: &Cut, name: &str) -> Result<Tensor> {
    let Cut::Out(parts) = cut else { return Ok(t.clone()) };
    let pieces = parts.iter().map(|r| t.narrow(dim, r.start, r.len())).collect::<candle_core::Result<Vec<_>>>();
    let joined = pieces.and_then(|p| if p.len() == 1 { p[0].copy() } else { Tensor::cat(&p, dim) });
    joined.ctx(format!("{name}: rows for this rank"))
}

fn quantized(name: &str, what: &str) -> Error {
    Error::config(
        "tensor_parallel_size",
        format!(
            "`{name}` is {what}-quantized; tensor parallelism cuts dense weights only (load an unquantized checkpoint)"
        ),
    )
}

/// Refuses what the sharding does not cover, before any tensor is read: MLA (DeepSeek-V2/V3
/// attention; its latent cache would have to be replicated), BLOOM's per-head fused qkv, and
/// OLMo 2's QK-norm over the whole projection (it needs every head's features).
pub fn check_supported(cfg: &ModelConfig, names: &WeightNames) -> Result<()> {
    let no = |what: &str| {
        Err(Error::config("tensor_parallel_size", format!("{what} ({}) is not split across ranks yet", cfg.family)))
    };
    if cfg.attention.mla.is_some() {
        return no("multi-head latent attention");
    }
    if matches!(names.qkv, QkvNames::FusedPerHead(_)) {
        return no("a per-head fused qkv projection");
    }
    if cfg.attention.qk_norm == QkNorm::Full {
        return no("QK-norm over the whole projection");
    }
    Ok(())
}

/// An untied LM head: this rank's vocabulary rows, zero-padded to the per-rank count.
pub(crate) fn lm_head(
    b: &Builder,
    tp: Option<&TensorParallel>,
    prefix: &str,
    vocab: usize,
    hidden: usize,
) -> Result<Linear> {
    let Some(tp) = tp else { return b.linear(prefix, vocab, hidden, false, false) };
    let name = format!("{prefix}.weight");
    let w = match b.raw(&name, &[vocab, hidden])? {
        WeightData::Dense(t) => t,
        WeightData::Quantized(q) => return Err(quantized(&name, &format!("{:?}", q.dtype()))),
    };
    let (rows, per) = tp.vocab_rows();
    Ok(Linear::new(QMatMul::Tensor(rows_padded(&w, rows, per, &name)?), None, per))
}

/// Rows `rows` of a `(n, cols)` table, zero-padded to `len` rows (vocabulary shards all have
/// one size so the logits gather is uniform).
pub fn rows_padded(t: &Tensor, rows: Range<usize>, len: usize, what: &str) -> Result<Tensor> {
    let part = t.narrow(0, rows.start, rows.len()).and_then(|p| p.copy()).ctx(format!("{what}: vocabulary rows"))?;
    if rows.len() == len {
        return Ok(part);
    }
    let pad = Tensor::zeros((len - rows.len(), t.dim(D::Minus1)?), t.dtype(), t.device()).ctx("pad")?;
    Tensor::cat(&[part, pad], 0).ctx(format!("{what}: pad vocabulary rows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rank: usize, world: usize) -> Shard {
        Shard { rank, world }
    }

    #[test]
    fn kv_heads_split_or_replicate() {
        // 8 heads, 4 KV heads, 2 ranks: an even split.
        assert_eq!(Heads::of(s(1, 2), 8, 4).unwrap(), Heads { q: 4..8, kv: 2..4 });
        // 4 heads, 2 KV heads, 4 ranks: each KV head on two ranks, with the query head of its group.
        let got: Vec<_> = (0..4).map(|r| Heads::of(s(r, 4), 4, 2).unwrap()).collect();
        assert_eq!(got.iter().map(|h| h.kv.clone()).collect::<Vec<_>>(), [0..1, 0..1, 1..2, 1..2]);
        assert_eq!(got[3].q, 3..4);
        // MQA: the single KV head everywhere.
        assert_eq!(Heads::of(s(3, 4), 8, 1).unwrap().kv, 0..1);
        let err = Heads::of(s(0, 4), 12, 6).unwrap_err().to_string();
        assert!(err.contains("6 KV heads over a tensor-parallel size of 4"), "{err}");
        let err = Heads::of(s(0, 4), 6, 6).unwrap_err().to_string();
        assert!(err.contains("num_attention_heads") && err.contains("6 does not divide"), "{err}");
    }

    #[test]
    fn ceil_parts_cover_everything_once() {
        for (n, w) in [(256, 4), (10, 4), (3, 4), (7, 1)] {
            let parts: Vec<_> = (0..w).flat_map(|r| s(r, w).ceil_part(n)).collect();
            assert_eq!(parts, (0..n).collect::<Vec<_>>(), "n {n} world {w}");
        }
    }
}

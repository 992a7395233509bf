//! The decoder: embeddings → layers → final norm → head.

use candle_core::quantized::QMatMul;
use candle_core::{Device, Tensor};

use super::attention::{Attention, QkvProj};
use super::build::Builder;
use super::kv_cache::KvCache;
use super::layer::DecoderLayer;
use super::linear::Linear;
use super::mlp::{GateUp, Mlp};
use super::norm::Norm;
use super::rope::Rope;
use crate::config::names::layer as at;
use crate::config::{GateUpNames, ModelConfig, PositionEncoding, QkvNames, WeightNames};
use crate::loader::{WeightData, Weights};
use crate::{Error, Result, TensorContext};

/// Which positions get logits: all (scoring, prompt logprobs) or only the last (generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    All,
    Last,
}

pub struct Model {
    cfg: ModelConfig,
    /// (vocab, hidden), f32
    embed: Tensor,
    /// (max_positions, hidden), f32 — learned absolute positions (GPT-2).
    position_embed: Option<Tensor>,
    layers: Vec<DecoderLayer>,
    final_norm: Norm,
    lm_head: Linear,
    rope: Option<Rope>,
    device: Device,
}

impl Model {
    pub fn load(cfg: ModelConfig, names: &WeightNames, weights: &dyn Weights, device: &Device) -> Result<Self> {
        let b = Builder { weights, device };
        let (hidden, vocab) = (cfg.hidden_size, cfg.vocab_size);
        let embed_raw = b.raw(&names.embed, &[vocab, hidden])?;
        let embed = embed_raw.to_dense(device)?;
        let lm_head = match &names.lm_head {
            Some(name) => {
                let prefix = name.strip_suffix(".weight").unwrap_or(name);
                b.linear(prefix, vocab, hidden, false, false)?
            }
            // Tied: a quantized embedding stays quantized for the head matmul, as in llama.cpp.
            None => Linear::new(
                match embed_raw {
                    WeightData::Quantized(q) => QMatMul::from_arc(q)?,
                    WeightData::Dense(t) => QMatMul::Tensor(t),
                },
                None,
                vocab,
            ),
        };
        let position_embed = match (&cfg.position, &names.position_embed) {
            (PositionEncoding::Learned, Some(name)) => Some(b.tensor(name, &[cfg.max_position_embeddings, hidden])?),
            (PositionEncoding::Learned, None) => {
                return Err(Error::config("position_embed", "learned positions need a position embedding tensor"))
            }
            _ => None,
        };
        let layers = (0..cfg.num_layers).map(|i| load_layer(&b, &cfg, names, i)).collect::<Result<Vec<_>>>()?;
        let final_norm = b.norm(&names.final_norm, hidden, &cfg.norm)?;
        let rope = match &cfg.position {
            PositionEncoding::Rope(r) => Some(Rope::new(r.clone())),
            _ => None,
        };
        Ok(Self { cfg, embed, position_embed, layers, final_norm, lm_head, rope, device: device.clone() })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_layers)
    }

    /// Runs `tokens` (positions `cache.len()..`) through the model, appending to `cache`.
    /// Returns f32 logits `(n, vocab)`: `n = tokens.len()` for [`LogitsFor::All`], 1 for `Last`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, which: LogitsFor) -> Result<Tensor> {
        let t = tokens.len();
        if t == 0 {
            return Err(Error::config("tokens", "forward needs at least one token"));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
            return Err(Error::config("tokens", format!("token id {bad} >= vocab_size {}", self.cfg.vocab_size)));
        }
        let start = cache.len();
        let ids = Tensor::new(tokens, &self.device).ctx("token ids")?;
        // (t, hidden) → (1, t, hidden)
        let mut x = self.embed.index_select(&ids, 0).ctx("embedding")?;
        if let Some(s) = self.cfg.embedding_scale {
            x = (x * s as f64).ctx("embedding scale")?;
        }
        if let Some(pe) = &self.position_embed {
            if start + t > self.cfg.max_position_embeddings {
                return Err(Error::config(
                    "max_position_embeddings",
                    format!("sequence of {} tokens exceeds the model's {} learned positions", start + t, self.cfg.max_position_embeddings),
                ));
            }
            x = (x + pe.narrow(0, start, t).ctx("positions")?).ctx("add positions")?;
        }
        let mut x = x.unsqueeze(0).ctx("batch dim")?;
        let tables = match &self.rope {
            Some(r) => Some(r.tables(start, t, start + t, &self.device)?),
            None => None,
        };
        let rope = self.rope.as_ref().zip(tables.as_ref());
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, i, rope, cache)?;
        }
        cache.advance();
        if which == LogitsFor::Last {
            x = x.narrow(1, t - 1, 1).ctx("last position")?;
        }
        let x = self.final_norm.forward(&x)?;
        let mut logits = self.lm_head.forward(&x)?.squeeze(0).ctx("logits")?;
        if let Some(cap) = self.cfg.final_logit_softcap {
            logits = ((logits / cap as f64).and_then(|l| l.tanh()).and_then(|l| l * cap as f64)).ctx("final softcap")?;
        }
        Ok(logits)
    }
}

fn load_layer(b: &Builder, cfg: &ModelConfig, n: &WeightNames, i: usize) -> Result<DecoderLayer> {
    let a = &cfg.attention;
    let hidden = cfg.hidden_size;
    let (q_dim, kv_dim) = (a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim);
    let tr = n.transposed;
    let qkv = match &n.qkv {
        QkvNames::Separate { q, k, v } => QkvProj::Separate {
            q: b.linear(&at(q, i), q_dim, hidden, a.qkv_bias, tr)?,
            k: b.linear(&at(k, i), kv_dim, hidden, a.qkv_bias, tr)?,
            v: b.linear(&at(v, i), kv_dim, hidden, a.qkv_bias, tr)?,
        },
        QkvNames::Fused(name) => QkvProj::Fused(b.linear(&at(name, i), q_dim + 2 * kv_dim, hidden, a.qkv_bias, tr)?),
    };
    let head_norm = |name: &Option<String>| -> Result<Option<Norm>> {
        match (a.qk_norm, name) {
            (true, Some(name)) => Ok(Some(b.norm(&at(name, i), a.head_dim, &cfg.norm)?)),
            (true, None) => Err(Error::config("qk_norm", "enabled but the family maps no q/k norm tensors")),
            (false, _) => Ok(None),
        }
    };
    let attn = Attention {
        qkv,
        o: b.linear(&at(&n.o, i), hidden, q_dim, a.out_bias, tr)?,
        q_norm: head_norm(&n.q_norm)?,
        k_norm: head_norm(&n.k_norm)?,
        cfg: a.clone(),
        sliding_window: cfg.layers[i].sliding_window,
    };
    let m = &cfg.mlp;
    let ff = m.intermediate_size;
    let gate_up = match &n.gate_up {
        GateUpNames::Separate { gate, up } => GateUp::Separate {
            gate: b.linear(&at(gate, i), ff, hidden, m.bias, tr)?,
            up: b.linear(&at(up, i), ff, hidden, m.bias, tr)?,
        },
        GateUpNames::Fused(name) => GateUp::Fused(b.linear(&at(name, i), 2 * ff, hidden, m.bias, tr)?),
        GateUpNames::UpOnly(name) => GateUp::UpOnly(b.linear(&at(name, i), ff, hidden, m.bias, tr)?),
    };
    let sandwich = |name: &Option<String>| -> Result<Option<Norm>> {
        name.as_ref().map(|name| b.norm(&at(name, i), hidden, &cfg.norm)).transpose()
    };
    Ok(DecoderLayer {
        attn_norm: b.norm(&at(&n.attn_norm, i), hidden, &cfg.norm)?,
        attn,
        post_attn_norm: sandwich(&n.post_attn_norm)?,
        ffn_norm: b.norm(&at(&n.ffn_norm, i), hidden, &cfg.norm)?,
        mlp: Mlp { gate_up, down: b.linear(&at(&n.down, i), hidden, ff, m.bias, tr)?, activation: m.activation },
        post_ffn_norm: sandwich(&n.post_ffn_norm)?,
    })
}

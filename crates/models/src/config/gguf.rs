//! GGUF metadata → [`ModelConfig`] + [`WeightNames`], following llama.cpp's key names
//! (`{arch}.embedding_length`, `{arch}.attention.head_count`, ...).
//!
//! Differences from the HF mappings that come from llama.cpp's converter, not from the models:
//! - llama-arch GGUFs store q/k rows permuted for GPT-J style (interleaved) rope;
//! - Gemma norms are stored with the `+1` already added;
//! - GPT-2's Conv1D weights are stored transposed to the usual `(out, in)`;
//! - llama3-style rope scaling is baked into a `rope_freqs.weight` tensor of per-frequency
//!   divisors, which we express as longrope with one factor list.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use super::names::{GateUpNames, QkvNames, WeightNames};
use super::*;
use crate::{Error, Result};

pub const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "gpt2"];

/// Typed access to GGUF metadata with errors that name the key and the file.
pub struct Meta<'a> {
    pub map: &'a HashMap<String, Value>,
    pub path: &'a Path,
}

impl<'a> Meta<'a> {
    fn bad(&self, key: &str, msg: String) -> Error {
        Error::bad_file(self.path, format!("GGUF metadata `{key}`: {msg}"))
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.map.get(key) else { return Ok(None) };
        let n = match v {
            Value::U8(x) => *x as i128,
            Value::I8(x) => *x as i128,
            Value::U16(x) => *x as i128,
            Value::I16(x) => *x as i128,
            Value::U32(x) => *x as i128,
            Value::I32(x) => *x as i128,
            Value::U64(x) => *x as i128,
            Value::I64(x) => *x as i128,
            other => return Err(self.bad(key, format!("expected an integer, found {:?}", other.value_type()))),
        };
        u64::try_from(n).map(Some).map_err(|_| self.bad(key, format!("must be >= 0, got {n}")))
    }

    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        Ok(self.u64_opt(key)?.map(|v| v as usize))
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?.ok_or_else(|| self.bad(key, "required but missing".into()))
    }

    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        Ok(match self.map.get(key) {
            None => None,
            Some(Value::F32(x)) => Some(*x as f64),
            Some(Value::F64(x)) => Some(*x),
            Some(_) => self.u64_opt(key)?.map(|x| x as f64),
        })
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.bad(key, format!("expected a string, found {:?}", other.value_type()))),
        }
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.bad(key, format!("expected a bool, found {:?}", other.value_type()))),
        }
    }
}

/// Maps GGUF metadata onto the decoder. `has_tensor` tells which optional tensors exist;
/// `rope_factors` reads a small f32 tensor (`rope_freqs.weight`, phi3's `rope_factors_*`).
pub fn from_gguf_metadata(
    meta: &Meta,
    has_tensor: &dyn Fn(&str) -> bool,
    rope_factors: &dyn Fn(&str) -> Result<Vec<f32>>,
) -> Result<(ModelConfig, WeightNames)> {
    let arch = meta
        .str_opt("general.architecture")?
        .ok_or_else(|| Error::bad_file(meta.path, "GGUF metadata `general.architecture` is missing"))?
        .to_string();
    if !SUPPORTED.contains(&arch.as_str()) {
        return Err(Error::UnknownArchitecture { arch, supported: SUPPORTED.join(", ") });
    }
    let k = |s: &str| format!("{arch}.{s}");
    let is = |a: &str| arch == a;

    let hidden = meta.usize(&k("embedding_length"))?;
    let num_layers = check_num_layers(&k("block_count"), meta.usize(&k("block_count"))?)
        .map_err(|e| Error::bad_file(meta.path, e.to_string()))?;
    let num_heads = meta.usize(&k("attention.head_count"))?;
    if num_heads == 0 {
        return Err(Error::bad_file(meta.path, format!("GGUF metadata `{}`: must be > 0", k("attention.head_count"))));
    }
    let num_kv_heads = meta.usize_opt(&k("attention.head_count_kv"))?.unwrap_or(num_heads);
    let head_dim = meta.usize_opt(&k("attention.key_length"))?.unwrap_or(hidden / num_heads);
    let ctx = meta.usize_opt(&k("context_length"))?.unwrap_or(2048);
    let ff = meta.usize(&k("feed_forward_length"))?;
    let vocab = match meta.usize_opt(&k("vocab_size"))? {
        Some(v) => v,
        None => match meta.get("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => a.len(),
            _ => {
                return Err(Error::bad_file(
                    meta.path,
                    format!("GGUF has neither `{arch}.vocab_size` nor `tokenizer.ggml.tokens`"),
                ))
            }
        },
    };

    let names = gguf_names(&arch, has_tensor);
    let position = if is("gpt2") {
        PositionEncoding::Learned
    } else {
        let theta = meta.f64_opt(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        let rotary_dim = meta.usize_opt(&k("rope.dimension_count"))?.unwrap_or(head_dim);
        let orig = meta.usize_opt(&k("rope.scaling.original_context_length"))?;
        let scaling = match meta.str_opt(&k("rope.scaling.type"))? {
            Some("linear") => RopeScaling::Linear { factor: meta.f64_opt(&k("rope.scaling.factor"))?.unwrap_or(1.0) },
            Some("yarn") => {
                let factor = meta.f64_opt(&k("rope.scaling.factor"))?.unwrap_or(1.0);
                RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: orig.unwrap_or(ctx),
                    beta_fast: meta.f64_opt(&k("rope.scaling.yarn_beta_fast"))?.unwrap_or(32.0),
                    beta_slow: meta.f64_opt(&k("rope.scaling.yarn_beta_slow"))?.unwrap_or(1.0),
                    attention_factor: meta.f64_opt(&k("rope.scaling.attn_factor"))?.unwrap_or(if factor <= 1.0 {
                        1.0
                    } else {
                        0.1 * factor.ln() + 1.0
                    }),
                    truncate: true,
                }
            }
            Some("none") | None => {
                if has_tensor("rope_factors_long.weight") && has_tensor("rope_factors_short.weight") {
                    let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
                    let orig = orig.unwrap_or(ctx);
                    let factor = ctx as f64 / orig as f64;
                    RopeScaling::LongRope {
                        short_factor: to64(rope_factors("rope_factors_short.weight")?),
                        long_factor: to64(rope_factors("rope_factors_long.weight")?),
                        original_max_position_embeddings: orig,
                        attention_factor: meta.f64_opt(&k("rope.scaling.attn_factor"))?.unwrap_or(if factor <= 1.0 {
                            1.0
                        } else {
                            (1.0 + factor.ln() / (orig as f64).ln()).sqrt()
                        }),
                    }
                } else if has_tensor("rope_freqs.weight") {
                    let f: Vec<f64> = rope_factors("rope_freqs.weight")?.into_iter().map(f64::from).collect();
                    RopeScaling::LongRope {
                        short_factor: f.clone(),
                        long_factor: f,
                        original_max_position_embeddings: ctx,
                        attention_factor: 1.0,
                    }
                } else {
                    RopeScaling::None
                }
            }
            Some(other) => {
                return Err(Error::bad_file(
                    meta.path,
                    format!("GGUF metadata `{}`: unsupported rope scaling `{other}`", k("rope.scaling.type")),
                ))
            }
        };
        PositionEncoding::Rope(RopeConfig { theta, rotary_dim, interleaved: is("llama"), scaling })
    };

    let sliding = meta.usize_opt(&k("attention.sliding_window"))?;
    let layers = (0..num_layers)
        .map(|i| LayerSpec {
            sliding_window: match arch.as_str() {
                "gemma2" => sliding.filter(|_| i % 2 == 0),
                "llama" | "mistral" | "phi3" => sliding,
                _ => None,
            },
            rope: LayerRope::Main,
            moe: false,
        })
        .collect();

    let eps_key = if is("gpt2") { "attention.layer_norm_epsilon" } else { "attention.layer_norm_rms_epsilon" };
    let eps = meta.f64_opt(&k(eps_key))?.unwrap_or(1e-5);
    let token_ids = |key: &str| meta.u64_opt(key).map(|v| v.map(|x| x as u32));
    let eos_ids = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
        .iter()
        .map(|key| token_ids(key))
        .collect::<Result<Vec<_>>>()?;
    let mut eos_token_ids: Vec<u32> = Vec::new();
    for id in eos_ids.into_iter().flatten() {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }

    let cfg = ModelConfig {
        family: arch.clone(),
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers,
        max_position_embeddings: ctx,
        attention: AttentionConfig {
            num_heads,
            num_kv_heads,
            head_dim,
            qkv_bias: has_tensor("blk.0.attn_q.bias") || has_tensor("blk.0.attn_qkv.bias"),
            out_bias: has_tensor("blk.0.attn_output.bias"),
            qk_norm: if has_tensor("blk.0.attn_q_norm.weight") { QkNorm::PerHead } else { QkNorm::None },
            softcap: meta.f64_opt(&k("attn_logit_softcapping"))?.map(|v| v as f32),
            scale: (head_dim as f32).powf(-0.5),
            mla: None,
        },
        moe: None,
        mlp: MlpConfig {
            intermediate_size: ff,
            activation: match arch.as_str() {
                "gemma2" | "gpt2" => Activation::GeluTanh,
                _ => Activation::Silu,
            },
            gated: !is("gpt2"),
            bias: has_tensor("blk.0.ffn_down.bias"),
        },
        norm: NormConfig {
            kind: if is("gpt2") { NormKind::LayerNorm } else { NormKind::RmsNorm },
            eps,
            weight_offset: 0.0,
            bias: has_tensor("output_norm.bias"),
        },
        norm_placement: if is("gemma2") { NormPlacement::Sandwich } else { NormPlacement::Pre },
        position,
        local_rope: None,
        layers,
        embedding_norm: false,
        embedding_scale: is("gemma2").then(|| (hidden as f32).sqrt()),
        final_logit_softcap: meta.f64_opt(&k("final_logit_softcapping"))?.map(|v| v as f32),
        tie_word_embeddings: names.lm_head.is_none(),
        bos_token_id: token_ids("tokenizer.ggml.bos_token_id")?,
        eos_token_ids,
    };
    cfg.validate().map_err(|e| Error::bad_file(meta.path, e.to_string()))?;
    Ok((cfg, names))
}

fn gguf_names(arch: &str, has_tensor: &dyn Fn(&str) -> bool) -> WeightNames {
    let mut n = WeightNames::gguf();
    if !has_tensor("output.weight") {
        n.lm_head = None;
    }
    if arch != "gpt2" {
        n.position_embed = None;
    }
    n.embed_norm = None;
    if arch != "gemma2" {
        n.post_attn_norm = None;
        n.post_ffn_norm = None;
    }
    if !has_tensor("blk.0.attn_q_norm.weight") {
        n.q_norm = None;
        n.k_norm = None;
    }
    if has_tensor("blk.0.attn_qkv.weight") {
        n.qkv = QkvNames::Fused("blk.{i}.attn_qkv".into());
    }
    if !has_tensor("blk.0.ffn_gate.weight") {
        // Phi-3 stores `[gate | up]` in ffn_up; GPT-2 has no gate at all.
        n.gate_up = if arch == "phi3" {
            GateUpNames::Fused("blk.{i}.ffn_up".into())
        } else {
            GateUpNames::UpOnly("blk.{i}.ffn_up".into())
        };
    }
    n
}

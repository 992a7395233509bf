//! HF `config.json` → [`ModelConfig`] + [`WeightNames`]: each supported family is one small
//! function mapping its raw config onto the shared blocks.

use std::path::Path;

use serde::Deserialize;

use super::names::{GateUpNames, QkvNames, WeightNames};
use super::rope::HfRopeParams;
use super::*;
use crate::{Error, Result};

/// The families [`from_hf_config`] maps, by HF `model_type`.
pub const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "gpt2"];

/// Mirrors the union of the fields these families' `config.json` files use. Everything optional:
/// each family mapping decides what is required and what the default is.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HfConfig {
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub max_position_embeddings: Option<usize>,
    pub original_max_position_embeddings: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub hidden_act: Option<String>,
    pub hidden_activation: Option<String>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<HfRopeParams>,
    pub rope_parameters: Option<HfRopeParams>,
    pub partial_rotary_factor: Option<f64>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub tie_word_embeddings: Option<bool>,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    pub max_window_layers: Option<usize>,
    pub layer_types: Option<Vec<String>>,
    pub query_pre_attn_scalar: Option<f64>,
    pub attn_logit_softcapping: Option<f32>,
    pub final_logit_softcapping: Option<f32>,
    pub bos_token_id: Option<serde_json::Value>,
    pub eos_token_id: Option<serde_json::Value>,
    // GPT-2 names.
    pub n_embd: Option<usize>,
    pub n_layer: Option<usize>,
    pub n_head: Option<usize>,
    pub n_inner: Option<usize>,
    pub n_positions: Option<usize>,
    pub layer_norm_epsilon: Option<f64>,
    pub activation_function: Option<String>,
}

impl HfConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("invalid config.json: {e}")))
    }

    pub fn family(&self) -> Result<String> {
        if let Some(t) = &self.model_type {
            return Ok(t.clone());
        }
        // Very old checkpoints lack model_type; infer it from the architecture class name.
        let arch = self.architectures.first().map(String::as_str).unwrap_or("");
        SUPPORTED
            .iter()
            .find(|f| arch.to_lowercase().starts_with(*f))
            .map(|f| f.to_string())
            .ok_or_else(|| Error::config("model_type", "missing (and `architectures` names no known family)"))
    }
}

fn req(v: Option<usize>, field: &str) -> Result<usize> {
    v.ok_or_else(|| Error::config(field, "required but missing"))
}

fn token_ids(v: &Option<serde_json::Value>, field: &str) -> Result<Vec<u32>> {
    let bad = || Error::config(field, "must be an integer or a list of integers");
    match v {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(serde_json::Value::Number(n)) => Ok(vec![n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?]),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Maps a parsed `config.json` onto the decoder. `tensor_names` lets the mapping see which
/// optional tensors the checkpoint has (e.g. a separate `lm_head.weight`).
pub fn from_hf_config(raw: &HfConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<(ModelConfig, WeightNames)> {
    let family = raw.family()?;
    let (cfg, names) = match family.as_str() {
        "llama" | "mistral" | "qwen2" | "qwen3" | "gemma2" | "phi3" => llama_like(raw, &family, has_tensor)?,
        "gpt2" => gpt2(raw, has_tensor)?,
        other => {
            return Err(Error::UnknownArchitecture { arch: other.to_string(), supported: SUPPORTED.join(", ") })
        }
    };
    cfg.validate()?;
    Ok((cfg, names))
}

/// Llama and its descendants differ only in options of the shared blocks.
fn llama_like(raw: &HfConfig, family: &str, has_tensor: &dyn Fn(&str) -> bool) -> Result<(ModelConfig, WeightNames)> {
    let hidden = req(raw.hidden_size, "hidden_size")?;
    let num_heads = req(raw.num_attention_heads, "num_attention_heads")?;
    if num_heads == 0 {
        return Err(Error::config("num_attention_heads", "must be > 0, got 0"));
    }
    let num_layers = req(raw.num_hidden_layers, "num_hidden_layers")?;
    let head_dim = raw.head_dim.unwrap_or(hidden / num_heads);
    let max_pos = raw.max_position_embeddings.unwrap_or(2048);
    let is = |f: &str| family == f;

    // Rope: transformers 5 nests theta into `rope_parameters`; 4.x uses `rope_theta` + `rope_scaling`.
    let params = raw.rope_parameters.clone().or_else(|| raw.rope_scaling.clone()).unwrap_or_default();
    let theta = params.rope_theta.or(raw.rope_theta).unwrap_or(10_000.0);
    let partial = params.partial_rotary_factor.or(raw.partial_rotary_factor).unwrap_or(1.0);
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(Error::config("partial_rotary_factor", format!("must be in (0, 1], got {partial}")));
    }
    let rope = RopeConfig {
        theta,
        rotary_dim: (head_dim as f64 * partial) as usize,
        interleaved: false,
        scaling: params.scaling(max_pos, raw.original_max_position_embeddings)?,
    };

    let act_name = raw
        .hidden_activation
        .as_deref()
        .or(raw.hidden_act.as_deref())
        .unwrap_or(if is("gemma2") { "gelu_pytorch_tanh" } else { "silu" });

    let sliding = raw.sliding_window;
    let layers: Vec<LayerSpec> = match &raw.layer_types {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                "full_attention" => Ok(LayerSpec { sliding_window: None }),
                "sliding_attention" => Ok(LayerSpec {
                    sliding_window: Some(sliding.ok_or_else(|| {
                        Error::config("sliding_window", "required when layer_types has sliding_attention")
                    })?),
                }),
                other => Err(Error::config("layer_types", format!("unsupported layer type `{other}`"))),
            })
            .collect::<Result<_>>()?,
        None => (0..num_layers)
            .map(|i| LayerSpec {
                sliding_window: match family {
                    "mistral" | "phi3" => sliding,
                    "qwen2" | "qwen3" if raw.use_sliding_window == Some(true) => {
                        sliding.filter(|_| i >= raw.max_window_layers.unwrap_or(0))
                    }
                    "gemma2" => sliding.filter(|_| i % 2 == 0),
                    _ => None,
                },
            })
            .collect(),
    };

    let attention = AttentionConfig {
        num_heads,
        num_kv_heads: raw.num_key_value_heads.unwrap_or(num_heads),
        head_dim,
        qkv_bias: raw.attention_bias.unwrap_or(is("qwen2")),
        out_bias: raw.attention_bias.unwrap_or(false) && !is("qwen2"),
        qk_norm: is("qwen3"),
        softcap: if is("gemma2") { raw.attn_logit_softcapping } else { None },
        scale: match raw.query_pre_attn_scalar {
            Some(s) if is("gemma2") => (s.powf(-0.5)) as f32,
            _ => (head_dim as f64).powf(-0.5) as f32,
        },
    };
    let tie = raw.tie_word_embeddings.unwrap_or(is("gemma2") || !has_tensor("lm_head.weight"));

    let mut names = WeightNames::hf_llama_like("model.");
    if tie {
        names.lm_head = None;
    }
    if is("qwen3") {
        names.q_norm = Some("model.layers.{i}.self_attn.q_norm".into());
        names.k_norm = Some("model.layers.{i}.self_attn.k_norm".into());
    }
    if is("gemma2") {
        names.post_attn_norm = Some("model.layers.{i}.post_attention_layernorm".into());
        names.ffn_norm = "model.layers.{i}.pre_feedforward_layernorm".into();
        names.post_ffn_norm = Some("model.layers.{i}.post_feedforward_layernorm".into());
    }
    if is("phi3") {
        names.qkv = QkvNames::Fused("model.layers.{i}.self_attn.qkv_proj".into());
        names.gate_up = GateUpNames::Fused("model.layers.{i}.mlp.gate_up_proj".into());
    }

    let cfg = ModelConfig {
        family: family.to_string(),
        vocab_size: req(raw.vocab_size, "vocab_size")?,
        hidden_size: hidden,
        num_layers,
        max_position_embeddings: max_pos,
        attention,
        mlp: MlpConfig {
            intermediate_size: req(raw.intermediate_size, "intermediate_size")?,
            activation: Activation::from_hf(act_name)?,
            gated: true,
            bias: raw.mlp_bias.unwrap_or(false),
        },
        norm: NormConfig {
            kind: NormKind::RmsNorm,
            eps: raw.rms_norm_eps.unwrap_or(1e-6),
            weight_offset: if is("gemma2") { 1.0 } else { 0.0 },
            bias: false,
        },
        norm_placement: if is("gemma2") { NormPlacement::Sandwich } else { NormPlacement::Pre },
        position: PositionEncoding::Rope(rope),
        layers,
        embedding_scale: is("gemma2").then(|| (hidden as f32).sqrt()),
        final_logit_softcap: if is("gemma2") { raw.final_logit_softcapping } else { None },
        tie_word_embeddings: tie,
        bos_token_id: token_ids(&raw.bos_token_id, "bos_token_id")?.first().copied(),
        eos_token_ids: token_ids(&raw.eos_token_id, "eos_token_id")?,
    };
    Ok((cfg, names))
}

fn gpt2(raw: &HfConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<(ModelConfig, WeightNames)> {
    let hidden = req(raw.n_embd.or(raw.hidden_size), "n_embd")?;
    let num_heads = req(raw.n_head.or(raw.num_attention_heads), "n_head")?;
    if num_heads == 0 {
        return Err(Error::config("n_head", "must be > 0, got 0"));
    }
    let num_layers = req(raw.n_layer.or(raw.num_hidden_layers), "n_layer")?;
    let head_dim = hidden / num_heads;
    // Checkpoints saved from GPT2LMHeadModel prefix everything with `transformer.`.
    let p = if has_tensor("transformer.wte.weight") { "transformer." } else { "" };
    let l = |s: &str| format!("{p}h.{{i}}.{s}");
    let names = WeightNames {
        embed: format!("{p}wte.weight"),
        position_embed: Some(format!("{p}wpe.weight")),
        final_norm: format!("{p}ln_f"),
        lm_head: None,
        attn_norm: l("ln_1"),
        post_attn_norm: None,
        ffn_norm: l("ln_2"),
        post_ffn_norm: None,
        qkv: QkvNames::Fused(l("attn.c_attn")),
        o: l("attn.c_proj"),
        q_norm: None,
        k_norm: None,
        gate_up: GateUpNames::UpOnly(l("mlp.c_fc")),
        down: l("mlp.c_proj"),
        transposed: true,
    };
    let cfg = ModelConfig {
        family: "gpt2".into(),
        vocab_size: req(raw.vocab_size, "vocab_size")?,
        hidden_size: hidden,
        num_layers,
        max_position_embeddings: req(raw.n_positions.or(raw.max_position_embeddings), "n_positions")?,
        attention: AttentionConfig {
            num_heads,
            num_kv_heads: num_heads,
            head_dim,
            qkv_bias: true,
            out_bias: true,
            qk_norm: false,
            softcap: None,
            scale: (head_dim as f32).powf(-0.5),
        },
        mlp: MlpConfig {
            intermediate_size: raw.n_inner.unwrap_or(4 * hidden),
            activation: Activation::from_hf(raw.activation_function.as_deref().unwrap_or("gelu_new"))?,
            gated: false,
            bias: true,
        },
        norm: NormConfig {
            kind: NormKind::LayerNorm,
            eps: raw.layer_norm_epsilon.unwrap_or(1e-5),
            weight_offset: 0.0,
            bias: true,
        },
        norm_placement: NormPlacement::Pre,
        position: PositionEncoding::Learned,
        layers: vec![LayerSpec::default(); num_layers],
        embedding_scale: None,
        final_logit_softcap: None,
        tie_word_embeddings: true,
        bos_token_id: token_ids(&raw.bos_token_id, "bos_token_id")?.first().copied(),
        eos_token_ids: token_ids(&raw.eos_token_id, "eos_token_id")?,
    };
    Ok((cfg, names))
}

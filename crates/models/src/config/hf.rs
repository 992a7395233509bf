//! HF `config.json` → [`ModelConfig`] + [`WeightNames`]: each supported family is one small
//! function mapping its raw config onto the shared blocks.

use std::path::Path;

use serde::Deserialize;

use super::names::{GateUpNames, QkvNames, WeightNames};
use super::rope::HfRopeParams;
use super::*;
use crate::{Error, Result};

/// The families [`from_hf_config`] maps, by HF `model_type`.
pub const SUPPORTED: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "phi3",
    "smollm3",
    "olmo2",
    "gpt2",
    "bloom",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "deepseek_v2",
    "deepseek_v3",
];

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
    /// transformers 5: rope settings, or a map from layer type to rope settings (Gemma 3).
    pub rope_parameters: Option<serde_json::Value>,
    pub rope_local_base_freq: Option<f64>,
    pub sliding_window_pattern: Option<usize>,
    pub no_rope_layers: Option<Vec<u8>>,
    pub no_rope_layer_interval: Option<usize>,
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
    // Mixture of experts (Mixtral, Qwen2/3-MoE, DeepSeek).
    pub num_local_experts: Option<usize>,
    pub num_experts: Option<usize>,
    pub n_routed_experts: Option<usize>,
    pub num_experts_per_tok: Option<usize>,
    pub moe_intermediate_size: Option<usize>,
    pub shared_expert_intermediate_size: Option<usize>,
    pub n_shared_experts: Option<usize>,
    pub norm_topk_prob: Option<bool>,
    pub decoder_sparse_step: Option<usize>,
    pub mlp_only_layers: Option<Vec<usize>>,
    pub first_k_dense_replace: Option<usize>,
    pub moe_layer_freq: Option<usize>,
    pub routed_scaling_factor: Option<f32>,
    pub topk_method: Option<String>,
    pub scoring_func: Option<String>,
    pub n_group: Option<usize>,
    pub topk_group: Option<usize>,
    // Multi-head latent attention (DeepSeek).
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: Option<usize>,
    pub qk_nope_head_dim: Option<usize>,
    pub qk_rope_head_dim: Option<usize>,
    pub v_head_dim: Option<usize>,
    pub rope_interleave: Option<bool>,
    pub n_embd: Option<usize>,
    pub n_embed: Option<usize>,
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
        serde_json::from_str(&text).map_err(|e| {
            let msg = match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(map)) => match bad_field(map) {
                    Some(field) => format!("field `{field}`: {e}"),
                    None => e.to_string(),
                },
                Ok(_) => "the top level is not a JSON object".into(),
                Err(_) => e.to_string(),
            };
            Error::bad_file(path, format!("invalid config.json: {msg}"))
        })
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

/// serde's type errors give a line and column but not the field (`hidden_size: -4` reads
/// "invalid value: integer `-4`, expected usize"); find the top-level key that fails alone.
fn bad_field(map: serde_json::Map<String, serde_json::Value>) -> Option<String> {
    map.into_iter()
        .find(|(k, v)| {
            let alone = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
            serde_json::from_value::<HfConfig>(alone).is_err()
        })
        .map(|(k, _)| k)
}

fn req(v: Option<usize>, field: &str) -> Result<usize> {
    v.ok_or_else(|| Error::config(field, "required but missing"))
}

fn token_ids(v: &Option<serde_json::Value>, field: &str) -> Result<Vec<u32>> {
    let bad = || Error::config(field, "must be an integer or a list of integers");
    match v {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(serde_json::Value::Number(n)) => {
            Ok(vec![n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?])
        }
        Some(serde_json::Value::Array(a)) => {
            a.iter().map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)).collect()
        }
        Some(_) => Err(bad()),
    }
}

/// Maps a parsed `config.json` onto the decoder. `tensor_names` lets the mapping see which
/// optional tensors the checkpoint has (e.g. a separate `lm_head.weight`).
pub fn from_hf_config(raw: &HfConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<(ModelConfig, WeightNames)> {
    let family = raw.family()?;
    let (cfg, names) = match family.as_str() {
        "llama" | "mistral" | "qwen2" | "qwen3" | "gemma2" | "gemma3_text" | "phi3" | "smollm3" | "olmo2" => {
            llama_like(raw, &family, has_tensor)?
        }
        "mixtral" | "qwen2_moe" | "qwen3_moe" | "deepseek_v2" | "deepseek_v3" => {
            let (cfg, names) = llama_like(raw, &family, has_tensor)?;
            super::hf_moe::with_experts(raw, &family, cfg, names, has_tensor)?
        }
        "gpt2" => gpt2(raw, has_tensor)?,
        "bloom" => bloom(raw, has_tensor)?,
        other => return Err(Error::UnknownArchitecture { arch: other.to_string(), supported: SUPPORTED.join(", ") }),
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
    let num_layers = check_num_layers("num_hidden_layers", req(raw.num_hidden_layers, "num_hidden_layers")?)?;
    let head_dim = raw.head_dim.unwrap_or(hidden / num_heads);
    let max_pos = raw.max_position_embeddings.unwrap_or(2048);
    let is = |f: &str| family == f;

    let gemma = is("gemma2") || is("gemma3_text");
    // Rope: transformers 5 nests theta into `rope_parameters` (per layer type for Gemma 3);
    // 4.x checkpoints use `rope_theta` + `rope_scaling` (+ `rope_local_base_freq`).
    let (main_params, local_params) = rope_params(raw)?;
    let default_theta = if is("gemma3_text") { 1_000_000.0 } else { 10_000.0 };
    let rope = rope_config(&main_params, raw.rope_theta.unwrap_or(default_theta), raw, head_dim, max_pos)?;
    let local_rope = if is("gemma3_text") {
        let local = local_params.unwrap_or_default();
        Some(rope_config(&local, raw.rope_local_base_freq.unwrap_or(10_000.0), raw, head_dim, max_pos)?)
    } else {
        None
    };

    let act_name = raw.hidden_activation.as_deref().or(raw.hidden_act.as_deref()).unwrap_or(if gemma {
        "gelu_pytorch_tanh"
    } else {
        "silu"
    });

    let sliding = raw.sliding_window;
    let layers: Vec<LayerSpec> = match &raw.layer_types {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                "full_attention" => Ok(LayerSpec { sliding_window: None, rope: LayerRope::Main, moe: false }),
                "sliding_attention" => Ok(LayerSpec {
                    sliding_window: Some(sliding.ok_or_else(|| {
                        Error::config("sliding_window", "required when layer_types has sliding_attention")
                    })?),
                    rope: if is("gemma3_text") { LayerRope::Local } else { LayerRope::Main },
                    moe: false,
                }),
                other => Err(Error::config("layer_types", format!("unsupported layer type `{other}`"))),
            })
            .collect::<Result<_>>()?,
        None => (0..num_layers)
            .map(|i| LayerSpec {
                sliding_window: match family {
                    "mistral" | "phi3" | "mixtral" => sliding,
                    "qwen2" | "qwen3" if raw.use_sliding_window == Some(true) => {
                        sliding.filter(|_| i >= raw.max_window_layers.unwrap_or(0))
                    }
                    "gemma2" => sliding.filter(|_| i % 2 == 0),
                    "gemma3_text" => sliding.filter(|_| (i + 1) % raw.sliding_window_pattern.unwrap_or(6) != 0),
                    _ => None,
                },
                rope: LayerRope::Main,
                moe: false,
            })
            .collect(),
    };
    let mut layers = layers;
    for (i, l) in layers.iter_mut().enumerate() {
        if is("gemma3_text") && l.sliding_window.is_some() {
            l.rope = LayerRope::Local;
        }
        if is("smollm3") {
            // `no_rope_layers[i] == 1` means the layer *uses* rope (transformers' naming).
            let uses_rope = match &raw.no_rope_layers {
                Some(flags) => flags.get(i).copied().unwrap_or(1) != 0,
                None => (i + 1) % raw.no_rope_layer_interval.unwrap_or(4).max(1) != 0,
            };
            if !uses_rope {
                l.rope = LayerRope::Off;
            }
        }
    }

    let attention = AttentionConfig {
        num_heads,
        num_kv_heads: raw.num_key_value_heads.unwrap_or(num_heads),
        head_dim,
        qkv_bias: raw.attention_bias.unwrap_or(is("qwen2") || is("qwen2_moe")),
        out_bias: raw.attention_bias.unwrap_or(false) && !is("qwen2") && !is("qwen2_moe"),
        qk_norm: match family {
            "qwen3" | "qwen3_moe" | "gemma3_text" => QkNorm::PerHead,
            "olmo2" => QkNorm::Full,
            _ => QkNorm::None,
        },
        // Gemma 3 keeps the config field but its attention never applies it.
        softcap: if is("gemma2") { raw.attn_logit_softcapping } else { None },
        scale: match raw.query_pre_attn_scalar {
            Some(s) if gemma => (s.powf(-0.5)) as f32,
            _ => (head_dim as f64).powf(-0.5) as f32,
        },
        mla: None,
    };
    let tie = raw.tie_word_embeddings.unwrap_or(gemma || !has_tensor("lm_head.weight"));

    let mut names = WeightNames::hf_llama_like("model.");
    if tie {
        names.lm_head = None;
    }
    if matches!(family, "qwen3" | "qwen3_moe" | "gemma3_text" | "olmo2") {
        names.q_norm = Some("model.layers.{i}.self_attn.q_norm".into());
        names.k_norm = Some("model.layers.{i}.self_attn.k_norm".into());
    }
    if gemma {
        names.post_attn_norm = Some("model.layers.{i}.post_attention_layernorm".into());
        names.ffn_norm = Some("model.layers.{i}.pre_feedforward_layernorm".into());
        names.post_ffn_norm = Some("model.layers.{i}.post_feedforward_layernorm".into());
    }
    if is("olmo2") {
        names.attn_norm = None;
        names.ffn_norm = None;
        names.post_attn_norm = Some("model.layers.{i}.post_attention_layernorm".into());
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
        moe: None,
        mlp: MlpConfig {
            intermediate_size: req(raw.intermediate_size, "intermediate_size")?,
            activation: Activation::from_hf(act_name)?,
            gated: true,
            bias: raw.mlp_bias.unwrap_or(false),
        },
        norm: NormConfig {
            kind: NormKind::RmsNorm,
            eps: raw.rms_norm_eps.unwrap_or(1e-6),
            weight_offset: if gemma { 1.0 } else { 0.0 },
            bias: false,
        },
        norm_placement: match family {
            "gemma2" | "gemma3_text" => NormPlacement::Sandwich,
            "olmo2" => NormPlacement::Post,
            _ => NormPlacement::Pre,
        },
        position: PositionEncoding::Rope(rope),
        local_rope,
        layers,
        embedding_norm: false,
        embedding_scale: gemma.then(|| (hidden as f32).sqrt()),
        final_logit_softcap: if gemma { raw.final_logit_softcapping } else { None },
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
    let num_layers = check_num_layers("n_layer", req(raw.n_layer.or(raw.num_hidden_layers), "n_layer")?)?;
    let head_dim = hidden / num_heads;
    // Checkpoints saved from GPT2LMHeadModel prefix everything with `transformer.`.
    let p = if has_tensor("transformer.wte.weight") { "transformer." } else { "" };
    let l = |s: &str| format!("{p}h.{{i}}.{s}");
    let names = WeightNames {
        embed: format!("{p}wte.weight"),
        embed_norm: None,
        position_embed: Some(format!("{p}wpe.weight")),
        final_norm: format!("{p}ln_f"),
        lm_head: None,
        attn_norm: Some(l("ln_1")),
        post_attn_norm: None,
        ffn_norm: Some(l("ln_2")),
        post_ffn_norm: None,
        qkv: QkvNames::Fused(l("attn.c_attn")),
        o: l("attn.c_proj"),
        q_norm: None,
        k_norm: None,
        gate_up: GateUpNames::UpOnly(l("mlp.c_fc")),
        down: l("mlp.c_proj"),
        moe: None,
        transposed: true,
    };
    let cfg = ModelConfig {
        family: "gpt2".into(),
        vocab_size: req(raw.vocab_size, "vocab_size")?,
        hidden_size: hidden,
        num_layers,
        max_position_embeddings: req(raw.n_positions.or(raw.max_position_embeddings), "n_positions")?,
        attention: AttentionConfig::mha_with_bias(num_heads, head_dim),
        moe: None,
        mlp: MlpConfig {
            intermediate_size: raw.n_inner.unwrap_or(hidden.saturating_mul(4)),
            activation: Activation::from_hf(raw.activation_function.as_deref().unwrap_or("gelu_new"))?,
            gated: false,
            bias: true,
        },
        norm: NormConfig::layer_norm(raw.layer_norm_epsilon.unwrap_or(1e-5)),
        norm_placement: NormPlacement::Pre,
        position: PositionEncoding::Learned,
        local_rope: None,
        layers: vec![LayerSpec::default(); num_layers],
        embedding_norm: false,
        embedding_scale: None,
        final_logit_softcap: None,
        tie_word_embeddings: true,
        bos_token_id: token_ids(&raw.bos_token_id, "bos_token_id")?.first().copied(),
        eos_token_ids: token_ids(&raw.eos_token_id, "eos_token_id")?,
    };
    Ok((cfg, names))
}

/// Splits `rope_parameters` / `rope_scaling` into the main and (Gemma 3) local settings.
fn rope_params(raw: &HfConfig) -> Result<(HfRopeParams, Option<HfRopeParams>)> {
    let parse = |v: &serde_json::Value, field: &str| -> Result<HfRopeParams> {
        serde_json::from_value(v.clone()).map_err(|e| Error::config(field, e.to_string()))
    };
    match &raw.rope_parameters {
        Some(v) if v.get("full_attention").is_some() || v.get("sliding_attention").is_some() => {
            let main = v.get("full_attention").map(|m| parse(m, "rope_parameters.full_attention")).transpose()?;
            let local =
                v.get("sliding_attention").map(|l| parse(l, "rope_parameters.sliding_attention")).transpose()?;
            Ok((main.unwrap_or_default(), local))
        }
        Some(v) => Ok((parse(v, "rope_parameters")?, None)),
        None => Ok((raw.rope_scaling.clone().unwrap_or_default(), None)),
    }
}

fn rope_config(p: &HfRopeParams, theta: f64, raw: &HfConfig, head_dim: usize, max_pos: usize) -> Result<RopeConfig> {
    let partial = p.partial_rotary_factor.or(raw.partial_rotary_factor).unwrap_or(1.0);
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(Error::config("partial_rotary_factor", format!("must be in (0, 1], got {partial}")));
    }
    Ok(RopeConfig {
        theta: p.rope_theta.unwrap_or(theta),
        rotary_dim: (head_dim as f64 * partial) as usize,
        interleaved: false,
        scaling: p.scaling(max_pos, raw.original_max_position_embeddings)?,
    })
}

/// BLOOM: ALiBi instead of positions, LayerNorm after the embeddings, a per-head fused qkv.
fn bloom(raw: &HfConfig, has_tensor: &dyn Fn(&str) -> bool) -> Result<(ModelConfig, WeightNames)> {
    let hidden = req(raw.hidden_size.or(raw.n_embed), "hidden_size")?;
    let num_heads = req(raw.n_head.or(raw.num_attention_heads), "n_head")?;
    if num_heads == 0 || hidden % num_heads != 0 {
        return Err(Error::config("n_head", format!("must be > 0 and divide hidden_size {hidden}, got {num_heads}")));
    }
    let num_layers = check_num_layers("n_layer", req(raw.n_layer.or(raw.num_hidden_layers), "n_layer")?)?;
    let head_dim = hidden / num_heads;
    let p = if has_tensor("transformer.word_embeddings.weight") { "transformer." } else { "" };
    let l = |s: &str| format!("{p}h.{{i}}.{s}");
    let names = WeightNames {
        embed: format!("{p}word_embeddings.weight"),
        embed_norm: Some(format!("{p}word_embeddings_layernorm")),
        position_embed: None,
        final_norm: format!("{p}ln_f"),
        lm_head: None,
        attn_norm: Some(l("input_layernorm")),
        post_attn_norm: None,
        ffn_norm: Some(l("post_attention_layernorm")),
        post_ffn_norm: None,
        qkv: QkvNames::FusedPerHead(l("self_attention.query_key_value")),
        o: l("self_attention.dense"),
        q_norm: None,
        k_norm: None,
        gate_up: GateUpNames::UpOnly(l("mlp.dense_h_to_4h")),
        down: l("mlp.dense_4h_to_h"),
        moe: None,
        transposed: false,
    };
    let cfg = ModelConfig {
        family: "bloom".into(),
        vocab_size: req(raw.vocab_size, "vocab_size")?,
        hidden_size: hidden,
        num_layers,
        // ALiBi has no trained maximum; use the training length when the config records one.
        max_position_embeddings: raw.max_position_embeddings.or(raw.n_positions).unwrap_or(2048),
        attention: AttentionConfig::mha_with_bias(num_heads, head_dim),
        moe: None,
        mlp: MlpConfig {
            intermediate_size: hidden.saturating_mul(4),
            activation: Activation::GeluTanh,
            gated: false,
            bias: true,
        },
        norm: NormConfig::layer_norm(raw.layer_norm_epsilon.unwrap_or(1e-5)),
        norm_placement: NormPlacement::Pre,
        position: PositionEncoding::Alibi,
        local_rope: None,
        layers: vec![LayerSpec::default(); num_layers],
        embedding_norm: true,
        embedding_scale: None,
        final_logit_softcap: None,
        tie_word_embeddings: true,
        bos_token_id: token_ids(&raw.bos_token_id, "bos_token_id")?.first().copied(),
        eos_token_ids: token_ids(&raw.eos_token_id, "eos_token_id")?,
    };
    Ok((cfg, names))
}

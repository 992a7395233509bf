//! Model configuration: one resolved [`ModelConfig`] that the decoder reads, produced once from a
//! family's HF `config.json` ([`hf`]) or from GGUF metadata ([`gguf`]).
//!
//! The decoder never sees raw configs: a model family is nothing but a mapping onto these
//! blocks (see `docs/families.md`). Adding a family means adding a mapping, not a model file.

pub mod gguf;
pub mod hf;
mod hf_moe;
pub mod moe;
pub mod names;
mod rope;

pub use names::{GateUpNames, QkvNames, WeightNames};
pub use rope::{RopeConfig, RopeScaling};

use serde::Serialize;

/// Everything the decoder needs, already validated.
#[derive(Debug, Clone, Serialize)]
pub struct ModelConfig {
    /// The family mapping that produced this config (e.g. `llama`, `gemma2`).
    pub family: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub max_position_embeddings: usize,
    pub attention: AttentionConfig,
    pub mlp: MlpConfig,
    /// Mixture of experts, used by the layers whose [`LayerSpec::moe`] is set.
    pub moe: Option<moe::MoeConfig>,
    pub norm: NormConfig,
    pub norm_placement: NormPlacement,
    pub position: PositionEncoding,
    /// RoPE of the layers marked [`LayerRope::Local`] (Gemma 3's sliding layers use another base).
    pub local_rope: Option<RopeConfig>,
    /// Per-layer variation (sliding window, rope on/off); `layers.len() == num_layers`.
    pub layers: Vec<LayerSpec>,
    /// A norm right after the token embeddings (BLOOM).
    pub embedding_norm: bool,
    /// Multiplies token embeddings (Gemma: sqrt(hidden_size)).
    pub embedding_scale: Option<f32>,
    /// `tanh(logits / cap) * cap` on the final logits (Gemma 2).
    pub final_logit_softcap: Option<f32>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttentionConfig {
    pub num_heads: usize,
    /// `num_kv_heads == num_heads` is MHA, `1` is MQA, anything between is GQA.
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub qkv_bias: bool,
    pub out_bias: bool,
    /// RMSNorm on q and k before rope.
    pub qk_norm: QkNorm,
    /// `tanh(scores / cap) * cap` before the mask (Gemma 2).
    pub softcap: Option<f32>,
    /// Multiplies `q·k` (usually `head_dim^-0.5`).
    pub scale: f32,
    /// Multi-head latent attention; `head_dim` is then `qk_nope_head_dim + qk_rope_head_dim`.
    pub mla: Option<MlaConfig>,
}

impl AttentionConfig {
    /// GPT-2/BLOOM-style attention: MHA, biases on every projection, `head_dim^-0.5` scale.
    pub fn mha_with_bias(num_heads: usize, head_dim: usize) -> Self {
        AttentionConfig {
            num_heads,
            num_kv_heads: num_heads,
            head_dim,
            qkv_bias: true,
            out_bias: true,
            qk_norm: QkNorm::None,
            softcap: None,
            scale: (head_dim as f32).powf(-0.5),
            mla: None,
        }
    }
}

/// DeepSeek-V2/V3 multi-head latent attention dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MlaConfig {
    /// Low-rank query (`q_a_proj` → norm → `q_b_proj`); `None`: one `q_proj`.
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QkNorm {
    None,
    /// Over each head's `head_dim` (Qwen3, Gemma 3).
    PerHead,
    /// Over the whole q (or k) projection, before splitting heads (OLMo 2).
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Activation {
    Silu,
    /// Exact erf GELU.
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

impl Activation {
    pub fn from_hf(name: &str) -> crate::Result<Self> {
        Ok(match name {
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_python_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(crate::Error::config(
                    "hidden_act",
                    format!(
                        "unsupported activation `{other}` (supported: silu, gelu, gelu_new, gelu_pytorch_tanh, relu)"
                    ),
                ))
            }
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MlpConfig {
    pub intermediate_size: usize,
    pub activation: Activation,
    /// `down(act(gate(x)) * up(x))` (SwiGLU/GeGLU) when true, `down(act(up(x)))` otherwise.
    pub gated: bool,
    pub bias: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NormKind {
    RmsNorm,
    LayerNorm,
}

#[derive(Debug, Clone, Serialize)]
pub struct NormConfig {
    pub kind: NormKind,
    pub eps: f64,
    /// Added to the stored weight at load time (Gemma stores `w` and computes `x * (1 + w)`).
    pub weight_offset: f32,
    /// LayerNorm with a bias term.
    pub bias: bool,
}

impl NormConfig {
    /// LayerNorm with weight and bias.
    pub fn layer_norm(eps: f64) -> Self {
        NormConfig { kind: NormKind::LayerNorm, eps, weight_offset: 0.0, bias: true }
    }
}

/// Where the norms of a decoder layer sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NormPlacement {
    /// `x + attn(norm(x))`, `x + mlp(norm(x))`.
    Pre,
    /// Gemma 2/3: `x + norm(attn(norm(x)))`, `x + norm(mlp(norm(x)))`.
    Sandwich,
    /// OLMo 2: `x + norm(attn(x))`, `x + norm(mlp(x))`.
    Post,
}

#[derive(Debug, Clone, Serialize)]
pub enum PositionEncoding {
    Rope(RopeConfig),
    /// Learned absolute position embeddings added to the token embeddings (GPT-2).
    Learned,
    /// Linear biases on the attention scores, one slope per head (BLOOM, MPT).
    Alibi,
    None,
}

/// Which rotary embedding a layer applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum LayerRope {
    /// The model's [`PositionEncoding::Rope`].
    #[default]
    Main,
    /// [`ModelConfig::local_rope`].
    Local,
    /// No positional signal in this layer (NoPE; SmolLM3 every fourth layer).
    Off,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerSpec {
    /// Keys further back than this many tokens (counting the query itself) are masked out.
    pub sliding_window: Option<usize>,
    pub rope: LayerRope,
    /// The feed-forward block is [`ModelConfig::moe`] instead of the dense MLP.
    pub moe: bool,
}

/// No real model comes near this in any dimension; refusing larger values keeps the size
/// arithmetic (`heads * head_dim`, `vocab * hidden`) far from overflow.
const MAX_SIZE: usize = 1 << 31;

/// Per-layer settings are built before any tensor is read, so the layer count is bounded
/// before a mapping allocates for it.
pub(crate) fn check_num_layers(field: &str, n: usize) -> crate::Result<usize> {
    const MAX_LAYERS: usize = 1 << 16;
    if n > MAX_LAYERS {
        return Err(crate::Error::config(field, format!("{n} is too large (at most {MAX_LAYERS})")));
    }
    Ok(n)
}

impl ModelConfig {
    /// Checks the invariants the decoder relies on. Called by every mapping before returning.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.attention.num_heads),
            ("num_key_value_heads", self.attention.num_kv_heads),
            ("head_dim", self.attention.head_dim),
            ("intermediate_size", self.mlp.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, v) in sizes {
            if v == 0 {
                return Err(Error::config(field, "must be > 0, got 0"));
            }
            if v > MAX_SIZE {
                return Err(Error::config(field, format!("{v} is too large (at most {MAX_SIZE})")));
            }
        }
        check_num_layers("num_hidden_layers", self.num_layers)?;
        let a = &self.attention;
        if a.num_heads % a.num_kv_heads != 0 {
            return Err(Error::config(
                "num_key_value_heads",
                format!("{} does not divide num_attention_heads {}", a.num_kv_heads, a.num_heads),
            ));
        }
        if self.layers.len() != self.num_layers {
            return Err(Error::config(
                "layer_types",
                format!("{} entries for {} layers", self.layers.len(), self.num_layers),
            ));
        }
        let ropes = match &self.position {
            PositionEncoding::Rope(r) => Some(r).into_iter().chain(self.local_rope.as_ref()).collect(),
            _ => vec![],
        };
        for r in ropes {
            if r.rotary_dim == 0 || r.rotary_dim > a.head_dim || r.rotary_dim % 2 != 0 {
                return Err(Error::config(
                    "partial_rotary_factor",
                    format!("rotary dim {} must be even and in 2..={}", r.rotary_dim, a.head_dim),
                ));
            }
            r.validate()?;
        }
        if let Some(m) = &self.moe {
            m.validate()?;
        } else if self.layers.iter().any(|l| l.moe) {
            return Err(Error::config("num_experts", "layers are marked MoE but no MoE block is configured"));
        }
        if self.local_rope.is_none() && self.layers.iter().any(|l| l.rope == LayerRope::Local) {
            return Err(Error::config("rope_local_base_freq", "layers use a local rope but none is configured"));
        }
        if !(self.norm.eps > 0.0 && self.norm.eps < 1.0) {
            let field = match self.norm.kind {
                NormKind::RmsNorm => "rms_norm_eps",
                NormKind::LayerNorm => "layer_norm_epsilon",
            };
            return Err(Error::config(field, format!("must be in (0, 1), got {}", self.norm.eps)));
        }
        for cap in [a.softcap, self.final_logit_softcap].into_iter().flatten() {
            if !(cap > 0.0 && cap.is_finite()) {
                return Err(Error::config("softcapping", format!("must be > 0, got {cap}")));
            }
        }
        if let Some(w) = self.layers.iter().find_map(|l| l.sliding_window.filter(|w| *w == 0)) {
            return Err(Error::config("sliding_window", format!("must be > 0, got {w}")));
        }
        Ok(())
    }

    /// Bytes the KV cache holds per token at `elem_bytes` per element: K and V per kv head,
    /// or, for MLA, the compressed latent plus the shared rope key.
    pub fn kv_bytes_per_token(&self, elem_bytes: usize) -> usize {
        let a = &self.attention;
        let per_layer = match &a.mla {
            // Key `[latent | k_pe]` and value `latent` (the paged kernel reads V in its own
            // layout, so the latent is stored twice; still far below per-head K/V).
            Some(m) => 2 * m.kv_lora_rank + m.qk_rope_head_dim,
            None => 2 * a.num_kv_heads * a.head_dim,
        };
        self.num_layers * per_layer * elem_bytes
    }

    /// What [`kv_bytes_per_token`](Self::kv_bytes_per_token) would be if MLA cached full
    /// per-head K and V instead of its latent; `None` for other attention.
    pub fn kv_bytes_per_token_without_mla(&self, elem_bytes: usize) -> Option<usize> {
        let a = &self.attention;
        a.mla.as_ref().map(|m| {
            let k = m.qk_nope_head_dim + m.qk_rope_head_dim;
            self.num_layers * a.num_heads * (k + m.v_head_dim) * elem_bytes
        })
    }

    /// Routed-expert parameters a token does not use: in every MoE layer, all but `top_k` experts.
    pub fn inactive_expert_params(&self) -> u64 {
        let Some(m) = &self.moe else { return 0 };
        let moe_layers = self.layers.iter().filter(|l| l.moe).count() as u64;
        let per_expert = 3 * self.hidden_size as u64 * m.expert_intermediate_size as u64;
        moe_layers * (m.num_experts.saturating_sub(m.top_k)) as u64 * per_expert
    }
}

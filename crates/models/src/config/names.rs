//! Tensor names: where each block of the one decoder finds its weights in a checkpoint.
//!
//! Names are templates in which `{i}` stands for the layer index. A norm or linear name is a
//! prefix: `.weight` and `.bias` are appended.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub enum QkvNames {
    Separate {
        q: String,
        k: String,
        v: String,
    },
    /// One projection whose output is `[q | k | v]` (Phi-3 `qkv_proj`, GPT-2 `c_attn`).
    Fused(String),
    /// One projection whose output is `[q0 k0 v0 | q1 k1 v1 | ...]` per head (BLOOM); rows are
    /// reordered to `[q | k | v]` at load.
    FusedPerHead(String),
    /// Multi-head latent attention (DeepSeek): all names are layer templates.
    Mla {
        q: Option<String>,
        q_a: Option<String>,
        q_a_norm: Option<String>,
        q_b: Option<String>,
        kv_a: String,
        kv_a_norm: String,
        kv_b: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub enum GateUpNames {
    Separate {
        gate: String,
        up: String,
    },
    /// One projection whose output is `[gate | up]` (Phi-3 `gate_up_proj`).
    Fused(String),
    /// Ungated MLP: only an up projection.
    UpOnly(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightNames {
    pub embed: String,
    /// Norm applied right after the embeddings (BLOOM's `word_embeddings_layernorm`).
    pub embed_norm: Option<String>,
    pub position_embed: Option<String>,
    pub final_norm: String,
    /// `None` when the checkpoint has no separate head (tied to `embed`).
    pub lm_head: Option<String>,
    /// Pre-norms; `None` in post-norm layers (OLMo 2).
    pub attn_norm: Option<String>,
    pub post_attn_norm: Option<String>,
    pub ffn_norm: Option<String>,
    pub post_ffn_norm: Option<String>,
    pub qkv: QkvNames,
    pub o: String,
    pub q_norm: Option<String>,
    pub k_norm: Option<String>,
    pub gate_up: GateUpNames,
    pub down: String,
    /// Where MoE layers find their router and experts.
    pub moe: Option<super::moe::MoeNames>,
    /// Linear weights are stored `(in, out)` (GPT-2's Conv1D) instead of `(out, in)`.
    pub transposed: bool,
}

/// Expands `{i}` in a template.
pub fn layer(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

impl WeightNames {
    /// The HF layout shared by Llama, Mistral, Qwen2/3, Gemma 2 and most of their descendants.
    pub fn hf_llama_like(prefix: &str) -> Self {
        let l = |s: &str| format!("{prefix}layers.{{i}}.{s}");
        WeightNames {
            embed: format!("{prefix}embed_tokens.weight"),
            embed_norm: None,
            position_embed: None,
            final_norm: format!("{prefix}norm"),
            lm_head: Some("lm_head.weight".into()),
            attn_norm: Some(l("input_layernorm")),
            post_attn_norm: None,
            ffn_norm: Some(l("post_attention_layernorm")),
            post_ffn_norm: None,
            qkv: QkvNames::Separate { q: l("self_attn.q_proj"), k: l("self_attn.k_proj"), v: l("self_attn.v_proj") },
            o: l("self_attn.o_proj"),
            q_norm: None,
            k_norm: None,
            gate_up: GateUpNames::Separate { gate: l("mlp.gate_proj"), up: l("mlp.up_proj") },
            down: l("mlp.down_proj"),
            moe: None,
            transposed: false,
        }
    }

    /// llama.cpp's GGUF names (the same for every architecture).
    pub fn gguf() -> Self {
        let l = |s: &str| format!("blk.{{i}}.{s}");
        WeightNames {
            embed: "token_embd.weight".into(),
            embed_norm: Some("token_embd_norm".into()),
            position_embed: Some("position_embd.weight".into()),
            final_norm: "output_norm".into(),
            lm_head: Some("output.weight".into()),
            attn_norm: Some(l("attn_norm")),
            post_attn_norm: Some(l("post_attention_norm")),
            ffn_norm: Some(l("ffn_norm")),
            post_ffn_norm: Some(l("post_ffw_norm")),
            qkv: QkvNames::Separate { q: l("attn_q"), k: l("attn_k"), v: l("attn_v") },
            o: l("attn_output"),
            q_norm: Some(l("attn_q_norm")),
            k_norm: Some(l("attn_k_norm")),
            gate_up: GateUpNames::Separate { gate: l("ffn_gate"), up: l("ffn_up") },
            down: l("ffn_down"),
            moe: None,
            transposed: false,
        }
    }
}

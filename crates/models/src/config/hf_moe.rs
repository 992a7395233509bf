//! The mixture-of-experts families (Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V2/V3): their dense
//! parts map like Llama (`hf::llama_like`); this adds the routed experts and, for DeepSeek,
//! multi-head latent attention.

use super::hf::HfConfig;
use super::moe::{MoeConfig, MoeNames, Scoring, SharedExperts, TopkMethod};
use super::names::{QkvNames, WeightNames};
use super::{MlaConfig, ModelConfig, PositionEncoding, RopeScaling};
use crate::{Error, Result};

fn req<T: Copy>(v: Option<T>, field: &str) -> Result<T> {
    v.ok_or_else(|| Error::config(field, "required for this mixture-of-experts family but missing"))
}

pub fn with_experts(
    raw: &HfConfig,
    family: &str,
    mut cfg: ModelConfig,
    mut names: WeightNames,
    has_tensor: &dyn Fn(&str) -> bool,
) -> Result<(ModelConfig, WeightNames)> {
    let top_k = req(raw.num_experts_per_tok, "num_experts_per_tok")?;
    let act = cfg.mlp.activation;
    let n = cfg.num_layers;
    let (moe, moe_names, is_moe): (MoeConfig, MoeNames, Box<dyn Fn(usize) -> bool>) = match family {
        "mixtral" => (
            MoeConfig::softmax_top_k(
                req(raw.num_local_experts, "num_local_experts")?,
                top_k,
                cfg.mlp.intermediate_size,
                act,
            ),
            MoeNames::mixtral("model."),
            Box::new(|_| true),
        ),
        "qwen2_moe" | "qwen3_moe" => {
            let shared = family == "qwen2_moe" && raw.shared_expert_intermediate_size.unwrap_or(0) > 0;
            let step = raw.decoder_sparse_step.unwrap_or(1).max(1);
            let dense: Vec<usize> = raw.mlp_only_layers.clone().unwrap_or_default();
            // transformers 5 writes Qwen3-MoE's expert count as `num_local_experts`.
            let experts = req(raw.num_experts.or(raw.num_local_experts), "num_experts")?;
            (
                MoeConfig {
                    num_experts: experts,
                    top_k,
                    expert_intermediate_size: req(raw.moe_intermediate_size, "moe_intermediate_size")?,
                    scoring: Scoring::Softmax,
                    norm_topk_prob: raw.norm_topk_prob.unwrap_or(false),
                    routed_scaling_factor: 1.0,
                    topk_method: TopkMethod::Greedy,
                    has_correction_bias: false,
                    shared_experts: shared.then(|| SharedExperts {
                        intermediate_size: raw.shared_expert_intermediate_size.unwrap_or(0),
                        gated_by_sigmoid: true,
                    }),
                    activation: act,
                },
                MoeNames::qwen_moe("model.", shared),
                Box::new(move |i| experts > 0 && !dense.contains(&i) && (i + 1) % step == 0),
            )
        }
        "deepseek_v2" | "deepseek_v3" => {
            let v3 = family == "deepseek_v3";
            let experts = req(raw.n_routed_experts, "n_routed_experts")?;
            let expert_ff = req(raw.moe_intermediate_size, "moe_intermediate_size")?;
            let groups =
                || -> Result<(usize, usize)> { Ok((req(raw.n_group, "n_group")?, req(raw.topk_group, "topk_group")?)) };
            let method = match raw.topk_method.as_deref().unwrap_or(if v3 { "noaux_tc" } else { "greedy" }) {
                "greedy" => TopkMethod::Greedy,
                "group_limited_greedy" => {
                    let (n_group, topk_group) = groups()?;
                    TopkMethod::GroupLimited { n_group, topk_group }
                }
                "noaux_tc" => {
                    let (n_group, topk_group) = groups()?;
                    TopkMethod::NoAuxTc { n_group, topk_group }
                }
                other => {
                    return Err(Error::config(
                        "topk_method",
                        format!("unsupported `{other}` (greedy, group_limited_greedy, noaux_tc)"),
                    ))
                }
            };
            let scoring = match raw.scoring_func.as_deref().unwrap_or(if v3 { "sigmoid" } else { "softmax" }) {
                "softmax" => Scoring::Softmax,
                "sigmoid" => Scoring::Sigmoid,
                other => {
                    return Err(Error::config("scoring_func", format!("unsupported `{other}` (softmax, sigmoid)")))
                }
            };
            let shared = raw.n_shared_experts.unwrap_or(0);
            let first_dense = raw.first_k_dense_replace.unwrap_or(0);
            let freq = raw.moe_layer_freq.unwrap_or(1).max(1);
            let has_bias = matches!(method, TopkMethod::NoAuxTc { .. });
            with_mla(raw, &mut cfg, &mut names, v3)?;
            (
                MoeConfig {
                    num_experts: experts,
                    top_k,
                    expert_intermediate_size: expert_ff,
                    scoring,
                    // transformers' V2 router never renormalises (it ignores the flag).
                    norm_topk_prob: v3 && raw.norm_topk_prob.unwrap_or(true),
                    routed_scaling_factor: raw.routed_scaling_factor.unwrap_or(1.0),
                    topk_method: method,
                    has_correction_bias: has_bias,
                    shared_experts: (shared > 0)
                        .then(|| SharedExperts { intermediate_size: expert_ff * shared, gated_by_sigmoid: false }),
                    activation: act,
                },
                MoeNames::deepseek("model.", has_bias),
                Box::new(move |i| experts > 0 && i >= first_dense && i % freq == 0),
            )
        }
        other => return Err(Error::config("model_type", format!("`{other}` is not a mixture-of-experts family"))),
    };
    // transformers 5 can also save experts stacked; use whichever layout the checkpoint has.
    let moe_names = if has_tensor("model.layers.0.mlp.experts.gate_up_proj")
        || (0..n).any(|i| has_tensor(&format!("model.layers.{i}.mlp.experts.gate_up_proj")))
    {
        moe_names.with_stacked_experts("model.")
    } else {
        moe_names
    };
    for (i, l) in cfg.layers.iter_mut().enumerate() {
        l.moe = is_moe(i);
    }
    cfg.moe = Some(moe);
    names.moe = Some(moe_names);
    cfg.validate()?;
    Ok((cfg, names))
}

/// DeepSeek's multi-head latent attention: q (optionally low-rank), a compressed kv latent plus
/// a shared rotary key, interleaved rope on `qk_rope_head_dim` dims, YaRN's mscale² on the scale.
fn with_mla(raw: &HfConfig, cfg: &mut ModelConfig, names: &mut WeightNames, v3: bool) -> Result<()> {
    let mla = MlaConfig {
        q_lora_rank: raw.q_lora_rank,
        kv_lora_rank: req(raw.kv_lora_rank, "kv_lora_rank")?,
        qk_nope_head_dim: req(raw.qk_nope_head_dim, "qk_nope_head_dim")?,
        qk_rope_head_dim: req(raw.qk_rope_head_dim, "qk_rope_head_dim")?,
        v_head_dim: req(raw.v_head_dim, "v_head_dim")?,
    };
    let qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim;
    let mut scale = (qk as f64).powf(-0.5);
    if let PositionEncoding::Rope(r) = &mut cfg.position {
        r.rotary_dim = mla.qk_rope_head_dim;
        r.interleaved = !v3 || raw.rope_interleave.unwrap_or(true);
        // transformers' yarn_apply_mscale: scale · mscale(factor, mscale_all_dim)².
        if let RopeScaling::Yarn { factor, .. } = r.scaling {
            let mad = raw
                .rope_parameters
                .as_ref()
                .and_then(|p| p.get("mscale_all_dim"))
                .and_then(|v| v.as_f64())
                .or_else(|| raw.rope_scaling.as_ref().and_then(|p| p.mscale_all_dim))
                .unwrap_or(0.0);
            if mad != 0.0 && factor > 1.0 {
                let m = 0.1 * mad * factor.ln() + 1.0;
                scale *= m * m;
            }
        }
    }
    cfg.attention.head_dim = qk;
    cfg.attention.num_kv_heads = cfg.attention.num_heads;
    cfg.attention.scale = scale as f32;
    cfg.attention.qkv_bias = raw.attention_bias.unwrap_or(false);
    cfg.attention.out_bias = raw.attention_bias.unwrap_or(false);
    cfg.attention.mla = Some(mla.clone());
    let l = |s: &str| format!("model.layers.{{i}}.self_attn.{s}");
    let low_rank = mla.q_lora_rank.is_some();
    names.qkv = QkvNames::Mla {
        q: (!low_rank).then(|| l("q_proj")),
        q_a: low_rank.then(|| l("q_a_proj")),
        q_a_norm: low_rank.then(|| l("q_a_layernorm")),
        q_b: low_rank.then(|| l("q_b_proj")),
        kv_a: l("kv_a_proj_with_mqa"),
        kv_a_norm: l("kv_a_layernorm"),
        kv_b: l("kv_b_proj"),
    };
    Ok(())
}

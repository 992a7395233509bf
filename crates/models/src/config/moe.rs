//! The mixture-of-experts block's resolved config ([`MoeConfig`]) and tensor names ([`MoeNames`]).
//!
//! One block serves Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V2 and DeepSeek-V3; the families
//! differ only in how the router turns logits into (expert, weight) pairs and in whether shared
//! experts run beside the routed ones. Semantics follow transformers 5.24:
//!
//! | family      | scoring | selection                    | renormalise       | scale | shared            |
//! |-------------|---------|------------------------------|-------------------|-------|-------------------|
//! | Mixtral     | softmax | greedy top-k                 | always            | 1     | —                 |
//! | Qwen2-MoE   | softmax | greedy top-k                 | `norm_topk_prob`  | 1     | one, sigmoid gate |
//! | Qwen3-MoE   | softmax | greedy top-k                 | `norm_topk_prob`  | 1     | —                 |
//! | DeepSeek-V2 | softmax | greedy or group-limited      | never (see below) | `routed_scaling_factor` | `n_shared_experts` fused |
//! | DeepSeek-V3 | sigmoid | bias-corrected group top-k   | `norm_topk_prob`  | `routed_scaling_factor` | `n_shared_experts` fused |
//!
//! DeepSeek-V2: transformers 5.24 ignores `norm_topk_prob` and always scales; DeepSeek's own
//! remote code renormalises *instead of* scaling when `norm_topk_prob` is set. The released V2
//! checkpoints all have `norm_topk_prob: false`, where the two agree.

use serde::Serialize;

use super::Activation;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct MoeConfig {
    /// Routed experts (`num_local_experts`, `num_experts`, `n_routed_experts`).
    pub num_experts: usize,
    /// Experts per token (`num_experts_per_tok`).
    pub top_k: usize,
    /// Each routed expert's feed-forward width (`moe_intermediate_size`; Mixtral `intermediate_size`).
    pub expert_intermediate_size: usize,
    pub scoring: Scoring,
    /// Divide the k selected weights by their sum.
    pub norm_topk_prob: bool,
    /// Multiplies the selected weights (after renormalising). 1 for Mixtral and Qwen.
    pub routed_scaling_factor: f32,
    pub topk_method: TopkMethod,
    /// The router has `e_score_correction_bias` (DeepSeek-V3): added to the scores to choose
    /// experts, never to the weights.
    pub has_correction_bias: bool,
    pub shared_experts: Option<SharedExperts>,
    /// Of every expert's gate: `down(act(gate(x)) * up(x))`.
    pub activation: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scoring {
    /// Softmax over all experts' logits, before selection.
    Softmax,
    /// Independent sigmoid per expert (DeepSeek-V3 `scoring_func: sigmoid`).
    Sigmoid,
}

/// How the k experts are chosen from the (possibly bias-corrected) scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TopkMethod {
    /// The k highest scores.
    Greedy,
    /// DeepSeek-V2 `group_limited_greedy`: experts are split into `n_group` equal groups, a group
    /// scores the max of its experts, and the k experts come from the best `topk_group` groups.
    GroupLimited { n_group: usize, topk_group: usize },
    /// DeepSeek-V3 `noaux_tc`: as above, but a group scores the sum of its two best
    /// `score + e_score_correction_bias`, and experts are chosen by that biased score too.
    NoAuxTc { n_group: usize, topk_group: usize },
}

/// Always-on experts beside the routed ones, as one gated MLP (DeepSeek fuses its
/// `n_shared_experts` into one of width `n_shared_experts * moe_intermediate_size`).
#[derive(Debug, Clone, Serialize)]
pub struct SharedExperts {
    pub intermediate_size: usize,
    /// Qwen2-MoE: the shared output is multiplied by `sigmoid(shared_expert_gate(x))`.
    pub gated_by_sigmoid: bool,
}

/// No real model comes near these; the bounds keep `num_experts * intermediate * hidden` far
/// from overflow and a hostile config from allocating per-expert tables.
const MAX_EXPERTS: usize = 1 << 16;
const MAX_SIZE: usize = 1 << 31;

impl MoeConfig {
    /// Mixtral-style routing: softmax over all experts, the top `top_k`, renormalised; no shared
    /// experts. Other families start here and override fields.
    pub fn softmax_top_k(
        num_experts: usize,
        top_k: usize,
        expert_intermediate_size: usize,
        activation: Activation,
    ) -> Self {
        MoeConfig {
            num_experts,
            top_k,
            expert_intermediate_size,
            scoring: Scoring::Softmax,
            norm_topk_prob: true,
            routed_scaling_factor: 1.0,
            topk_method: TopkMethod::Greedy,
            has_correction_bias: false,
            shared_experts: None,
            activation,
        }
    }

    /// Checks the invariants routing relies on (it indexes by them). Names the HF field.
    pub fn validate(&self) -> Result<()> {
        let n = self.num_experts;
        if n == 0 || n > MAX_EXPERTS {
            return Err(Error::config("num_experts", format!("must be in 1..={MAX_EXPERTS}, got {n}")));
        }
        if self.top_k == 0 || self.top_k > n {
            return Err(Error::config(
                "num_experts_per_tok",
                format!("must be in 1..={n} (num_experts), got {}", self.top_k),
            ));
        }
        let i = self.expert_intermediate_size;
        if i == 0 || i > MAX_SIZE {
            return Err(Error::config("moe_intermediate_size", format!("must be in 1..={MAX_SIZE}, got {i}")));
        }
        let s = self.routed_scaling_factor;
        if !(s.is_finite() && s > 0.0) {
            return Err(Error::config("routed_scaling_factor", format!("must be finite and > 0, got {s}")));
        }
        if let TopkMethod::GroupLimited { n_group, topk_group } | TopkMethod::NoAuxTc { n_group, topk_group } =
            self.topk_method
        {
            if n_group == 0 || n % n_group != 0 {
                return Err(Error::config("n_group", format!("must be > 0 and divide num_experts {n}, got {n_group}")));
            }
            if topk_group == 0 || topk_group > n_group {
                return Err(Error::config(
                    "topk_group",
                    format!("must be in 1..={n_group} (n_group), got {topk_group}"),
                ));
            }
            let reachable = topk_group * (n / n_group);
            if self.top_k > reachable {
                return Err(Error::config(
                    "num_experts_per_tok",
                    format!(
                        "{} exceeds the {reachable} experts in the topk_group {topk_group} best groups of {}",
                        self.top_k,
                        n / n_group
                    ),
                ));
            }
            if matches!(self.topk_method, TopkMethod::NoAuxTc { .. }) && n / n_group < 2 {
                return Err(Error::config(
                    "n_group",
                    format!("noaux_tc scores a group by its top 2 experts; {n_group} groups of {n} experts leave {} per group", n / n_group),
                ));
            }
        }
        if let Some(sh) = &self.shared_experts {
            let i = sh.intermediate_size;
            if i == 0 || i > MAX_SIZE {
                return Err(Error::config(
                    "shared_expert_intermediate_size",
                    format!("must be in 1..={MAX_SIZE}, got {i}"),
                ));
            }
        }
        Ok(())
    }
}

/// Where the block finds its tensors. Templates: `{i}` is the layer, `{e}` the expert. A router,
/// per-expert or shared name is a linear *prefix* (`.weight` is appended, as in
/// [`WeightNames`](super::WeightNames)); stacked-expert and correction-bias names are full tensor names.
#[derive(Debug, Clone, Serialize)]
pub struct MoeNames {
    /// Router, (num_experts, hidden).
    pub router: String,
    pub experts: ExpertNames,
    /// (num_experts,), f32.
    pub correction_bias: Option<String>,
    pub shared: Option<FfnNames>,
    /// Qwen2-MoE `shared_expert_gate`, (1, hidden).
    pub shared_gate: Option<String>,
}

/// Gate, up and down projections of one gated MLP (a field per name, so they cannot be swapped).
#[derive(Debug, Clone, Serialize)]
pub enum ExpertNames {
    /// One 2-D linear per expert: the hub layout, and what transformers 5 `save_pretrained`
    /// writes by default (it converts its stacked parameters back).
    PerExpert(FfnNames),
    /// transformers 5's in-memory layout, written by `save_pretrained(save_original_format=False)`:
    /// `gate_up` (E, 2·I, H) with gate rows first, `down` (E, H, I).
    StackedGateUp { gate_up: String, down: String },
    /// Separate 3-D stacks (llama.cpp `ffn_{gate,up,down}_exps`): (E, I, H), (E, I, H), (E, H, I).
    /// Block-quantized stacks stay quantized, split per expert.
    Stacked(FfnNames),
}

#[derive(Debug, Clone, Serialize)]
pub struct FfnNames {
    pub gate: String,
    pub up: String,
    pub down: String,
}

/// Expands `{i}` (layer) and `{e}` (expert) in a template.
pub fn expert(template: &str, layer: usize, expert: usize) -> String {
    super::names::layer(template, layer).replace("{e}", &expert.to_string())
}

impl FfnNames {
    fn hf(prefix: &str) -> Self {
        FfnNames {
            gate: format!("{prefix}.gate_proj"),
            up: format!("{prefix}.up_proj"),
            down: format!("{prefix}.down_proj"),
        }
    }
}

impl MoeNames {
    /// Mixtral hub layout: `{prefix}layers.{i}.block_sparse_moe.{gate, experts.{e}.w1/w3/w2}`
    /// (w1 gate, w3 up, w2 down). `prefix` is `model.` as in [`WeightNames::hf_llama_like`](super::WeightNames::hf_llama_like).
    pub fn mixtral(prefix: &str) -> Self {
        let m = format!("{prefix}layers.{{i}}.block_sparse_moe");
        MoeNames {
            router: format!("{m}.gate"),
            experts: ExpertNames::PerExpert(FfnNames {
                gate: format!("{m}.experts.{{e}}.w1"),
                up: format!("{m}.experts.{{e}}.w3"),
                down: format!("{m}.experts.{{e}}.w2"),
            }),
            correction_bias: None,
            shared: None,
            shared_gate: None,
        }
    }

    /// Qwen2-MoE / Qwen3-MoE: `mlp.gate`, `mlp.experts.{e}.{gate,up,down}_proj`, and for
    /// Qwen2-MoE (`shared`) `mlp.shared_expert.*` with `mlp.shared_expert_gate`.
    pub fn qwen_moe(prefix: &str, shared: bool) -> Self {
        let m = format!("{prefix}layers.{{i}}.mlp");
        MoeNames {
            router: format!("{m}.gate"),
            experts: ExpertNames::PerExpert(FfnNames::hf(&format!("{m}.experts.{{e}}"))),
            correction_bias: None,
            shared: shared.then(|| FfnNames::hf(&format!("{m}.shared_expert"))),
            shared_gate: shared.then(|| format!("{m}.shared_expert_gate")),
        }
    }

    /// DeepSeek-V2/V3: `mlp.gate`, `mlp.experts.{e}.*`, `mlp.shared_experts.*`, and for V3
    /// (`correction_bias`) `mlp.gate.e_score_correction_bias`.
    pub fn deepseek(prefix: &str, correction_bias: bool) -> Self {
        let m = format!("{prefix}layers.{{i}}.mlp");
        MoeNames {
            router: format!("{m}.gate"),
            experts: ExpertNames::PerExpert(FfnNames::hf(&format!("{m}.experts.{{e}}"))),
            correction_bias: correction_bias.then(|| format!("{m}.gate.e_score_correction_bias")),
            shared: Some(FfnNames::hf(&format!("{m}.shared_experts"))),
            shared_gate: None,
        }
    }

    /// The same block as written by `save_pretrained(save_original_format=False)`: experts as
    /// `mlp.experts.gate_up_proj` / `mlp.experts.down_proj`, and Mixtral's `block_sparse_moe`
    /// renamed to `mlp`. A mapping picks this when the checkpoint has those tensors.
    pub fn with_stacked_experts(mut self, prefix: &str) -> Self {
        let m = format!("{prefix}layers.{{i}}.mlp");
        self.router = self.router.replace(".block_sparse_moe.", ".mlp.");
        self.experts = ExpertNames::StackedGateUp {
            gate_up: format!("{m}.experts.gate_up_proj"),
            down: format!("{m}.experts.down_proj"),
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> MoeConfig {
        MoeConfig::softmax_top_k(8, 2, 16, Activation::Silu)
    }

    fn err_field(c: &MoeConfig) -> String {
        match c.validate() {
            Err(Error::Config { field, msg }) => format!("{field}: {msg}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn validate_names_field_and_value() {
        assert!(base().validate().is_ok());
        let c = MoeConfig { top_k: 9, ..base() };
        assert_eq!(err_field(&c), "num_experts_per_tok: must be in 1..=8 (num_experts), got 9");
        let c = MoeConfig { topk_method: TopkMethod::GroupLimited { n_group: 3, topk_group: 1 }, ..base() };
        assert_eq!(err_field(&c), "n_group: must be > 0 and divide num_experts 8, got 3");
        let c = MoeConfig { topk_method: TopkMethod::NoAuxTc { n_group: 4, topk_group: 5 }, ..base() };
        assert_eq!(err_field(&c), "topk_group: must be in 1..=4 (n_group), got 5");
        // 1 group of 2 experts cannot supply 3.
        let c = MoeConfig { top_k: 3, topk_method: TopkMethod::GroupLimited { n_group: 4, topk_group: 1 }, ..base() };
        assert!(err_field(&c).starts_with("num_experts_per_tok: 3 exceeds the 2 experts"));
        let c = MoeConfig { top_k: 1, topk_method: TopkMethod::NoAuxTc { n_group: 8, topk_group: 2 }, ..base() };
        assert!(err_field(&c).starts_with("n_group: noaux_tc scores a group by its top 2"));
        let c = MoeConfig { routed_scaling_factor: f32::NAN, ..base() };
        assert_eq!(err_field(&c), "routed_scaling_factor: must be finite and > 0, got NaN");
        let c = MoeConfig {
            shared_experts: Some(SharedExperts { intermediate_size: 0, gated_by_sigmoid: true }),
            ..base()
        };
        assert_eq!(err_field(&c), "shared_expert_intermediate_size: must be in 1..=2147483648, got 0");
    }

    #[test]
    fn names_expand_layer_and_expert() {
        let n = MoeNames::mixtral("model.");
        let ExpertNames::PerExpert(f) = &n.experts else { panic!("per-expert") };
        assert_eq!(expert(&f.up, 3, 7), "model.layers.3.block_sparse_moe.experts.7.w3");
        let s = n.with_stacked_experts("model.");
        assert_eq!(s.router, "model.layers.{i}.mlp.gate");
        let ExpertNames::StackedGateUp { gate_up, .. } = &s.experts else { panic!("stacked") };
        assert_eq!(expert(gate_up, 1, 0), "model.layers.1.mlp.experts.gate_up_proj");
        let d = MoeNames::deepseek("model.", true);
        assert_eq!(
            expert(d.correction_bias.as_deref().unwrap(), 2, 0),
            "model.layers.2.mlp.gate.e_score_correction_bias"
        );
    }
}

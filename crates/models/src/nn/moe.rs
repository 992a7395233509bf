//! The mixture-of-experts block: a router picks `top_k` of `num_experts` gated MLPs per token,
//! their outputs are summed with the routing weights, and optional shared experts run on every
//! token. One block for Mixtral, Qwen2/3-MoE and DeepSeek-V2/V3; [`MoeConfig`] says how they differ.
//!
//! [`Moe::forward`] groups tokens by expert so each expert runs one matmul over all its tokens
//! (gather rows → gate/up/down → scale → one scatter-add), never a loop over tokens. Routing
//! itself runs on the host in f32: the per-expert row lists have to be there to size the
//! gathers, and `(tokens, num_experts)` floats are cheap to copy next to the expert matmuls.
//! Out of scope: expert biases (none of these families has them), capacity limits and token
//! dropping (inference never drops), fused MoE kernels.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{DType, Tensor};

use super::build::Builder;
use super::linear::Linear;
use super::mlp::{GateUp, Mlp};
use crate::config::moe::{expert, ExpertNames, MoeConfig, MoeNames, Scoring, TopkMethod};
use crate::config::names::layer as at;
use crate::loader::WeightData;
use crate::parallel::shard::{self, Cut, Shard};
use crate::{Error, Result, TensorContext};

/// One gated MLP, `down(act(gate(x)) * up(x))`, for building a [`Moe`] by hand.
pub struct GatedFfn {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// Everything a [`Moe`] holds besides its config, for [`Moe::new`].
pub struct MoeParts {
    /// (num_experts, hidden)
    pub router: Tensor,
    /// (num_experts,): DeepSeek-V3's `e_score_correction_bias`.
    pub correction_bias: Option<Tensor>,
    pub experts: Vec<GatedFfn>,
    pub shared: Option<GatedFfn>,
    /// (hidden → 1): Qwen2-MoE's `shared_expert_gate`.
    pub shared_gate: Option<Linear>,
}

pub struct Moe {
    cfg: MoeConfig,
    /// (num_experts, hidden), f32
    router: Tensor,
    /// (num_experts,) on the host, where routing runs.
    correction_bias: Option<Vec<f32>>,
    /// The experts `local` (all of them, unless split across tensor-parallel ranks).
    experts: Vec<Mlp>,
    local: Range<usize>,
    shared: Option<Mlp>,
    shared_gate: Option<Linear>,
}

/// The routing decision for `n` tokens: token `t`'s experts and weights are
/// `experts[t * k..(t + 1) * k]`, `weights[..]` alike, in selection order.
#[derive(Debug)]
struct Routes {
    k: usize,
    experts: Vec<u32>,
    weights: Vec<f32>,
}

impl Moe {
    /// Loads layer `layer`'s block. `hidden` is the model's hidden size.
    pub fn load(b: &Builder, cfg: &MoeConfig, names: &MoeNames, layer: usize, hidden: usize) -> Result<Moe> {
        Self::load_rank(b, cfg, names, layer, hidden, Shard::SINGLE)
    }

    /// [`Moe::load`] for one tensor-parallel rank: its contiguous share of the routed experts
    /// (expert parallelism; the router is replicated, so every rank routes alike), and the
    /// shared experts split like a dense MLP. The block's output is then this rank's partial sum.
    pub(crate) fn load_rank(
        b: &Builder,
        cfg: &MoeConfig,
        names: &MoeNames,
        layer: usize,
        hidden: usize,
        sh: Shard,
    ) -> Result<Moe> {
        cfg.validate()?;
        let (n, ff) = (cfg.num_experts, cfg.expert_intermediate_size);
        let local = sh.ceil_part(n);
        let mlp = |gate_up, down| Mlp { gate_up, down, activation: cfg.activation };
        let experts = match &names.experts {
            ExpertNames::PerExpert(f) => local
                .clone()
                .map(|e| {
                    let lin = |t: &str, out, inp| b.linear(&expert(t, layer, e), out, inp, false, false);
                    let gate_up = GateUp::Separate { gate: lin(&f.gate, ff, hidden)?, up: lin(&f.up, ff, hidden)? };
                    Ok(mlp(gate_up, lin(&f.down, hidden, ff)?))
                })
                .collect::<Result<Vec<_>>>()?,
            ExpertNames::StackedGateUp { gate_up, down } => {
                let gate_ups = split_stacked(b, &at(gate_up, layer), n, 2 * ff, hidden, &local)?;
                let downs = split_stacked(b, &at(down, layer), n, hidden, ff, &local)?;
                gate_ups.into_iter().zip(downs).map(|(gu, d)| mlp(GateUp::Fused(gu), d)).collect()
            }
            ExpertNames::Stacked(f) => {
                let gates = split_stacked(b, &at(&f.gate, layer), n, ff, hidden, &local)?;
                let ups = split_stacked(b, &at(&f.up, layer), n, ff, hidden, &local)?;
                let downs = split_stacked(b, &at(&f.down, layer), n, hidden, ff, &local)?;
                gates
                    .into_iter()
                    .zip(ups)
                    .zip(downs)
                    .map(|((gate, up), d)| mlp(GateUp::Separate { gate, up }, d))
                    .collect()
            }
        };
        let correction_bias = match (cfg.has_correction_bias, &names.correction_bias) {
            (true, Some(name)) => Some(b.tensor(&at(name, layer), &[n])?),
            (true, None) => {
                return Err(Error::config("e_score_correction_bias", "enabled but the family maps no bias tensor"))
            }
            (false, _) => None,
        };
        let shared = match (&cfg.shared_experts, &names.shared) {
            (Some(se), Some(f)) => {
                let ff = se.intermediate_size;
                let part = sh.even_part(ff, "shared_expert_intermediate_size")?;
                let lin = |t: &str, full, cut| shard::linear(b, sh, &at(t, layer), full, false, false, cut);
                let cols = || Cut::Out(vec![part.clone()]);
                let gate_up = GateUp::Separate {
                    gate: lin(&f.gate, (ff, hidden), cols())?,
                    up: lin(&f.up, (ff, hidden), cols())?,
                };
                Some(mlp(gate_up, lin(&f.down, (hidden, ff), Cut::In(part.clone()))?))
            }
            (Some(_), None) => return Err(Error::config("shared_experts", "enabled but the family maps no tensors")),
            (None, _) => None,
        };
        let gated = cfg.shared_experts.as_ref().is_some_and(|s| s.gated_by_sigmoid);
        let shared_gate = match (gated, &names.shared_gate) {
            (true, Some(name)) => Some(b.linear(&at(name, layer), 1, hidden, false, false)?),
            (true, None) => return Err(Error::config("shared_expert_gate", "enabled but the family maps no tensor")),
            (false, _) => None,
        };
        let router = b.tensor(&format!("{}.weight", at(&names.router, layer)), &[n, hidden])?;
        Self::assemble(cfg.clone(), router, correction_bias, (local, experts), shared, shared_gate)
    }

    /// A block from weights already in memory (tests, benchmarks, conversions).
    pub fn new(cfg: MoeConfig, parts: MoeParts) -> Result<Moe> {
        cfg.validate()?;
        let act = cfg.activation;
        let mlp =
            |f: GatedFfn| Mlp { gate_up: GateUp::Separate { gate: f.gate, up: f.up }, down: f.down, activation: act };
        let experts = parts.experts.into_iter().map(mlp).collect();
        let all = 0..cfg.num_experts;
        Self::assemble(
            cfg,
            parts.router,
            parts.correction_bias,
            (all, experts),
            parts.shared.map(mlp),
            parts.shared_gate,
        )
    }

    fn assemble(
        cfg: MoeConfig,
        router: Tensor,
        correction_bias: Option<Tensor>,
        (local, experts): (Range<usize>, Vec<Mlp>),
        shared: Option<Mlp>,
        shared_gate: Option<Linear>,
    ) -> Result<Moe> {
        let n = cfg.num_experts;
        let router = router.to_dtype(DType::F32).ctx("router to f32")?;
        if router.rank() != 2 || router.dim(0).ctx("router")? != n {
            return Err(Error::config(
                "num_experts",
                format!("router has shape {:?}, expected ({n}, hidden)", router.dims()),
            ));
        }
        if experts.len() != local.len() || local.end > n {
            return Err(Error::config(
                "num_experts",
                format!("{} experts given for experts {local:?}, config says {n}", experts.len()),
            ));
        }
        let correction_bias = match (cfg.has_correction_bias, correction_bias) {
            (true, Some(t)) => {
                let v = t.to_dtype(DType::F32).and_then(|t| t.to_vec1::<f32>()).ctx("e_score_correction_bias")?;
                if v.len() != n {
                    return Err(Error::config(
                        "e_score_correction_bias",
                        format!("{} entries for {n} experts", v.len()),
                    ));
                }
                Some(v)
            }
            (false, None) => None,
            (true, None) => return Err(Error::config("e_score_correction_bias", "enabled but no tensor given")),
            (false, Some(_)) => {
                return Err(Error::config("e_score_correction_bias", "tensor given but has_correction_bias is false"))
            }
        };
        let gated = cfg.shared_experts.as_ref().map(|s| s.gated_by_sigmoid);
        if gated.is_some() != shared.is_some() || (gated == Some(true)) != shared_gate.is_some() {
            return Err(Error::config("shared_experts", "the shared expert (and its gate) must match the config"));
        }
        Ok(Moe { cfg, router, correction_bias, experts, local, shared, shared_gate })
    }

    pub fn config(&self) -> &MoeConfig {
        &self.cfg
    }

    /// `x`: (b, t, hidden) → (b, t, hidden). Each expert runs once, over the rows routed to it.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3().ctx("moe input")?;
        // (b, t, hidden) → (n, hidden)
        let xs = x.reshape((b * t, h)).ctx("moe flatten")?;
        let routes = self.route(&xs)?;
        let n = b * t;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.cfg.num_experts];
        let mut row_weights: Vec<Vec<f32>> = vec![Vec::new(); self.cfg.num_experts];
        for (slot, (&e, &w)) in routes.experts.iter().zip(&routes.weights).enumerate() {
            rows[e as usize].push((slot / routes.k) as u32);
            row_weights[e as usize].push(w);
        }
        // Expert outputs in expert order, with the token each row goes back to.
        let mut outs = Vec::new();
        let mut dest: Vec<u32> = Vec::with_capacity(n * routes.k);
        let mut weights: Vec<f32> = Vec::with_capacity(n * routes.k);
        for (e, expert) in self.local.clone().zip(&self.experts) {
            if rows[e].is_empty() {
                continue;
            }
            let ids = Tensor::new(rows[e].as_slice(), xs.device()).ctx("expert rows")?;
            // (m_e, hidden)
            let xe = xs.index_select(&ids, 0).ctx("gather expert rows")?;
            // (Each row keeps its token's prompt mark for the CPU kernels.)
            outs.push(crate::kernels::with_picked_rows(n, &rows[e], || expert.forward(&xe))?);
            dest.extend_from_slice(&rows[e]);
            weights.extend_from_slice(&row_weights[e]);
        }
        let m = dest.len();
        if m == 0 {
            // No token chose this rank's experts.
            return self.add_shared(&xs, xs.zeros_like().ctx("moe output")?)?.reshape((b, t, h)).ctx("moe unflatten");
        }
        // (m ≤ n * k, hidden), scaled row-wise by the routing weights
        let y = Tensor::cat(&outs, 0).ctx("concat expert outputs")?;
        let w = Tensor::from_vec(weights, (m, 1), xs.device()).ctx("routing weights")?.to_dtype(y.dtype())?;
        let y = y.broadcast_mul(&w).ctx("scale by routing weights")?;
        let dest = Tensor::from_vec(dest, m, xs.device()).ctx("scatter rows")?;
        // Each token receives its k rows; index_add sums repeated destinations.
        let out = xs.zeros_like().ctx("moe output")?.index_add(&dest, &y, 0).ctx("scatter expert outputs")?;
        self.add_shared(&xs, out)?.reshape((b, t, h)).ctx("moe unflatten")
    }

    /// The obvious reference: every expert on every token, weighted by a dense (n, experts)
    /// matrix that is zero off the routed experts. For tests and benchmarks.
    pub fn forward_naive(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3().ctx("moe input")?;
        let xs = x.reshape((b * t, h)).ctx("moe flatten")?;
        let routes = self.route(&xs)?;
        let ne = self.cfg.num_experts;
        let mut dense = vec![0f32; b * t * ne];
        for (slot, (&e, &w)) in routes.experts.iter().zip(&routes.weights).enumerate() {
            dense[slot / routes.k * ne + e as usize] = w;
        }
        // (n, experts)
        let dense = Tensor::from_vec(dense, (b * t, ne), xs.device()).ctx("dense routing")?.to_dtype(xs.dtype())?;
        let mut out = xs.zeros_like().ctx("moe output")?;
        for (e, expert) in self.local.clone().zip(&self.experts) {
            let w = dense.narrow(1, e, 1).ctx("expert column")?;
            out = (out + expert.forward(&xs)?.broadcast_mul(&w).ctx("scale expert")?).ctx("sum experts")?;
        }
        self.add_shared(&xs, out)?.reshape((b, t, h)).ctx("moe unflatten")
    }

    /// `xs`: (n, hidden); `out`: (n, hidden) routed output.
    fn add_shared(&self, xs: &Tensor, out: Tensor) -> Result<Tensor> {
        let Some(shared) = &self.shared else { return Ok(out) };
        let mut s = shared.forward(xs)?;
        if let Some(g) = &self.shared_gate {
            // (n, 1)
            let gate = candle_nn::ops::sigmoid(&g.forward(xs)?).ctx("shared expert gate")?;
            s = s.broadcast_mul(&gate).ctx("gate shared expert")?;
        }
        (out + s).ctx("add shared experts")
    }

    /// Router logits in f32 for `xs` (n, hidden), then each token's experts and weights.
    fn route(&self, xs: &Tensor) -> Result<Routes> {
        let xs = xs.to_dtype(DType::F32).ctx("router input to f32")?;
        // (n, experts)
        let logits = xs.matmul(&self.router.t().ctx("router")?).ctx("router logits")?;
        let logits = logits.flatten_all().and_then(|l| l.to_vec1::<f32>()).ctx("router logits to host")?;
        let k = self.cfg.top_k;
        let n = logits.len() / self.cfg.num_experts;
        let mut routes = Routes { k, experts: Vec::with_capacity(n * k), weights: Vec::with_capacity(n * k) };
        for token in logits.chunks_exact(self.cfg.num_experts) {
            self.route_token(token, &mut routes);
        }
        Ok(routes)
    }

    /// Appends one token's k (expert, weight) pairs. Ties go to the lower expert index
    /// (`torch.topk` leaves them unspecified).
    fn route_token(&self, logits: &[f32], routes: &mut Routes) {
        let c = &self.cfg;
        let scores: Vec<f32> = match c.scoring {
            Scoring::Softmax => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
                let sum: f32 = exp.iter().sum();
                exp.into_iter().map(|v| v / sum).collect()
            }
            Scoring::Sigmoid => logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect(),
        };
        // Selection uses the bias-corrected scores; the weights never see the bias.
        let choice: Vec<f32> = match &self.correction_bias {
            Some(bias) => scores.iter().zip(bias).map(|(s, b)| s + b).collect(),
            None => scores.clone(),
        };
        let mut candidates: Vec<usize> = match c.topk_method {
            TopkMethod::Greedy => (0..c.num_experts).collect(),
            TopkMethod::GroupLimited { n_group, topk_group } | TopkMethod::NoAuxTc { n_group, topk_group } => {
                let size = c.num_experts / n_group;
                let group_score = |g: usize| -> f32 {
                    let members = &choice[g * size..(g + 1) * size];
                    match c.topk_method {
                        TopkMethod::NoAuxTc { .. } => {
                            top_k_of(members, (0..size).collect(), 2).iter().map(|&i| members[i]).sum()
                        }
                        _ => members.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                    }
                };
                let group_scores: Vec<f32> = (0..n_group).map(group_score).collect();
                let groups = top_k_of(&group_scores, (0..n_group).collect(), topk_group);
                groups.into_iter().flat_map(|g| g * size..(g + 1) * size).collect()
            }
        };
        candidates = top_k_of(&choice, candidates, c.top_k);
        let mut weights: Vec<f32> = candidates.iter().map(|&e| scores[e]).collect();
        if c.norm_topk_prob {
            // The epsilon is DeepSeek-V3's; it changes nothing unless every weight underflows.
            let sum = weights.iter().sum::<f32>() + 1e-20;
            weights.iter_mut().for_each(|w| *w /= sum);
        }
        for (e, w) in candidates.into_iter().zip(weights) {
            routes.experts.push(e as u32);
            routes.weights.push(w * c.routed_scaling_factor);
        }
    }
}

/// The `k` of `candidates` with the highest `values`, best first, ties to the lower index.
/// `k <= candidates.len()` (guaranteed by `MoeConfig::validate`).
fn top_k_of(values: &[f32], mut candidates: Vec<usize>, k: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, order);
        candidates.truncate(k);
    }
    candidates.sort_by(order);
    candidates
}

/// Splits a (num, rows, cols) stack into `num` linears of (rows, cols). Dense stacks share the
/// storage; block-quantized ones are cut on expert boundaries and stay quantized.
/// Only the experts `keep` are returned; when that is not all of them, dense ones are copied out
/// so the rest of the stack can be freed.
fn split_stacked(
    b: &Builder,
    name: &str,
    num: usize,
    rows: usize,
    cols: usize,
    keep: &Range<usize>,
) -> Result<Vec<Linear>> {
    let linear = |w| Linear::new(w, None, rows);
    let some = keep.len() < num;
    match b.raw(name, &[num, rows, cols])? {
        WeightData::Dense(t) => keep
            .clone()
            .map(|e| {
                let w = t.get(e).and_then(|w| if some { w.copy() } else { Ok(w) }).ctx(name)?;
                Ok(linear(QMatMul::Tensor(w)))
            })
            .collect(),
        WeightData::Quantized(q) => {
            let data = q.data().ctx(name)?;
            let dtype = q.dtype();
            let per = data.len() / num;
            // An expert is whole rows, so whole blocks (every GGUF row is whole blocks); the
            // alignment check turns candle's assert on a misaligned slice into an error.
            let align = (dtype.type_size() & dtype.type_size().wrapping_neg()).min(4);
            let bad = |msg: String| Error::bad_file(b.weights.path_of(name), format!("tensor `{name}`: {msg}"));
            if data.len() % num != 0 || per % dtype.type_size() != 0 {
                return Err(bad(format!("{} bytes of {dtype:?} do not split into {num} experts", data.len())));
            }
            keep.clone()
                .map(|e| {
                    let bytes = &data[e * per..(e + 1) * per];
                    if bytes.as_ptr() as usize % align != 0 {
                        return Err(bad(format!("expert {e} is not {align}-byte aligned")));
                    }
                    let storage = QStorage::from_data(Cow::Borrowed(bytes), b.device, dtype).ctx(name)?;
                    let qt = QTensor::new(storage, (rows, cols)).ctx(name)?;
                    Ok(linear(QMatMul::from_arc(Arc::new(qt)).ctx(name)?))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::config::moe::{FfnNames, SharedExperts};
    use crate::config::Activation;
    use crate::loader::Weights;

    const HIDDEN: usize = 8;

    /// Test weights from an exact integer hash (splitmix64 of `seed * 1000003 + j`), uniform in
    /// `[-scale, scale)` with 24 bits, so transformers can be fed bit-identical tensors (the CPU
    /// `randn` cannot be seeded). The generator lives in the comment above the goldens.
    fn det(seed: u64, shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n as u64)
            .map(|j| {
                let mut z = (seed * 1_000_003 + j).wrapping_add(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn lin(w: Tensor) -> Linear {
        let out = w.dim(0).unwrap();
        Linear::new(QMatMul::Tensor(w), None, out)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    fn cfg(num_experts: usize, top_k: usize) -> MoeConfig {
        MoeConfig::softmax_top_k(num_experts, top_k, 4, Activation::Silu)
    }

    fn ffn(seed: u64, ff: usize, hidden: usize) -> GatedFfn {
        GatedFfn {
            gate: lin(det(seed, &[ff, hidden], 0.5)),
            up: lin(det(seed + 1, &[ff, hidden], 0.5)),
            down: lin(det(seed + 2, &[hidden, ff], 0.5)),
        }
    }

    /// A block with hash weights, built by hand through [`Moe::new`].
    fn hand_built(cfg: MoeConfig, hidden: usize) -> Moe {
        let n = cfg.num_experts;
        let parts = MoeParts {
            router: det(1, &[n, hidden], 1.0),
            correction_bias: cfg.has_correction_bias.then(|| det(2, &[n], 0.25)),
            experts: (0..n as u64).map(|e| ffn(100 + 3 * e, cfg.expert_intermediate_size, hidden)).collect(),
            shared: cfg.shared_experts.as_ref().map(|s| ffn(900, s.intermediate_size, hidden)),
            shared_gate: cfg
                .shared_experts
                .as_ref()
                .filter(|s| s.gated_by_sigmoid)
                .map(|_| lin(det(903, &[1, hidden], 0.5))),
        };
        Moe::new(cfg, parts).unwrap()
    }

    fn grouped_matches_naive(cfg: MoeConfig) {
        let hidden = 16;
        let moe = hand_built(cfg, hidden);
        // (2, 7, hidden): enough tokens that every expert gets some and some get several.
        let x = det(7, &[2, 7, hidden], 1.0);
        let grouped = moe.forward(&x).unwrap();
        let naive = moe.forward_naive(&x).unwrap();
        assert_eq!(grouped.dims(), &[2, 7, hidden]);
        let d = max_diff(&grouped, &naive);
        assert!(d < 1e-5, "grouped vs naive maxdiff {d:e}");
        // The output is not trivially zero, so the comparison means something.
        assert!(naive.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-2);
    }

    #[test]
    fn grouped_equals_naive_softmax_top2() {
        grouped_matches_naive(cfg(8, 2));
    }

    #[test]
    fn grouped_equals_naive_sigmoid_group_limited_bias() {
        grouped_matches_naive(MoeConfig {
            scoring: Scoring::Sigmoid,
            topk_method: TopkMethod::NoAuxTc { n_group: 4, topk_group: 2 },
            has_correction_bias: true,
            routed_scaling_factor: 2.5,
            top_k: 3,
            ..cfg(16, 3)
        });
        grouped_matches_naive(MoeConfig {
            topk_method: TopkMethod::GroupLimited { n_group: 4, topk_group: 1 },
            norm_topk_prob: false,
            routed_scaling_factor: 2.0,
            ..cfg(8, 2)
        });
    }

    #[test]
    fn grouped_equals_naive_shared_experts() {
        let shared = |gated_by_sigmoid| Some(SharedExperts { intermediate_size: 6, gated_by_sigmoid });
        grouped_matches_naive(MoeConfig { shared_experts: shared(true), norm_topk_prob: false, ..cfg(4, 2) });
        grouped_matches_naive(MoeConfig { shared_experts: shared(false), ..cfg(8, 1) });
    }

    /// Routes one token whose router logits are exactly `logits` (identity router).
    fn route_logits(cfg: MoeConfig, logits: &[f32], bias: Option<&[f32]>) -> (Vec<u32>, Vec<f32>) {
        let n = logits.len();
        let eye = Tensor::eye(n, DType::F32, &Device::Cpu).unwrap();
        let parts = MoeParts {
            router: eye,
            correction_bias: bias.map(|b| Tensor::new(b, &Device::Cpu).unwrap()),
            experts: (0..n as u64).map(|e| ffn(e, 2, n)).collect(),
            shared: None,
            shared_gate: None,
        };
        let moe = Moe::new(MoeConfig { has_correction_bias: bias.is_some(), ..cfg }, parts).unwrap();
        let r = moe.route(&Tensor::new(logits, &Device::Cpu).unwrap().unsqueeze(0).unwrap()).unwrap();
        (r.experts, r.weights)
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn routing_picks_expected_experts() {
        let (e1, e2, e3) = (1f32.exp(), 2f32.exp(), 3f32.exp());
        // Softmax, top-2, renormalised: the two largest logits, best first.
        let (ex, w) = route_logits(cfg(4, 2), &[1.0, 3.0, 2.0, 0.0], None);
        assert_eq!(ex, [1, 2]);
        assert_close(&w, &[e3 / (e3 + e2), e2 / (e3 + e2)]);
        // Without renormalising the weights are the softmax over all four.
        let z = 1.0 + e1 + e2 + e3;
        let (_, w) = route_logits(MoeConfig { norm_topk_prob: false, ..cfg(4, 2) }, &[1.0, 3.0, 2.0, 0.0], None);
        assert_close(&w, &[e3 / z, e2 / z]);
        // Ties go to the lower index.
        let (ex, _) = route_logits(cfg(4, 2), &[0.5, 2.0, 0.5, 2.0], None);
        assert_eq!(ex, [1, 3]);

        // group_limited_greedy, 2 groups of 2, one group kept: group {0,1} (max 5) beats {2,3}
        // (max 4.5) although expert 3 is the second best overall; weights scaled, not renormalised.
        let v2 = MoeConfig {
            topk_method: TopkMethod::GroupLimited { n_group: 2, topk_group: 1 },
            norm_topk_prob: false,
            routed_scaling_factor: 2.0,
            ..cfg(4, 2)
        };
        let logits = [0f32, 5.0, 4.0, 4.5];
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let (ex, w) = route_logits(v2, &logits, None);
        assert_eq!(ex, [1, 0]);
        assert_close(&w, &[2.0 * 5f32.exp() / z, 2.0 / z]);

        // noaux_tc: sigmoid scores; a group scores the sum of its top 2 biased scores.
        let v3 = MoeConfig {
            scoring: Scoring::Sigmoid,
            topk_method: TopkMethod::NoAuxTc { n_group: 2, topk_group: 1 },
            routed_scaling_factor: 2.5,
            ..cfg(4, 2)
        };
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let logits = [2.0, -2.0, 1.0, 1.0];
        // Unbiased: group {2,3} sums 1.46 > group {0,1} 1.0; experts 2 and 3 tie, lower first.
        let (ex, w) = route_logits(v3.clone(), &logits, Some(&[0.0; 4]));
        assert_eq!(ex, [2, 3]);
        assert_close(&w, &[1.25, 1.25]);
        // Bias +1 on expert 1 lifts group {0,1} to 2.0 and ranks expert 1 first; the weights
        // come from the unbiased scores: sigmoid(-2) and sigmoid(2), which sum to 1.
        let (ex, w) = route_logits(v3, &logits, Some(&[0.0, 1.0, 0.0, 0.0]));
        assert_eq!(ex, [1, 0]);
        assert_close(&w, &[2.5 * sig(-2.0), 2.5 * sig(2.0)]);
    }

    /// In-memory named tensors, for loading through [`Builder`].
    struct MemWeights(HashMap<String, WeightData>);

    impl Weights for MemWeights {
        fn path(&self) -> &Path {
            Path::new("<memory>")
        }
        fn contains(&self, name: &str) -> bool {
            self.0.contains_key(name)
        }
        fn shape(&self, name: &str) -> Option<Vec<usize>> {
            self.0.get(name).map(|w| match w {
                WeightData::Dense(t) => t.dims().to_vec(),
                WeightData::Quantized(q) => q.shape().dims().to_vec(),
            })
        }
        fn dtype_name(&self, _name: &str) -> Option<String> {
            Some("F32".into())
        }
        fn names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
        fn load(&self, name: &str, _device: &Device) -> Result<WeightData> {
            match self.0.get(name) {
                Some(WeightData::Dense(t)) => Ok(WeightData::Dense(t.clone())),
                Some(WeightData::Quantized(q)) => Ok(WeightData::Quantized(Arc::clone(q))),
                None => Err(Error::MissingTensor { name: name.into(), path: PathBuf::from("<memory>") }),
            }
        }
    }

    /// The checkpoint the golden generator feeds transformers, under `names` for layer 0:
    /// router seed 1, expert e's gate/up/down seeds 100+e/200+e/300+e, shared 400..=403,
    /// correction bias 404.
    fn checkpoint(cfg: &MoeConfig, names: &MoeNames) -> MemWeights {
        let (n, ff) = (cfg.num_experts, cfg.expert_intermediate_size);
        let mut m = HashMap::new();
        let mut put = |name: String, t: Tensor| m.insert(name, WeightData::Dense(t));
        put(format!("{}.weight", at(&names.router, 0)), det(1, &[n, HIDDEN], 1.0));
        let gate = |e: usize| det(100 + e as u64, &[ff, HIDDEN], 0.5);
        let up = |e: usize| det(200 + e as u64, &[ff, HIDDEN], 0.5);
        let down = |e: usize| det(300 + e as u64, &[HIDDEN, ff], 0.5);
        match &names.experts {
            ExpertNames::PerExpert(f) => {
                for e in 0..n {
                    put(format!("{}.weight", expert(&f.gate, 0, e)), gate(e));
                    put(format!("{}.weight", expert(&f.up, 0, e)), up(e));
                    put(format!("{}.weight", expert(&f.down, 0, e)), down(e));
                }
            }
            ExpertNames::StackedGateUp { gate_up, down: d } => {
                let gu: Vec<Tensor> = (0..n).map(|e| Tensor::cat(&[gate(e), up(e)], 0).unwrap()).collect();
                put(at(gate_up, 0), Tensor::stack(&gu, 0).unwrap());
                put(at(d, 0), Tensor::stack(&(0..n).map(down).collect::<Vec<_>>(), 0).unwrap());
            }
            ExpertNames::Stacked(_) => unreachable!("no HF family writes separate stacks"),
        }
        if let (Some(sh), Some(f)) = (&cfg.shared_experts, &names.shared) {
            let s = sh.intermediate_size;
            put(format!("{}.weight", at(&f.gate, 0)), det(400, &[s, HIDDEN], 0.5));
            put(format!("{}.weight", at(&f.up, 0)), det(401, &[s, HIDDEN], 0.5));
            put(format!("{}.weight", at(&f.down, 0)), det(402, &[HIDDEN, s], 0.5));
        }
        if let Some(g) = &names.shared_gate {
            put(format!("{}.weight", at(g, 0)), det(403, &[1, HIDDEN], 0.5));
        }
        if let Some(bias) = &names.correction_bias {
            put(at(bias, 0), det(404, &[n], 0.25));
        }
        MemWeights(m)
    }

    // Goldens: transformers 5.24's MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock,
    // DeepseekV2Moe and DeepseekV3MoE in f32 on x = det(7, (1, 4, 8), 1.0), hidden 8,
    // moe_intermediate_size 4, silu, with the weights of `checkpoint` (the per-expert tensors
    // stacked into `experts.gate_up_proj` / `down_proj`). Each block's `det` is this file's in
    // Python (`& (2**64 - 1)` after each step), e.g. for Mixtral:
    //   c = AutoConfig.for_model("mixtral", hidden_size=8, num_local_experts=4,
    //                            num_experts_per_tok=2, intermediate_size=4)
    //   blk = MixtralSparseMoeBlock(c); blk.gate.weight.copy_(det(1, (4, 8), 1.0))
    //   blk.experts.gate_up_proj.copy_(stack([cat([det(100+e,(4,8),.5), det(200+e,(4,8),.5)])]))
    //   blk.experts.down_proj.copy_(stack([det(300+e, (8, 4), .5)])); print(blk(x).flatten())
    // Selected experts per token, as a check that each family's routing differs where it should:
    // mixtral: experts [[2, 3], [0, 1], [0, 2], [1, 3]]
    // qwen2_moe: experts [[2, 3], [0, 1], [0, 2], [1, 3]]
    // deepseek_v2: experts [[2, 3], [0, 1], [4, 5], [0, 1]]
    // deepseek_v3: experts [[2, 3], [0, 7], [0, 4], [1, 2]]
    // (ungrouped, unbiased top-2 of the same logits: [[3, 5], [0, 6], [0, 5], [1, 3]])
    #[rustfmt::skip]
    const MIXTRAL: [f32; 32] = [
        -0.007825329, -0.008599716, -0.0131161, -0.010799861, -0.0097407475, -0.022903744, 0.0012436435, 0.0020116055,
        -0.07743521, -0.14761679, -0.18033378, -0.107328795, -0.022970678, -0.27711767, 0.16641058, -0.06803691,
        -0.037901893, -0.04451106, -0.045641296, 0.061491735, -0.060029414, 0.049860924, 0.083025806, -0.009523466,
        0.023084361, 0.051752597, 0.0017558848, -0.07017098, 0.02197122, 0.06381543, -0.11391504, 0.03474167,
    ];
    #[rustfmt::skip]
    const QWEN2_MOE: [f32; 32] = [
        -0.034403358, -0.024038076, -0.037815914, -0.029633699, 0.008276195, -0.017952843, -0.018099712, 0.024031714,
        -0.14125466, -0.17184229, -0.19394742, -0.15442584, 0.07903595, -0.2425864, 0.10240411, -0.04091216,
        -0.04656243, -0.024470132, -0.056073442, 0.038297024, -0.08673863, 0.06506749, 0.03641984, -0.017269427,
        -0.0011507664, 0.019006738, -0.041404434, -0.094163015, 0.030961202, 0.053389113, -0.12508018, 0.048331983,
    ];
    #[rustfmt::skip]
    const DEEPSEEK_V2: [f32; 32] = [
        -0.06753832, -0.021561176, -0.14296542, 0.0398269, -0.009539088, 0.008517612, 0.117523685, -0.03444159,
        -0.24861169, -0.08203704, -0.10475207, 0.07102344, 0.007657364, -0.15683135, 0.047517616, -0.026507663,
        -0.026445825, -0.028866742, -0.107052065, -0.077764586, -0.0040941983, -0.05083771, 0.053558245, 0.03644233,
        -0.08311635, 0.12446879, -0.23478647, -0.092147246, 0.0948278, 0.20419875, -0.23353666, 0.12891683,
    ];
    #[rustfmt::skip]
    const DEEPSEEK_V3: [f32; 32] = [
        -0.09108271, 0.09376551, 0.0016417559, -0.091492504, -0.17177656, 0.036059003, 0.057370175, 0.09742004,
        -0.25832585, -0.16940483, -0.33687782, -0.34212285, -0.06500327, -0.1860947, 0.41655684, -0.034847416,
        -0.086891115, 0.08237241, 0.048879463, -0.089858, -0.025083963, -0.14239037, 0.20065778, 0.005395457,
        0.045162834, 0.20832524, 0.040970426, -0.17768972, 0.012583241, 0.19263312, -0.23320632, 0.19037868,
    ];
    // Qwen3-MoE (softmax, top-k, renormalised, no shared expert) routes exactly as Mixtral, and
    // transformers gives bit-identical outputs for the same weights.
    const QWEN3_MOE: [f32; 32] = MIXTRAL;

    fn families() -> Vec<(&'static str, MoeConfig, MoeNames, [f32; 32])> {
        let shared = |intermediate_size, gated_by_sigmoid| Some(SharedExperts { intermediate_size, gated_by_sigmoid });
        vec![
            ("mixtral", cfg(4, 2), MoeNames::mixtral("model."), MIXTRAL),
            (
                "qwen2_moe",
                MoeConfig { norm_topk_prob: false, shared_experts: shared(6, true), ..cfg(4, 2) },
                MoeNames::qwen_moe("model.", true),
                QWEN2_MOE,
            ),
            ("qwen3_moe", cfg(4, 2), MoeNames::qwen_moe("model.", false), QWEN3_MOE),
            (
                "deepseek_v2",
                MoeConfig {
                    norm_topk_prob: false,
                    routed_scaling_factor: 2.0,
                    topk_method: TopkMethod::GroupLimited { n_group: 4, topk_group: 1 },
                    shared_experts: shared(8, false),
                    ..cfg(8, 2)
                },
                MoeNames::deepseek("model.", false),
                DEEPSEEK_V2,
            ),
            (
                "deepseek_v3",
                MoeConfig {
                    scoring: Scoring::Sigmoid,
                    routed_scaling_factor: 2.5,
                    topk_method: TopkMethod::NoAuxTc { n_group: 4, topk_group: 2 },
                    has_correction_bias: true,
                    shared_experts: shared(4, false),
                    ..cfg(8, 2)
                },
                MoeNames::deepseek("model.", true),
                DEEPSEEK_V3,
            ),
        ]
    }

    /// Every family, loaded from its hub layout and from transformers 5's stacked layout,
    /// matches transformers' output.
    #[test]
    fn families_match_transformers() {
        let dev = Device::Cpu;
        let x = det(7, &[1, 4, HIDDEN], 1.0);
        for (family, cfg, names, want) in families() {
            for names in [names.clone(), names.with_stacked_experts("model.")] {
                let w = checkpoint(&cfg, &names);
                let b = Builder { weights: &w, device: &dev };
                let moe = Moe::load(&b, &cfg, &names, 0, HIDDEN).unwrap();
                let want = Tensor::from_vec(want.to_vec(), (1, 4, HIDDEN), &dev).unwrap();
                for (how, got) in [("grouped", moe.forward(&x).unwrap()), ("naive", moe.forward_naive(&x).unwrap())] {
                    let d = max_diff(&got, &want);
                    assert!(d < 1e-5, "{family} ({how}, {:?}): maxdiff {d:e} vs transformers", names.experts);
                }
            }
        }
    }

    /// A block-quantized (E, rows, cols) stack split per expert is the same as quantizing each
    /// expert alone (blocks never cross rows), so the outputs are bit-identical.
    #[test]
    fn quantized_stack_splits_on_expert_boundaries() {
        let dev = Device::Cpu;
        let (n, ff, hidden) = (4, 32, 64);
        let c = MoeConfig { expert_intermediate_size: ff, ..cfg(n, 2) };
        let q = |t: &Tensor| WeightData::Quantized(Arc::new(QTensor::quantize(t, GgmlDType::Q8_0).unwrap()));
        // Quantize fresh per-expert tensors: `QTensor::quantize` reads a view's whole storage.
        let shapes = [[ff, hidden], [ff, hidden], [hidden, ff]];
        let names = |gate: &str, up: &str, down: &str| FfnNames { gate: gate.into(), up: up.into(), down: down.into() };
        let mut m = HashMap::new();
        m.insert("router.weight".to_string(), WeightData::Dense(det(1, &[n, hidden], 1.0)));
        for (i, (s, shape)) in ["gate", "up", "down"].iter().zip(shapes).enumerate() {
            let per: Vec<Tensor> = (0..n as u64).map(|e| det(10 * i as u64 + e, &shape, 0.5)).collect();
            m.insert(format!("{s}_exps"), q(&Tensor::stack(&per, 0).unwrap()));
            for (e, t) in per.iter().enumerate() {
                m.insert(format!("e{e}.{s}.weight"), q(t));
            }
        }
        let w = MemWeights(m);
        let b = Builder { weights: &w, device: &dev };
        let moe_names = |experts| MoeNames {
            router: "router".into(),
            experts,
            correction_bias: None,
            shared: None,
            shared_gate: None,
        };
        let stacked = moe_names(ExpertNames::Stacked(names("gate_exps", "up_exps", "down_exps")));
        let per_expert = moe_names(ExpertNames::PerExpert(names("e{e}.gate", "e{e}.up", "e{e}.down")));
        let x = det(7, &[1, 5, hidden], 1.0);
        let a = Moe::load(&b, &c, &stacked, 0, hidden).unwrap().forward(&x).unwrap();
        let p = Moe::load(&b, &c, &per_expert, 0, hidden).unwrap().forward(&x).unwrap();
        assert_eq!(max_diff(&a, &p), 0.0);
        assert!(a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-2);
    }

    #[test]
    fn load_errors_name_the_tensor() {
        let dev = Device::Cpu;
        let (_, c, names, _) = families().remove(4);
        let mut w = checkpoint(&c, &names);
        w.0.insert("model.layers.0.mlp.experts.5.up_proj.weight".into(), WeightData::Dense(det(0, &[4, 7], 1.0)));
        let b = Builder { weights: &w, device: &dev };
        let err = Moe::load(&b, &c, &names, 0, HIDDEN).err().unwrap().to_string();
        assert!(err.contains("model.layers.0.mlp.experts.5.up_proj.weight") && err.contains("[4, 8]"), "{err}");
        let w = checkpoint(&c, &names);
        let b = Builder { weights: &w, device: &dev };
        let err = Moe::load(&b, &c, &MoeNames { correction_bias: None, ..names }, 0, HIDDEN).err().unwrap().to_string();
        assert!(err.contains("e_score_correction_bias"), "{err}");
    }
}

//! Which type each tensor gets: llama.cpp's `llama_tensor_get_type` (src/llama-quant.cpp of the
//! pinned llama.cpp) for the file types `prom quantize` writes, so that our files hold the same
//! types as `llama-quantize`'s for the same input. The mixed-precision rules are summarised in
//! docs/quantization.md.

use candle_core::quantized::GgmlDType;

use super::ggml::{is_quantized, FileType};

/// What the recipe needs to know about the whole model.
#[derive(Clone, Debug)]
pub struct ModelShape {
    pub n_layer: usize,
    /// `n_head / n_head_kv` (llama.cpp's `n_gqa()`).
    pub n_gqa: usize,
    /// Whether the model has no `output.weight` (the token embedding doubles as the LM head).
    pub tied_embeddings: bool,
    /// Number of `attn_v`/`attn_qkv`/`attn_kv_b` tensors.
    pub n_attention_wv: usize,
    /// Routed experts per MoE layer (0 or 1 for dense models).
    pub n_expert: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    let has = |s: &str| name.contains(s);
    if name == "output.weight" {
        Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        TokenEmbd
    } else if has("attn_qkv.weight") {
        AttnQkv
    } else if has("attn_kv_b.weight") {
        AttnKvB
    } else if has("attn_v.weight") {
        AttnV
    } else if has("attn_k.weight") {
        AttnK
    } else if has("attn_q.weight") {
        AttnQ
    } else if has("attn_output.weight") {
        AttnOutput
    } else if has("ffn_up") {
        FfnUp
    } else if has("ffn_gate") {
        FfnGate
    } else if has("ffn_down") {
        FfnDown
    } else {
        Other
    }
}

fn is_attn_v(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// `tensor_allows_quantization`, for the names of dense decoder models (the multimodal, RWKV,
/// Mamba and GLM-specific exclusions of llama.cpp name tensors our converter never writes, but
/// they are kept so a GGUF input carrying them is treated the same).
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    if n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    const NEVER: [&str; 32] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    name != "position_embd.weight" && name != "token_types.weight" && !NEVER.iter().any(|s| name.contains(s))
}

/// `use_more_bits`: the first and last eighth of the layers and every third one between.
fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer index of `blk.N.…` (llama.cpp counts ffn_down / attn_v tensors in its weight
/// order, which sorts by layer first, so for dense models the count is the layer index).
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type `name` (a tensor of `n_cols` columns, `n_dims` dimensions, stored as `current`)
/// gets in a file of type `ftype`. `attn_v_index` is the running count of attn_v-like tensors
/// seen so far, as llama.cpp keeps it. `pure` turns off the mixture (llama-quantize --pure).
#[allow(clippy::too_many_arguments)]
pub fn tensor_type(
    name: &str,
    n_dims: usize,
    n_cols: usize,
    current: GgmlDType,
    ftype: FileType,
    model: &ModelShape,
    attn_v_index: &mut usize,
    pure: bool,
) -> GgmlDType {
    if !allows_quantization(name, n_dims) {
        return current;
    }
    let default = ftype.default_type();
    if !is_quantized(default) {
        return default;
    }
    let mut t = default;
    if !pure {
        t = mixture(name, n_cols, t, ftype, model, attn_v_index);
    }
    fallback(n_cols, t)
}

/// `llama_tensor_get_type_impl` for the file types of [`FileType`].
fn mixture(
    name: &str,
    n_cols: usize,
    mut t: GgmlDType,
    ftype: FileType,
    model: &ModelShape,
    attn_v_index: &mut usize,
) -> GgmlDType {
    use FileType as F;
    use GgmlDType as G;
    let cat = category(name);
    let layer = layer_of(name).unwrap_or(0);
    let n_layer = model.n_layer.max(1);
    if cat == Category::Output || (model.tied_embeddings && cat == Category::TokenEmbd) {
        if !n_cols.is_multiple_of(t.block_size()) {
            t = G::Q8_0;
        } else if t != G::Q8_0 {
            t = G::Q6K;
        }
    } else if cat == Category::TokenEmbd {
        // Untied token embeddings keep the default type for every file type we write.
    } else if is_attn_v(cat) {
        let i = *attn_v_index;
        match ftype {
            F::Q2_K => t = if model.n_gqa >= 4 { G::Q4K } else { G::Q3K },
            F::Q3_K_M => t = if i < 2 { G::Q5K } else { G::Q4K },
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, model.n_attention_wv) => t = G::Q6K,
            _ => {}
        }
        if model.n_expert == 8 {
            t = G::Q8_0;
        }
        *attn_v_index += 1;
    } else if cat == Category::AttnK {
        if model.n_expert == 8 {
            t = G::Q8_0;
        }
    } else if cat == Category::FfnDown {
        match ftype {
            F::Q2_K => t = G::Q3K,
            F::Q3_K_M => t = if layer < n_layer / 16 { G::Q5K } else { G::Q4K },
            F::Q4_K_M | F::Q5_K_M if use_more_bits(layer, n_layer) => t = G::Q6K,
            _ => {}
        }
    } else if cat == Category::AttnOutput && model.n_expert == 8 {
        if matches!(ftype, F::Q2_K | F::Q3_K_M | F::Q4_K_M) {
            t = G::Q5K;
        }
    } else if cat == Category::AttnOutput {
        match ftype {
            F::Q2_K => t = G::Q3K,
            F::Q3_K_M => t = G::Q4K,
            _ => {}
        }
    } else if cat == Category::AttnQkv {
        match ftype {
            F::Q3_K_M => t = G::Q4K,
            F::Q4_K_M => t = G::Q5K,
            F::Q5_K_M => t = G::Q6K,
            _ => {}
        }
    }
    t
}

/// `tensor_type_fallback`: rows whose length is not a whole number of blocks of the chosen type
/// get a 32-block type instead, or F16 if even that does not fit.
fn fallback(n_cols: usize, t: GgmlDType) -> GgmlDType {
    use GgmlDType as G;
    if n_cols.is_multiple_of(t.block_size()) {
        return t;
    }
    let f = match t {
        G::Q2K | G::Q3K => G::Q4_0,
        G::Q4K => G::Q5_0,
        G::Q5K => G::Q5_1,
        G::Q6K => G::Q8_0,
        other => other,
    };
    if n_cols.is_multiple_of(f.block_size()) {
        f
    } else {
        G::F16
    }
}

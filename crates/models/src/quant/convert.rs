//! HF safetensors checkpoints → GGUF tensor names, layouts and metadata, as llama.cpp's
//! `convert_hf_to_gguf.py` writes them, for the llama-layout families (Llama, Mistral, SmolLM,
//! Qwen2). Other families are refused by name: their GGUF conventions differ tensor by tensor.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::Device;
use serde_json::Value as Json;

use crate::loader::{SafetensorsWeights, Weights};
use crate::{Error, Result};

/// One tensor of the converted model.
pub(crate) struct HfTensor {
    pub gguf_name: String,
    pub hf_name: String,
    pub shape: Vec<usize>,
    /// Llama's rotary layout change: rows regrouped per head (`permute` in the converter).
    pub permute_heads: Option<usize>,
}

pub(crate) struct HfModel {
    pub weights: SafetensorsWeights,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<HfTensor>,
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))
}

/// The checkpoint's weight files as the model resolver finds them (index shards or
/// `model.safetensors`), so stray files such as test expectations are not taken for weights.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let opts = crate::source::ResolveOptions { offline: true, ..Default::default() };
    match crate::source::resolve(&dir.to_string_lossy(), &opts)? {
        crate::source::ModelFiles::HfDir { weights, .. } => Ok(weights),
        _ => Err(Error::ModelNotFound(format!("{}: not an HF model directory", dir.display()))),
    }
}

impl HfModel {
    pub fn open(dir: &Path, tokenizer_pre: &str) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg = read_json(&cfg_path)?;
        let archs = cfg["architectures"].as_array().and_then(|a| a.first()).and_then(Json::as_str).unwrap_or("");
        let arch = match archs {
            "LlamaForCausalLM" | "MistralForCausalLM" => "llama",
            "Qwen2ForCausalLM" => "qwen2",
            other => {
                return Err(Error::bad_file(
                    &cfg_path,
                    format!(
                        "`prom quantize` converts LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM checkpoints; \
                         this one is `{other}` (convert it with llama.cpp's convert_hf_to_gguf.py, then quantize the GGUF)"
                    ),
                ))
            }
        };
        let num = |k: &str| cfg[k].as_u64().map(|v| v as usize);
        let need = |k: &str| num(k).ok_or_else(|| Error::bad_file(&cfg_path, format!("`{k}` missing or not a number")));
        let (n_layer, n_embd, n_ff, n_head) = (
            need("num_hidden_layers")?,
            need("hidden_size")?,
            need("intermediate_size")?,
            need("num_attention_heads")?,
        );
        let n_head_kv = num("num_key_value_heads").unwrap_or(n_head);
        let head_dim = num("head_dim").unwrap_or(n_embd / n_head.max(1));
        let weights = SafetensorsWeights::open(&weight_files(dir)?)?;

        let mut tensors = Vec::new();
        let mut add = |gguf: String, hf: String, permute: Option<usize>| -> Result<()> {
            if let Some(shape) = weights.shape(&hf) {
                tensors.push(HfTensor { gguf_name: gguf, hf_name: hf, shape, permute_heads: permute });
            }
            Ok(())
        };
        add("token_embd.weight".into(), "model.embed_tokens.weight".into(), None)?;
        add("output_norm.weight".into(), "model.norm.weight".into(), None)?;
        let tied = cfg["tie_word_embeddings"].as_bool().unwrap_or(false);
        if !tied {
            add("output.weight".into(), "lm_head.weight".into(), None)?;
        }
        let rope_permute = arch == "llama";
        for i in 0..n_layer {
            let p = format!("model.layers.{i}");
            let b = format!("blk.{i}");
            add(format!("{b}.attn_norm.weight"), format!("{p}.input_layernorm.weight"), None)?;
            add(format!("{b}.ffn_norm.weight"), format!("{p}.post_attention_layernorm.weight"), None)?;
            for (g, h, heads) in [
                ("attn_q", "q_proj", Some(n_head)),
                ("attn_k", "k_proj", Some(n_head_kv)),
                ("attn_v", "v_proj", None),
                ("attn_output", "o_proj", None),
            ] {
                let heads = heads.filter(|_| rope_permute);
                add(format!("{b}.{g}.weight"), format!("{p}.self_attn.{h}.weight"), heads)?;
                add(format!("{b}.{g}.bias"), format!("{p}.self_attn.{h}.bias"), heads)?;
            }
            for (g, h) in [("ffn_gate", "gate_proj"), ("ffn_up", "up_proj"), ("ffn_down", "down_proj")] {
                add(format!("{b}.{g}.weight"), format!("{p}.mlp.{h}.weight"), None)?;
            }
        }
        // Every checkpoint tensor must have found a place: a silently dropped one is a broken model.
        let used: std::collections::HashSet<&str> = tensors.iter().map(|t| t.hf_name.as_str()).collect();
        if let Some(left) = weights.names().into_iter().find(|n| {
            !(used.contains(n.as_str()) || (tied && n == "lm_head.weight") || n.ends_with("rotary_emb.inv_freq"))
        }) {
            return Err(Error::bad_file(
                weights.path_of(&left),
                format!("tensor `{left}` has no GGUF name in the {arch} layout"),
            ));
        }

        // transformers ≥ 5 moves `rope_theta` (and the scaling type) into `rope_parameters`.
        let rope = &cfg["rope_parameters"];
        let rope_theta = cfg["rope_theta"].as_f64().or_else(|| rope["rope_theta"].as_f64()).unwrap_or(10000.0);
        let scaled = cfg.get("rope_scaling").is_some_and(|r| !r.is_null())
            || rope["rope_type"].as_str().is_some_and(|t| t != "default");
        if scaled {
            return Err(Error::bad_file(&cfg_path, "RoPE scaling is not converted yet; use convert_hf_to_gguf.py"));
        }
        let a = |k: &str| format!("{arch}.{k}");
        let mut md: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String(arch.into())),
            (
                "general.name".into(),
                Value::String(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
            ),
            (a("block_count"), Value::U32(n_layer as u32)),
            (a("context_length"), Value::U32(num("max_position_embeddings").unwrap_or(2048) as u32)),
            (a("embedding_length"), Value::U32(n_embd as u32)),
            (a("feed_forward_length"), Value::U32(n_ff as u32)),
            (a("attention.head_count"), Value::U32(n_head as u32)),
            (a("attention.head_count_kv"), Value::U32(n_head_kv as u32)),
            (a("rope.freq_base"), Value::F32(rope_theta as f32)),
            (a("attention.layer_norm_rms_epsilon"), Value::F32(cfg["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32)),
            (a("rope.dimension_count"), Value::U32(head_dim as u32)),
        ];
        if let Some(v) = num("vocab_size") {
            md.push((a("vocab_size"), Value::U32(v as u32)));
        }
        if head_dim * n_head != n_embd {
            md.push((a("attention.key_length"), Value::U32(head_dim as u32)));
            md.push((a("attention.value_length"), Value::U32(head_dim as u32)));
        }
        tokenizer_metadata(dir, &cfg, tokenizer_pre, &mut md)?;
        Ok(Self { weights, metadata: md, tensors })
    }

    /// A tensor as f32 in GGUF layout.
    pub fn read(&self, t: &HfTensor) -> Result<Vec<f32>> {
        let dense = self.weights.load(&t.hf_name, &Device::Cpu)?.to_dense(&Device::Cpu)?;
        let v = dense
            .flatten_all()
            .and_then(|d| d.to_vec1::<f32>())
            .map_err(|e| Error::Tensor { op: format!("read `{}`", t.hf_name), source: e })?;
        Ok(match t.permute_heads {
            Some(heads) => permute_rows(&v, &t.shape, heads),
            None => v,
        })
    }
}

/// `convert_hf_to_gguf.LlamaModel.permute`: within each head, rows `[first half | second half]`
/// become interleaved pairs (HF's rotate-half RoPE layout → GGML's adjacent-pair layout).
fn permute_rows(v: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0f32; v.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let dst = h * hd + i * 2 + j;
                let src = h * hd + j * half + i;
                out[dst * cols..][..cols].copy_from_slice(&v[src * cols..][..cols]);
            }
        }
    }
    out
}

/// `tokenizer.ggml.*` from `tokenizer.json` (byte-level BPE only, as GGUF's `gpt2` model) and
/// `tokenizer_config.json`; nothing when the directory ships no tokenizer.
fn tokenizer_metadata(dir: &Path, cfg: &Json, pre: &str, md: &mut Vec<(String, Value)>) -> Result<()> {
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.exists() {
        return Ok(());
    }
    let tok = read_json(&tok_path)?;
    if tok["model"]["type"].as_str() != Some("BPE") {
        return Err(Error::bad_file(&tok_path, "only BPE tokenizers are converted (GGUF `gpt2`)"));
    }
    let vocab = tok["model"]["vocab"].as_object().ok_or_else(|| Error::bad_file(&tok_path, "model.vocab missing"))?;
    let mut tokens: Vec<Option<(String, i32)>> = Vec::new();
    let mut put = |id: usize, s: &str, ty: i32| {
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some((s.to_string(), ty));
    };
    for (s, id) in vocab {
        put(id.as_u64().unwrap_or(0) as usize, s, 1);
    }
    for t in tok["added_tokens"].as_array().into_iter().flatten() {
        let ty = if t["special"].as_bool().unwrap_or(false) { 3 } else { 4 };
        put(t["id"].as_u64().unwrap_or(0) as usize, t["content"].as_str().unwrap_or(""), ty);
    }
    let n_vocab = cfg["vocab_size"].as_u64().map_or(tokens.len(), |v| v as usize).max(tokens.len());
    let (mut names, mut types) = (Vec::with_capacity(n_vocab), Vec::with_capacity(n_vocab));
    for i in 0..n_vocab {
        let (s, ty) = tokens.get(i).cloned().flatten().unwrap_or_else(|| (format!("[PAD{i}]"), 5));
        names.push(Value::String(s));
        types.push(Value::I32(ty));
    }
    let merges: Vec<Value> = tok["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => Some(Value::String(s.clone())),
            Json::Array(p) => Some(Value::String(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))),
            _ => None,
        })
        .collect();
    md.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
    md.push(("tokenizer.ggml.pre".into(), Value::String(pre.into())));
    md.push(("tokenizer.ggml.tokens".into(), Value::Array(names)));
    md.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
    md.push(("tokenizer.ggml.merges".into(), Value::Array(merges)));
    let tc = dir.join("tokenizer_config.json");
    let tc = if tc.exists() { read_json(&tc)? } else { Json::Null };
    let id_of = |v: &Json| -> Option<u32> {
        let s = v.as_str().or_else(|| v["content"].as_str())?;
        vocab.get(s).and_then(Json::as_u64).map(|v| v as u32).or_else(|| {
            tok["added_tokens"].as_array()?.iter().find(|t| t["content"] == s)?["id"].as_u64().map(|v| v as u32)
        })
    };
    for (key, cfg_key, tc_key) in [
        ("bos_token_id", "bos_token_id", "bos_token"),
        ("eos_token_id", "eos_token_id", "eos_token"),
        ("unknown_token_id", "", "unk_token"),
        ("padding_token_id", "pad_token_id", "pad_token"),
    ] {
        let id = id_of(&tc[tc_key]).or_else(|| cfg[cfg_key].as_u64().map(|v| v as u32));
        if let Some(id) = id {
            md.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
        }
    }
    md.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(tc["add_bos_token"].as_bool().unwrap_or(false))));
    if let Some(t) = tc["chat_template"].as_str() {
        md.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    Ok(())
}

//! `prom quantize`: a GGUF file or an HF safetensors directory in, a GGUF file out. Tensors go
//! in llama.cpp's order (non-layer tensors by name, then layer by layer), each typed by
//! [`super::recipe`], and are quantized one at a time while streaming to the output.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;

use super::convert::HfModel;
use super::ggml::{self, FileType};
use super::gguf_write::{GgufWriter, TensorEntry};
use super::recipe::{self, ModelShape};
use crate::loader::GgufWeights;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub ftype: FileType,
    /// Every quantizable tensor gets the file type's default type (llama-quantize `--pure`).
    pub pure: bool,
    /// `tokenizer.ggml.pre` for converted HF tokenizers (llama.cpp's pre-tokenizer name).
    pub tokenizer_pre: String,
}

impl QuantizeOptions {
    pub fn new(ftype: FileType) -> Self {
        Self { ftype, pure: false, tokenizer_pre: "default".into() }
    }
}

/// Reported before each tensor is written.
pub struct Progress<'a> {
    pub index: usize,
    pub total: usize,
    pub name: &'a str,
    pub from: GgmlDType,
    pub to: GgmlDType,
    pub elements: usize,
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub tensors: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Elements and bytes of the quantizable (2-D weight) tensors, for bits per weight.
    pub weight_elements: u64,
    pub weight_bytes: u64,
    /// Tensors per output type.
    pub types: Vec<(String, usize)>,
}

/// A tensor of the input: name, shape, stored type.
type Listed = (String, Vec<usize>, GgmlDType);

enum Input {
    Gguf(GgufWeights),
    Hf(Box<HfModel>),
}

/// llama.cpp's `weight_name_comparer`: layer index first (non-layer tensors count as −1), then
/// name.
fn llama_order(a: &str, b: &str) -> std::cmp::Ordering {
    let layer =
        |n: &str| -> i64 { n.strip_prefix("blk.").and_then(|r| r.split('.').next()?.parse().ok()).unwrap_or(-1) };
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

fn meta_u(md: &[(String, Value)], key: &str) -> Option<usize> {
    md.iter().find(|(k, _)| k == key).and_then(|(_, v)| match v {
        Value::U32(x) => Some(*x as usize),
        Value::I32(x) => Some(*x as usize),
        Value::U64(x) => Some(*x as usize),
        Value::I64(x) => Some(*x as usize),
        Value::U16(x) => Some(*x as usize),
        Value::U8(x) => Some(*x as usize),
        _ => None,
    })
}

pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Summary> {
    if input.canonicalize().ok().is_some_and(|i| output.canonicalize().ok() == Some(i)) {
        return Err(Error::InvalidInput(format!("input and output are the same file: {}", input.display())));
    }
    let source = if input.is_dir() {
        Input::Hf(Box::new(HfModel::open(input, &opts.tokenizer_pre)?))
    } else {
        Input::Gguf(GgufWeights::open(input)?)
    };

    // Metadata (the input's, minus what no longer holds) and (name, shape, stored type).
    let (mut md, mut list): (Vec<(String, Value)>, Vec<Listed>) = match &source {
        Input::Gguf(w) => {
            let c = w.content();
            let mut md: Vec<(String, Value)> = c
                .metadata
                .iter()
                .filter(|(k, _)| !k.starts_with("split.") && k.as_str() != "general.alignment")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            md.sort_by(|a, b| (a.0 != "general.architecture", &a.0).cmp(&(b.0 != "general.architecture", &b.0)));
            let list = c.tensor_infos.iter().map(|(n, i)| (n.clone(), i.shape.dims().to_vec(), i.ggml_dtype)).collect();
            (md, list)
        }
        Input::Hf(m) => {
            let list = m.tensors.iter().map(|t| (t.gguf_name.clone(), t.shape.clone(), GgmlDType::F32)).collect();
            (m.metadata.clone(), list)
        }
    };
    list.sort_by(|a, b| llama_order(&a.0, &b.0));
    md.retain(|(k, _)| k != "general.quantization_version" && k != "general.file_type");
    md.push(("general.quantization_version".into(), Value::U32(2)));
    md.push(("general.file_type".into(), Value::U32(opts.ftype.id())));

    let arch = md.iter().find(|(k, _)| k == "general.architecture").and_then(|(_, v)| v.to_string().ok().cloned());
    let arch = arch.unwrap_or_default();
    let n_head = meta_u(&md, &format!("{arch}.attention.head_count")).unwrap_or(1).max(1);
    let n_head_kv = meta_u(&md, &format!("{arch}.attention.head_count_kv")).unwrap_or(n_head).max(1);
    let shape = ModelShape {
        n_layer: meta_u(&md, &format!("{arch}.block_count")).unwrap_or(1),
        n_gqa: n_head / n_head_kv,
        tied_embeddings: !list.iter().any(|(n, _, _)| n == "output.weight"),
        n_attention_wv: list
            .iter()
            .filter(|(n, _, _)| {
                n.contains("attn_v.weight") || n.contains("attn_qkv.weight") || n.contains("attn_kv_b.weight")
            })
            .count(),
        n_expert: meta_u(&md, &format!("{arch}.expert_count")).unwrap_or(0),
    };

    let mut attn_v = 0usize;
    let entries: Vec<TensorEntry> = list
        .iter()
        .map(|(name, dims, cur)| {
            let cols = dims.last().copied().unwrap_or(1);
            let dtype = recipe::tensor_type(name, dims.len(), cols, *cur, opts.ftype, &shape, &mut attn_v, opts.pure);
            TensorEntry { name: name.clone(), shape: dims.clone(), dtype }
        })
        .collect();

    let mut w = GgufWriter::create(output, &md, entries.clone())?;
    let mut summary = Summary { tensors: entries.len(), ..Summary::default() };
    let total = entries.len();
    for (i, (e, (_, _, from))) in entries.iter().zip(&list).enumerate() {
        let elements: usize = e.shape.iter().product();
        progress(Progress { index: i, total, name: &e.name, from: *from, to: e.dtype, elements });
        let bytes = match &source {
            Input::Gguf(g) => {
                let raw = g.raw(&e.name)?;
                summary.bytes_in += raw.len() as u64;
                if *from == e.dtype {
                    raw
                } else {
                    let x = super::dequantize(*from, &raw, &e.shape)?;
                    super::quantize_rows_parallel(e.dtype, &x, *e.shape.last().unwrap_or(&1))?
                }
            }
            Input::Hf(m) => {
                let t = m
                    .tensors
                    .iter()
                    .find(|t| t.gguf_name == e.name)
                    .ok_or_else(|| Error::MissingTensor { name: e.name.clone(), path: input.to_path_buf() })?;
                let x = m.read(t)?;
                summary.bytes_in += 4 * x.len() as u64;
                super::quantize_rows_parallel(e.dtype, &x, *e.shape.last().unwrap_or(&1))?
            }
        };
        summary.bytes_out += bytes.len() as u64;
        if recipe::allows_quantization(&e.name, e.shape.len()) {
            summary.weight_elements += elements as u64;
            summary.weight_bytes += bytes.len() as u64;
        }
        let tn = ggml::name(e.dtype);
        match summary.types.iter_mut().find(|(n, _)| *n == tn) {
            Some((_, c)) => *c += 1,
            None => summary.types.push((tn, 1)),
        }
        w.write_tensor(&bytes)?;
    }
    w.finish()?;
    Ok(summary)
}

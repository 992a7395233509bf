//! Memory-mapped safetensors, one file or many shards. Headers are parsed once at open (which
//! validates offsets against the file size); tensor bytes are read from the map on demand.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensorError, SafeTensors};

use std::sync::Arc;

use super::int4_layout::Int4Layer;
use super::{WeightData, Weights};
use crate::quant::{int8_eligible, Int4Format, Int4Matrix, Int4Parts, WeightQuant};
use crate::{Error, Result};

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    meta: Metadata,
}

pub struct SafetensorsWeights {
    /// The directory (or the single file) for messages.
    root: PathBuf,
    shards: Vec<Shard>,
    index: HashMap<String, usize>,
    /// AWQ/GPTQ layers by the `….weight` name the decoder asks for.
    int4: HashMap<String, Int4Layer>,
    /// Load-time quantization of the eligible linear weights (`--quantize`).
    weight_quant: Option<WeightQuant>,
}

impl SafetensorsWeights {
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let root = match files {
            [one] => one.clone(),
            [first, ..] => first.parent().map(Path::to_path_buf).unwrap_or_else(|| first.clone()),
            [] => return Err(Error::ModelNotFound("no safetensors files given".into())),
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the map is read-only; a checkpoint modified while we run is outside our contract
            // (as for every mmap-based loader: candle, vLLM, llama.cpp).
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            let (header_len, meta) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| Error::bad_file(path, format!("not a valid safetensors file: {}", diagnose(&mmap, e))))?;
            for name in meta.tensors().keys() {
                if let Some(prev) = index.insert(name.clone(), i) {
                    return Err(Error::bad_file(
                        path,
                        format!("tensor `{name}` also appears in {}", files[prev].display()),
                    ));
                }
            }
            shards.push(Shard { path: path.clone(), mmap, data_start: 8 + header_len, meta });
        }
        let mut w = Self { root, shards, index, int4: HashMap::new(), weight_quant: None };
        w.int4 = super::int4_layout::find_layers(&w, files)?;
        Ok(w)
    }

    /// Linear weights come back quantized (see [`crate::quant::int8_eligible`]).
    pub fn with_weight_quant(mut self, q: Option<WeightQuant>) -> Self {
        self.weight_quant = q;
        self
    }

    /// Raw little-endian bytes, dtype and shape of a stored tensor.
    pub(crate) fn bytes(&self, name: &str) -> Option<(&[u8], Dtype, &[usize])> {
        let (shard, info) = self.info(name)?;
        let (start, end) = info.data_offsets;
        let b = shard.mmap.get(shard.data_start + start..shard.data_start + end)?;
        Some((b, info.dtype, &info.shape))
    }

    fn int4_matrix(&self, l: &Int4Layer) -> Result<Int4Matrix> {
        let part = |s: &str| {
            let name = format!("{}.{s}", l.prefix);
            self.bytes(&name).map(|(b, _, _)| b).ok_or(Error::MissingTensor { name, path: self.root.clone() })
        };
        let g_idx =
            if l.format == Int4Format::Awq { None } else { self.bytes(&format!("{}.g_idx", l.prefix)).map(|b| b.0) };
        let parts = Int4Parts { qweight: part("qweight")?, qzeros: part("qzeros")?, scales: part("scales")?, g_idx };
        Int4Matrix::new(l.format, l.shape[0], l.shape[1], l.group_size, &parts)
            .map_err(|e| Error::bad_file(self.path_of(&format!("{}.qweight", l.prefix)), e.to_string()))
    }

    fn info(&self, name: &str) -> Option<(&Shard, &safetensors::tensor::TensorInfo)> {
        let shard = self.shards.get(*self.index.get(name)?)?;
        Some((shard, shard.meta.info(name)?))
    }
}

/// Explains a file `read_metadata` refused in terms of its length: the crate's own messages
/// ("invalid header length", "file not fully covered") do not say that the file is truncated.
fn diagnose(bytes: &[u8], e: SafeTensorError) -> String {
    let len = bytes.len() as u64;
    let Some(prefix) = bytes.get(..8) else {
        return match len {
            0 => "the file is empty".into(),
            _ => format!("{len} bytes, too short for the 8-byte header length"),
        };
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(prefix);
    let n = u64::from_le_bytes(n);
    if n > len - 8 {
        return format!(
            "the header length says {n} bytes but only {} follow (truncated, or not a safetensors file)",
            len - 8
        );
    }
    if matches!(e, SafeTensorError::MetadataIncompleteBuffer) {
        // The header parsed: compare the tensor data it describes with what the file holds.
        let have = len - 8 - n;
        let header = bytes.get(8..8 + n as usize).unwrap_or_default();
        if let Some(need) = data_len(header) {
            return if need > have {
                format!("truncated: the header describes {need} bytes of tensor data, the file holds {have} ({len} bytes in all)")
            } else {
                format!("{} unexpected bytes after the last tensor", have - need)
            };
        }
    }
    e.to_string()
}

/// The end of the last tensor's data according to a header, if it parses.
fn data_len(header: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(header).ok()?;
    v.as_object()?
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64())
        .try_fold(0, |end: u64, e| e.map(|e| end.max(e)))
}

impl Weights for SafetensorsWeights {
    fn path(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, name: &str) -> &Path {
        self.info(name).map_or(&self.root, |(s, _)| &s.path)
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name) || self.int4.contains_key(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(l) = self.int4.get(name) {
            return Some(l.shape.to_vec());
        }
        self.info(name).map(|(_, i)| i.shape.clone())
    }

    fn dtype_name(&self, name: &str) -> Option<String> {
        if let Some(l) = self.int4.get(name) {
            let f = if l.format == Int4Format::Awq { "AWQ" } else { "GPTQ" };
            return Some(format!("{f}-int4-g{}", l.group_size));
        }
        self.info(name).map(|(_, i)| format!("{:?}", i.dtype))
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.index.keys().chain(self.int4.keys()).cloned().collect();
        v.sort();
        v
    }

    fn int4_linear(&self, name: &str) -> Result<Option<Arc<Int4Matrix>>> {
        self.int4.get(name).map(|l| self.int4_matrix(l).map(Arc::new)).transpose()
    }

    fn load(&self, name: &str, device: &Device) -> Result<WeightData> {
        if let Some(l) = self.int4.get(name) {
            let w = self.int4_matrix(l)?.dequantize();
            let t = Tensor::from_vec(w, (l.shape[0], l.shape[1]), device)
                .map_err(|e| Error::Tensor { op: format!("dequantize `{name}`"), source: e })?;
            return Ok(WeightData::Dense(t));
        }
        let (shard, info) =
            self.info(name).ok_or_else(|| Error::MissingTensor { name: name.into(), path: self.root.clone() })?;
        let (start, end) = info.data_offsets;
        // `read_metadata` checked the offsets against the file; `get` keeps that a non-panic.
        let bytes = shard.mmap.get(shard.data_start + start..shard.data_start + end).ok_or_else(|| {
            Error::bad_file(&shard.path, format!("tensor `{name}`: data offsets {start}..{end} lie outside the file"))
        })?;
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            other => {
                return Err(Error::bad_file(
                    &shard.path,
                    format!("tensor `{name}` has dtype {other:?}; supported: F32, F16, BF16, F64"),
                ))
            }
        };
        let t = Tensor::from_raw_buffer(bytes, dtype, &info.shape, device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| Error::bad_file(&shard.path, format!("tensor `{name}`: {e}")))?;
        if self.weight_quant == Some(WeightQuant::Int8) && int8_eligible(name, &info.shape) {
            let (n, k) = (info.shape[0], info.shape[1]);
            let w: Vec<f32> = t
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| Error::bad_file(&shard.path, format!("tensor `{name}`: {e}")))?;
            return Ok(WeightData::Quantized(Arc::new(crate::quant::int8_qtensor(&w, n, k, device)?)));
        }
        Ok(WeightData::Dense(t))
    }
}

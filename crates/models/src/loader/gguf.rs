//! GGUF v2/v3 files: metadata and tensor directory parsed at open, tensor data read on demand.
//! F32/F16/BF16 tensors come back dense f32; block-quantized ones (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! Q2_K..Q6_K) stay quantized for [`crate::nn::Linear`]. Any other type (the IQ family, TQ,
//! MXFP4, ...) is refused at open, naming the tensor and its type.

use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::gguf_file::{Content, VersionedMagic};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use super::{WeightData, Weights};
use crate::{Error, Result};

pub struct GgufWeights {
    path: PathBuf,
    content: Content,
    file: Mutex<BufReader<File>>,
}

impl GgufWeights {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if file_len == 0 {
            return Err(Error::bad_file(path, "not a valid GGUF file: the file is empty"));
        }
        let mut reader = BufReader::new(file);
        let unsupported = |path: &Path| -> Option<Error> {
            let mut r = BufReader::new(File::open(path).ok()?);
            let (name, id) =
                super::gguf_scan::first_unsupported(&mut r, |id| crate::quant::ggml::from_type_id(id).is_some())?;
            let names: Vec<String> =
                crate::quant::ggml::SUPPORTED.iter().map(|&t| crate::quant::ggml::name(t)).collect();
            Some(Error::bad_file(
                path,
                format!(
                    "tensor `{name}` has GGUF type {} (id {id}), which Prometheus does not support; supported: {}",
                    crate::quant::ggml::type_name(id),
                    names.join(", ")
                ),
            ))
        };
        // candle 0.11 divides by `general.alignment` unchecked, so a 0 there panics inside
        // `Content::read`; the reader is dropped with the error, so no broken state survives.
        let content = catch_unwind(AssertUnwindSafe(|| Content::read(&mut reader)))
            .map_err(|_| {
                Error::bad_file(path, "not a valid GGUF file: the reader panicked (is `general.alignment` 0?)")
            })?
            .map_err(|e| {
                if let Some(err) = unsupported(path) {
                    return err;
                }
                let truncated = matches!(&e, candle_core::Error::Io(io) if io.kind() == ErrorKind::UnexpectedEof);
                let hint = if truncated { " (truncated: the file ends inside its header)" } else { "" };
                Error::bad_file(path, format!("not a valid GGUF file: {e}{hint}"))
            })?;
        if matches!(content.magic, VersionedMagic::GgufV1) {
            return Err(Error::bad_file(path, "GGUF v1 is not supported (v2 and v3 are)"));
        }
        check_extents(&content, file_len).map_err(|msg| Error::bad_file(path, msg))?;
        Ok(Self { path: path.to_path_buf(), content, file: Mutex::new(reader) })
    }

    pub fn content(&self) -> &Content {
        &self.content
    }

    /// A tensor's bytes exactly as stored (GGUF blocks, or raw F32/F16/BF16).
    pub fn raw(&self, name: &str) -> Result<Vec<u8>> {
        let q = self.read_qtensor(name, &Device::Cpu)?;
        q.data().map(|d| d.into_owned()).map_err(|e| Error::bad_file(&self.path, format!("tensor `{name}`: {e}")))
    }

    fn read_qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into(), path: self.path.clone() })?;
        let mut file =
            self.file.lock().map_err(|_| Error::bad_file(&self.path, "GGUF reader poisoned by an earlier panic"))?;
        info.read(&mut *file, self.content.tensor_data_offset, device)
            .map_err(|e| Error::bad_file(&self.path, format!("tensor `{name}`: {e}")))
    }
}

/// Every tensor's bytes must lie inside the file, so a truncated download fails at open naming
/// the first tensor cut off, not at first use (and sizes that overflow fail before candle
/// multiplies them).
fn check_extents(content: &Content, file_len: u64) -> std::result::Result<(), String> {
    let mut infos: Vec<_> = content.tensor_infos.iter().collect();
    infos.sort_by_key(|(name, info)| (info.offset, name.as_str()));
    for (name, info) in infos {
        let dtype = info.ggml_dtype;
        let (block, type_size) = (dtype.block_size() as u64, dtype.type_size() as u64);
        let elems = info.shape.dims().iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let end = elems
            .filter(|e| e % block == 0)
            .and_then(|e| (e / block).checked_mul(type_size))
            .and_then(|bytes| content.tensor_data_offset.checked_add(info.offset)?.checked_add(bytes));
        let Some(end) = end else {
            return Err(format!(
                "tensor `{name}`: shape {:?} is not a whole number of {dtype:?} blocks or its size overflows",
                info.shape.dims()
            ));
        };
        if end > file_len {
            return Err(format!("truncated: tensor `{name}` ends at byte {end}, the file has {file_len} bytes"));
        }
    }
    Ok(())
}

impl Weights for GgufWeights {
    fn path(&self) -> &Path {
        &self.path
    }

    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims().to_vec())
    }

    fn dtype_name(&self, name: &str) -> Option<String> {
        self.content.tensor_infos.get(name).map(|i| format!("{:?}", i.ggml_dtype))
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        v.sort();
        v
    }

    fn load(&self, name: &str, device: &Device) -> Result<WeightData> {
        let q = self.read_qtensor(name, device)?;
        Ok(match q.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => WeightData::Dense(
                q.dequantize(device).map_err(|e| Error::bad_file(&self.path, format!("tensor `{name}`: {e}")))?,
            ),
            _ => WeightData::Quantized(Arc::new(q)),
        })
    }
}

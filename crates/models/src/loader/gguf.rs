//! GGUF v2/v3 files: metadata and tensor directory parsed at open, tensor data read on demand.
//! F32/F16/BF16 tensors come back dense f32; block-quantized ones (Q4_0, Q4_1, Q8_0, and the
//! k-quants candle knows) stay quantized for `QMatMul`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::gguf_file::{Content, VersionedMagic};
use candle_core::quantized::GgmlDType;
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
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader)
            .map_err(|e| Error::bad_file(path, format!("not a valid GGUF file: {e}")))?;
        if matches!(content.magic, VersionedMagic::GgufV1) {
            return Err(Error::bad_file(path, "GGUF v1 is not supported (v2 and v3 are)"));
        }
        Ok(Self { path: path.to_path_buf(), content, file: Mutex::new(reader) })
    }

    pub fn content(&self) -> &Content {
        &self.content
    }
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
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::MissingTensor { name: name.into(), path: self.path.clone() })?;
        let q = {
            let mut file = self
                .file
                .lock()
                .map_err(|_| Error::bad_file(&self.path, "GGUF reader poisoned by an earlier panic"))?;
            info.read(&mut *file, self.content.tensor_data_offset, device)
                .map_err(|e| Error::bad_file(&self.path, format!("tensor `{name}`: {e}")))?
        };
        Ok(match info.ggml_dtype {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => WeightData::Dense(
                q.dequantize(device).map_err(|e| Error::bad_file(&self.path, format!("tensor `{name}`: {e}")))?,
            ),
            _ => WeightData::Quantized(Arc::new(q)),
        })
    }
}

//! A streaming GGUF v3 writer: the header (metadata and the tensor directory) first, then each
//! tensor's bytes in directory order, so a model is never held in memory whole. Layout as in
//! ggml's gguf.cpp: little-endian, dims innermost first, every tensor's data aligned to
//! `general.alignment` (32).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;

use super::ggml;
use crate::{Error, Result};

pub const ALIGNMENT: u64 = 32;

/// One entry of the tensor directory.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    /// PyTorch order: `(out, in)` for a linear weight.
    pub shape: Vec<usize>,
    pub dtype: GgmlDType,
}

impl TensorEntry {
    /// Bytes of data; `None` if the rows are not whole blocks.
    pub fn n_bytes(&self) -> Option<u64> {
        let cols = *self.shape.last()?;
        let (bs, ts) = (self.dtype.block_size(), self.dtype.type_size());
        if !cols.is_multiple_of(bs) {
            return None;
        }
        let n: usize = self.shape.iter().product();
        Some((n / bs * ts) as u64)
    }
}

pub struct GgufWriter {
    path: PathBuf,
    out: BufWriter<File>,
    tensors: Vec<TensorEntry>,
    next: usize,
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// GGUF value type ids (`gguf_type`).
fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn write_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[*x as u8]),
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            // An empty array's element type is not recoverable from candle's reader; any is valid.
            let t = items.first().map_or(4, value_type);
            w.write_all(&t.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| write_value(w, i))
        }
    }
}

fn padding(at: u64) -> u64 {
    (ALIGNMENT - at % ALIGNMENT) % ALIGNMENT
}

impl GgufWriter {
    /// Creates `path` and writes the header. Arrays must hold one element type each.
    pub fn create(path: &Path, metadata: &[(String, Value)], tensors: Vec<TensorEntry>) -> Result<Self> {
        for t in &tensors {
            if t.n_bytes().is_none() {
                return Err(Error::InvalidInput(format!(
                    "tensor `{}` of shape {:?}: rows are not whole {} blocks of {}",
                    t.name,
                    t.shape,
                    ggml::name(t.dtype),
                    t.dtype.block_size()
                )));
            }
        }
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let io = |e| Error::io(path, e);
        let mut head = Vec::new();
        head.extend_from_slice(b"GGUF");
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            write_str(&mut head, k).map_err(io)?;
            head.extend_from_slice(&value_type(v).to_le_bytes());
            write_value(&mut head, v).map_err(io)?;
        }
        let mut offset = 0u64;
        for t in &tensors {
            write_str(&mut head, &t.name).map_err(io)?;
            head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                head.extend_from_slice(&(d as u64).to_le_bytes());
            }
            head.extend_from_slice(&ggml::type_id(t.dtype).to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            let n = t.n_bytes().unwrap_or(0);
            offset += n + padding(n);
        }
        head.resize(head.len() + padding(head.len() as u64) as usize, 0);
        out.write_all(&head).map_err(io)?;
        Ok(Self { path: path.to_path_buf(), out, tensors, next: 0 })
    }

    /// The entry the next [`GgufWriter::write_tensor`] call must supply.
    pub fn next_entry(&self) -> Option<&TensorEntry> {
        self.tensors.get(self.next)
    }

    /// Appends the next tensor's bytes (in directory order).
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<()> {
        let t = self
            .tensors
            .get(self.next)
            .ok_or_else(|| Error::InvalidInput("GGUF writer: more tensors written than declared".into()))?;
        let want = t.n_bytes().unwrap_or(0);
        if bytes.len() as u64 != want {
            return Err(Error::InvalidInput(format!(
                "GGUF writer: tensor `{}` ({}) needs {want} bytes, got {}",
                t.name,
                ggml::name(t.dtype),
                bytes.len()
            )));
        }
        let pad = vec![0u8; padding(want) as usize];
        self.out.write_all(bytes).and_then(|_| self.out.write_all(&pad)).map_err(|e| Error::io(&self.path, e))?;
        self.next += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        if self.next != self.tensors.len() {
            return Err(Error::InvalidInput(format!(
                "GGUF writer: {} of {} tensors written",
                self.next,
                self.tensors.len()
            )));
        }
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

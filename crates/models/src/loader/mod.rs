//! Checkpoint readers behind one [`Weights`] trait: memory-mapped safetensors (single file or
//! shards) and GGUF. The decoder asks for tensors by name; quantized GGUF tensors stay
//! quantized, float checkpoints are widened to f32 (bf16/f16 matmul on the CPU is slow).

mod dummy;
mod gguf;
mod gguf_scan;
mod int4_layout;
mod safetensors;

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

pub use self::dummy::DummyWeights;
pub use self::gguf::GgufWeights;
pub use self::safetensors::SafetensorsWeights;
use crate::Result;

/// A tensor as stored: dense (already f32) or a GGUF quantized block format.
pub enum WeightData {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

impl WeightData {
    /// The tensor as dense f32, dequantizing if needed.
    pub fn to_dense(&self, device: &Device) -> Result<Tensor> {
        Ok(match self {
            WeightData::Dense(t) => t.clone(),
            WeightData::Quantized(q) => q.dequantize(device)?,
        })
    }
}

/// Named tensors of one checkpoint.
pub trait Weights {
    /// The file (or directory) the tensors come from, for error messages.
    fn path(&self) -> &Path;
    /// The file holding `name` (its shard, for sharded checkpoints), for error messages.
    fn path_of(&self, _name: &str) -> &Path {
        self.path()
    }
    fn contains(&self, name: &str) -> bool;
    /// Logical shape in PyTorch order (`(out, in)` for linear weights).
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Storage type as the file names it (`BF16`, `Q4_1`, ...).
    fn dtype_name(&self, name: &str) -> Option<String>;
    fn names(&self) -> Vec<String>;
    fn load(&self, name: &str, device: &Device) -> Result<WeightData>;
    /// `name` (a linear `….weight`) as a 4-bit AWQ/GPTQ matrix that runs without being
    /// dequantized whole; `None` for every other tensor. [`Weights::load`] of such a name gives
    /// the dequantized f32 tensor.
    fn int4_linear(&self, _name: &str) -> Result<Option<Arc<crate::quant::Int4Matrix>>> {
        Ok(None)
    }
    /// A made-up tensor for `name` in the `shape` the decoder expects, for sources that store
    /// none ([`DummyWeights`]); `None`: read it with [`Weights::load`].
    fn synthesize(&self, _name: &str, _shape: &[usize], _device: &Device) -> Result<Option<WeightData>> {
        Ok(None)
    }
}

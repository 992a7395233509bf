//! Output buffers of our kernels.
//!
//! One place allocates them, so that a different placement can be tried in one spot. One was:
//! while a decode graph was captured, outputs were views of buffers the graph owned (a step
//! arena), which left no memory node between two kernels and made 258 of a bs-1 graph's 267
//! edges programmatic (0 of 1039 with stream-ordered allocations). On the H200 it changed
//! nothing: bs 1 and bs 32 steps took the same time either way (bench/RESULTS.md, 2026-11-30),
//! so the arena's memory (39 MB at bs 1, 228 MB at bs 64) bought nothing and it was removed.

use candle_core::{CudaDevice, CudaStorage, DType, Storage, Tensor};

use crate::Result;

/// A new contiguous tensor of `dims` in `dtype` (f32, f16 or bf16) whose every element the
/// next launch writes.
pub(super) fn output(dev: &CudaDevice, dtype: DType, dims: &[usize]) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    // SAFETY: the caller's kernel writes all `n` elements before anything reads them.
    let storage = Storage::Cuda(match dtype {
        DType::F32 => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<f32>(n) }?, dev.clone()),
        DType::F16 => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<half::f16>(n) }?, dev.clone()),
        _ => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<half::bf16>(n) }?, dev.clone()),
    });
    Ok(Tensor::from_storage(storage, dims, candle_core::op::BackpropOp::none(), false))
}

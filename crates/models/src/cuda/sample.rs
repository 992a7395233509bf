//! Greedy token choice where the logits are: on a GPU only the chosen ids cross to the host
//! (4 bytes a row instead of a 0.5 MB row of a 128k vocabulary), on the CPU the same loop the
//! engine's sampler uses. The engine takes this path for the rows that are a plain argmax of
//! the raw logits (no bias, penalty, mask or logprobs); everything else stays on its host
//! sampler.

use candle_core::{DType, Tensor};

use crate::{Result, TensorContext};

/// Index of the largest finite value, the lowest index on ties (as `torch.argmax`); `None`
/// when no value is finite.
pub fn argmax(row: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in row.iter().enumerate() {
        if x.is_finite() && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// [`argmax`] of every row of `logits` `(rows, vocab)`, computed on the logits' device.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<Option<u32>>> {
    let (rows, vocab) = logits.dims2().ctx("argmax logits")?;
    if rows == 0 {
        return Ok(Vec::new());
    }
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = logits.device() {
        return gpu::argmax_rows(dev, logits, rows, vocab);
    }
    let host = logits.to_dtype(DType::F32).and_then(|l| l.flatten_all()).and_then(|l| l.to_vec1::<f32>());
    Ok(host.ctx("argmax logits")?.chunks_exact(vocab).map(argmax).collect())
}

#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::cuda::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda::WrapErr;
    use candle_core::{CudaDevice, DType, Tensor};

    use super::super::attention::{dptr, MODULE, PTX};
    use crate::{Result, TensorContext};

    /// `ARGMAX_THREADS` of kernels.cu.
    const THREADS: u32 = 1024;

    pub(super) fn argmax_rows(
        dev: &CudaDevice,
        logits: &Tensor,
        rows: usize,
        vocab: usize,
    ) -> Result<Vec<Option<u32>>> {
        let vocab_i = i32::try_from(vocab).map_err(|_| crate::Error::InvalidInput(format!("vocab {vocab} > i32")))?;
        let logits = logits.to_dtype(DType::F32).and_then(|l| l.contiguous()).ctx("argmax logits")?;
        let stream = dev.cuda_stream();
        let src = dptr(&logits, &stream)?;
        // SAFETY: the kernel writes one id per row, every row.
        let out = unsafe { dev.alloc::<u32>(rows) }?;
        let f = dev.get_or_load_custom_func("argmax_f32", MODULE, PTX)?;
        let mut l = f.builder();
        l.arg(&src).arg(&out).arg(&vocab_i);
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: argument types match argmax_f32's signature; `src` holds rows × vocab f32s
        // (contiguous, checked by dims2 above) and `out` rows u32s.
        unsafe { l.launch(cfg) }.w()?;
        let ids = dev.clone_dtoh(&out)?;
        // `logits` must outlive the launch: dropping it after the (synchronous) copy back is enough.
        drop(logits);
        Ok(ids.into_iter().map(|i| (i != u32::MAX).then_some(i)).collect())
    }
}

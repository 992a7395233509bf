//! The CUDA backend's own parts (docs/cuda.md). The decoder in [`crate::nn`] runs on a CUDA
//! [`Device`] unchanged through candle (cuBLAS GEMMs, its elementwise, norm and rotary
//! kernels); what candle lacks lives here: the paged KV pool in device memory and our paged
//! attention kernels (`kernels.cu`, compiled by `build.rs`).
//!
//! Everything here compiles without the `cuda` feature: [`parse_device`] then refuses `cuda`
//! with a clear error, and the device-side types are uninhabited, so the code that matches on
//! them needs no `cfg`.

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

#[cfg(feature = "cuda")]
mod alloc;
#[cfg(feature = "cuda")]
mod attention;
pub mod filter;
#[cfg(feature = "cuda")]
mod fused;
#[cfg(feature = "cuda")]
mod gemv;
#[cfg(feature = "cuda")]
mod graph;
#[cfg(feature = "cuda")]
mod host;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
mod module;
#[cfg(feature = "cuda")]
mod pool;
mod sample;

#[cfg(feature = "cuda")]
pub(crate) use attention::GpuBatch;
#[cfg(feature = "cuda")]
pub use attention::{paged_attention_pool, rope_attention_pool, Split};
#[cfg(feature = "cuda")]
pub use fused::{add_rms_norm, rms_norm, silu_mul_fused, silu_mul_pair, to_f32};
#[cfg(feature = "cuda")]
pub use gemv::{fold_norms_enabled, gemv, gemv_res, gemv_rms, gemv_silu, gemv_takes_rows};
#[cfg(feature = "cuda")]
pub(crate) use graph::DecodeGraphs;
#[cfg(feature = "cuda")]
pub use graph::SIZES as GRAPH_SIZES;
#[cfg(feature = "cuda")]
pub use host::to_host_f32;
#[cfg(feature = "cuda")]
pub(crate) use pool::GpuKv;
pub use sample::{argmax, argmax_rows, pick_rows, pick_rows_async, NextIds, Picks, RowPick};

/// Rotary for `GpuKv::attend_packed`: cos/sin `(T, rot / 2)` in the activation dtype, the
/// rotated dims `rot` (even, ≤ head dim) and the pairing.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) struct PackedRope<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub rot: usize,
    pub interleaved: bool,
}

/// What a layer brings to the GPU pool's attention: its new K/V and queries.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) enum NewKv<'a> {
    /// `q (T, h, dk)`, `k (kvh, T, dk)`, `v (kvh, T, dv)`, already normed and rotated.
    Split { q: &'a Tensor, k: &'a Tensor, v: &'a Tensor },
    /// A fused `[q | k | v]` projection's rows `(.., T, (h + 2·kvh)·d)` before rotary (k_dim =
    /// v_dim = d): one kernel rotates and writes the cache.
    Packed { qkv: &'a Tensor, heads: usize, rope: Option<PackedRope<'a>> },
}

/// Stand-ins for builds without the `cuda` feature: no value of these types can exist.
#[cfg(not(feature = "cuda"))]
mod absent {
    use candle_core::{Device, Tensor};

    use crate::kernels::attention::AttnParams;
    use crate::nn::KvSpec;
    use crate::Result;

    pub(crate) enum GpuBatch {}

    impl GpuBatch {
        pub fn new(_: &crate::nn::BatchMeta, _: &Device) -> Result<Option<Self>> {
            Ok(None)
        }
    }

    pub(crate) enum GpuKv {}

    /// No graphs without CUDA: every step runs through the decoder directly.
    pub(crate) struct DecodeGraphs;

    impl DecodeGraphs {
        pub fn new(_: &Device) -> Self {
            Self
        }
        pub fn set_enabled(&self, _: bool) {}
        pub fn sizes(&self) -> Vec<usize> {
            Vec::new()
        }
        pub fn wanted(&self, _: usize) -> Vec<usize> {
            Vec::new()
        }
        pub fn decode(
            &self,
            _: &crate::nn::Model,
            _: &mut crate::nn::BatchMeta,
            _: &mut crate::nn::PagedKvCache,
            _: Option<&super::NextIds>,
        ) -> Result<Option<Tensor>> {
            Ok(None)
        }
    }

    /// The fused kernels cover nothing without CUDA: callers keep their own path.
    pub fn add_rms_norm(_: &Tensor, _: &Tensor, _: &Tensor, _: f32) -> Option<Result<(Tensor, Tensor)>> {
        None
    }
    pub fn silu_mul_pair(_: &Tensor, _: &Tensor) -> Option<Result<Tensor>> {
        None
    }
    pub fn silu_mul_fused(_: &Tensor, _: usize) -> Option<Result<Tensor>> {
        None
    }
    pub fn rms_norm(_: &Tensor, _: &Tensor, _: f32) -> Option<Result<Tensor>> {
        None
    }
    pub fn gemv(_: &Tensor, _: &Tensor) -> Option<Result<Tensor>> {
        None
    }
    pub fn gemv_silu(_: &Tensor, _: &Tensor) -> Option<Result<Tensor>> {
        None
    }
    pub fn gemv_rms(_: &Tensor, _: &Tensor, _: f32, _: bool) -> Option<Result<Tensor>> {
        None
    }
    pub fn gemv_res(_: &Tensor, _: &Tensor, _: &Tensor) -> Option<Result<Tensor>> {
        None
    }
    pub fn gemv_takes_rows(_: usize) -> bool {
        false
    }
    pub fn fold_norms_enabled() -> bool {
        false
    }
    pub fn to_f32(_: &Tensor) -> Option<Result<Tensor>> {
        None
    }
    pub fn to_host_f32(_: &Tensor) -> Option<Result<Vec<f32>>> {
        None
    }

    impl GpuKv {
        pub fn new(spec: &KvSpec, _: usize) -> Result<Self> {
            Err(super::no_cuda(&format!("a KV cache on {:?}", spec.device.location())))
        }
        pub fn grow(&mut self, _: &KvSpec, _: usize, _: usize) -> Result<()> {
            match *self {}
        }
        #[allow(dead_code)]
        pub fn addresses(&self) -> Vec<u64> {
            match *self {}
        }
        pub fn attend(
            &mut self,
            _: &KvSpec,
            _: usize,
            _: super::NewKv,
            _: &GpuBatch,
            _: &AttnParams,
        ) -> Result<Tensor> {
            match *self {}
        }
    }
}
#[cfg(not(feature = "cuda"))]
pub use absent::{
    add_rms_norm, fold_norms_enabled, gemv, gemv_res, gemv_rms, gemv_silu, gemv_takes_rows, rms_norm, silu_mul_fused,
    silu_mul_pair, to_f32, to_host_f32,
};
#[cfg(not(feature = "cuda"))]
pub(crate) use absent::{DecodeGraphs, GpuBatch, GpuKv};

#[cfg(not(feature = "cuda"))]
fn no_cuda(what: &str) -> Error {
    Error::config(
        "device",
        format!("{what} needs CUDA, and this build of prom has none: rebuild with `--features cuda` (docs/cuda.md)"),
    )
}

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. Opening a GPU that is not there, or without a
/// driver, is an error naming the device, never a panic.
pub fn parse_device(spec: &str) -> Result<Device> {
    let bad = || Error::config("device", format!("expected `cpu`, `cuda` or `cuda:N`, got `{spec}`"));
    match spec.trim() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => open_cuda(0),
        s => {
            let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
            open_cuda(n.parse().map_err(|_| bad())?)
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    // One explicit stream for everything (loading, the engine thread, our kernels), so all work
    // is ordered on it; candle's default per-thread stream would split loading (main thread) and
    // execution (engine thread) across two unordered streams. With a single stream, cudarc's
    // per-buffer event tracking only adds a record per use: it is switched off before any buffer
    // exists.
    let dev = candle_core::CudaDevice::new_with_stream(ordinal).map_err(|e| {
        Error::config(
            "device",
            format!("cannot open CUDA device {ordinal}: {e} (is the NVIDIA driver loaded and the GPU visible?)"),
        )
    })?;
    // SAFETY: no buffer exists yet, and this device's work all goes to its one stream.
    unsafe { dev.disable_event_tracking() };
    Ok(Device::Cuda(dev))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(no_cuda(&format!("device `cuda:{ordinal}`")))
}

/// The compute dtype a model gets on `device` when none is asked for: f32 on the CPU (our CPU
/// kernels compute in f32), bf16 on a GPU (what checkpoints ship and tensor cores want).
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

/// `(free, total)` bytes of device memory, or `None` for the CPU (the engine reads
/// `MemAvailable` there).
pub fn memory_info(device: &Device) -> Result<Option<(u64, u64)>> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let (free, total) = d
                .cuda_stream()
                .context()
                .mem_get_info()
                .map_err(|e| Error::config("device", format!("cannot read CUDA memory info: {e}")))?;
            Ok(Some((free as u64, total as u64)))
        }
        _ => Ok(None),
    }
}

/// Waits for the device's queued work (no-op on the CPU): the clock only means something after it.
pub fn synchronize(device: &Device) -> Result<()> {
    device.synchronize().map_err(|e| Error::Tensor { op: "synchronize".into(), source: e })
}

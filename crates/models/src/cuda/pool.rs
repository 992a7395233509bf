//! The paged KV pool in device memory: per layer one K and one V allocation of
//! `num_blocks` blocks (layout in attention.cuh), in the cache dtype (f32, f16 or bf16).

use candle_core::cuda::cudarc::driver::{CudaSlice, DevicePtr};
use candle_core::{CudaDevice, DType, Device, Tensor};

use super::attention::{rope_write_and_attend, write_and_attend, GpuBatch, LayerPtrs};
use super::NewKv;
use crate::kernels::attention::AttnParams;
use crate::nn::KvSpec;
use crate::{Error, Result, TensorContext};

/// f16 and bf16 values are kept as their bits.
enum Buf {
    F32(CudaSlice<f32>),
    Half(CudaSlice<u16>),
}

impl Buf {
    fn zeros(dev: &CudaDevice, dtype: DType, n: usize) -> Result<Self> {
        let what = || format!("allocate {n} {dtype:?} KV values on the GPU");
        Ok(match dtype {
            DType::F32 => Buf::F32(dev.alloc_zeros(n).ctx(what())?),
            _ => Buf::Half(dev.alloc_zeros(n).ctx(what())?),
        })
    }

    /// A copy of `n` values (≥ the current length) with the current ones at the front.
    fn grown(&self, dev: &CudaDevice, dtype: DType, n: usize) -> Result<Self> {
        let mut new = Buf::zeros(dev, dtype, n)?;
        match (self, &mut new) {
            (Buf::F32(a), Buf::F32(b)) => dev.memcpy_dtod(a, &mut b.slice_mut(..a.len())),
            (Buf::Half(a), Buf::Half(b)) => dev.memcpy_dtod(a, &mut b.slice_mut(..a.len())),
            _ => return Err(Error::InvalidInput(format!("grow the KV pool: stored values are not {dtype:?}"))),
        }
        .ctx("grow the KV pool")?;
        Ok(new)
    }

    fn ptr(&self, dev: &CudaDevice) -> u64 {
        let stream = dev.cuda_stream();
        match self {
            Buf::F32(s) => s.device_ptr(&stream).0,
            Buf::Half(s) => s.device_ptr(&stream).0,
        }
    }
}

pub(crate) struct GpuKv {
    dev: CudaDevice,
    num_blocks: usize,
    /// (K, V) per layer.
    layers: Vec<(Buf, Buf)>,
    /// Split-K attention's merge tickets, shared by the layers (their launches are ordered).
    counters: CudaSlice<u32>,
}

/// Merge tickets: split-K runs only below ~4 CTAs an SM (`attention::auto_parts`), 528 CTA
/// groups on an H200; a launch needing more runs single-pass.
const COUNTER_SLOTS: usize = 4096;

impl GpuKv {
    pub fn new(spec: &KvSpec, num_blocks: usize) -> Result<Self> {
        let Device::Cuda(dev) = &spec.device else {
            return Err(Error::config("device", "a GPU KV pool needs a CUDA device"));
        };
        let counters = dev.alloc_zeros::<u32>(COUNTER_SLOTS).ctx("split-K counters")?;
        let mut kv = Self { dev: dev.clone(), num_blocks: 0, layers: Vec::new(), counters };
        kv.grow(spec, 0, num_blocks)?;
        Ok(kv)
    }

    /// Resizes to `n` blocks, keeping the first `old`.
    pub fn grow(&mut self, spec: &KvSpec, old: usize, n: usize) -> Result<()> {
        debug_assert_eq!(old, self.num_blocks);
        let per = |dim: usize| n * spec.kv_heads * spec.block_size * dim;
        let dev = &self.dev;
        self.layers = if self.layers.is_empty() {
            (0..spec.num_layers)
                .map(|_| {
                    Ok((
                        Buf::zeros(dev, spec.float_dtype(), per(spec.k_dim))?,
                        Buf::zeros(dev, spec.float_dtype(), per(spec.v_dim))?,
                    ))
                })
                .collect::<Result<_>>()?
        } else {
            self.layers
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.grown(dev, spec.float_dtype(), per(spec.k_dim))?,
                        v.grown(dev, spec.float_dtype(), per(spec.v_dim))?,
                    ))
                })
                .collect::<Result<_>>()?
        };
        self.num_blocks = n;
        Ok(())
    }

    /// Every layer's K and V addresses, in order.
    pub fn addresses(&self) -> Vec<u64> {
        self.layers.iter().flat_map(|(k, v)| [k.ptr(&self.dev), v.ptr(&self.dev)]).collect()
    }

    /// The pointers of `layer`'s K and V, once the batch is checked against the pool.
    fn layer(&self, spec: &KvSpec, layer: usize, batch: &GpuBatch) -> Result<LayerPtrs> {
        let (kl, vl) = self
            .layers
            .get(layer)
            .ok_or_else(|| Error::InvalidInput(format!("kv: layer {layer} of {}", spec.num_layers)))?;
        if batch.max_block.is_some_and(|b| b as usize >= self.num_blocks)
            || batch.max_slot.is_some_and(|s| s >= self.num_blocks * spec.block_size)
        {
            return Err(Error::InvalidInput(format!(
                "kv: block {:?} / slot {:?} outside a pool of {} blocks",
                batch.max_block, batch.max_slot, self.num_blocks
            )));
        }
        Ok(LayerPtrs {
            k: kl.ptr(&self.dev),
            v: vl.ptr(&self.dev),
            counters: self.counters.device_ptr(&self.dev.cuda_stream()).0,
            counter_slots: COUNTER_SLOTS,
            dtype: spec.float_dtype(),
            kv_heads: spec.kv_heads,
            k_dim: spec.k_dim,
            v_dim: spec.v_dim,
            block_size: spec.block_size,
        })
    }

    /// Writes the layer's new K/V into the pool and attends → `(T, h · v_dim)`.
    pub fn attend(
        &mut self,
        spec: &KvSpec,
        layer: usize,
        new: NewKv,
        batch: &GpuBatch,
        p: &AttnParams,
    ) -> Result<Tensor> {
        let ptrs = self.layer(spec, layer, batch)?;
        match new {
            NewKv::Split { q, k, v } => write_and_attend(&self.dev, &ptrs, q, k, v, batch, p),
            NewKv::Packed { qkv, heads, rope } => rope_write_and_attend(&self.dev, &ptrs, qkv, heads, rope, batch, p),
        }
    }
}

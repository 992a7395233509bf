//! The KV cache: a pool of fixed-size blocks shared by every sequence of a batch, each block
//! holding `block_size` consecutive tokens of one sequence for every layer. Which blocks a
//! sequence owns (its block table) is decided outside the model (the engine's KV manager);
//! the model only writes the new tokens' K/V into their slots and reads through the tables.
//!
//! MLA layers cache their compressed latent instead of per-head K/V: one "kv head" whose key is
//! `[latent | rotary key]` and whose value is the latent (see `nn::mla`).
//!
//! The pool lives where the model runs: host memory for the CPU, device memory for a GPU
//! (`crate::cuda::GpuKv`, with its own layout). [`PagedKvCache::attend`] is the one entry point
//! the attention blocks use: it stores the new tokens' K/V and attends, on either.
//!
//! [`KvCache`] is the single-sequence convenience (scoring, tests, `prom score`): a private pool
//! that grows as the sequence does, with the sequence's own block table. It runs through exactly
//! the same attention as the batched engine.

use candle_core::{DType, Device, Tensor};
use half::f16;
use half::slice::HalfBitsSliceExt;

use super::attention::flat;
use super::batch::BatchMeta;
use crate::cuda::GpuKv;
use crate::kernels::attention::{paged_attention, AttnParams, KvBlocks, KvSlice};
use crate::{Error, Result, TensorContext};

/// The shape of one token's cache entry in one layer, the block geometry, and where it lives.
#[derive(Debug, Clone)]
pub struct KvSpec {
    pub num_layers: usize,
    pub kv_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    /// f32, or f16 (llama.cpp's default cache type, used for GGUF models); bf16 on a GPU.
    pub dtype: DType,
    pub block_size: usize,
    /// The model's device: the pool is allocated there.
    pub device: Device,
}

impl PartialEq for KvSpec {
    fn eq(&self, o: &Self) -> bool {
        (self.num_layers, self.kv_heads, self.k_dim, self.v_dim, self.dtype, self.block_size)
            == (o.num_layers, o.kv_heads, o.k_dim, o.v_dim, o.dtype, o.block_size)
            && self.device.same_device(&o.device)
    }
}

impl Eq for KvSpec {}

impl KvSpec {
    /// Values (K and V) per token per layer.
    fn values_per_token(&self) -> usize {
        self.kv_heads * (self.k_dim + self.v_dim)
    }

    pub fn bytes_per_token(&self) -> usize {
        self.num_layers * self.values_per_token() * self.dtype.size_in_bytes()
    }

    pub fn bytes_per_block(&self) -> usize {
        self.bytes_per_token() * self.block_size
    }

    fn check(&self) -> Result<()> {
        let gpu = !self.device.is_cpu();
        if !(matches!(self.dtype, DType::F32 | DType::F16) || gpu && self.dtype == DType::BF16) {
            let supported = if gpu { "f32, f16 or bf16" } else { "f32 or f16" };
            return Err(Error::config("kv_cache_dtype", format!("{:?} is not supported ({supported})", self.dtype)));
        }
        if self.block_size == 0 || self.kv_heads == 0 {
            return Err(Error::config(
                "block_size",
                format!("block size {} and {} kv heads", self.block_size, self.kv_heads),
            ));
        }
        Ok(())
    }
}

/// f16 values are kept as their bits: `vec![0u16; n]` is a calloc (pages the OS zeroes on first
/// touch), where `vec![f16::ZERO; n]` would write every byte of a multi-GB pool up front.
enum Buf {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Buf {
    fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F16 => Buf::F16(vec![0; n]),
            _ => Buf::F32(vec![0.0; n]),
        }
    }

    fn resize(&mut self, n: usize) {
        match self {
            Buf::F32(v) => v.resize(n, 0.0),
            Buf::F16(v) => v.resize(n, 0),
        }
    }

    fn as_slice(&self) -> KvSlice<'_> {
        match self {
            Buf::F32(v) => KvSlice::F32(v),
            Buf::F16(v) => KvSlice::F16(v.reinterpret_cast()),
        }
    }
}

struct LayerKv {
    /// `[block][kv_head][k_dim][offset]`
    k: Buf,
    /// `[block][kv_head][offset][v_dim]`
    v: Buf,
}

/// The block pool's storage for every layer.
pub struct PagedKvCache {
    spec: KvSpec,
    num_blocks: usize,
    store: Store,
}

enum Store {
    Host(Vec<LayerKv>),
    Gpu(GpuKv),
}

impl PagedKvCache {
    /// A pool of `num_blocks` blocks on `spec.device`. Host memory is zero-filled lazily by the
    /// OS (calloc), so a large pool costs address space until it is written; device memory is
    /// allocated (and zeroed) up front.
    pub fn new(spec: KvSpec, num_blocks: usize) -> Result<Self> {
        spec.check()?;
        let store = if spec.device.is_cpu() {
            let per_layer = |dim: usize| num_blocks * spec.kv_heads * dim * spec.block_size;
            Store::Host(
                (0..spec.num_layers)
                    .map(|_| LayerKv {
                        k: Buf::zeros(spec.dtype, per_layer(spec.k_dim)),
                        v: Buf::zeros(spec.dtype, per_layer(spec.v_dim)),
                    })
                    .collect(),
            )
        } else {
            Store::Gpu(GpuKv::new(&spec, num_blocks)?)
        };
        Ok(Self { spec, num_blocks, store })
    }

    pub fn spec(&self) -> &KvSpec {
        &self.spec
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Bytes of K/V storage.
    pub fn bytes(&self) -> usize {
        self.num_blocks * self.spec.bytes_per_block()
    }

    /// Adds blocks at the end (ids `num_blocks..n`); existing contents stay.
    pub(crate) fn grow(&mut self, n: usize) -> Result<()> {
        if n <= self.num_blocks {
            return Ok(());
        }
        let s = &self.spec;
        match &mut self.store {
            Store::Host(layers) => {
                for l in layers {
                    l.k.resize(n * s.kv_heads * s.k_dim * s.block_size);
                    l.v.resize(n * s.kv_heads * s.v_dim * s.block_size);
                }
            }
            Store::Gpu(g) => g.grow(s, self.num_blocks, n)?,
        }
        self.num_blocks = n;
        Ok(())
    }

    /// Stores the batch's new keys and values for `layer` and attends every query row to its
    /// own sequence: `q (T, heads, k_dim)`, `k (kv_heads, T, k_dim)`, `v (kv_heads, T, v_dim)`
    /// → `(T, heads · v_dim)` in q's dtype.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        batch: &BatchMeta,
        params: &AttnParams,
    ) -> Result<Tensor> {
        if let Store::Gpu(g) = &mut self.store {
            let gpu =
                batch.gpu.as_ref().ok_or_else(|| Error::InvalidInput("a GPU batch without device metadata".into()))?;
            return g.attend(&self.spec, layer, q, k, v, gpu, params);
        }
        let (t, h, _) = q.dims3().ctx("attention q")?;
        self.write(layer, &batch.slots, &flat(k, "k")?, &flat(v, "v")?)?;
        let mut out = vec![0f32; t * h * self.spec.v_dim];
        paged_attention(&flat(q, "q")?, &batch.seqs, &self.blocks(layer)?, params, &mut out)?;
        Tensor::from_vec(out, (t, h * self.spec.v_dim), q.device())
            .and_then(|o| o.to_dtype(q.dtype()))
            .ctx("attention output")
    }

    fn host_layer(&self, layer: usize, op: &str) -> Result<&LayerKv> {
        let Store::Host(layers) = &self.store else {
            return Err(Error::InvalidInput(format!("{op}: the pool is in device memory")));
        };
        layers.get(layer).ok_or_else(|| Error::InvalidInput(format!("{op}: layer {layer} of {}", self.spec.num_layers)))
    }

    /// Stores the new tokens' keys and values for `layer`: `k (kv_heads, t, k_dim)` and
    /// `v (kv_heads, t, v_dim)`, token `i` going to `slots[i]` (= block · block_size + offset).
    fn write(&mut self, layer: usize, slots: &[usize], k: &[f32], v: &[f32]) -> Result<()> {
        let s = &self.spec;
        let (t, kvh, bs) = (slots.len(), s.kv_heads, s.block_size);
        if k.len() != kvh * t * s.k_dim || v.len() != kvh * t * s.v_dim {
            return Err(Error::InvalidInput(format!("kv write: {} keys / {} values for {t} tokens", k.len(), v.len())));
        }
        if let Some(&bad) = slots.iter().find(|&&slot| slot >= self.num_blocks * bs) {
            return Err(Error::InvalidInput(format!(
                "kv write: slot {bad} outside a pool of {} blocks",
                self.num_blocks
            )));
        }
        let Store::Host(layers) = &mut self.store else {
            return Err(Error::InvalidInput("kv write: the pool is in device memory".into()));
        };
        let entry = layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidInput(format!("kv write: layer {layer} of {}", s.num_layers)))?;
        let (kd, vd) = (s.k_dim, s.v_dim);
        // One match per token and head, not per value; K goes transposed within its block.
        for (i, &slot) in slots.iter().enumerate() {
            let (block, off) = (slot / bs, slot % bs);
            for h in 0..kvh {
                let ksrc = &k[(h * t + i) * kd..][..kd];
                let vsrc = &v[(h * t + i) * vd..][..vd];
                let kbase = (block * kvh + h) * kd * bs + off;
                let vbase = ((block * kvh + h) * bs + off) * vd;
                match (&mut entry.k, &mut entry.v) {
                    (Buf::F32(kb), Buf::F32(vb)) => {
                        for (d, &x) in ksrc.iter().enumerate() {
                            kb[kbase + d * bs] = x;
                        }
                        vb[vbase..vbase + vd].copy_from_slice(vsrc);
                    }
                    (Buf::F16(kb), Buf::F16(vb)) => {
                        for (d, &x) in ksrc.iter().enumerate() {
                            kb[kbase + d * bs] = f16::from_f32(x).to_bits();
                        }
                        for (dst, &x) in vb[vbase..vbase + vd].iter_mut().zip(vsrc) {
                            *dst = f16::from_f32(x).to_bits();
                        }
                    }
                    _ => return Err(Error::InvalidInput("kv write: K and V stored in different types".into())),
                }
            }
        }
        Ok(())
    }

    fn blocks(&self, layer: usize) -> Result<KvBlocks<'_>> {
        let entry = self.host_layer(layer, "kv read")?;
        Ok(KvBlocks {
            k: entry.k.as_slice(),
            v: entry.v.as_slice(),
            block_size: self.spec.block_size,
            kv_heads: self.spec.kv_heads,
            k_dim: self.spec.k_dim,
            v_dim: self.spec.v_dim,
        })
    }
}

/// One sequence's cache: a private growing pool whose block table is simply `0, 1, 2, ...`.
pub struct KvCache {
    pub(crate) pool: PagedKvCache,
    pub(crate) table: Vec<u32>,
    len: usize,
}

/// Blocks of a single-sequence cache: 16 tokens, as the engine's default.
const SINGLE_BLOCK: usize = 16;

impl KvCache {
    pub fn new(mut spec: KvSpec) -> Result<Self> {
        spec.block_size = SINGLE_BLOCK;
        Ok(Self { pool: PagedKvCache::new(spec, 0)?, table: Vec::new(), len: 0 })
    }

    pub fn dtype(&self) -> DType {
        self.pool.spec.dtype
    }

    /// Tokens already cached: the position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes room for `total` tokens, growing the pool by doubling.
    pub(crate) fn reserve(&mut self, total: usize) -> Result<()> {
        let need = total.div_ceil(SINGLE_BLOCK);
        if need > self.pool.num_blocks() {
            self.pool.grow(need.max(2 * self.pool.num_blocks()).max(4))?;
        }
        while self.table.len() < need {
            self.table.push(self.table.len() as u32);
        }
        Ok(())
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Bytes held by the cache storage.
    pub fn bytes(&self) -> usize {
        self.pool.bytes()
    }
}

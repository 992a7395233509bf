//! The KV cache: a pool of fixed-size blocks shared by every sequence of a batch, each block
//! holding `block_size` consecutive tokens of one sequence for every layer. Which blocks a
//! sequence owns (its block table) is decided outside the model (the engine's KV manager);
//! the model only writes the new tokens' K/V into their slots and reads through the tables.
//!
//! MLA layers cache their compressed latent instead of per-head K/V: one "kv head" whose key is
//! `[latent | rotary key]` and whose value is the latent (see `nn::mla`).
//!
//! [`KvCache`] is the single-sequence convenience (scoring, tests, `prom score`): a private pool
//! that grows as the sequence does, with the sequence's own block table. It runs through exactly
//! the same attention as the batched engine.

use candle_core::DType;
use half::f16;
use half::slice::HalfBitsSliceExt;

use crate::kernels::attention::{KvBlocks, KvSlice};
use crate::{Error, Result};

/// The shape of one token's cache entry in one layer, and the block geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSpec {
    pub num_layers: usize,
    pub kv_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    /// f32, or f16 (llama.cpp's default cache type, used for GGUF models).
    pub dtype: DType,
    pub block_size: usize,
}

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
        if !matches!(self.dtype, DType::F32 | DType::F16) {
            return Err(Error::config("kv_cache_dtype", format!("{:?} is not supported (f32 or f16)", self.dtype)));
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
    layers: Vec<LayerKv>,
}

impl PagedKvCache {
    /// A pool of `num_blocks` blocks. Memory is zero-filled lazily by the OS (calloc), so a large
    /// pool costs address space until it is written.
    pub fn new(spec: KvSpec, num_blocks: usize) -> Result<Self> {
        spec.check()?;
        let per_layer = |dim: usize| num_blocks * spec.kv_heads * dim * spec.block_size;
        let layers = (0..spec.num_layers)
            .map(|_| LayerKv {
                k: Buf::zeros(spec.dtype, per_layer(spec.k_dim)),
                v: Buf::zeros(spec.dtype, per_layer(spec.v_dim)),
            })
            .collect();
        Ok(Self { spec, num_blocks, layers })
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
    pub(crate) fn grow(&mut self, n: usize) {
        if n <= self.num_blocks {
            return;
        }
        let s = &self.spec;
        for l in &mut self.layers {
            l.k.resize(n * s.kv_heads * s.k_dim * s.block_size);
            l.v.resize(n * s.kv_heads * s.v_dim * s.block_size);
        }
        self.num_blocks = n;
    }

    /// Stores the new tokens' keys and values for `layer`: `k (kv_heads, t, k_dim)` and
    /// `v (kv_heads, t, v_dim)`, token `i` going to `slots[i]` (= block · block_size + offset).
    pub(crate) fn write(&mut self, layer: usize, slots: &[usize], k: &[f32], v: &[f32]) -> Result<()> {
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
        let entry = self
            .layers
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

    pub(crate) fn blocks(&self, layer: usize) -> Result<KvBlocks<'_>> {
        let entry = self
            .layers
            .get(layer)
            .ok_or_else(|| Error::InvalidInput(format!("kv read: layer {layer} of {}", self.spec.num_layers)))?;
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
    pub(crate) fn reserve(&mut self, total: usize) {
        let need = total.div_ceil(SINGLE_BLOCK);
        if need > self.pool.num_blocks() {
            self.pool.grow(need.max(2 * self.pool.num_blocks()).max(4));
        }
        while self.table.len() < need {
            self.table.push(self.table.len() as u32);
        }
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Bytes held by the cache storage.
    pub fn bytes(&self) -> usize {
        self.pool.bytes()
    }
}

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
//! An int8 cache ([`KvDtype::Int8`], CPU) stores each token's key and value vector of each kv
//! head as `round(x / s)` in -127..=127 with its own f16 scale `s = max|x| / 127` (a quantization
//! block of one head vector, as llama.cpp's q8_0 cache quantizes 32-value blocks): half the
//! bytes of f16. Scales live beside the quants, `[block][kv_head][offset]` for K and V alike.
//!
//! [`KvCache`] is the single-sequence convenience (scoring, tests, `prom score`): a private pool
//! that grows as the sequence does, with the sequence's own block table. It runs through exactly
//! the same attention as the batched engine.

use candle_core::{DType, Device, Tensor};
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use std::fmt;
use std::str::FromStr;

use super::attention::with_flat;
use super::batch::BatchMeta;
use crate::cuda::GpuKv;
use crate::kernels::attention::{paged_attention, AttnParams, KvBlocks, KvMem, KvSlice};
use crate::{Error, Result, TensorContext};

/// How cached keys and values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    /// A float type: f32, f16 (llama.cpp's default, used for GGUF models) or bf16 (GPU).
    Float(DType),
    /// 8-bit integers with an f16 scale per token and kv head (CPU only).
    Int8,
}

impl KvDtype {
    /// The float type values are stored in, if they are not quantized.
    pub fn float(self) -> Option<DType> {
        match self {
            KvDtype::Float(d) => Some(d),
            KvDtype::Int8 => None,
        }
    }

    /// Bytes per cached value, scales included for a head vector of `dim` values.
    fn bytes_per_value(self, dim: usize) -> f64 {
        match self {
            KvDtype::Float(d) => d.size_in_bytes() as f64,
            KvDtype::Int8 => 1.0 + 2.0 / dim.max(1) as f64,
        }
    }
}

impl From<DType> for KvDtype {
    fn from(d: DType) -> Self {
        KvDtype::Float(d)
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvDtype::Float(d) => write!(f, "{}", d.as_str()),
            KvDtype::Int8 => f.write_str("int8"),
        }
    }
}

impl FromStr for KvDtype {
    type Err = Error;

    /// `f32`, `f16`, `bf16` or `int8` (also `q8_0`, llama.cpp's name for its 8-bit cache).
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "f32" => KvDtype::Float(DType::F32),
            "f16" => KvDtype::Float(DType::F16),
            "bf16" => KvDtype::Float(DType::BF16),
            "int8" | "q8_0" => KvDtype::Int8,
            other => {
                return Err(Error::config("kv_cache_dtype", format!("`{other}`: expected f32, f16, bf16 or int8")))
            }
        })
    }
}

/// The shape of one token's cache entry in one layer, the block geometry, and where it lives.
#[derive(Debug, Clone)]
pub struct KvSpec {
    pub num_layers: usize,
    pub kv_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    /// f32, or f16 (llama.cpp's default cache type, used for GGUF models); bf16 on a GPU;
    /// int8 with per-vector scales on the CPU.
    pub dtype: KvDtype,
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
    pub fn bytes_per_token(&self) -> usize {
        let per_head = self.k_dim as f64 * self.dtype.bytes_per_value(self.k_dim)
            + self.v_dim as f64 * self.dtype.bytes_per_value(self.v_dim);
        (self.num_layers as f64 * self.kv_heads as f64 * per_head).round() as usize
    }

    /// The float type a GPU pool stores (an int8 spec never reaches one: [`KvSpec::check`]).
    pub fn float_dtype(&self) -> DType {
        self.dtype.float().unwrap_or(DType::F32)
    }

    pub fn bytes_per_block(&self) -> usize {
        self.bytes_per_token() * self.block_size
    }

    fn check(&self) -> Result<()> {
        let gpu = !self.device.is_cpu();
        let ok = match self.dtype {
            KvDtype::Float(d) => matches!(d, DType::F32 | DType::F16) || gpu && d == DType::BF16,
            KvDtype::Int8 => !gpu,
        };
        if !ok {
            let supported = if gpu { "f32, f16 or bf16 on a GPU" } else { "f32, f16 or int8 on the CPU" };
            return Err(Error::config("kv_cache_dtype", format!("{} is not supported ({supported})", self.dtype)));
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
    /// Quants, and one f16 scale (bits) per `dim` quants.
    I8(Vec<i8>, Vec<u16>),
}

impl Buf {
    /// `n` values of head vectors of `dim`.
    fn zeros(dtype: KvDtype, n: usize, dim: usize) -> Self {
        match dtype {
            KvDtype::Float(DType::F16) => Buf::F16(vec![0; n]),
            KvDtype::Int8 => Buf::I8(vec![0; n], vec![0; n / dim.max(1)]),
            KvDtype::Float(_) => Buf::F32(vec![0.0; n]),
        }
    }

    fn resize(&mut self, n: usize, dim: usize) {
        match self {
            Buf::F32(v) => v.resize(n, 0.0),
            Buf::F16(v) => v.resize(n, 0),
            Buf::I8(q, s) => {
                q.resize(n, 0);
                s.resize(n / dim.max(1), 0);
            }
        }
    }

    fn as_slice(&self) -> KvSlice<'_> {
        match self {
            Buf::F32(v) => KvSlice::F32(v[..].into()),
            Buf::F16(v) => KvSlice::F16(v.reinterpret_cast::<f16>().into()),
            Buf::I8(q, s) => KvSlice::I8 { q: q[..].into(), scale: s.reinterpret_cast::<f16>().into() },
        }
    }

    fn raw(&mut self) -> RawBuf {
        match self {
            Buf::F32(v) => RawBuf::F32(v.as_mut_ptr(), v.len()),
            Buf::F16(v) => RawBuf::F16(v.as_mut_ptr(), v.len()),
            Buf::I8(q, s) => RawBuf::I8 { q: q.as_mut_ptr(), q_len: q.len(), s: s.as_mut_ptr(), s_len: s.len() },
        }
    }
}

/// A [`Buf`] as pointers, for threads that share a layer: each writes only the blocks of its
/// own sequences, through slices of those blocks alone, and reads only blocks that no other
/// thread writes, again a block at a time (see [`PagedKvCache::with_views`]).
#[derive(Clone, Copy)]
enum RawBuf {
    F32(*mut f32, usize),
    F16(*mut u16, usize),
    I8 { q: *mut i8, q_len: usize, s: *mut u16, s_len: usize },
}

impl RawBuf {
    /// `len` values from `at` as a slice (one block's region of one kv head). Safety: in
    /// bounds, and no other thread touches those values while the slice lives.
    unsafe fn region<'a, T>(p: *mut T, total: usize, at: usize, len: usize) -> Result<&'a mut [T]> {
        if at + len > total {
            return Err(Error::InvalidInput(format!("kv write: values {at}..{} of {total}", at + len)));
        }
        Ok(std::slice::from_raw_parts_mut(p.add(at), len))
    }

    /// The buffer for the attention kernel, which reads it a block at a time. Safety: the
    /// buffer outlives `'a`, and nobody writes a block the kernel reads meanwhile.
    unsafe fn as_slice<'a>(self) -> KvSlice<'a> {
        match self {
            RawBuf::F32(p, n) => KvSlice::F32(KvMem::from_raw(p, n)),
            RawBuf::F16(p, n) => KvSlice::F16(KvMem::from_raw(p.cast::<f16>(), n)),
            RawBuf::I8 { q, q_len, s, s_len } => {
                KvSlice::I8 { q: KvMem::from_raw(q, q_len), scale: KvMem::from_raw(s.cast::<f16>(), s_len) }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct RawLayer {
    k: RawBuf,
    v: RawBuf,
}

/// One thread's view of a host pool during a split step: the layers' storage as pointers.
struct HostView {
    layers: Vec<RawLayer>,
}

// SAFETY: a view only exists inside `PagedKvCache::with_views`, which holds the pool's `&mut`
// for as long as any view lives. Views write disjoint blocks, through slices of one block
// each, and read only blocks no other view writes, a block at a time (`KvMem`).
unsafe impl Send for HostView {}

/// Quantizes one head vector to int8 with the scale `max|x| / 127` (rounded to f16; the quants
/// are computed against the rounded scale). Returns the scale's bits; `q[i]` goes to
/// `out[i * stride]`.
fn quantize_vector(x: &[f32], out: &mut [i8], stride: usize) -> u16 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = f16::from_f32(amax / 127.0);
    let s = scale.to_f32();
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    for (i, &v) in x.iter().enumerate() {
        out[i * stride] = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    scale.to_bits()
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
    /// A part of a host pool lent to one thread of a split step.
    View(HostView),
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
                        k: Buf::zeros(spec.dtype, per_layer(spec.k_dim), spec.k_dim),
                        v: Buf::zeros(spec.dtype, per_layer(spec.v_dim), spec.v_dim),
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

    /// Whether this is a whole host pool, which [`PagedKvCache::with_views`] can lend out (not a
    /// device pool, and not already a view).
    pub(crate) fn is_host_pool(&self) -> bool {
        matches!(self.store, Store::Host(_))
    }

    /// Where a device pool's K and V of every layer live: what a CUDA graph captured against
    /// it points at (`None` for a host pool).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn device_addresses(&self) -> Option<Vec<u64>> {
        match &self.store {
            Store::Gpu(g) => Some(g.addresses()),
            Store::Host(_) | Store::View(_) => None,
        }
    }

    /// Bytes of K/V storage (scales included).
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
                    l.k.resize(n * s.kv_heads * s.k_dim * s.block_size, s.k_dim);
                    l.v.resize(n * s.kv_heads * s.v_dim * s.block_size, s.v_dim);
                }
            }
            Store::Gpu(g) => g.grow(s, self.num_blocks, n)?,
            Store::View(_) => return Err(Error::InvalidInput("a split step's view of the pool cannot grow".into())),
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
            return g.attend(&self.spec, layer, crate::cuda::NewKv::Split { q, k, v }, gpu, params);
        }
        let (t, h, _) = q.dims3().ctx("attention q")?;
        with_flat(k, "k", |k| with_flat(v, "v", |v| self.write(layer, &batch.slots, k, v)))???;
        let mut out = vec![0f32; t * h * self.spec.v_dim];
        let blocks = self.blocks(layer)?;
        with_flat(q, "q", |q| paged_attention(q, &batch.seqs, &blocks, params, &mut out))??;
        Tensor::from_vec(out, (t, h * self.spec.v_dim), q.device())
            .and_then(|o| o.to_dtype(q.dtype()))
            .ctx("attention output")
    }

    /// [`PagedKvCache::attend`] from a fused `[q | k | v]` projection's rows before rotary, for a
    /// pool in device memory (one kernel rotates and writes the cache): `Ok(None)` for a host
    /// pool, whose caller keeps the split path.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend_packed(
        &mut self,
        layer: usize,
        qkv: &Tensor,
        heads: usize,
        rope: Option<crate::cuda::PackedRope>,
        batch: &BatchMeta,
        params: &AttnParams,
    ) -> Result<Option<Tensor>> {
        let Store::Gpu(g) = &mut self.store else { return Ok(None) };
        let gpu =
            batch.gpu.as_ref().ok_or_else(|| Error::InvalidInput("a GPU batch without device metadata".into()))?;
        g.attend(&self.spec, layer, crate::cuda::NewKv::Packed { qkv, heads, rope }, gpu, params).map(Some)
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
        let bad_layer = || Error::InvalidInput(format!("kv write: layer {layer} of {}", s.num_layers));
        let raw = match &mut self.store {
            Store::Host(layers) => {
                let entry = layers.get_mut(layer).ok_or_else(bad_layer)?;
                RawLayer { k: entry.k.raw(), v: entry.v.raw() }
            }
            Store::View(view) => *view.layers.get(layer).ok_or_else(bad_layer)?,
            Store::Gpu(_) => return Err(Error::InvalidInput("kv write: the pool is in device memory".into())),
        };
        let (kd, vd) = (s.k_dim, s.v_dim);
        // One match per token and head, not per value; K goes transposed within its block.
        // Each token's values are written through slices of its own (block, kv head) region:
        // the pool's `&mut` here, or a view whose step gives every block to one thread.
        for (i, &slot) in slots.iter().enumerate() {
            let (block, off) = (slot / bs, slot % bs);
            for h in 0..kvh {
                let ksrc = &k[(h * t + i) * kd..][..kd];
                let vsrc = &v[(h * t + i) * vd..][..vd];
                let kregion = (block * kvh + h) * kd * bs;
                let vbase = ((block * kvh + h) * bs + off) * vd;
                // SAFETY (every `region`): in bounds (checked there) and owned by this writer.
                match (raw.k, raw.v) {
                    (RawBuf::F32(kp, kn), RawBuf::F32(vp, vn)) => {
                        let kb = unsafe { RawBuf::region(kp, kn, kregion, kd * bs)? };
                        for (d, &x) in ksrc.iter().enumerate() {
                            kb[off + d * bs] = x;
                        }
                        unsafe { RawBuf::region(vp, vn, vbase, vd)? }.copy_from_slice(vsrc);
                    }
                    (RawBuf::F16(kp, kn), RawBuf::F16(vp, vn)) => {
                        let kb = unsafe { RawBuf::region(kp, kn, kregion, kd * bs)? };
                        // Whole vectors through the SIMD conversion (the same rounding as
                        // `f16::from_f32`), K then scattered to its transposed places.
                        let mut kh = [f16::ZERO; 512];
                        match kh.get_mut(..kd) {
                            Some(kh) => {
                                kh.convert_from_f32_slice(ksrc);
                                for (d, x) in kh.iter().enumerate() {
                                    kb[off + d * bs] = x.to_bits();
                                }
                            }
                            None => {
                                for (d, &x) in ksrc.iter().enumerate() {
                                    kb[off + d * bs] = f16::from_f32(x).to_bits();
                                }
                            }
                        }
                        let vb = unsafe { RawBuf::region(vp, vn, vbase, vd)? };
                        vb.reinterpret_cast_mut::<f16>().convert_from_f32_slice(vsrc);
                    }
                    (
                        RawBuf::I8 { q: kq, q_len: kqn, s: ks, s_len: ksn },
                        RawBuf::I8 { q: vq, q_len: vqn, s: vs, s_len: vsn },
                    ) => {
                        // One scale per (block, head, offset), for K and V alike.
                        let at = (block * kvh + h) * bs + off;
                        let kb = unsafe { RawBuf::region(kq, kqn, kregion, kd * bs)? };
                        let vb = unsafe { RawBuf::region(vq, vqn, vbase, vd)? };
                        let (kscale, vscale) =
                            unsafe { (RawBuf::region(ks, ksn, at, 1)?, RawBuf::region(vs, vsn, at, 1)?) };
                        kscale[0] = quantize_vector(ksrc, &mut kb[off..], bs);
                        vscale[0] = quantize_vector(vsrc, vb, 1);
                    }
                    _ => return Err(Error::InvalidInput("kv write: K and V stored in different types".into())),
                }
            }
        }
        Ok(())
    }

    /// Lends the host pool to `parts` threads of one step: `f` gets one view each, to pass as
    /// that thread's pool. A view stores and reads K/V like the pool itself, but through
    /// pointers, a block at a time, so the threads need not wait for each other. `None` for a
    /// device pool.
    ///
    /// # Safety
    ///
    /// Each view must be given sequences whose written blocks no other view's sequences read
    /// or write (`Model::cpu_split` checks this): the views' writes and reads are then of
    /// disjoint memory.
    pub(crate) unsafe fn with_views<R>(&mut self, parts: usize, f: impl FnOnce(Vec<PagedKvCache>) -> R) -> Option<R> {
        let Store::Host(layers) = &mut self.store else { return None };
        let raw: Vec<RawLayer> = layers.iter_mut().map(|l| RawLayer { k: l.k.raw(), v: l.v.raw() }).collect();
        let views = (0..parts)
            .map(|_| PagedKvCache {
                spec: self.spec.clone(),
                num_blocks: self.num_blocks,
                store: Store::View(HostView { layers: raw.clone() }),
            })
            .collect();
        Some(f(views))
    }

    fn blocks(&self, layer: usize) -> Result<KvBlocks<'_>> {
        let (k, v) = match &self.store {
            Store::View(view) => {
                let raw = view.layers.get(layer).ok_or_else(|| {
                    Error::InvalidInput(format!("kv read: layer {layer} of {}", self.spec.num_layers))
                })?;
                // SAFETY: the pool stays borrowed by `with_views` while the view lives, and
                // the blocks this view's sequences read are written by no other view.
                unsafe { (raw.k.as_slice(), raw.v.as_slice()) }
            }
            _ => {
                let entry = self.host_layer(layer, "kv read")?;
                (entry.k.as_slice(), entry.v.as_slice())
            }
        };
        Ok(KvBlocks {
            k,
            v,
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
    /// Positions below this hold prompt tokens ([`KvCache::end_prompt`]).
    prompt_end: usize,
}

/// Blocks of a single-sequence cache: 16 tokens, as the engine's default.
const SINGLE_BLOCK: usize = 16;

impl KvCache {
    pub fn new(mut spec: KvSpec) -> Result<Self> {
        spec.block_size = SINGLE_BLOCK;
        Ok(Self { pool: PagedKvCache::new(spec, 0)?, table: Vec::new(), len: 0, prompt_end: usize::MAX })
    }

    pub fn dtype(&self) -> KvDtype {
        self.pool.spec.dtype
    }

    /// Tokens already cached: the position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the cache; its next tokens are a prompt again.
    pub fn clear(&mut self) {
        self.len = 0;
        self.prompt_end = usize::MAX;
    }

    /// Marks the tokens cached so far as the prompt and every later one as generated. The
    /// engine computes the two kinds through different CPU kernels where the weights have
    /// bfloat16 prompt tiles (`SeqChunk::prompt_len`); a caller that reproduces the engine's
    /// numbers, or times decoding, says where its prompt ends. Until then every token counts as
    /// a prompt token (scoring).
    pub fn end_prompt(&mut self) {
        self.prompt_end = self.len;
    }

    /// Where the prompt ends ([`KvCache::end_prompt`]; `usize::MAX` until then).
    pub fn prompt_len(&self) -> usize {
        self.prompt_end
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_vectors_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37 % 29) as f32 - 14.0) * 0.37).collect();
        let mut q = vec![0i8; 64 * 3];
        let bits = quantize_vector(&x, &mut q, 3);
        let s = f16::from_bits(bits).to_f32();
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((s - amax / 127.0).abs() <= amax / 127.0 * 1e-3, "scale {s} for max {amax}");
        for (i, &v) in x.iter().enumerate() {
            assert!((q[i * 3] as f32 * s - v).abs() <= s / 2.0 + 1e-6, "value {i}: {v} -> {}", q[i * 3]);
        }
        assert!(q.iter().skip(1).step_by(3).all(|&v| v == 0), "only every third slot is written");
        assert_eq!(quantize_vector(&[0.0; 8], &mut q, 1), 0, "an all-zero vector has scale 0");
        assert!(q[..8].iter().all(|&v| v == 0));
    }

    #[test]
    fn int8_is_about_half_of_f16_and_cpu_only() {
        let spec = |dtype: KvDtype| KvSpec {
            num_layers: 30,
            kv_heads: 3,
            k_dim: 64,
            v_dim: 64,
            dtype,
            block_size: 16,
            device: Device::Cpu,
        };
        let (f16b, i8b) = (spec(DType::F16.into()).bytes_per_token(), spec(KvDtype::Int8).bytes_per_token());
        // 64 quants + one f16 scale per head vector: 66 bytes against 128.
        assert_eq!((f16b, i8b), (30 * 3 * 2 * 128, 30 * 3 * 2 * 66));
        let mut pool = PagedKvCache::new(spec(KvDtype::Int8), 2).unwrap();
        assert_eq!(pool.bytes(), 2 * 16 * i8b);
        pool.grow(3).unwrap();
        assert_eq!(pool.num_blocks(), 3);
        assert_eq!("q8_0".parse::<KvDtype>().unwrap(), KvDtype::Int8);
        assert!("int4".parse::<KvDtype>().unwrap_err().to_string().contains("expected f32, f16, bf16 or int8"));
        let bf16 = PagedKvCache::new(spec(DType::BF16.into()), 1).err().unwrap().to_string();
        assert!(bf16.contains("bf16 is not supported"), "{bf16}");
    }
}

//! Launching `attention.cuh` (part of `kernels.cu`): a batch's metadata on the device ([`GpuBatch`], uploaded once per
//! forward pass and read by every layer), the KV write and paged attention, split-K
//! (flash-decoding) when a decode batch is too small to fill the GPU.

use std::sync::{Arc, OnceLock};

use candle_core::cuda::cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute_enum};
use candle_core::cuda::cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig};
use candle_core::cuda::{CudaStorageSlice, WrapErr};
use candle_core::{CudaDevice, DType, Device, Storage, Tensor};

use super::launch::Launch;
use super::module::func;
use super::PackedRope;
use crate::kernels::attention::{AttnParams, AttnSeq};
use crate::nn::{BatchMeta, NO_SLOT};
use crate::{Error, Result, TensorContext};

/// `WARPS`, `MAXR` and `KT` of attention.cuh.
const WARPS: usize = 4;
const MAXR: usize = 4;
const KT: usize = 32;
/// Query tokens per CTA. With up to `MAXR` heads of a GQA group per CTA, its ≤ 16 rows share
/// every K/V tile it loads.
const QTILE: usize = 4;
/// The most query heads a `paged_decode` CTA takes (its R: 1, 2, 4 or 8).
const DMAXR: usize = 8;
/// Warps of the small-batch `paged_decode` (`paged_decode_w16_*`, at most `MAXR` heads a CTA):
/// a partition of up to 16 tiles is one CTA whose warps take a tile each.
const SMALL_WARPS: usize = 16;

/// Whether decode batches too small for `paged_decode`'s 4-warp kernel take its 16-warp one: on
/// unless `PROM_SMALL_DECODE=0` (then `paged_attn` with split-K, for comparison).
fn small_decode_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    super::launch::env_switch(&ON, "PROM_SMALL_DECODE")
}

/// The fewest keys a split-K partition covers (one K/V tile): below that the merge costs more
/// than the extra CTAs gain.
const PART_MIN: usize = KT;

/// How the decode attention spreads a sequence's keys over CTAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Split-K when the batch has one work item per sequence and too few CTAs for the GPU's
    /// SMs (bs 1 on a big GPU); single pass otherwise (prefill, large batches).
    Auto,
    /// Exactly this many key partitions (1 = the single-pass kernel), for tests; any batch
    /// (prefill too): partitions past a row's last key are empty and weigh nothing.
    Parts(usize),
}

fn kernel_err(op: &str, msg: impl Into<String>) -> Error {
    Error::Tensor { op: op.into(), source: candle_core::Error::Msg(msg.into()) }
}

/// The batch's layout for the kernels, in one device buffer of u32:
/// `[work (seq, first token) × n_work | seqs (row, len, start, table offset) | slots | tables |
/// tiles (seq, first token) × n_tiles]`: `work` every `QTILE` tokens of each sequence, `tiles`
/// every `PF_Q` tokens (`prefill_mma`'s CTAs), only when some sequence has several tokens.
pub(crate) struct GpuBatch {
    buf: Arc<CudaSlice<u32>>,
    meta: BatchLayout,
}

/// Where the parts of a [`GpuBatch`]'s buffer start, and what the host checks against the pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLayout {
    n_work: usize,
    seqs_at: usize,
    slots_at: usize,
    tables_at: usize,
    tiles_at: usize,
    n_tiles: usize,
    n_tokens: usize,
    n_slots: usize,
    n_seqs: usize,
    /// The longest context (start + len) of any sequence: what split-K partitions.
    pub max_ctx: usize,
    /// The largest block id in any table and the largest slot: the pool must hold them, or the
    /// kernels would touch memory outside it (checked on the host before every launch).
    pub max_block: Option<u32>,
    pub max_slot: Option<usize>,
}

impl std::ops::Deref for GpuBatch {
    type Target = BatchLayout;
    fn deref(&self) -> &BatchLayout {
        &self.meta
    }
}

impl GpuBatch {
    /// `None` on the CPU.
    pub fn new(batch: &BatchMeta, device: &Device) -> Result<Option<Self>> {
        let Device::Cuda(dev) = device else { return Ok(None) };
        Self::upload(&batch.seqs, &batch.slots, dev).map(Some)
    }

    fn upload(batch_seqs: &[AttnSeq], slots: &[usize], dev: &CudaDevice) -> Result<Self> {
        let (host, meta) = Self::layout(batch_seqs, slots)?;
        let buf = dev.clone_htod(&host).ctx("upload batch metadata")?;
        Ok(Self { buf: Arc::new(buf), meta })
    }

    /// A batch whose layout is already in `buf` (a CUDA graph's fixed input buffer).
    pub fn fixed(buf: Arc<CudaSlice<u32>>, meta: BatchLayout) -> Self {
        Self { buf, meta }
    }

    /// The buffer's contents for a batch, and its layout. Slots equal to `NO_SLOT` (padding
    /// rows) are not written by the kernels.
    pub fn layout(batch_seqs: &[AttnSeq], slots: &[usize]) -> Result<(Vec<u32>, BatchLayout)> {
        let too_big = || Error::InvalidInput("batch metadata exceeds 32-bit indices".into());
        let u = |x: usize| u32::try_from(x).map_err(|_| too_big());
        let mut work = Vec::new();
        let (mut seqs, mut tables) = (Vec::new(), Vec::new());
        for (si, s) in batch_seqs.iter().enumerate() {
            for tile in (0..s.len).step_by(QTILE) {
                work.extend([u(si)?, u(tile)?]);
            }
            seqs.extend([u(s.row)?, u(s.len)?, u(s.start)?, u(tables.len())?]);
            tables.extend_from_slice(s.block_table);
        }
        // A decode batch (one token a sequence) has no tiles: its graphs' fixed buffer holds
        // 7 words a row and the tables.
        let mut tiles = Vec::new();
        if batch_seqs.iter().any(|s| s.len > 1) {
            for (si, s) in batch_seqs.iter().enumerate() {
                for tile in (0..s.len).step_by(PF_Q) {
                    tiles.extend([u(si)?, u(tile)?]);
                }
            }
        }
        let n_work = work.len() / 2;
        let seqs_at = work.len();
        let slots_at = seqs_at + seqs.len();
        let tables_at = slots_at + slots.len();
        let max_block = tables.iter().copied().max();
        let mut host = work;
        host.extend(seqs);
        for &s in slots {
            host.push(u(s)?);
        }
        host.extend(tables);
        // The kernels read a work item as one 8-byte int2: the tiles start at an even word.
        if !tiles.is_empty() && host.len() % 2 == 1 {
            host.push(0);
        }
        let tiles_at = host.len();
        let n_tiles = tiles.len() / 2;
        host.extend(tiles);
        let meta = BatchLayout {
            n_work,
            seqs_at,
            slots_at,
            tables_at,
            tiles_at,
            n_tiles,
            n_tokens: batch_seqs.iter().map(|s| s.len).sum(),
            n_slots: slots.len(),
            n_seqs: batch_seqs.len(),
            max_ctx: batch_seqs.iter().map(|s| s.start + s.len).max().unwrap_or(0),
            max_block,
            max_slot: slots.iter().copied().filter(|&s| s != NO_SLOT).max(),
        };
        Ok((host, meta))
    }
}

/// The device address of a contiguous tensor's first element (f32, f16, bf16 or u32).
pub(super) fn dptr(t: &Tensor, stream: &candle_core::cuda::cudarc::driver::CudaStream) -> Result<u64> {
    let (st, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*st else { return Err(kernel_err("cuda pointer", "tensor is not on a CUDA device")) };
    let off = layout.start_offset();
    Ok(match &cs.slice {
        CudaStorageSlice::F32(s) => s.device_ptr(stream).0 + 4 * off as u64,
        CudaStorageSlice::F16(s) => s.device_ptr(stream).0 + 2 * off as u64,
        CudaStorageSlice::BF16(s) => s.device_ptr(stream).0 + 2 * off as u64,
        CudaStorageSlice::U32(s) => s.device_ptr(stream).0 + 4 * off as u64,
        _ => return Err(kernel_err("cuda pointer", format!("dtype {:?} is not f32/f16/bf16/u32", t.dtype()))),
    })
}

pub(super) fn slice_ptr<T>(s: &CudaSlice<T>, at: usize, stream: &candle_core::cuda::cudarc::driver::CudaStream) -> u64 {
    s.device_ptr(stream).0 + (at * std::mem::size_of::<T>()) as u64
}

/// Kernel name suffix for (activation dtype, cache dtype).
fn types(act: DType, cache: DType) -> Result<&'static str> {
    Ok(match (act, cache) {
        (DType::F32, DType::F32) => "f32_f32",
        (DType::F32, DType::F16) => "f32_f16",
        (DType::F16, DType::F16) => "f16_f16",
        (DType::BF16, DType::BF16) => "bf16_bf16",
        (a, c) => {
            return Err(kernel_err(
                "paged attention",
                format!("{a:?} activations with a {c:?} KV cache are not supported on CUDA (f32/f32, f32/f16, f16/f16, bf16/bf16)"),
            ))
        }
    })
}

/// Where one layer's K and V live, and their geometry.
pub(crate) struct LayerPtrs {
    pub k: u64,
    pub v: u64,
    /// Split-K's merge tickets: `counter_slots` u32, zero between launches (each launch leaves
    /// them so), one for each (work item, head chunk) of a split launch.
    pub counters: u64,
    pub counter_slots: usize,
    pub dtype: DType,
    pub kv_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    pub block_size: usize,
}

/// Writes the batch's new K/V, then attends: `q (T, h, dk)`, `k (kvh, T, dk)`, `v (kvh, T, dv)`
/// → `(T, h · dv)` in q's dtype.
pub(crate) fn write_and_attend(
    dev: &CudaDevice,
    pool: &LayerPtrs,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: &GpuBatch,
    p: &AttnParams,
) -> Result<Tensor> {
    let t = batch.n_tokens;
    let (kvh, dk, dv, bs) = (pool.kv_heads, pool.k_dim, pool.v_dim, pool.block_size);
    if t != batch.n_slots || k.dims() != [kvh, t, dk] || v.dims() != [kvh, t, dv] {
        return Err(kernel_err(
            "kv write",
            format!("k {:?}, v {:?} for {t} tokens and a cache of {kvh} heads of {dk}/{dv}", k.dims(), v.dims()),
        ));
    }
    let act = q.dtype();
    let ty = types(act, pool.dtype)?;
    let contiguous = |x: &Tensor, what: &str| x.to_dtype(act).and_then(|x| x.contiguous()).ctx(what.to_string());
    let (k, v) = (contiguous(k, "attention k")?, contiguous(v, "attention v")?);
    let stream = dev.cuda_stream();
    let (kp, vp) = (dptr(&k, &stream)?, dptr(&v, &stream)?);
    let f = func(dev, &format!("kv_write_{ty}"))?;
    let mut l = Launch::new(&f);
    let i32_ = |x: usize| x as i32;
    let (ti, kvhi, dki, dvi, bsi) = (i32_(t), i32_(kvh), i32_(dk), i32_(dv), i32_(bs));
    let slots = slice_ptr(&batch.buf, batch.slots_at, &stream);
    l.arg(&kp).arg(&vp).arg(&pool.k).arg(&pool.v).arg(&slots).arg(&ti).arg(&kvhi).arg(&dki).arg(&dvi).arg(&bsi);
    let cfg = LaunchConfig { grid_dim: (t as u32, kvh as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: argument types match kv_write's signature; every index is bounded by the checks
    // above and by the pool covering every slot (checked by `PagedKvCache` on the host side).
    unsafe { l.launch(&stream, cfg) }.w()?;
    attend(dev, pool, &Query::Rotated(q), batch, p, Split::Auto)
}

/// [`write_and_attend`] from the fused projection's rows `qkv (.., T, (h + 2·kvh)·d)` before
/// rotary (k_dim = v_dim = d): the queries are rotated and the rotated keys and the values
/// written into the pool, then attention runs as usual → `(T, h · d)`. Where the decode kernel
/// takes the batch it does all of it in one launch ([`Packed::fuse`]); otherwise one kernel
/// rotates and writes first.
pub(crate) fn rope_write_and_attend(
    dev: &CudaDevice,
    pool: &LayerPtrs,
    qkv: &Tensor,
    heads: usize,
    rope: Option<PackedRope>,
    batch: &GpuBatch,
    p: &AttnParams,
) -> Result<Tensor> {
    let packed = Packed::new(pool, qkv, heads, rope, batch, fused_rope_on())?;
    attend(dev, pool, &Query::Packed(packed), batch, p, Split::Auto)
}

/// The queries [`attend`] takes.
pub(crate) enum Query<'a> {
    /// Rotated queries `(T, h, dk)`; the batch's keys and values are in the pool.
    Rotated(&'a Tensor),
    /// A fused projection's rows before rotary; the batch's keys and values are not in the pool yet.
    Packed(Packed<'a>),
}

/// A fused `[q | k | v]` projection's rows before rotary, checked against the pool and batch.
pub(crate) struct Packed<'a> {
    qkv: &'a Tensor,
    heads: usize,
    rope: Option<PackedRope<'a>>,
    /// Whether the 16-warp decode kernel may rotate and write itself (`paged_decode`'s ROPE
    /// form) when it takes the batch; otherwise (and always for other kernels) `qkv_rope_write`
    /// runs first.
    fuse: bool,
    /// Set when the fused form ran (for tests).
    fused: std::cell::Cell<bool>,
}

impl<'a> Packed<'a> {
    fn new(
        pool: &LayerPtrs,
        qkv: &'a Tensor,
        heads: usize,
        rope: Option<PackedRope<'a>>,
        batch: &GpuBatch,
        fuse: bool,
    ) -> Result<Self> {
        let t = batch.n_tokens;
        let (kvh, d) = (pool.kv_heads, pool.k_dim);
        let width = (heads + 2 * kvh) * d;
        let rot = rope.as_ref().map_or(0, |r| r.rot);
        let tables_ok = rope.as_ref().is_none_or(|r| {
            [r.cos, r.sin].iter().all(|x| x.dims() == [t, r.rot / 2] && x.dtype() == qkv.dtype() && x.is_contiguous())
        });
        if pool.v_dim != d
            || qkv.elem_count() != t * width
            || qkv.dims().last() != Some(&width)
            || !qkv.is_contiguous()
            || t != batch.n_slots
            || !rot.is_multiple_of(2)
            || rot > d
            || !tables_ok
        {
            return Err(kernel_err(
                "qkv rope write",
                format!(
                    "qkv {:?} for {t} tokens, {heads} heads, a cache of {kvh} heads of {d}, rotary {rot}",
                    qkv.dims()
                ),
            ));
        }
        Ok(Self { qkv, heads, rope, fuse, fused: std::cell::Cell::new(false) })
    }

    /// `(cos, sin, rot, interleaved)` as kernel arguments (zeros without rotary).
    fn rope_args(
        &self,
        stream: &std::sync::Arc<candle_core::cuda::cudarc::driver::CudaStream>,
    ) -> Result<(u64, u64, i32, i32)> {
        Ok(match &self.rope {
            Some(r) => (dptr(r.cos, stream)?, dptr(r.sin, stream)?, r.rot as i32, i32::from(r.interleaved)),
            None => (0, 0, 0, 0),
        })
    }

    /// `qkv_rope_write`: rotates the queries into a fresh `(T, h, d)` and writes the rotated keys
    /// and the values into the pool.
    fn rope_write(&self, dev: &CudaDevice, pool: &LayerPtrs, batch: &GpuBatch) -> Result<Tensor> {
        let (t, heads) = (batch.n_tokens, self.heads);
        let (kvh, d, bs) = (pool.kv_heads, pool.k_dim, pool.block_size);
        let act = self.qkv.dtype();
        let ty = types(act, pool.dtype)?;
        let stream = dev.cuda_stream();
        let src = dptr(self.qkv, &stream)?;
        let (cos, sin, roti, inter) = self.rope_args(&stream)?;
        // The kernel writes every (token, head, dim) of q.
        let q = super::alloc::output(dev, act, &[t, heads, d])?;
        let qp = dptr(&q, &stream)?;
        let slots = slice_ptr(&batch.buf, batch.slots_at, &stream);
        let i32_ = |x: usize| x as i32;
        let (hi, kvhi, di, bsi) = (i32_(heads), i32_(kvh), i32_(d), i32_(bs));
        // The vector form: 16-byte rows of a 16-bit type in the cache's type, rotary over
        // whole heads in halves or none (every address a multiple of 16 bytes: d a multiple of
        // 16 and 16-byte aligned bases).
        let aligned = [src, cos, sin, qp, pool.k, pool.v].iter().all(|p| p.is_multiple_of(16));
        let vector = act == pool.dtype
            && matches!(act, DType::BF16 | DType::F16)
            && d.is_multiple_of(16)
            && (roti == 0 || (roti as usize == d && inter == 0))
            && aligned;
        let (f, threads) = if vector {
            let f = func(dev, &format!("qkv_rope_write_v_{}", if act == DType::BF16 { "bf16" } else { "f16" }))?;
            (f, d / 16)
        } else {
            // A warp (two rotary pairs a thread at head dim 128) per head: a CTA per (token,
            // head) of 64 threads was 9.3 µs at bs 128 of the 8B shape (Nsight Compute,
            // bench/RESULTS.md, 2026-12-03), launch-bound.
            (func(dev, &format!("qkv_rope_write_{ty}"))?, (d / 4).next_multiple_of(32).clamp(32, 256))
        };
        let mut l = Launch::new(&f);
        l.arg(&src).arg(&cos).arg(&sin).arg(&qp).arg(&pool.k).arg(&pool.v).arg(&slots);
        l.arg(&hi).arg(&kvhi).arg(&di).arg(&roti);
        if !vector {
            l.arg(&inter);
        }
        l.arg(&bsi);
        // 256 threads a CTA: several heads of one token.
        let per_cta = (256 / threads).max(1);
        let cfg = LaunchConfig {
            grid_dim: (t as u32, (heads + 2 * kvh).div_ceil(per_cta) as u32, 1),
            block_dim: (threads as u32, per_cta as u32, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types match qkv_rope_write's signature (qkv_rope_write_v's: without
        // `interleaved`; its alignment and shapes checked above); qkv holds t rows of `width`,
        // the tables t rows of rot / 2 (checked by `Packed::new`), q t × heads × d; every slot
        // is inside the pool (checked by the caller against the pool's blocks).
        unsafe { l.launch(&stream, cfg) }.w().ctx("qkv rope write")?;
        Ok(q)
    }
}

/// Whether decode batches rotate and write the new keys inside the attention kernel
/// ([`Packed::fuse`]): on unless `PROM_FUSED_ROPE=0`, for comparison.
fn fused_rope_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    super::launch::env_switch(&ON, "PROM_FUSED_ROPE")
}

/// The GPU's SM count (132 on an H100/H200 SXM), read once: split-K sizes its grid by it.
fn sm_count(dev: &CudaDevice) -> usize {
    static SMS: OnceLock<usize> = OnceLock::new();
    *SMS.get_or_init(|| {
        let attr = CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT;
        dev.cuda_stream().context().attribute(attr).map_or(132, |n| n.max(1) as usize)
    })
}

/// CTAs per SM that split-K aims for: a CTA walks its tiles one after another (load, then
/// score, then accumulate), so an SM needs several resident to hide the latency (five fit
/// by shared memory at head dim 128). With only one per SM (the first version's target), bs 17
/// (136 CTAs, single pass) was 31% slower per step than bs 16 (split) on the H200.
const CTAS_PER_SM: usize = 4;

/// Key partitions for `ctas` CTAs a partition over contexts of up to `max_ctx` keys: enough for
/// about `CTAS_PER_SM` CTAs per SM, none below `PART_MIN` keys, and 1 (the single-pass kernel)
/// once the batch alone fills the SMs that far or a chunk has several query tiles (prefill
/// keeps its path).
fn auto_parts(batch: &GpuBatch, ctas: usize, sms: usize, unit: usize) -> usize {
    let target = CTAS_PER_SM * sms;
    if batch.n_work != batch.n_seqs || ctas >= target {
        return 1;
    }
    target.div_ceil(ctas).min(batch.max_ctx.div_ceil(unit.max(PART_MIN))).max(1)
}

/// Paged attention over the keys already in the pool (the batch's own included): `q (T, h, dk)`
/// → `(T, h · dv)` in q's dtype.
pub(crate) fn attend(
    dev: &CudaDevice,
    pool: &LayerPtrs,
    query: &Query<'_>,
    batch: &GpuBatch,
    p: &AttnParams,
    split: Split,
) -> Result<Tensor> {
    let (t, h, dk) = match query {
        Query::Rotated(q) => q.dims3().ctx("attention q")?,
        Query::Packed(pk) => (batch.n_tokens, pk.heads, pool.k_dim),
    };
    let act = match query {
        Query::Rotated(q) => q.dtype(),
        Query::Packed(pk) => pk.qkv.dtype(),
    };
    let (kvh, dv, bs) = (pool.kv_heads, pool.v_dim, pool.block_size);
    if t != batch.n_tokens || dk != pool.k_dim {
        return Err(kernel_err(
            "paged attention",
            format!(
                "q ({t}, {h}, {dk}) for {} tokens and a cache of {kvh} heads of {}/{dv}",
                batch.n_tokens, pool.k_dim
            ),
        ));
    }
    if kvh == 0 || h % kvh != 0 || dv > 32 * 16 || bs == 0 {
        return Err(kernel_err(
            "paged attention",
            format!("{h} heads over {kvh} kv heads, v_dim {dv} (≤ 512), block size {bs}"),
        ));
    }
    let ty = types(act, pool.dtype)?;
    let stream = dev.cuda_stream();
    let b = &batch.buf;
    let (i32_, u) = (|x: usize| x as i32, |at: usize| slice_ptr(b, at, &stream));
    let rep = h / kvh;
    // paged_decode is compiled for R ∈ {1, 2, 4, 8}: a group of 3 or 6 heads (SmolLM2's 9 over 3)
    // takes chunks of 1 or 2.
    let pow2_chunk = |most: usize| [8, 4, 2, 1].into_iter().find(|&d| d <= most && rep % d == 0).unwrap_or(1);
    // A decode batch (one query token a work item) with a common head dim and an aligned pool
    // takes `paged_decode`: its 4-warp kernel (up to DMAXR heads a CTA, head dims 64/128/256)
    // once the batch gives every SM a CTA without split-K, its 16-warp kernel (head dims 64/128)
    // below that, where a sequence's keys are a latency chain: up to 512 keys are then one CTA
    // whose warps merge in shared memory. Everything else (prefill) takes `paged_attn`, whose
    // CTAs load each tile with all their threads.
    let one_token =
        batch.n_tokens == batch.n_work && dk == dv && pool.k.is_multiple_of(16) && pool.v.is_multiple_of(16);
    let decode = one_token && matches!(dk, 64 | 128 | 256) && batch.n_work * (h / pow2_chunk(DMAXR)) >= sm_count(dev);
    let small = !decode && one_token && matches!(dk, 64 | 128) && small_decode_on();
    // Packed queries: the 16-warp decode kernel rotates and writes them itself (16-bit
    // activations and a cache of their type), or `qkv_rope_write` does first. At bs 1 the fused
    // form took 4.25–4.28 ms a step against 4.30–4.33 (the 8B shape); the 4-warp kernel's was
    // 3% slower at bs 32 and 128 and was dropped (bench/RESULTS.md, 2026-12-01).
    let (q, fused) = match query {
        Query::Rotated(q) => (Some(q.contiguous().ctx("attention q")?), None),
        Query::Packed(pk) if pk.fuse && small && act == pool.dtype && act != DType::F32 => (None, Some(pk)),
        Query::Packed(pk) => (Some(pk.rope_write(dev, pool, batch)?), None),
    };
    let qp = match (&q, fused) {
        (Some(q), _) => dptr(q, &stream)?,
        (None, Some(pk)) => {
            pk.fused.set(true);
            dptr(pk.qkv, &stream)?
        }
        (None, None) => return Err(kernel_err("paged attention", "no queries")),
    };

    // A batch with a multi-token chunk (prefill) whose attention the tensor-core kernel covers.
    let mma = batch.n_tokens > batch.n_seqs
        && matches!((act, pool.dtype), (DType::BF16, DType::BF16) | (DType::F16, DType::F16))
        && dk == dv
        && matches!(dk, 64 | 128)
        && pool.k.is_multiple_of(16)
        && pool.v.is_multiple_of(16)
        && qp.is_multiple_of(16)
        && p.alibi.is_none()
        && p.softcap.is_none()
        && matches!(split, Split::Auto | Split::Parts(1))
        && prefill_mma_on();
    if mma {
        // `prefill_mma` (prefill.cuh): a CTA of 4 warps per (64-token tile, head), whose Q, K
        // and V tiles of PF_Q rows are each padded by 8 values.
        // A CTA for each tile of the batch's `tiles` list, not for each `work` item (3 in 4 of
        // which would start no tile and return at once).
        let smem = 3 * PF_Q * (dk + 8) * 2;
        let grid = (batch.n_tiles as u32, h as u32, 1);
        let name = ("prefill_mma", "prefill attention");
        return mma_launch(dev, pool, qp, (t, h, dk), (batch, batch.tiles_at), p, name, grid, (128, smem));
    }
    // A decode batch with a warp for every SM or more: the tensor-core decode kernel, same
    // conditions as prefill_mma's (its 16-byte copies need the aligned pool that `one_token`
    // checked) and a group of at most 16 heads.
    let dmma = one_token
        && matches!((act, pool.dtype), (DType::BF16, DType::BF16) | (DType::F16, DType::F16))
        && matches!(dk, 64 | 128)
        && rep <= 16
        && qp.is_multiple_of(16)
        && p.alibi.is_none()
        && p.softcap.is_none()
        && matches!(split, Split::Auto | Split::Parts(1))
        && batch.n_work * kvh >= decode_mma_min(dev);
    if dmma {
        // `decode_mma` (prefill.cuh): one warp per (sequence, kv head), with K and V rings of
        // DM_STAGES tiles of DM_K keys, rows padded by 8 values.
        let smem = 2 * DM_STAGES * DM_K * (dk + 8) * 2;
        let grid = (batch.n_work as u32, kvh as u32, 1);
        let name = ("decode_mma", "decode attention");
        return mma_launch(dev, pool, qp, (t, h, dk), (batch, 0), p, name, grid, (32, smem));
    }
    let chunk = |most: usize| (1..=most.min(rep)).rev().find(|d| rep % d == 0).unwrap_or(1);
    let hp = match (decode, small) {
        (true, _) => pow2_chunk(DMAXR),
        // The most heads (of 4, 2, 1) that still give a quarter of the SMs a CTA: at bs 1 on
        // the 8B shape one head a CTA (32 CTAs) took 4.43–4.46 ms a step against 4.53–4.57
        // with four (8 CTAs); at bs 16 four heads (128 CTAs) took 5.14–5.24 ms against
        // 5.67–5.74 with one (bench/RESULTS.md, 2026-12-01).
        (false, true) => [4, 2]
            .into_iter()
            .find(|&r| r <= pow2_chunk(MAXR) && batch.n_work * (h / r) >= sm_count(dev).div_ceil(4))
            .unwrap_or(1),
        (false, false) => chunk(MAXR),
    };
    let ctas = batch.n_work * (h / hp);
    let warps = if small { SMALL_WARPS } else { WARPS };
    // The keys a partition takes at the least: a tile, or a tile for each warp of paged_decode.
    let unit = if decode || small { warps * KT } else { KT };
    let parts = match split {
        Split::Auto => auto_parts(batch, ctas, sm_count(dev), unit),
        Split::Parts(n) => n.max(1),
    };
    // A split launch takes one merge ticket for each of its `ctas` CTA groups.
    let parts = if ctas > pool.counter_slots { 1 } else { parts };
    // Whole tiles per partition: fixed here for `Parts` (the count recomputed so that no
    // partition is empty for the longest context), sized per sequence by the kernel for `Auto`
    // (part = -1), so that a CUDA graph's grid needs no context length.
    let (part, parts) = match (split, parts) {
        (_, 1) => (0, 1),
        (Split::Auto, n) => (-1, n),
        (Split::Parts(_), n) => {
            let part = batch.max_ctx.div_ceil(n).div_ceil(KT).max(1) * KT;
            (i32::try_from(part).unwrap_or(i32::MAX), batch.max_ctx.div_ceil(part).max(1))
        }
    };
    let (f, smem) = if decode || small {
        let wide = if small { "w16_" } else { "" };
        let rope = if fused.is_some() { "rope_" } else { "" };
        let f = func(dev, &format!("paged_decode_{wide}{rope}{ty}_{dk}_{hp}"))?;
        // paged_decode's layout: q rows, then each warp's (max, sum) and accumulator rows; the
        // fused form's new key and value after them.
        let fresh = if fused.is_some() { (dk + dv) * act.size_in_bytes() } else { 0 };
        (f, (hp * dk + warps * hp * 2 + warps * hp * dv) * 4 + fresh)
    } else {
        let dvl = [1, 2, 4, 8, 16].into_iter().find(|&n| 32 * n >= dv).unwrap_or(16);
        let f = func(dev, &format!("paged_attn_{ty}_{dvl}"))?;
        // paged_attn's layout: q rows of `qst` floats, K rows of `qst + 4`, V rows of dv.
        let qst = dk.div_ceil(4) * 4;
        (f, (WARPS * MAXR * qst + KT * (qst + 4) + KT * dv) * 4)
    };
    if smem > 48 * 1024 {
        f.set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
            .map_err(|e| kernel_err("paged attention", format!("{smem} bytes of shared memory: {e}")))?;
    }
    let alibi = match p.alibi {
        Some(a) if a.len() != h => {
            return Err(kernel_err("paged attention", format!("{} ALiBi slopes, {h} heads", a.len())))
        }
        Some(a) => Some(dev.clone_htod(a).ctx("upload ALiBi slopes")?),
        None => None,
    };
    let alibi_p = alibi.as_ref().map_or(0u64, |a| slice_ptr(a, 0, &stream));
    // Split-K scratch: (max, sum) and the accumulator per (token, head, partition); every
    // (token, head, partition) is written by exactly one CTA before the merge.
    let scratch = if parts > 1 {
        let ml = super::alloc::output(dev, DType::F32, &[2 * t * h * parts])?;
        let acc = super::alloc::output(dev, DType::F32, &[t * h * parts * dv])?;
        Some((ml, acc))
    } else {
        None
    };
    let (ml_p, acc_p) = match &scratch {
        Some((m, a)) => (dptr(m, &stream)?, dptr(a, &stream)?),
        None => (0, 0),
    };
    // The kernel (or the merge) writes every element: every row belongs to one sequence.
    let out = super::alloc::output(dev, act, &[t, h * dv])?;
    let op = dptr(&out, &stream)?;
    let (work, seqs, tables) = (u(0), u(batch.seqs_at), u(batch.tables_at));
    let (hi, kvhi, dki, dvi, bsi, hpi, qt) = (i32_(h), i32_(kvh), i32_(dk), i32_(dv), i32_(bs), i32_(hp), i32_(QTILE));
    let (scale, cap, win, parti) = (p.scale, p.softcap.unwrap_or(0.0), p.window.map_or(0, i32_), part);
    let mut l = Launch::new(&f);
    l.arg(&qp).arg(&op).arg(&pool.k).arg(&pool.v).arg(&work).arg(&seqs).arg(&tables).arg(&alibi_p);
    if decode || small {
        l.arg(&hi).arg(&kvhi).arg(&bsi).arg(&scale).arg(&cap).arg(&win);
    } else {
        l.arg(&hi).arg(&kvhi).arg(&dki).arg(&dvi).arg(&bsi).arg(&hpi).arg(&qt).arg(&scale).arg(&cap).arg(&win);
    }
    l.arg(&parti).arg(&ml_p).arg(&acc_p).arg(&pool.counters);
    // paged_decode's fused rotary: the tables and the batch's slots (unread by the plain form).
    let (cos, sin, rot, inter) = match fused {
        Some(pk) => pk.rope_args(&stream)?,
        None => (0, 0, 0, 0),
    };
    let slots = u(batch.slots_at);
    if decode || small {
        l.arg(&cos).arg(&sin).arg(&slots).arg(&rot).arg(&inter);
    }
    let grid = (batch.n_work as u32, (h / hp) as u32, parts as u32);
    let cfg = LaunchConfig { grid_dim: grid, block_dim: ((warps * 32) as u32, 1, 1), shared_mem_bytes: smem as u32 };
    // SAFETY: argument types match paged_attn's (or paged_decode's) signature; the work list,
    // tables and slots were built from the same batch the shapes were checked against (fused:
    // qkv's rows and the rotary tables by `Packed::new`); with `part` ≠ 0 the scratch
    // holds gridDim.z partitions of every (token, head), and the counters one zeroed ticket
    // for each (work item, head chunk) (checked above).
    unsafe { l.launch(&stream, cfg) }.w()?;
    // The slopes', scratch and query buffers must outlive the launches: their frees are ordered
    // after them on the stream.
    drop((alibi, scratch, q));
    Ok(out)
}

/// Whether prefill batches take `prefill_mma` where it applies: on unless `PROM_PREFILL_MMA=0`
/// (then `paged_attn`, for comparison).
fn prefill_mma_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    super::launch::env_switch(&ON, "PROM_PREFILL_MMA")
}

/// The fewest (sequence, kv head) units a decode batch needs to take `decode_mma`: one an SM,
/// or `PROM_DECODE_MMA_MIN` (a huge value turns it off, for comparison).
fn decode_mma_min(dev: &CudaDevice) -> usize {
    static MIN: OnceLock<usize> = OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("PROM_DECODE_MMA_MIN").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| sm_count(dev))
    })
}

/// Keys a `decode_mma` tile holds and its ring's stages (`DM_K`, `DM_STAGES` of prefill.cuh).
const DM_K: usize = 16;
const DM_STAGES: usize = 3;

/// Query tokens a `prefill_mma` CTA takes (`PF_Q` of prefill.cuh): a multiple of `QTILE`, so
/// that one work item of paged_attn's list starts each CTA's tile.
const PF_Q: usize = 64;
const _: () = assert!(PF_Q.is_multiple_of(QTILE));

/// One launch of a tensor-core attention kernel (`{name}_{bf16|f16}_{d}`, prefill.cuh), whose
/// arguments are (q, out, k pool, v pool, work, seqs, tables, heads, kv heads, block size, scale,
/// window) → a fresh `(t, h · d)` output. `work_at`: where in the batch's buffer the kernel's
/// work list (a `(seq, first token)` pair a CTA or warp) starts. `(threads, smem)`: the CTA's
/// threads and dynamic shared memory in bytes.
#[allow(clippy::too_many_arguments)]
fn mma_launch(
    dev: &CudaDevice,
    pool: &LayerPtrs,
    qp: u64,
    (t, h, d): (usize, usize, usize),
    (batch, work_at): (&GpuBatch, usize),
    p: &AttnParams,
    (name, what): (&str, &str),
    grid: (u32, u32, u32),
    (threads, smem): (u32, usize),
) -> Result<Tensor> {
    let act = pool.dtype;
    let ty = if act == DType::BF16 { "bf16" } else { "f16" };
    let f = func(dev, &format!("{name}_{ty}_{d}"))?;
    if smem > 48 * 1024 {
        f.set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
            .map_err(|e| kernel_err(what, format!("{smem} bytes of shared memory: {e}")))?;
    }
    let stream = dev.cuda_stream();
    let out = super::alloc::output(dev, act, &[t, h * d])?;
    let op = dptr(&out, &stream)?;
    let b = &batch.buf;
    let (work, seqs, tables) =
        (slice_ptr(b, work_at, &stream), slice_ptr(b, batch.seqs_at, &stream), slice_ptr(b, batch.tables_at, &stream));
    let i32_ = |x: usize| x as i32;
    let (hi, kvhi, bsi, win) = (i32_(h), i32_(pool.kv_heads), i32_(pool.block_size), p.window.map_or(0, i32_));
    let mut l = Launch::new(&f);
    l.arg(&qp).arg(&op).arg(&pool.k).arg(&pool.v).arg(&work).arg(&seqs).arg(&tables);
    l.arg(&hi).arg(&kvhi).arg(&bsi).arg(&p.scale).arg(&win);
    let cfg = LaunchConfig { grid_dim: grid, block_dim: (threads, 1, 1), shared_mem_bytes: smem as u32 };
    // SAFETY: argument types match prefill_mma's and decode_mma's signature; q holds t × h × d
    // values and out t × h × d (every row belongs to one sequence, whose CTAs or warps write all
    // of its rows and heads); the work list and tables were built from the batch the shapes were
    // checked against, and the pool covers every block in them (checked by the callers).
    unsafe { l.launch(&stream, cfg) }.w().ctx(what)?;
    Ok(out)
}

/// Paged attention over K/V pools given as tensors `(blocks, kv_heads, block_size, k_dim)` and
/// `(blocks, kv_heads, block_size, v_dim)` on a CUDA device (the GPU pool's layout), for tests
/// of the kernels against a host reference and of split-K against the single pass.
pub fn paged_attention_pool(
    q: &Tensor,
    k_pool: &Tensor,
    v_pool: &Tensor,
    seqs: &[AttnSeq],
    p: &AttnParams,
    split: Split,
) -> Result<Tensor> {
    let Device::Cuda(dev) = q.device() else {
        return Err(kernel_err("paged attention", "q is not on a CUDA device"));
    };
    with_pool(dev, k_pool, v_pool, seqs, &[], q.dim(1).ctx("attention q")?, |ptrs, batch| {
        attend(dev, ptrs, &Query::Rotated(q), batch, p, split)
    })
}

/// The decode step's path from a fused projection: `qkv (T, (h + 2·kvh)·d)` before rotary, the
/// token `i` of `seqs` (one each) going to `slots[i]`, rotary over the leading `rot` dims with
/// `cos`/`sin (T, rot / 2)`. Writes the rotated keys and the values into the pools (tensors as
/// for [`paged_attention_pool`], written in place) and returns the attention output `(T, h·d)`.
/// `fuse`: the decode kernel's fused form where it takes the batch, else `qkv_rope_write` and
/// the plain kernel; for tests of the one against the other. Also returns whether the fused
/// form ran.
#[allow(clippy::too_many_arguments)]
pub fn rope_attention_pool(
    qkv: &Tensor,
    heads: usize,
    k_pool: &Tensor,
    v_pool: &Tensor,
    seqs: &[AttnSeq],
    slots: &[usize],
    rope: Option<(&Tensor, &Tensor, usize, bool)>,
    p: &AttnParams,
    fuse: bool,
) -> Result<(Tensor, bool)> {
    let Device::Cuda(dev) = qkv.device() else {
        return Err(kernel_err("paged attention", "qkv is not on a CUDA device"));
    };
    let rope = rope.map(|(cos, sin, rot, interleaved)| PackedRope { cos, sin, rot, interleaved });
    let ran = std::cell::Cell::new(false);
    let out = with_pool(dev, k_pool, v_pool, seqs, slots, heads, |ptrs, batch| {
        let query = Query::Packed(Packed::new(ptrs, qkv, heads, rope, batch, fuse)?);
        let out = attend(dev, ptrs, &query, batch, p, Split::Auto)?;
        if let Query::Packed(pk) = &query {
            ran.set(pk.fused.get());
        }
        Ok(out)
    })?;
    Ok((out, ran.get()))
}

/// Runs `f` over pools given as tensors (checked against the batch) and the batch's layout on
/// the device, with merge tickets for `heads` query heads.
fn with_pool(
    dev: &CudaDevice,
    k_pool: &Tensor,
    v_pool: &Tensor,
    seqs: &[AttnSeq],
    slots: &[usize],
    heads: usize,
    f: impl FnOnce(&LayerPtrs, &GpuBatch) -> Result<Tensor>,
) -> Result<Tensor> {
    let (blocks, kvh, bs, dk) = k_pool.dims4().ctx("k pool")?;
    let (vb, vh, vbs, dv) = v_pool.dims4().ctx("v pool")?;
    if (vb, vh, vbs) != (blocks, kvh, bs) || k_pool.dtype() != v_pool.dtype() {
        return Err(kernel_err("paged attention", format!("k pool {:?}, v pool {:?}", k_pool.dims(), v_pool.dims())));
    }
    let covers = |s: &AttnSeq| {
        s.block_table.len() * bs >= s.start + s.len && s.block_table.iter().all(|&b| (b as usize) < blocks)
    };
    if let Some(i) = seqs.iter().position(|s| !covers(s)) {
        return Err(Error::InvalidInput(format!("paged attention: sequence {i}'s block table is outside the pool")));
    }
    if slots.iter().any(|&s| s != NO_SLOT && s >= blocks * bs) {
        return Err(Error::InvalidInput("paged attention: a slot is outside the pool".into()));
    }
    if !(k_pool.is_contiguous() && v_pool.is_contiguous()) {
        return Err(kernel_err("paged attention", "the pools must be contiguous (they are written in place)"));
    }
    let stream = dev.cuda_stream();
    let batch = GpuBatch::upload(seqs, slots, dev)?;
    // Merge tickets for any split of this batch: one for each (work item, query head).
    let tickets = (batch.n_work * heads).max(1);
    let counters = dev.alloc_zeros::<u32>(tickets).ctx("split-K counters")?;
    let ptrs = LayerPtrs {
        k: dptr(k_pool, &stream)?,
        v: dptr(v_pool, &stream)?,
        counters: slice_ptr(&counters, 0, &stream),
        counter_slots: tickets,
        dtype: k_pool.dtype(),
        kv_heads: kvh,
        k_dim: dk,
        v_dim: dv,
        block_size: bs,
    };
    let out = f(&ptrs, &batch);
    // The counters' free is ordered after the launch on the stream.
    drop(counters);
    out
}

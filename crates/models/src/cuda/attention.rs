//! Launching `kernels.cu`: a batch's metadata on the device ([`GpuBatch`], uploaded once per
//! forward pass and read by every layer), the KV write and paged attention.

use candle_core::cuda::cudarc::driver::sys::CUfunction_attribute_enum;
use candle_core::cuda::cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda::{CudaStorageSlice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, DType, Device, Storage, Tensor};

use crate::kernels::attention::AttnParams;
use crate::nn::BatchMeta;
use crate::{Error, Result, TensorContext};

pub(super) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/prom_kernels.ptx"));
pub(super) const MODULE: &str = "prom_kernels";
/// `WARPS`, `MAXR` and `KT` of kernels.cu.
const WARPS: usize = 4;
const MAXR: usize = 4;
const KT: usize = 32;
/// Query tokens per CTA. With up to `MAXR` heads of a GQA group per CTA, its ≤ 16 rows share
/// every K/V tile it loads.
const QTILE: usize = 4;

fn kernel_err(op: &str, msg: impl Into<String>) -> Error {
    Error::Tensor { op: op.into(), source: candle_core::Error::Msg(msg.into()) }
}

/// The batch's layout for the kernels, in one device buffer of u32:
/// `[work (seq, first token) × n_work | seqs (row, len, start, table offset) | slots | tables]`.
pub(crate) struct GpuBatch {
    buf: CudaSlice<u32>,
    n_work: usize,
    seqs_at: usize,
    slots_at: usize,
    tables_at: usize,
    n_tokens: usize,
    /// The largest block id in any table and the largest slot: the pool must hold them, or the
    /// kernels would touch memory outside it (checked on the host before every launch).
    pub max_block: Option<u32>,
    pub max_slot: Option<usize>,
}

impl GpuBatch {
    /// `None` on the CPU.
    pub fn new(batch: &BatchMeta, device: &Device) -> Result<Option<Self>> {
        let Device::Cuda(dev) = device else { return Ok(None) };
        let too_big = || Error::InvalidInput("batch metadata exceeds 32-bit indices".into());
        let u = |x: usize| u32::try_from(x).map_err(|_| too_big());
        let mut work = Vec::new();
        let (mut seqs, mut tables) = (Vec::new(), Vec::new());
        for (si, s) in batch.seqs.iter().enumerate() {
            for tile in (0..s.len).step_by(QTILE) {
                work.extend([u(si)?, u(tile)?]);
            }
            seqs.extend([u(s.row)?, u(s.len)?, u(s.start)?, u(tables.len())?]);
            tables.extend_from_slice(s.block_table);
        }
        let n_work = work.len() / 2;
        let seqs_at = work.len();
        let slots_at = seqs_at + seqs.len();
        let tables_at = slots_at + batch.slots.len();
        let mut host = work;
        host.extend(seqs);
        for &s in &batch.slots {
            host.push(u(s)?);
        }
        host.extend(tables);
        let max_block = host[tables_at..].iter().copied().max();
        let max_slot = batch.slots.iter().copied().max();
        let buf = dev.clone_htod(&host).ctx("upload batch metadata")?;
        Ok(Some(Self { buf, n_work, seqs_at, slots_at, tables_at, n_tokens: batch.slots.len(), max_block, max_slot }))
    }
}

/// The device address of a contiguous tensor's first element (f32, f16 or bf16).
pub(super) fn dptr(t: &Tensor, stream: &candle_core::cuda::cudarc::driver::CudaStream) -> Result<u64> {
    let (st, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*st else { return Err(kernel_err("cuda pointer", "tensor is not on a CUDA device")) };
    let off = layout.start_offset();
    Ok(match &cs.slice {
        CudaStorageSlice::F32(s) => s.device_ptr(stream).0 + 4 * off as u64,
        CudaStorageSlice::F16(s) => s.device_ptr(stream).0 + 2 * off as u64,
        CudaStorageSlice::BF16(s) => s.device_ptr(stream).0 + 2 * off as u64,
        _ => return Err(kernel_err("cuda pointer", format!("dtype {:?} is not f32/f16/bf16", t.dtype()))),
    })
}

fn slice_ptr<T>(s: &CudaSlice<T>, at: usize, stream: &candle_core::cuda::cudarc::driver::CudaStream) -> u64 {
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
    let (t, h, dk) = q.dims3().ctx("attention q")?;
    let (kvh, dv, bs) = (pool.kv_heads, pool.v_dim, pool.block_size);
    if t != batch.n_tokens || dk != pool.k_dim || k.dims() != [kvh, t, dk] || v.dims() != [kvh, t, dv] {
        return Err(kernel_err(
            "paged attention",
            format!(
                "q {:?}, k {:?}, v {:?} for {} tokens and a cache of {kvh} heads of {dk}/{dv}",
                q.dims(),
                k.dims(),
                v.dims(),
                batch.n_tokens
            ),
        ));
    }
    if kvh == 0 || h % kvh != 0 || dv > 32 * 16 {
        return Err(kernel_err("paged attention", format!("{h} heads over {kvh} kv heads, v_dim {dv} (≤ 512)")));
    }
    let act = q.dtype();
    let ty = types(act, pool.dtype)?;
    let contiguous = |x: &Tensor, what: &str| x.to_dtype(act).and_then(|x| x.contiguous()).ctx(what.to_string());
    let (q, k, v) = (contiguous(q, "attention q")?, contiguous(k, "attention k")?, contiguous(v, "attention v")?);
    let stream = dev.cuda_stream();
    let (qp, kp, vp) = (dptr(&q, &stream)?, dptr(&k, &stream)?, dptr(&v, &stream)?);
    let b = &batch.buf;
    let (i32_, u) = (|x: usize| x as i32, |at: usize| slice_ptr(b, at, &stream));

    // K/V of the new tokens into their slots.
    let f = dev.get_or_load_custom_func(&format!("kv_write_{ty}"), MODULE, PTX)?;
    let mut l = f.builder();
    let (ti, kvhi, dki, dvi, bsi) = (i32_(t), i32_(kvh), i32_(dk), i32_(dv), i32_(bs));
    let slots = u(batch.slots_at);
    l.arg(&kp).arg(&vp).arg(&pool.k).arg(&pool.v).arg(&slots).arg(&ti).arg(&kvhi).arg(&dki).arg(&dvi).arg(&bsi);
    let cfg = LaunchConfig { grid_dim: (t as u32, kvh as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: argument types match kv_write's signature; every index is bounded by the checks
    // above and by the pool covering every slot (checked by `PagedKvCache` on the host side).
    unsafe { l.launch(cfg) }.w()?;

    // Attention.
    let rep = h / kvh;
    let hp = (1..=MAXR.min(rep)).rev().find(|d| rep % d == 0).unwrap_or(1);
    let dvl = [1, 2, 4, 8, 16].into_iter().find(|&n| 32 * n >= dv).unwrap_or(16);
    let f = dev.get_or_load_custom_func(&format!("paged_attn_{ty}_{dvl}"), MODULE, PTX)?;
    let smem = (WARPS * MAXR * dk + dk * (KT + 1) + KT * dv) * 4;
    if smem > 48 * 1024 {
        f.set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
            .map_err(|e| kernel_err("paged attention", format!("{smem} bytes of shared memory: {e}")))?;
    }
    let n_out = t * h * dv;
    let alibi = match p.alibi {
        Some(a) if a.len() != h => {
            return Err(kernel_err("paged attention", format!("{} ALiBi slopes, {h} heads", a.len())))
        }
        Some(a) => Some(dev.clone_htod(a).ctx("upload ALiBi slopes")?),
        None => None,
    };
    let alibi_p = alibi.as_ref().map_or(0u64, |a| slice_ptr(a, 0, &stream));
    macro_rules! run {
        ($ty:ty) => {{
            // SAFETY: the kernel writes every element (every row belongs to one sequence).
            let out = unsafe { dev.alloc::<$ty>(n_out) }?;
            let op = slice_ptr(&out, 0, &stream);
            let (work, seqs, tables) = (u(0), u(batch.seqs_at), u(batch.tables_at));
            let (hi, hpi, qt) = (i32_(h), i32_(hp), i32_(QTILE));
            let (scale, cap, win) = (p.scale, p.softcap.unwrap_or(0.0), p.window.map_or(0, i32_));
            let mut l = f.builder();
            l.arg(&qp).arg(&op).arg(&pool.k).arg(&pool.v).arg(&work).arg(&seqs).arg(&tables).arg(&alibi_p);
            l.arg(&hi).arg(&kvhi).arg(&dki).arg(&dvi).arg(&bsi).arg(&hpi).arg(&qt).arg(&scale).arg(&cap).arg(&win);
            let grid = (batch.n_work as u32, (h / hp) as u32, 1);
            let cfg =
                LaunchConfig { grid_dim: grid, block_dim: ((WARPS * 32) as u32, 1, 1), shared_mem_bytes: smem as u32 };
            // SAFETY: argument types match paged_attn's signature; the work list, tables and
            // slots were built from the same batch the shapes were checked against.
            unsafe { l.launch(cfg) }.w()?;
            Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev.clone()))
        }};
    }
    let storage = match act {
        DType::F32 => run!(f32),
        DType::F16 => run!(half::f16),
        _ => run!(half::bf16),
    };
    // The slopes' buffer must outlive the launch: its free is ordered after it on the stream.
    drop(alibi);
    Ok(Tensor::from_storage(storage, (t, h * dv), BackpropOp::none(), false))
}

//! Fused layer kernels on a CUDA device (`fused.cuh`): the residual add with the RMSNorm after
//! it (and the RMSNorm alone), and SwiGLU's `silu(gate) · up`. Each replaces two candle launches (and an intermediate
//! tensor) with one; at small batch a decode step is bound by launches, not bytes. The same
//! calls return `None` for anything they do not cover (CPU tensors, other dtypes, mismatched
//! shapes), and the caller keeps its unfused path.

use candle_core::cuda::cudarc::driver::LaunchConfig;
use candle_core::cuda::WrapErr;
use candle_core::{DType, Device, Tensor};

use super::alloc::output;
use super::attention::dptr;
use super::launch::Launch;
use super::module::func;
use crate::{Result, TensorContext};

/// Threads per CTA of the elementwise kernel, and the most CTAs it gets (a grid-stride loop).
const EW_THREADS: u32 = 256;
const EW_MAX_CTAS: usize = 132 * 16;

fn suffix(dt: DType) -> Option<&'static str> {
    match dt {
        DType::F32 => Some("f32"),
        DType::F16 => Some("f16"),
        DType::BF16 => Some("bf16"),
        _ => None,
    }
}

/// `(s, rms_norm(s))` with `s = x + h`, for same-shape contiguous CUDA tensors of one float
/// dtype and a norm weight `w` of that dtype over the last dimension.
pub fn add_rms_norm(x: &Tensor, h: &Tensor, w: &Tensor, eps: f32) -> Option<Result<(Tensor, Tensor)>> {
    let ok = h.dims() == x.dims() && h.dtype() == x.dtype() && h.is_contiguous() && h.device().same_device(x.device());
    if !ok {
        return None;
    }
    norm(x, Some(h), w, eps).map(|r| r.map(|(s, y)| (s.unwrap_or_else(|| x.clone()), y)))
}

/// `rms_norm(x)` over the last dimension (contiguous, weight `w` of x's dtype): the kernel of
/// [`add_rms_norm`] without the add.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Option<Result<Tensor>> {
    norm(x, None, w, eps).map(|r| r.map(|(_, y)| y))
}

/// Threads per row of the norm kernel: about two 16-byte chunks each (fused.cuh keeps up to
/// `NORM_MAXC` in registers), a whole number of warps, at most 1024.
fn norm_threads(dim: usize, dt: DType) -> u32 {
    let chunks = dim.div_ceil(16 / dt.size_in_bytes());
    (chunks.div_ceil(2).div_ceil(32) * 32).clamp(32, 1024) as u32
}

fn norm(x: &Tensor, h: Option<&Tensor>, w: &Tensor, eps: f32) -> Option<Result<(Option<Tensor>, Tensor)>> {
    let Device::Cuda(dev) = x.device() else { return None };
    let dt = x.dtype();
    let dim = *x.dims().last()?;
    let ok = w.dtype() == dt
        && w.dims() == [dim]
        && [x, w].iter().all(|t| t.is_contiguous() && t.device().same_device(x.device()));
    let ty = suffix(dt).filter(|_| ok && dim > 0 && i32::try_from(dim).is_ok())?;
    let run = || -> Result<(Option<Tensor>, Tensor)> {
        let rows = x.elem_count() / dim;
        let stream = dev.cuda_stream();
        let y = output(dev, dt, x.dims())?;
        let s = h.map(|_| output(dev, dt, x.dims())).transpose()?;
        let mut ptrs = [dptr(x, &stream)?, 0, dptr(w, &stream)?, 0, dptr(&y, &stream)?];
        if let (Some(h), Some(s)) = (h, &s) {
            ptrs[1] = dptr(h, &stream)?;
            ptrs[3] = dptr(s, &stream)?;
        }
        let aligned = i32::from(ptrs.iter().all(|p| p % 16 == 0));
        let f = func(dev, &format!("add_rms_norm_{ty}"))?;
        let mut l = Launch::new(&f);
        for p in &ptrs {
            l.arg(p);
        }
        let dim_i = dim as i32;
        l.arg(&dim_i).arg(&eps).arg(&aligned);
        let threads = norm_threads(dim, dt);
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: argument types match add_rms_norm's signature; x, y (and h, s when present)
        // hold rows × dim elements and w dim, all contiguous (checked above); a null h makes
        // the kernel skip the add and never touch s.
        unsafe { l.launch(&stream, cfg) }.w().ctx("add_rms_norm")?;
        Ok((s, y))
    };
    Some(run())
}

/// `silu(gate) · up` for the separate gate and up projections (same shape, contiguous).
pub fn silu_mul_pair(gate: &Tensor, up: &Tensor) -> Option<Result<Tensor>> {
    let ff = *gate.dims().last()?;
    if up.dims() != gate.dims() || up.dtype() != gate.dtype() || !gate.is_contiguous() || !up.is_contiguous() {
        return None;
    }
    silu_mul(gate, up, 0, ff, ff, gate.dims())
}

/// `silu(gate) · up` for rows of a fused `[gate | up]` projection (`2 · ff` wide, contiguous).
pub fn silu_mul_fused(gate_up: &Tensor, ff: usize) -> Option<Result<Tensor>> {
    if *gate_up.dims().last()? != 2 * ff || !gate_up.is_contiguous() {
        return None;
    }
    let mut dims = gate_up.dims().to_vec();
    *dims.last_mut()? = ff;
    silu_mul(gate_up, gate_up, ff, ff, 2 * ff, &dims)
}

/// Rows of `ff` outputs; row r reads gate at `r · ld` of `gate` and up at `up_at + r · ld` of `up`.
fn silu_mul(gate: &Tensor, up: &Tensor, up_at: usize, ff: usize, ld: usize, dims: &[usize]) -> Option<Result<Tensor>> {
    let Device::Cuda(dev) = gate.device() else { return None };
    let dt = gate.dtype();
    let n: usize = dims.iter().product();
    let fits = i32::try_from(ld).is_ok() && i32::try_from(n / ff.max(1)).is_ok();
    let ty = suffix(dt).filter(|_| fits && ff > 0 && up.device().same_device(gate.device()))?;
    let run = || -> Result<Tensor> {
        let stream = dev.cuda_stream();
        let out = output(dev, dt, dims)?;
        let elem = dt.size_in_bytes() as u64;
        let ptrs = [dptr(gate, &stream)?, dptr(up, &stream)? + up_at as u64 * elem, dptr(&out, &stream)?];
        let f = func(dev, &format!("silu_mul_{ty}"))?;
        let mut l = Launch::new(&f);
        for p in &ptrs {
            l.arg(p);
        }
        let (rows, ff_i, ld_i) = ((n / ff) as i32, ff as i32, ld as i32);
        l.arg(&rows).arg(&ff_i).arg(&ld_i);
        // A thread takes 16 bytes where the kernel can (rows of whole 16-byte chunks, aligned).
        let v = 16 / dt.size_in_bytes();
        let aligned = ff.is_multiple_of(v) && ld.is_multiple_of(v) && ptrs.iter().all(|p| p.is_multiple_of(16));
        let threads = if aligned { n / v } else { n };
        let ctas = threads.div_ceil(EW_THREADS as usize).clamp(1, EW_MAX_CTAS) as u32;
        let cfg = LaunchConfig { grid_dim: (ctas, 1, 1), block_dim: (EW_THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: argument types match silu_mul's signature; every read (r · ld + i, i < ff,
        // r < rows, plus up_at) stays inside the contiguous input checked by the callers.
        unsafe { l.launch(&stream, cfg) }.w().ctx("silu_mul")?;
        Ok(out)
    };
    Some(run())
}

/// A contiguous f16/bf16 CUDA tensor as f32, 8 values a thread (candle's cast runs one a
/// thread: 154 µs for the 128 × 128256 logits of a bs-128 step on the H200). `None` for other
/// tensors (the caller casts with candle).
pub fn to_f32(x: &Tensor) -> Option<Result<Tensor>> {
    let Device::Cuda(dev) = x.device() else { return None };
    let name = match x.dtype() {
        DType::BF16 => "to_f32_bf16",
        DType::F16 => "to_f32_f16",
        _ => return None,
    };
    if !x.is_contiguous() {
        return None;
    }
    let stream = dev.cuda_stream();
    let src = match dptr(x, &stream) {
        Ok(p) if p.is_multiple_of(16) => p,
        Ok(_) => return None,
        Err(e) => return Some(Err(e)),
    };
    let run = || -> Result<Tensor> {
        let n = x.elem_count();
        let y = output(dev, DType::F32, x.dims())?;
        let dst = dptr(&y, &stream)?;
        let f = func(dev, name)?;
        let mut l = Launch::new(&f);
        let n64 = n as u64;
        l.arg(&src).arg(&dst).arg(&n64);
        let ctas = (n / 8).div_ceil(EW_THREADS as usize).clamp(1, EW_MAX_CTAS) as u32;
        let cfg = LaunchConfig { grid_dim: (ctas, 1, 1), block_dim: (EW_THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: argument types match to_f32's signature; x holds n values from a 16-byte
        // aligned address, y n fresh f32 values.
        unsafe { l.launch(&stream, cfg) }.w().ctx("to f32")?;
        Ok(y)
    };
    Some(run())
}

//! Small-batch dense matmul on a CUDA device (`gemv` in gemv.cuh): `y = x Wᵀ` for up to
//! [`MAX_ROWS`] rows of bf16/f16 activations against a row-major `(out, in)` weight. A decode
//! step at small batch streams every weight once; cuBLAS picks split-K GEMMs there (plus a
//! reduce launch) that reach ~3.3 TB/s on an H200, this kernel streams each row with one or
//! two warps ([`warps_per_row`]; the kernel takes up to eight).
//! Anything it does not cover returns `None`, and the caller keeps candle's matmul.

use candle_core::cuda::cudarc::driver::LaunchConfig;
use candle_core::cuda::WrapErr;
use candle_core::{DType, Device, Tensor};

use super::attention::dptr;
use super::launch::Launch;
use super::module::func;
use crate::{Result, TensorContext};

/// The most rows (tokens) the kernel takes; above that cuBLAS's tensor-core GEMMs win. The
/// kernel's CUDA-core dot products cost ~18 instructions per 16-byte weight chunk and row, so
/// from 3 rows on an SM cannot issue them as fast as HBM delivers the weights. On the H200, 8B
/// shape, decode ITL with the kernel up to n rows against cuBLAS above (bench/RESULTS.md,
/// 2026-12-01): bs 2 4.88–4.93 ms against 4.98 (cuBLAS), bs 4 6.21 against 4.88–5.05, bs 8
/// 10.5 against 4.86–4.96.
pub const MAX_ROWS: usize = 2;
/// Whether a batch of `rows` tokens takes the decode GEMV (on a CUDA device, bf16/f16).
pub fn gemv_takes_rows(rows: usize) -> bool {
    (1..=MAX_ROWS).contains(&rows)
}

/// Whether layers fold their norms into the projections after them (`Norm::fold_into`): on
/// unless `PROM_FOLD_NORMS=0`, for comparison.
pub fn fold_norms_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    super::launch::env_switch(&ON, "PROM_FOLD_NORMS")
}

/// `GEMV_WARPS` of gemv.cuh: warps per CTA (`WARPS / wpr` output features).
const WARPS: usize = 8;

/// Warps a feature is split over (`wpr` in gemv.cuh). Two, below the size of an LM head:
/// measured on an H200 at one row in bf16 (scripts/gpu/gemv_lab.py, graphs of 32 launches over
/// weights that do not fit L2), two warps a row beat one and four on each of Llama-3-8B's
/// projections: qkv 4096→6144 14.8 → 14.5 µs (four: 17.3), o 4096→4096 11.4 → 10.3 (12.3),
/// gate|up 56.4 → 55.9 (60.0), down 14336→4096 31.4 → 30.4 (30.9). An LM head (≥ 64K rows) has
/// warps enough. It depends on the weight alone (its rows, gated or not, and its row length),
/// so [`gemv_silu`] and [`gemv`] over the same `[gate | up]` weight split alike, and every
/// batch size sums in the same order.
fn warps_per_row(weight_rows: usize, k: usize) -> usize {
    // At least one full round of loads (8 a lane) in each half.
    if weight_rows < 1 << 16 && k / 8 >= 2 * 32 * 8 {
        2
    } else {
        1
    }
}

/// The most rows the SwiGLU form takes: it streams two weight rows a warp, and above this its
/// registers cost occupancy (gemv_silu at 3+ rows holds 64–104 registers).
pub const MAX_SILU_ROWS: usize = 2;

/// What the kernel does besides `x · wᵀ` (the `gemv_*` kernels of gemv.cuh).
#[derive(Clone, Copy)]
enum Form<'a> {
    Plain,
    /// SwiGLU over a fused `[gate | up]` weight.
    Silu,
    /// An RMSNorm folded into the weight: each row of `x` scaled by `rsqrt(mean(x²) + eps)`.
    Rms {
        eps: f32,
        silu: bool,
    },
    /// `residual + x · wᵀ`.
    Res(&'a Tensor),
}

/// `x (.., in) · wᵀ` with `w (out, in)`, or `None` when the kernel does not cover it: not CUDA,
/// not bf16/f16, more than [`MAX_ROWS`] rows, no output features, `in` not a multiple of 8,
/// non-contiguous or unaligned operands.
pub fn gemv(x: &Tensor, w: &Tensor) -> Option<Result<Tensor>> {
    run(x, w, Form::Plain)
}

/// SwiGLU over a fused `[gate | up]` weight `w (2·ff, in)`: `silu(x·gateᵀ) · (x·upᵀ)` → `(.., ff)`,
/// the values of [`gemv`] followed by `silu_mul`, in one launch; `None` as for [`gemv`], and
/// above [`MAX_SILU_ROWS`] rows or for an odd `w` height.
pub fn gemv_silu(x: &Tensor, w: &Tensor) -> Option<Result<Tensor>> {
    run(x, w, Form::Silu)
}

/// `rms(x) · wᵀ` for a weight that already holds the RMSNorm's weight
/// (`w · diag(norm weight)`, nn/norm.rs `Norm::fold_into`): each row's dot products are scaled
/// by `rsqrt(mean(x²) + eps)`, which the kernel sums from the `x` it streams against the weight,
/// so no norm launch precedes it. With `silu`, SwiGLU's form ([`gemv_silu`]). `None` as for
/// [`gemv`] and [`gemv_silu`].
pub fn gemv_rms(x: &Tensor, w: &Tensor, eps: f32, silu: bool) -> Option<Result<Tensor>> {
    run(x, w, Form::Rms { eps, silu })
}

/// `residual + x · wᵀ`, rounded as the GEMV followed by the residual add: an output
/// projection with the add after it in one launch. `None` as for [`gemv`], or for a residual
/// of another shape or dtype.
pub fn gemv_res(x: &Tensor, w: &Tensor, residual: &Tensor) -> Option<Result<Tensor>> {
    run(x, w, Form::Res(residual))
}

fn run(x: &Tensor, w: &Tensor, form: Form<'_>) -> Option<Result<Tensor>> {
    let Device::Cuda(dev) = x.device() else { return None };
    let (weight_rows, k) = w.dims2().ok()?;
    let gated = matches!(form, Form::Silu | Form::Rms { silu: true, .. });
    // Output features: a gated warp reads the rows j and ff + j.
    let n = if gated { weight_rows / 2 } else { weight_rows };
    let wpr = warps_per_row(weight_rows, k);
    let dt = x.dtype();
    let rows = x.elem_count() / k.max(1);
    let ty = match dt {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => return None,
    };
    let fits = *x.dims().last()? == k
        && w.dtype() == dt
        && n > 0
        && (1..=MAX_ROWS).contains(&rows)
        && (!gated || (rows <= MAX_SILU_ROWS && weight_rows % 2 == 0))
        && k % 8 == 0
        && i32::try_from(n).is_ok()
        && i32::try_from(k).is_ok()
        && x.is_contiguous()
        && w.is_contiguous()
        && w.device().same_device(x.device());
    if !fits {
        return None;
    }
    let stream = dev.cuda_stream();
    let (xp, wp) = match (dptr(x, &stream), dptr(w, &stream)) {
        (Ok(a), Ok(b)) if a % 16 == 0 && b % 16 == 0 => (a, b),
        _ => return None,
    };
    // The residual: the output's shape and dtype, contiguous, on this device.
    let (rp, eps) = match form {
        Form::Res(r) => {
            let same = r.dtype() == dt
                && r.elem_count() == rows * n
                && r.dims().last() == Some(&n)
                && r.is_contiguous()
                && r.device().same_device(x.device());
            match dptr(r, &stream) {
                Ok(p) if same => (p, 0f32),
                _ => return None,
            }
        }
        Form::Rms { eps, .. } => (0, eps),
        Form::Plain | Form::Silu => (0, 0f32),
    };
    let run = || -> Result<Tensor> {
        // x's last dim is k (checked above): the output swaps it for n.
        let mut dims = x.dims().to_vec();
        dims.pop();
        dims.push(n);
        let y = super::alloc::output(dev, dt, &dims)?;
        let yp = dptr(&y, &stream)?;
        let kind = match form {
            Form::Plain => "gemv",
            Form::Silu => "gemv_silu",
            Form::Rms { silu: false, .. } => "gemv_rms",
            Form::Rms { silu: true, .. } => "gemv_silu_rms",
            Form::Res(_) => "gemv_res",
        };
        let f = func(dev, &format!("{kind}_{ty}_{rows}"))?;
        let mut l = Launch::new(&f);
        let (ni, ki, wi) = (n as i32, k as i32, wpr as i32);
        l.arg(&xp).arg(&wp).arg(&yp).arg(&ni).arg(&ki).arg(&wi).arg(&rp).arg(&eps);
        let cfg = LaunchConfig {
            grid_dim: ((n * wpr).div_ceil(WARPS) as u32, 1, 1),
            block_dim: ((WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types match gemv's signature; x holds rows × k and w n × k (gated:
        // 2n × k) elements, contiguous and 16-byte aligned (checked above), y and the residual
        // (when given; otherwise 0, unread) rows × n; wpr divides the CTA's warps.
        unsafe { l.launch(&stream, cfg) }.w().ctx("gemv")?;
        Ok(y)
    };
    Some(run())
}

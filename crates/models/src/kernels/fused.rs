//! Fused element-wise kernels for the decoder's per-token work on the CPU: RMSNorm (optionally
//! with the residual add before it), the gated activation `silu(gate) * up`, rotary embedding
//! and the residual add.
//!
//! candle runs each of these as several ops (`narrow`, `silu`, `mul`, `add`, `rms_norm`), each
//! a pass over memory with its own allocation and a fork-join on candle's thread pool. Under
//! batched decode those passes are per-token work that grows with the batch while the weights'
//! cost does not. Here each is one pass, on the calling thread for small inputs (a decode step's
//! rows fit in L1/L2 and take microseconds) and on the matmul pool ([`super::pool`]) for prefill.
//!
//! Every kernel computes row by row with the same arithmetic whatever the batch, so results stay
//! batch-invariant. The AVX-512 paths follow the scalar ones in operation order except for the
//! RMSNorm sum of squares, which accumulates in 16 lanes.

use std::mem::MaybeUninit;

use candle_core::{DType, Storage, Tensor};

use super::math;
use super::pool::Pool;
use crate::{Error, Result};

/// Below this many elements a kernel runs on the calling thread (splitting a 16-row decode
/// step's SwiGLU or rotary over the pool measured slower).
const PARALLEL_MIN: usize = 1 << 16;

/// Runs `f` over the contiguous f32 values of a CPU tensor; `None` when `x` is not one (another
/// dtype or device: the caller falls back to candle's ops).
fn with_f32<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return None;
    }
    let (storage, layout) = x.storage_and_layout();
    let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        return None;
    };
    let xs = cpu.as_slice::<f32>().ok()?;
    Some(f(&xs[start..end]))
}

fn tensor(v: Vec<f32>, like: &Tensor, last: usize) -> Result<Tensor> {
    let mut shape = like.dims().to_vec();
    if let Some(d) = shape.last_mut() {
        *d = last;
    }
    Tensor::from_vec(v, shape, like.device()).map_err(|e| Error::Tensor { op: "fused kernel output".into(), source: e })
}

/// Runs `row(i, out_row)` for every row of `out` (rows of `width`), in parallel when large.
fn for_rows(out: &mut [MaybeUninit<f32>], width: usize, row: &(dyn Fn(usize, &mut [MaybeUninit<f32>]) + Sync)) {
    let rows = out.len() / width.max(1);
    if out.len() < PARALLEL_MIN {
        for (i, o) in out.chunks_exact_mut(width).enumerate() {
            row(i, o);
        }
        return;
    }
    let pool = Pool::global();
    let per_unit = rows.div_ceil(pool.threads() * 8).max(1);
    let base = out.as_mut_ptr() as usize;
    // Decode-sized jobs come between matmuls microseconds apart: helpers keep polling after them.
    pool.run(rows.div_ceil(per_unit), rows <= super::LINGER_MAX_ROWS, &|u| {
        for i in u * per_unit..rows.min((u + 1) * per_unit) {
            // SAFETY: each unit owns a disjoint range of rows of `out`, which outlives `run`.
            let o = unsafe { std::slice::from_raw_parts_mut((base as *mut MaybeUninit<f32>).add(i * width), width) };
            row(i, o);
        }
    });
}

/// `len` f32s for a kernel to write in full before anything reads them: allocated, not zeroed.
/// (Zeroing every output was ~2.4% of a 16-sequence prefill: with malloc's trim threshold
/// raised in `prom`, outputs are recycled heap memory that `calloc` has to clear.)
struct Output {
    buf: Vec<f32>,
    len: usize,
}

impl Output {
    fn new(len: usize) -> Self {
        Self { buf: Vec::with_capacity(len), len }
    }

    /// Exactly `len` slots (the allocation may hold more).
    fn slots(&mut self) -> &mut [MaybeUninit<f32>] {
        &mut self.buf.spare_capacity_mut()[..self.len]
    }

    /// Safety: every element of [`Output::slots`] was written.
    unsafe fn done(mut self) -> Vec<f32> {
        self.buf.set_len(self.len);
        self.buf
    }
}

/// A second output of a [`for_rows`] job, written row by row beside the first.
struct SharedRows(*mut MaybeUninit<f32>);
// SAFETY: `for_rows` calls own disjoint rows (see `add_rms_norm`).
unsafe impl Sync for SharedRows {}

impl SharedRows {
    /// Safety: row `i` of `width` lies inside the allocation, and no one else touches it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, i: usize, width: usize) -> &mut [MaybeUninit<f32>] {
        std::slice::from_raw_parts_mut(self.0.add(i * width), width)
    }
}

/// `silu(gate) * up` for rows of `[gate | up]` (each `2 · ff` wide): the SwiGLU of a fused
/// gate-up projection. `None` when `gate_up` is not a contiguous f32 CPU tensor.
pub fn silu_mul_fused(gate_up: &Tensor, ff: usize) -> Option<Result<Tensor>> {
    if ff == 0 || *gate_up.dims().last()? != 2 * ff {
        return None;
    }
    let y = with_f32(gate_up, |x| {
        let mut out = Output::new(x.len() / 2);
        for_rows(out.slots(), ff, &|i, o| {
            let row = &x[i * 2 * ff..(i + 1) * 2 * ff];
            silu_mul(&row[..ff], &row[ff..], o);
        });
        // SAFETY: every row of `ff` outputs was written by silu_mul (rows of 2·ff inputs).
        unsafe { out.done() }
    })?;
    Some(tensor(y, gate_up, ff))
}

/// `silu(gate) * up` for two tensors of the same shape (separate gate and up projections).
pub fn silu_mul_pair(gate: &Tensor, up: &Tensor) -> Option<Result<Tensor>> {
    if gate.dims() != up.dims() {
        return None;
    }
    let ff = *gate.dims().last()?;
    let y = with_f32(gate, |g| {
        with_f32(up, |u| {
            let mut out = Output::new(g.len());
            for_rows(out.slots(), ff, &|i, o| silu_mul(&g[i * ff..(i + 1) * ff], &u[i * ff..(i + 1) * ff], o));
            // SAFETY: g and u have the same shape, so every row of ff outputs was written.
            unsafe { out.done() }
        })
    })??;
    Some(tensor(y, gate, ff))
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Option<Result<Tensor>> {
    let dim = *x.dims().last()?;
    if w.elem_count() != dim || dim == 0 {
        return None;
    }
    let y = with_f32(w, |w| {
        with_f32(x, |x| {
            let mut out = Output::new(x.len());
            for_rows(out.slots(), dim, &|i, o| rms_norm_row(&x[i * dim..(i + 1) * dim], w, eps, o));
            // SAFETY: w has dim weights (checked above), so every row of dim outputs was written.
            unsafe { out.done() }
        })
    })??;
    Some(tensor(y, x, dim))
}

/// `s = x + h` and `rms_norm(s)` in one pass: the residual add that ends an attention block and
/// the norm that starts the MLP. Returns `(s, norm(s))`.
pub fn add_rms_norm(x: &Tensor, h: &Tensor, w: &Tensor, eps: f32) -> Option<Result<(Tensor, Tensor)>> {
    if x.dims() != h.dims() {
        return None;
    }
    let dim = *x.dims().last()?;
    if w.elem_count() != dim || dim == 0 {
        return None;
    }
    let (sum, normed) = with_f32(w, |w| {
        with_f32(x, |x| {
            with_f32(h, |h| {
                // Row by row over the pool, the add beside its norm (a 16-prompt prefill's
                // serial adds were ~1% of its samples, with the second core idle).
                let (mut sum, mut normed) = (Output::new(x.len()), Output::new(x.len()));
                let sums = SharedRows(sum.slots().as_mut_ptr());
                for_rows(normed.slots(), dim, &|i, o| {
                    // SAFETY: `for_rows` hands each row index to one call only, so row i of
                    // `sum` (inside its `x.len()` slots, as row i of `normed` is) has no other
                    // writer or reader while this call runs.
                    let s = unsafe { sums.row(i, dim) };
                    let (xr, hr) = (&x[i * dim..(i + 1) * dim], &h[i * dim..(i + 1) * dim]);
                    for ((s, &a), &b) in s.iter_mut().zip(xr).zip(hr) {
                        s.write(a + b);
                    }
                    // SAFETY: every value of the row was written just above.
                    let s = unsafe { &*(s as *const [MaybeUninit<f32>] as *const [f32]) };
                    rms_norm_row(s, w, eps, o);
                });
                // SAFETY: w has dim weights (checked above) and x, h, sum and normed hold the
                // same whole rows, so every row of both outputs was written.
                unsafe { (sum.done(), normed.done()) }
            })
        })
    })???;
    Some(tensor(sum, x, dim).and_then(|s| Ok((s, tensor(normed, x, dim)?))))
}

/// Rotary embedding of `x` (b, heads, t, d), the layout candle's `rope`/`rope_i` take, with
/// `cos`/`sin` (t, d / 2): the same arithmetic as candle's kernels, element for element, without
/// their rayon fork-join or a `contiguous` copy first (any strides with a unit last stride are
/// read in place, e.g. the head-split view of a projection). Returns a contiguous tensor.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Option<Result<Tensor>> {
    let (b, h, t, d) = x.dims4().ok()?;
    if !x.device().is_cpu() || x.dtype() != DType::F32 || d % 2 != 0 || cos.dims() != [t, d / 2] {
        return None;
    }
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return None };
    let src = cpu.as_slice::<f32>().ok()?;
    let (st, start) = (layout.stride(), layout.start_offset());
    if st[3] != 1 {
        return None;
    }
    let half = d / 2;
    let y = with_f32(cos, |cos| {
        with_f32(sin, |sin| {
            let mut out = Output::new(b * h * t * d);
            for_rows(out.slots(), d, &|r, o| {
                let (bh, ti) = (r / t, r % t);
                let at = start + (bh / h) * st[0] + (bh % h) * st[1] + ti * st[2];
                rope_row(&src[at..at + d], &cos[ti * half..][..half], &sin[ti * half..][..half], o, interleaved);
            });
            // SAFETY: every row's d = 2 · half values were written (d is even, checked above).
            unsafe { out.done() }
        })
    })??;
    Some(
        Tensor::from_vec(y, (b, h, t, d), x.device())
            .map_err(|e| Error::Tensor { op: "rope output".into(), source: e }),
    )
}

/// One row of [`rope`]: `o` and `xs` hold `2 · c.len()` values, `s` as many as `c`.
fn rope_row(xs: &[f32], c: &[f32], s: &[f32], o: &mut [MaybeUninit<f32>], interleaved: bool) {
    #[cfg(target_arch = "x86_64")]
    if math::avx512_available() {
        // SAFETY: the features were detected.
        return unsafe { rope_row_avx512(xs, c, s, o, interleaved) };
    }
    #[cfg(target_arch = "x86_64")]
    if math::fma_available() {
        // SAFETY: the features were detected.
        return unsafe { rope_row_avx2(xs, c, s, o, interleaved) };
    }
    rope_row_portable(xs, c, s, o, interleaved)
}

/// Separate multiplies and adds (no FMA contraction in Rust), so every build and target gives
/// candle's bits.
#[inline(always)]
fn rope_row_portable(xs: &[f32], c: &[f32], s: &[f32], o: &mut [MaybeUninit<f32>], interleaved: bool) {
    let half = c.len();
    let (xs, s, o) = (&xs[..2 * half], &s[..half], &mut o[..2 * half]);
    if interleaved {
        for i in 0..half {
            let (a, b) = (xs[2 * i], xs[2 * i + 1]);
            o[2 * i].write(a * c[i] - b * s[i]);
            o[2 * i + 1].write(a * s[i] + b * c[i]);
        }
    } else {
        let (x1, x2) = xs.split_at(half);
        let (o1, o2) = o.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            o1[i].write(a * c[i] - b * s[i]);
            o2[i].write(a * s[i] + b * c[i]);
        }
    }
}

/// [`rope_row_portable`] compiled for AVX-512 (16 lanes a multiply; was 2–3% of a prefill
/// as SSE2 code called per row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rope_row_avx512(xs: &[f32], c: &[f32], s: &[f32], o: &mut [MaybeUninit<f32>], interleaved: bool) {
    rope_row_portable(xs, c, s, o, interleaved)
}

/// [`rope_row_portable`] compiled for AVX2 (8 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rope_row_avx2(xs: &[f32], c: &[f32], s: &[f32], o: &mut [MaybeUninit<f32>], interleaved: bool) {
    rope_row_portable(xs, c, s, o, interleaved)
}

/// `x + h` for same-shape contiguous f32 CPU tensors, on the calling thread (a residual add:
/// memory-bound, and a decode step's rows are a few KB).
pub fn add(x: &Tensor, h: &Tensor) -> Option<Result<Tensor>> {
    if x.dims() != h.dims() {
        return None;
    }
    let y = with_f32(x, |x| with_f32(h, |h| x.iter().zip(h).map(|(a, b)| a + b).collect::<Vec<f32>>()))??;
    Some(tensor(y, x, *x.dims().last()?))
}

/// Writes every element of `out` (all three have the same length).
fn silu_mul(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    #[cfg(target_arch = "x86_64")]
    if math::avx512_available() {
        // SAFETY: the features were detected.
        return unsafe { silu_mul_avx512(gate, up, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if math::fma_available() {
        // SAFETY: the features were detected.
        return unsafe { silu_mul_fma(gate, up, out) };
    }
    silu_mul_scalar(gate, up, out)
}

#[inline(always)]
fn silu_mul_scalar(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        o.write(math::silu(g) * u);
    }
}

/// [`silu_mul_scalar`] compiled with AVX2/FMA (one instruction a `mul_add`, vectorised loops).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn silu_mul_fma(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    silu_mul_scalar(gate, up, out)
}

/// Writes every element of `out` (x, w and out have the same length).
fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    #[cfg(target_arch = "x86_64")]
    if math::avx512_available() {
        // SAFETY: the features were detected.
        return unsafe { rms_norm_row_avx512(x, w, eps, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if math::fma_available() {
        // SAFETY: the features were detected.
        return unsafe { rms_norm_row_fma(x, w, eps, out) };
    }
    rms_norm_row_scalar(x, w, eps, out)
}

/// [`rms_norm_row_scalar`] compiled with AVX2/FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rms_norm_row_fma(x: &[f32], w: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    rms_norm_row_scalar(x, w, eps, out)
}

#[inline(always)]
fn rms_norm_row_scalar(x: &[f32], w: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    let sum2: f32 = x.iter().map(|v| v * v).sum();
    let inv = 1.0 / (sum2 / x.len() as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        o.write(v * inv * w);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn silu_mul_avx512(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    use std::arch::x86_64::*;
    let n = out.len().min(gate.len()).min(up.len());
    let mut i = 0;
    while i < n {
        let mask: __mmask16 = if n - i >= 16 { !0 } else { (1u16 << (n - i)) - 1 };
        let g = _mm512_maskz_loadu_ps(mask, gate.as_ptr().add(i));
        let u = _mm512_maskz_loadu_ps(mask, up.as_ptr().add(i));
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(i).cast(), mask, _mm512_mul_ps(math::silu_avx512(g), u));
        i += 16;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn rms_norm_row_avx512(x: &[f32], w: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    use std::arch::x86_64::*;
    let n = x.len().min(w.len()).min(out.len());
    let mask_at = |i: usize| -> __mmask16 {
        if n - i >= 16 {
            !0
        } else {
            (1u16 << (n - i)) - 1
        }
    };
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i < n {
        let v = _mm512_maskz_loadu_ps(mask_at(i), x.as_ptr().add(i));
        acc = _mm512_fmadd_ps(v, v, acc);
        i += 16;
    }
    let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(acc) / x.len() as f32 + eps).sqrt());
    let mut i = 0;
    while i < n {
        let m = mask_at(i);
        let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
        let wv = _mm512_maskz_loadu_ps(m, w.as_ptr().add(i));
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(i).cast(), m, _mm512_mul_ps(_mm512_mul_ps(v, inv), wv));
        i += 16;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Values in [-10, 10).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        super::super::math::test_values(n, seed).into_iter().map(|x| 10.0 * x).collect()
    }

    fn t(v: Vec<f32>, shape: (usize, usize)) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Values in (-1, 1), like cos/sin tables.
    fn t_(v: Vec<f32>, shape: (usize, usize)) -> Tensor {
        t(v.into_iter().map(|x| x / 10.0).collect(), shape)
    }

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let (a, b) =
            (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
        }
    }

    /// Odd widths exercise the masked tails; 300 rows of 1536 take the parallel path.
    const SHAPES: [(usize, usize); 4] = [(1, 7), (3, 33), (5, 576), (300, 1536)];

    #[test]
    fn silu_mul_matches_candle() {
        for (rows, ff) in SHAPES {
            let gu = t(values(rows * 2 * ff, 3), (rows, 2 * ff));
            let want = (gu.narrow(1, 0, ff).unwrap().silu().unwrap() * gu.narrow(1, ff, ff).unwrap()).unwrap();
            close(&silu_mul_fused(&gu, ff).unwrap().unwrap(), &want, 2e-6);
            let (g, u) = (t(values(rows * ff, 5), (rows, ff)), t(values(rows * ff, 7), (rows, ff)));
            let want = (g.silu().unwrap() * &u).unwrap();
            close(&silu_mul_pair(&g, &u).unwrap().unwrap(), &want, 2e-6);
        }
    }

    #[test]
    fn rms_norm_matches_candle() {
        for (rows, dim) in SHAPES {
            let x = t(values(rows * dim, 11), (rows, dim));
            let h = t(values(rows * dim, 13), (rows, dim));
            let w = Tensor::from_vec(values(dim, 17), dim, &Device::Cpu).unwrap();
            let want = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
            close(&rms_norm(&x, &w, 1e-5).unwrap().unwrap(), &want, 1e-5);
            let sum = (&x + &h).unwrap();
            let (s, n) = add_rms_norm(&x, &h, &w, 1e-5).unwrap().unwrap();
            close(&s, &sum, 0.0);
            close(&n, &candle_nn::ops::rms_norm(&sum, &w, 1e-5).unwrap(), 1e-5);
        }
    }

    #[test]
    fn rope_matches_candle_bit_for_bit() {
        for (b, h, t, d) in [(1, 3, 1, 8), (1, 9, 5, 64), (2, 4, 300, 64)] {
            // A transposed view, as attention passes it: (b, t, h, d) storage read as (b, h, t, d).
            let x = Tensor::from_vec(values(b * t * h * d, 23), (b, t, h, d), &Device::Cpu)
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            let cos = t_(values(t * d / 2, 29), (t, d / 2));
            let sin = t_(values(t * d / 2, 31), (t, d / 2));
            let xc = x.contiguous().unwrap();
            let want = candle_nn::rotary_emb::rope(&xc, &cos, &sin).unwrap();
            close(&rope(&x, &cos, &sin, false).unwrap().unwrap(), &want, 0.0);
            let want = candle_nn::rotary_emb::rope_i(&xc, &cos, &sin).unwrap();
            close(&rope(&x, &cos, &sin, true).unwrap().unwrap(), &want, 0.0);
        }
    }

    #[test]
    fn add_matches_candle() {
        let (x, h) = (t(values(5 * 33, 37), (5, 33)), t(values(5 * 33, 41), (5, 33)));
        close(&add(&x, &h).unwrap().unwrap(), &(&x + &h).unwrap(), 0.0);
    }

    #[test]
    fn rows_do_not_depend_on_the_batch() {
        // The first row computed alone equals the first row of a large (parallel) batch.
        let (rows, ff) = (300, 1536);
        let gu = t(values(rows * 2 * ff, 19), (rows, 2 * ff));
        let all = silu_mul_fused(&gu, ff).unwrap().unwrap();
        let one = silu_mul_fused(&gu.narrow(0, 0, 1).unwrap(), ff).unwrap().unwrap();
        close(&all.narrow(0, 0, 1).unwrap(), &one, 0.0);
    }

    #[test]
    fn other_dtypes_fall_back() {
        let x = t(values(64, 1), (2, 32)).to_dtype(DType::F16).unwrap();
        assert!(silu_mul_fused(&x, 16).is_none());
    }
}

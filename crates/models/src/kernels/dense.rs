//! Dense F16/BF16 weights: `y = x · Wᵀ` with f32 activations and f32 accumulation.
//!
//! Decode is memory-bound, so the point is to stream 2 bytes per weight instead of the 4 of
//! candle's f32 copy, widening each 16-row column of a tile (`layout`: `[column][row]`) to f32
//! in registers (`vcvtph2ps`, or a 16-bit shift for bfloat16) and FMA-ing it into 16 dot
//! products at once. For prefill, each widened column serves up to `MR` activation rows.
//!
//! Unlike llama.cpp (which rounds activations to f16/bf16 for these types) the activations stay
//! f32: the only rounding is f32 accumulation. Every row is summed in the same order whatever
//! the batch (even and odd columns in two accumulators, added at the end), so a token's output
//! does not depend on the rows computed beside it.

use std::ops::Range;

use half::{bf16, f16};

use super::layout::{QuantKind, QK, TILE_ROWS};
use super::{Backend, Out};

/// `y[i][col0 + r] = Σ_k w[col0 + r][k] x[i][k]` for `i` in `rows`, `r < valid`, over one row
/// tile of `F16`/`BF16` weights (`tile`: its `k / 32` consecutive tiles); `x` is (m, k).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile(
    backend: Backend,
    kind: QuantKind,
    tile: &[u8],
    x: &[f32],
    k: usize,
    rows: Range<usize>,
    y: Out,
    col0: usize,
    valid: usize,
) {
    debug_assert!(kind.is_dense() && tile.len() == k / QK * kind.tile_bytes());
    match backend {
        // SAFETY: `QMatrix` admits only backends this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512Vnni | Backend::Amx => unsafe { x86::tile512(kind, tile, x, k, rows, y, col0, valid) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => unsafe { x86::tile256(kind, tile, x, k, rows, y, col0, valid) },
        _ => scalar(kind, tile, x, k, rows, y, col0, valid),
    }
}

#[allow(clippy::too_many_arguments)]
fn scalar(kind: QuantKind, tile: &[u8], x: &[f32], k: usize, rows: Range<usize>, y: Out, col0: usize, valid: usize) {
    let widen = |b: [u8; 2]| match kind {
        QuantKind::BF16 => bf16::from_le_bytes(b).to_f32(),
        _ => f16::from_le_bytes(b).to_f32(),
    };
    for i in rows {
        let xi = &x[i * k..][..k];
        let mut acc = [[0f32; TILE_ROWS]; 2];
        for (c, &xc) in xi.iter().enumerate() {
            let col = &tile[(c / QK) * kind.tile_bytes() + (c % QK) * 2 * TILE_ROWS..];
            for (r, a) in acc[c % 2].iter_mut().enumerate() {
                *a += widen([col[2 * r], col[2 * r + 1]]) * xc;
            }
        }
        let out: [f32; TILE_ROWS] = std::array::from_fn(|r| acc[0][r] + acc[1][r]);
        // SAFETY: the caller owns columns col0..col0 + valid of row i for this call.
        unsafe { y.write_row(i, col0, &out[..valid]) };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::super::avx512::prefetch_stream;
    use super::super::layout::{QuantKind, QK, TILE_ROWS};
    use super::super::Out;

    /// Activation rows per AVX-512 register block: 2 × 8 accumulators + 2 weight columns + a
    /// broadcast fit the 32 zmm registers.
    const MR512: usize = 8;
    /// AVX2 (16 ymm): 2 rows × 2 halves × 2 accumulators + 4 weight halves + a broadcast.
    const MR256: usize = 2;

    /// Safety: AVX-512F and F16C are available.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,f16c,fma")]
    pub(super) unsafe fn tile512(
        kind: QuantKind,
        tile: &[u8],
        x: &[f32],
        k: usize,
        rows: Range<usize>,
        y: Out,
        col0: usize,
        valid: usize,
    ) {
        let bf = kind == QuantKind::BF16;
        // One register block of rows (decode of 1–8 sequences) reads the tile once.
        let stream = rows.len() <= MR512;
        macro_rules! go {
            ($m:literal, $i:expr) => {{
                let i = $i;
                let acc = if bf {
                    block512::<$m, true>(tile, x, k, i, stream)
                } else {
                    block512::<$m, false>(tile, x, k, i, stream)
                };
                // SAFETY: AVX-512F is enabled here; the caller owns columns col0..col0 + valid
                // of these rows.
                y.store_tiles(&acc, i, col0, valid);
            }};
        }
        row_blocks!(rows, MR512, go);
    }

    #[inline(always)]
    unsafe fn widen512<const BF: bool>(p: *const u8) -> __m512 {
        let h = _mm256_loadu_si256(p as *const _);
        if BF {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_cvtph_ps(h)
        }
    }

    // Indexing keeps the per-row register arrays visibly parallel.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx2,f16c,fma")]
    unsafe fn block512<const M: usize, const BF: bool>(
        tile: &[u8],
        x: &[f32],
        k: usize,
        i0: usize,
        stream: bool,
    ) -> [__m512; M] {
        let xs: [*const f32; M] = std::array::from_fn(|i| x[(i0 + i) * k..].as_ptr());
        let t0 = tile.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); M]; 2];
        for c in (0..k).step_by(2) {
            // Column c of the row tile: block c / 32, column c % 32 within it.
            let col = t0.add(c / QK * QK * 2 * TILE_ROWS + (c % QK) * 2 * TILE_ROWS);
            if stream {
                // Decode streams the weights once: ask for them well ahead (on the Xeon VM F16
                // tg128 +30%, 2–8-way engine ITL -25..35%). A column pair is one cache line.
                prefetch_stream(col, 64);
            }
            let w0 = widen512::<BF>(col);
            let w1 = widen512::<BF>(col.add(2 * TILE_ROWS));
            for i in 0..M {
                acc[0][i] = _mm512_fmadd_ps(w0, _mm512_set1_ps(*xs[i].add(c)), acc[0][i]);
                acc[1][i] = _mm512_fmadd_ps(w1, _mm512_set1_ps(*xs[i].add(c + 1)), acc[1][i]);
            }
        }
        std::array::from_fn(|i| _mm512_add_ps(acc[0][i], acc[1][i]))
    }

    /// Safety: AVX2, FMA and F16C are available.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn tile256(
        kind: QuantKind,
        tile: &[u8],
        x: &[f32],
        k: usize,
        rows: Range<usize>,
        y: Out,
        col0: usize,
        valid: usize,
    ) {
        let bf = kind == QuantKind::BF16;
        let mut i = rows.start;
        while i < rows.end {
            let mr = (rows.end - i).min(MR256);
            let mut out = [[0f32; TILE_ROWS]; MR256];
            if mr == 2 {
                let acc = if bf { block256::<2, true>(tile, x, k, i) } else { block256::<2, false>(tile, x, k, i) };
                store256(&acc, &mut out);
            } else {
                let acc = if bf { block256::<1, true>(tile, x, k, i) } else { block256::<1, false>(tile, x, k, i) };
                store256(&acc, &mut out);
            }
            for (r, o) in out[..mr].iter().enumerate() {
                // SAFETY: the caller owns columns col0..col0 + valid of these rows.
                y.write_row(i + r, col0, &o[..valid]);
            }
            i += mr;
        }
    }

    #[inline(always)]
    unsafe fn store256(acc: &[[__m256; 2]], out: &mut [[f32; TILE_ROWS]]) {
        for (a, o) in acc.iter().zip(out) {
            _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
        }
    }

    #[inline(always)]
    unsafe fn widen256<const BF: bool>(p: *const u8) -> __m256 {
        let h = _mm_loadu_si128(p as *const _);
        if BF {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        } else {
            _mm256_cvtph_ps(h)
        }
    }

    // Indexing keeps the per-row register arrays visibly parallel.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,f16c,fma")]
    unsafe fn block256<const M: usize, const BF: bool>(
        tile: &[u8],
        x: &[f32],
        k: usize,
        i0: usize,
    ) -> [[__m256; 2]; M] {
        let xs: [*const f32; M] = std::array::from_fn(|i| x[(i0 + i) * k..].as_ptr());
        let t0 = tile.as_ptr();
        // [even/odd column][row][half]
        let mut acc = [[[_mm256_setzero_ps(); 2]; M]; 2];
        for c in (0..k).step_by(2) {
            let col = t0.add(c / QK * QK * 2 * TILE_ROWS + (c % QK) * 2 * TILE_ROWS);
            for (p, cp) in [(0, col), (1, col.add(2 * TILE_ROWS))] {
                let w = [widen256::<BF>(cp), widen256::<BF>(cp.add(16))];
                for i in 0..M {
                    let xv = _mm256_set1_ps(*xs[i].add(c + p));
                    for h in 0..2 {
                        acc[p][i][h] = _mm256_fmadd_ps(w[h], xv, acc[p][i][h]);
                    }
                }
            }
        }
        std::array::from_fn(|i| std::array::from_fn(|h| _mm256_add_ps(acc[0][i][h], acc[1][i][h])))
    }
}

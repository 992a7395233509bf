//! AVX2 backend for x86 CPUs without AVX-512 VNNI: the same tiles, each 64-byte group read as
//! two 256-bit halves (rows 0..8 and 8..16). `vpmaddubsw` multiplies u8 × i8 into i16 pairs.
//! For the 4-bit kinds a whole block's 8 products stay in i16 (each ≤ 2·15·127, eight sum
//! to ≤ 30480 < 2¹⁵) before one `vpmaddwd` widens them; the 5-bit kinds widen every two groups
//! (four products ≤ 2·31·127 sum to ≤ 31496), their fifth bits expanded from the tile's masks
//! to bytes as ggml's `bytes_from_bits_32` does; Q8_0 uses the sign trick
//! (`|w| · sign(a, w)`, ≤ 2·128·127 per pair) and widens every group.

use std::arch::x86_64::*;
use std::ops::Range;

use super::act::{QuantRows, Rows};
use super::layout::{QuantKind, QK, TILE_ROWS};
use super::Out;

/// Activation rows per register block of [`block`] (16 ymm registers: 4 accumulators per row).
const MR: usize = 2;

pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") && is_x86_feature_detected!("fma")
}

/// See [`super::scalar::tile`]. Safety: [`available`] is true.
#[target_feature(enable = "avx2,f16c,fma")]
pub(crate) unsafe fn tile(
    kind: QuantKind,
    tile: &[u8],
    acts: &QuantRows,
    rows: Range<usize>,
    y: Out,
    col0: usize,
    valid: usize,
) {
    // Q4_0, Q4_1 and Q8_0 take the specialised kernels, four rows a register block.
    if matches!(kind, QuantKind::Q4_0 | QuantKind::Q4_1 | QuantKind::Q8_0) {
        macro_rules! go {
            ($m:literal, $i:expr) => {
                match kind {
                    QuantKind::Q4_1 => store(&q4::<$m, true>(tile, acts, $i), $i, y, col0, valid),
                    QuantKind::Q4_0 => store(&q4::<$m, false>(tile, acts, $i), $i, y, col0, valid),
                    _ => store(&q8::<$m>(tile, acts, $i), $i, y, col0, valid),
                }
            };
        }
        let mut i = rows.start;
        while i < rows.end {
            let m = (rows.end - i).min(WIDE_MR);
            match m {
                4 => go!(4, i),
                3 => go!(3, i),
                2 => go!(2, i),
                _ => go!(1, i),
            }
            i += m;
        }
        return;
    }
    let mut i = rows.start;
    while i < rows.end {
        if rows.end - i >= MR {
            store(&block::<MR>(kind, tile, acts, i), i, y, col0, valid);
            i += MR;
        } else {
            store(&block::<1>(kind, tile, acts, i), i, y, col0, valid);
            i += 1;
        }
    }
}

#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn store(acc: &[[__m256; 2]], i0: usize, y: Out, col0: usize, valid: usize) {
    for (i, acc) in acc.iter().enumerate() {
        let mut out = [0f32; TILE_ROWS];
        _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
        // SAFETY: the caller owns columns col0..col0 + valid of these rows.
        y.write_row(i0 + i, col0, &out[..valid]);
    }
}

/// Q5_0 / Q5_1 (Q4 and Q8_0 take the specialised [`q4`] / [`q8`]).
// Indexing keeps the per-row register arrays visibly parallel.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn block<const M: usize>(kind: QuantKind, tile: &[u8], acts: &QuantRows, i0: usize) -> [[__m256; 2]; M] {
    let tb = kind.tile_bytes();
    let t0 = tile.as_ptr();
    let qs: [*const i8; M] = std::array::from_fn(|i| acts.qs[(i0 + i) * acts.k..].as_ptr());
    let ones = _mm256_set1_epi16(1);
    let nibble = _mm256_set1_epi8(0x0F);
    let sixteen = _mm256_set1_epi8(16);
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    for b in 0..acts.kb {
        let t = t0.add(b * tb);
        let mut isum = [[_mm256_setzero_si256(); 2]; M];
        match kind {
            QuantKind::Q4_0 | QuantKind::Q4_1 | QuantKind::Q5_0 | QuantKind::Q5_1 => {
                let high = kind.has_high_bit();
                let widen_every = if high { 2 } else { 4 };
                let mut p16 = [[_mm256_setzero_si256(); 2]; M];
                for g in 0..4 {
                    for h in 0..2 {
                        let raw = _mm256_loadu_si256(t.add(64 * g + 32 * h) as *const _);
                        let mut lo = _mm256_and_si256(raw, nibble);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                        if high {
                            let masks = t.add(kind.h_offset() + 16 * g + 4 * h);
                            lo = _mm256_or_si256(lo, _mm256_and_si256(bytes_from_bits(masks), sixteen));
                            hi = _mm256_or_si256(hi, _mm256_and_si256(bytes_from_bits(masks.add(8)), sixteen));
                        }
                        for i in 0..M {
                            let a = qs[i].add(b * QK);
                            let plo = _mm256_maddubs_epi16(lo, bcast4(a, 4 * g));
                            let phi = _mm256_maddubs_epi16(hi, bcast4(a, 16 + 4 * g));
                            p16[i][h] = _mm256_add_epi16(p16[i][h], _mm256_add_epi16(plo, phi));
                        }
                    }
                    if (g + 1) % widen_every == 0 {
                        for i in 0..M {
                            for h in 0..2 {
                                isum[i][h] = _mm256_add_epi32(isum[i][h], _mm256_madd_epi16(p16[i][h], ones));
                                p16[i][h] = _mm256_setzero_si256();
                            }
                        }
                    }
                }
            }
            QuantKind::F16 | QuantKind::BF16 => unreachable!("dense kinds run in `dense`"),
            QuantKind::Q4K | QuantKind::Q5K | QuantKind::Q6K => unreachable!("k-quants run in `kquant`"),
            QuantKind::Q8_0 => unreachable!("Q8_0 runs in `q8`"),
        }
        for h in 0..2 {
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(t.add(kind.d_offset() + 16 * h) as *const _));
            let mw = if kind.has_min() {
                _mm256_cvtph_ps(_mm_loadu_si128(t.add(kind.m_offset() + 16 * h) as *const _))
            } else {
                _mm256_mul_ps(dw, _mm256_set1_ps(-kind.zero_point()))
            };
            for i in 0..M {
                let da = _mm256_set1_ps(acts.d[(i0 + i) * acts.kb + b]);
                let sa = _mm256_set1_ps(acts.s[(i0 + i) * acts.kb + b]);
                let x = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[i][h]), da);
                acc[i][h] = _mm256_fmadd_ps(mw, sa, _mm256_fmadd_ps(x, dw, acc[i][h]));
            }
        }
    }
    acc
}

/// Rows per register block of [`q4`] and [`q8`]: 2 (the generic block's) streamed 48–52
/// GMAC/s on 2 Zen 3 cores, 4 streams 80–100, 6 and 8 (accumulators spilled) 60–85
/// (`cargo bench -p prom-models --bench q4_1_matvec`).
const WIDE_MR: usize = 4;

/// Q4_0 / Q4_1 (`HAS_MIN`) for `M` rows, specialised: per block and column half, a row's eight
/// `vpmaddubsw` products add up in i16 (≤ 8 · 2 · 15 · 127 < 2¹⁵) and widen once, and the f32
/// steps follow at once, so only the row's two f32 accumulators live across blocks. The same
/// integer sums and f32 operations as [`block`].
// Indexing keeps the per-row register arrays visibly parallel.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn q4<const M: usize, const HAS_MIN: bool>(tile: &[u8], acts: &QuantRows, i0: usize) -> [[__m256; 2]; M] {
    let kind = if HAS_MIN { QuantKind::Q4_1 } else { QuantKind::Q4_0 };
    let tb = kind.tile_bytes();
    let t0 = tile.as_ptr();
    let Rows { qs, d: ds, s: ss } = Rows::<M>::new(acts, i0);
    let ones = _mm256_set1_epi16(1);
    let nibble = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    for b in 0..acts.kb {
        let t = t0.add(b * tb);
        for h in 0..2 {
            let mut p16 = [_mm256_setzero_si256(); M];
            for g in 0..4 {
                let raw = _mm256_loadu_si256(t.add(64 * g + 32 * h) as *const _);
                let lo = _mm256_and_si256(raw, nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                for i in 0..M {
                    let a = qs[i].add(b * QK);
                    let plo = _mm256_maddubs_epi16(lo, bcast4(a, 4 * g));
                    let phi = _mm256_maddubs_epi16(hi, bcast4(a, 16 + 4 * g));
                    p16[i] = _mm256_add_epi16(p16[i], _mm256_add_epi16(plo, phi));
                }
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(t.add(kind.d_offset() + 16 * h) as *const _));
            let mw = if HAS_MIN {
                _mm256_cvtph_ps(_mm_loadu_si128(t.add(kind.m_offset() + 16 * h) as *const _))
            } else {
                _mm256_mul_ps(dw, _mm256_set1_ps(-kind.zero_point()))
            };
            for i in 0..M {
                // `block` adds the widened sum to a zeroed i32 accumulator: the same value.
                let isum = _mm256_madd_epi16(p16[i], ones);
                let x = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(*ds[i].add(b)));
                acc[i][h] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*ss[i].add(b)), _mm256_fmadd_ps(x, dw, acc[i][h]));
            }
        }
    }
    acc
}

/// Q8_0 for `M` rows, specialised as [`q4`] is: `|w| · sign(a, w)` widened at every group (two
/// products reach 2 · 128 · 127), the block's f32 steps per column half. The same integer sums
/// and f32 operations as [`block`].
// Indexing keeps the per-row register arrays visibly parallel.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn q8<const M: usize>(tile: &[u8], acts: &QuantRows, i0: usize) -> [[__m256; 2]; M] {
    let kind = QuantKind::Q8_0;
    let tb = kind.tile_bytes();
    let t0 = tile.as_ptr();
    let Rows { qs, d: ds, s: ss } = Rows::<M>::new(acts, i0);
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_ps();
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    for b in 0..acts.kb {
        let t = t0.add(b * tb);
        for h in 0..2 {
            let mut isum = [_mm256_setzero_si256(); M];
            for g in 0..8 {
                let w = _mm256_loadu_si256(t.add(64 * g + 32 * h) as *const _);
                let aw = _mm256_abs_epi8(w);
                for i in 0..M {
                    let a = _mm256_sign_epi8(bcast4(qs[i].add(b * QK), 4 * g), w);
                    isum[i] = _mm256_add_epi32(isum[i], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, a), ones));
                }
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(t.add(kind.d_offset() + 16 * h) as *const _));
            for i in 0..M {
                let x = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[i]), _mm256_set1_ps(*ds[i].add(b)));
                // `block`'s offset term for Q8_0 is 0 · s: kept, so the sums match bit for bit.
                acc[i][h] = _mm256_fmadd_ps(zero, _mm256_set1_ps(*ss[i].add(b)), _mm256_fmadd_ps(x, dw, acc[i][h]));
            }
        }
    }
    acc
}

#[inline(always)]
unsafe fn bcast4(qs: *const i8, at: usize) -> __m256i {
    _mm256_set1_epi32((qs.add(at) as *const i32).read_unaligned())
}

/// The 32 bits at `bits` (little-endian) as 32 bytes, 0xFF where the bit is set (ggml's
/// `bytes_from_bits_32`).
#[inline(always)]
unsafe fn bytes_from_bits(bits: *const u8) -> __m256i {
    let x = (bits as *const i32).read_unaligned();
    let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let bytes =
        _mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf), _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

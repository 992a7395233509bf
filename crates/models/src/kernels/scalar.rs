//! Portable backend: the same tile arithmetic as the SIMD backends, one weight at a time. It is
//! what non-x86 CPUs run, and the tests hold the SIMD backends to it and it to a dequantizing
//! reference.

use std::ops::Range;

use super::act::QuantRows;
use super::layout::{f16_at, QuantKind, QK, TILE_ROWS};
use super::Out;

/// `y[i][col0 + r] = Σ_k w[col0 + r][k] x[i][k]` for `i` in `rows`, `r < valid`, over one row
/// tile (`tile`: its `kb` consecutive tiles).
pub(crate) fn tile(
    kind: QuantKind,
    tile: &[u8],
    acts: &QuantRows,
    rows: Range<usize>,
    y: Out,
    col0: usize,
    valid: usize,
) {
    let (k, kb, tb) = (acts.k, acts.kb, kind.tile_bytes());
    for i in rows {
        let mut acc = [0f32; TILE_ROWS];
        for b in 0..kb {
            let t = &tile[b * tb..][..tb];
            let a = &acts.qs[i * k + b * QK..][..QK];
            let (da, sa) = (acts.d[i * kb + b], acts.s[i * kb + b]);
            for (r, acc) in acc.iter_mut().enumerate() {
                let mut isum = 0i32;
                for g in 0..kind.qs_bytes() / 4 {
                    for j in 0..4 {
                        let byte = t[(g * TILE_ROWS + r) * 4 + j];
                        isum += match kind {
                            QuantKind::Q8_0 => byte as i8 as i32 * a[4 * g + j] as i32,
                            _ => {
                                let (lo, hi) = (byte & 0x0F, byte >> 4);
                                let (lo, hi) = if kind.has_high_bit() {
                                    let bit = |h: usize| {
                                        t[kind.h_offset() + 8 * (2 * g + h) + r / 2] >> (4 * (r % 2) + j) & 1
                                    };
                                    (lo | bit(0) << 4, hi | bit(1) << 4)
                                } else {
                                    (lo, hi)
                                };
                                lo as i32 * a[4 * g + j] as i32 + hi as i32 * a[16 + 4 * g + j] as i32
                            }
                        };
                    }
                }
                let dw = f16_at(t, kind.d_offset() + 2 * r);
                let offset = if kind.has_min() { f16_at(t, kind.m_offset() + 2 * r) } else { -kind.zero_point() * dw };
                *acc += isum as f32 * da * dw + offset * sa;
            }
        }
        // SAFETY: the caller owns columns col0..col0 + valid of row i for this call.
        unsafe { y.write_row(i, col0, &acc[..valid]) };
    }
}

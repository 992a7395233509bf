//! GGUF's k-quants Q4_K, Q5_K and Q6_K on the tiles of this module: 256-weight super-blocks
//! with per-32 (Q4_K, Q5_K) or per-16 (Q6_K) integer sub-scales, unpacked at load into the
//! 16-row interleaved layout the other kinds use, so the same `vpdpbusd` loop serves them.
//!
//! **Tile** (one super-block of 16 rows), byte offsets from [`Layout`]:
//! - 8 blocks of 32 weights × 4 groups × `[row][4 bytes]` of nibbles (2048 B): byte `j` of group
//!   `g` of block `b` holds the low 4 bits of weight `32b + 4g + j` in its low nibble and of
//!   weight `32b + 16 + 4g + j` in its high nibble (the order of Q4_0's tiles).
//! - Q5_K: per block, the fifth bits as 8 `u64` masks, exactly as Q5_0's tiles (512 B).
//! - Q6_K: per block, two 64-byte `[row][4 bytes]` planes of the bits 4–5: in plane `p`, byte `j`
//!   of a row holds, at bits `2(2(g - 2p) + h)`, those of weight `32b + 16h + 4g + j`, for the
//!   groups `g = 2p, 2p + 1` (1024 B). A shift and a masked OR put them under the nibble.
//! - Q4_K/Q5_K: the 6-bit scales and mins unpacked to bytes, `[block][row]` (128 + 128 B), then
//!   the 16 rows' f16 `d` and `dmin`. Q6_K: its signed 8-bit scales `[sub-block][row]` (256 B),
//!   the 16 `d`, and 32 bytes of padding to keep tiles 64-byte aligned.
//!
//! The packing keeps every weight's integer quant and every scale bit for bit (Q4_K: 148 bytes a
//! row per super-block against GGUF's 144; Q5_K: 180 vs 176; Q6_K: 212 vs 210).
//!
//! **Arithmetic.** Activations are the module's 32-value int8 blocks (`act`, exact block sums),
//! not llama.cpp's 256-value Q8_K: a finer activation scale, the same integer weights. Per
//! 32-weight block: Q4_K/Q5_K add `d·sc · d_a · Σq·a − dmin·m · s_a`; Q6_K, whose
//! quants are stored as `q` in 0..64 for `q − 32`, adds
//! `d · d_a · Σ_{two halves} sc · (Σq·a − 32 Σa)` with the 16-value activation sums `Σa`
//! computed once per matmul ([`offsets`]).
//!
//! Backends: AVX-512 VNNI and the portable scalar one (the specification). There is no AVX2
//! version yet, so `QMatrix::from_qtensor` leaves k-quants to candle's own SIMD kernels on CPUs
//! without AVX-512 VNNI ([`accelerated`]).

use std::ops::Range;

use super::act::QuantRows;
use super::layout::{f16_at, QuantKind, QK, TILE_ROWS};
use super::{Backend, Out};

/// Weights per k-quant super-block.
pub(crate) const QK_K: usize = 256;
/// 32-weight blocks per super-block.
const BLOCKS: usize = QK_K / QK;
/// Bytes of nibbles per tile.
const NIBBLES: usize = BLOCKS * 4 * 64;

/// Byte offsets inside one k-quant tile (see the module doc).
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    /// Q5_K's fifth-bit masks or Q6_K's bit planes.
    high: usize,
    /// Sub-block scales, `[sub-block][row]`.
    sc: usize,
    /// Q4_K/Q5_K: sub-block mins, `[block][row]`.
    m: usize,
    /// The 16 f16 super-block scales.
    d: usize,
    /// Q4_K/Q5_K: the 16 f16 super-block min scales.
    dmin: usize,
    pub(crate) tile_bytes: usize,
}

impl Layout {
    pub(crate) const fn of(kind: QuantKind) -> Self {
        let high = NIBBLES;
        match kind {
            QuantKind::Q6K => {
                let sc = high + BLOCKS * 128;
                let d = sc + 16 * TILE_ROWS;
                Self { high, sc, m: 0, d, dmin: 0, tile_bytes: d + 2 * TILE_ROWS + 32 }
            }
            _ => {
                let sc = high + if matches!(kind, QuantKind::Q5K) { BLOCKS * 64 } else { 0 };
                let m = sc + BLOCKS * TILE_ROWS;
                let d = m + BLOCKS * TILE_ROWS;
                let dmin = d + 2 * TILE_ROWS;
                Self { high, sc, m, d, dmin, tile_bytes: dmin + 2 * TILE_ROWS }
            }
        }
    }
}

/// Bytes of one GGUF super-block.
pub(crate) const fn block_bytes(kind: QuantKind) -> usize {
    match kind {
        QuantKind::Q4K => 2 + 2 + 12 + QK_K / 2,
        QuantKind::Q5K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
        _ => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
    }
}

/// Whether `backend` runs k-quants with SIMD here (else candle's own kernels are faster).
pub(crate) fn accelerated(backend: Backend) -> bool {
    matches!(backend, Backend::Avx512Vnni | Backend::Amx)
}

/// ggml's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min from the 12 packed bytes.
fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | (q[j - 4] >> 6) << 4, (q[j + 4] >> 4) | (q[j] >> 6) << 4)
    }
}

/// Writes GGUF super-block `src` as row `r` of tile `dst` (zeroed beforehand).
pub(crate) fn pack_block(kind: QuantKind, src: &[u8], dst: &mut [u8], r: usize) {
    let lay = Layout::of(kind);
    // Every weight's unsigned quant, in weight order (ggml's dequantize_row_q*_K).
    let mut q = [0u8; QK_K];
    match kind {
        QuantKind::Q6K => {
            let (ql, qh, sc) = (&src[..128], &src[128..192], &src[192..208]);
            for n in 0..2 {
                let (ql, qh, q) = (&ql[64 * n..], &qh[32 * n..], &mut q[128 * n..]);
                for l in 0..32 {
                    q[l] = ql[l] & 0x0F | (qh[l] & 3) << 4;
                    q[l + 32] = ql[l + 32] & 0x0F | (qh[l] >> 2 & 3) << 4;
                    q[l + 64] = ql[l] >> 4 | (qh[l] >> 4 & 3) << 4;
                    q[l + 96] = ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4;
                }
            }
            for (j, &s) in sc.iter().enumerate() {
                dst[lay.sc + TILE_ROWS * j + r] = s;
            }
            dst[lay.d + 2 * r..][..2].copy_from_slice(&src[208..210]);
        }
        _ => {
            let high = kind == QuantKind::Q5K;
            let scales = &src[4..16];
            let (qh, qs) = if high { (&src[16..48], &src[48..176]) } else { (&src[..0], &src[16..144]) };
            for c in 0..4 {
                for l in 0..32 {
                    let (lo, hi) = (qs[32 * c + l] & 0x0F, qs[32 * c + l] >> 4);
                    let (hlo, hhi) = if high { (qh[l] >> (2 * c) & 1, qh[l] >> (2 * c + 1) & 1) } else { (0, 0) };
                    q[64 * c + l] = lo | hlo << 4;
                    q[64 * c + 32 + l] = hi | hhi << 4;
                }
            }
            for j in 0..BLOCKS {
                let (sc, m) = scale_min(j, scales);
                dst[lay.sc + TILE_ROWS * j + r] = sc;
                dst[lay.m + TILE_ROWS * j + r] = m;
            }
            dst[lay.d + 2 * r..][..2].copy_from_slice(&src[0..2]);
            dst[lay.dmin + 2 * r..][..2].copy_from_slice(&src[2..4]);
        }
    }
    for (b, q) in q.chunks_exact(QK).enumerate() {
        for g in 0..4 {
            let at = 64 * (4 * b + g) + 4 * r;
            for j in 0..4 {
                dst[at + j] = q[4 * g + j] & 0x0F | (q[16 + 4 * g + j] & 0x0F) << 4;
            }
        }
        let top = |g: usize, h: usize, j: usize| q[16 * h + 4 * g + j] >> 4;
        match kind {
            QuantKind::Q5K => {
                // Row r's 4 bits of mask (g, h) are bits 4r..4r + 4.
                for (g, h) in (0..4).flat_map(|g| [(g, 0), (g, 1)]) {
                    let bits = (0..4).fold(0u8, |acc, j| acc | top(g, h, j) << j);
                    dst[lay.high + 64 * b + 8 * (2 * g + h) + r / 2] |= bits << (4 * (r % 2));
                }
            }
            QuantKind::Q6K => {
                for p in 0..2 {
                    let at = lay.high + 128 * b + 64 * p + 4 * r;
                    for j in 0..4 {
                        let (g0, g1) = (2 * p, 2 * p + 1);
                        dst[at + j] = top(g0, 0, j) | top(g0, 1, j) << 2 | top(g1, 0, j) << 4 | top(g1, 1, j) << 6;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Q6_K's offset term per 16 activations: `32 Σa` of each 16-value half block, `(m, k / 16)`,
/// written into `out` (cleared first). Other kinds need nothing.
pub(crate) fn offsets(kind: QuantKind, acts: &QuantRows, out: &mut Vec<i32>) {
    out.clear();
    if kind == QuantKind::Q6K {
        out.extend(acts.qs.chunks_exact(16).map(|c| 32 * c.iter().map(|&q| q as i32).sum::<i32>()));
    }
}

/// `y[i][col0 + r] = Σ_k w[col0 + r][k] x[i][k]` for `i` in `rows`, `r < valid`, over one row
/// tile of k-quant weights (`tile`: its `k / 256` consecutive tiles); `offsets` from [`offsets`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile(
    backend: Backend,
    kind: QuantKind,
    tile: &[u8],
    acts: &QuantRows,
    offsets: &[i32],
    rows: Range<usize>,
    y: Out,
    col0: usize,
    valid: usize,
) {
    debug_assert!(tile.len() == acts.k / QK_K * Layout::of(kind).tile_bytes);
    debug_assert!(kind != QuantKind::Q6K || offsets.len() == acts.qs.len() / 16);
    match backend {
        // SAFETY: `QMatrix` admits only backends this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512Vnni | Backend::Amx => unsafe { x86::tile512(kind, tile, acts, offsets, rows, y, col0, valid) },
        _ => scalar(kind, tile, acts, offsets, rows, y, col0, valid),
    }
}

/// The specification the SIMD version follows, one weight at a time.
#[allow(clippy::too_many_arguments)]
fn scalar(
    kind: QuantKind,
    tile: &[u8],
    acts: &QuantRows,
    offsets: &[i32],
    rows: Range<usize>,
    y: Out,
    col0: usize,
    valid: usize,
) {
    let lay = Layout::of(kind);
    let (k, kb) = (acts.k, acts.kb);
    // The quant (0..16, 0..32 or 0..64) of weight `16h + 4g + j` of block `b`, row `r`.
    let quant = |t: &[u8], b: usize, g: usize, h: usize, r: usize, j: usize| -> i32 {
        let nib = t[64 * (4 * b + g) + 4 * r + j] >> (4 * h) & 0x0F;
        let top = match kind {
            QuantKind::Q5K => {
                let bit = 4 * r + j;
                (t[lay.high + 64 * b + 8 * (2 * g + h) + bit / 8] >> (bit % 8) & 1) << 4
            }
            QuantKind::Q6K => (t[lay.high + 128 * b + 64 * (g / 2) + 4 * r + j] >> (2 * (2 * (g % 2) + h)) & 3) << 4,
            _ => 0,
        };
        (nib | top) as i32
    };
    for i in rows {
        let mut acc = [0f32; TILE_ROWS];
        for (sb, t) in tile.chunks_exact(lay.tile_bytes).enumerate() {
            for b in 0..BLOCKS {
                let blk = sb * BLOCKS + b;
                let a = &acts.qs[i * k + blk * QK..][..QK];
                let (da, sa) = (acts.d[i * kb + blk], acts.s[i * kb + blk]);
                for (r, acc) in acc.iter_mut().enumerate() {
                    // Dot products of the block's two 16-weight halves.
                    let half = |h: usize| -> i32 {
                        (0..4)
                            .flat_map(|g| (0..4).map(move |j| (g, j)))
                            .map(|(g, j)| quant(t, b, g, h, r, j) * a[16 * h + 4 * g + j] as i32)
                            .sum()
                    };
                    let d = f16_at(t, lay.d + 2 * r);
                    if kind == QuantKind::Q6K {
                        let sc = |h: usize| t[lay.sc + TILE_ROWS * (2 * b + h) + r] as i8 as i32;
                        let off = &offsets[(i * k + blk * QK) / 16..];
                        let x = sc(0) * (half(0) - off[0]) + sc(1) * (half(1) - off[1]);
                        *acc += x as f32 * (d * da);
                    } else {
                        let dsc = d * t[lay.sc + TILE_ROWS * b + r] as f32;
                        let dm = f16_at(t, lay.dmin + 2 * r) * t[lay.m + TILE_ROWS * b + r] as f32;
                        *acc += (half(0) + half(1)) as f32 * da * dsc;
                        *acc -= dm * sa;
                    }
                }
            }
        }
        // SAFETY: the caller owns columns col0..col0 + valid of row i for this call.
        unsafe { y.write_row(i, col0, &acc[..valid]) };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::super::act::QuantRows;
    use super::super::layout::{QuantKind, QK, TILE_ROWS};
    use super::super::Out;
    use super::{Layout, BLOCKS, QK_K};

    /// Activation rows per register block: 8 f32 accumulators and 16 i32 half-block sums, plus
    /// the unpacked weights, masks and scales, fill the 32 zmm registers.
    const MR: usize = 8;

    /// See [`super::tile`]. Safety: `avx512::available()` is true.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    pub(super) unsafe fn tile512(
        kind: QuantKind,
        tile: &[u8],
        acts: &QuantRows,
        offsets: &[i32],
        rows: Range<usize>,
        y: Out,
        col0: usize,
        valid: usize,
    ) {
        macro_rules! go {
            ($m:literal, $i:expr) => {
                block::<$m>(kind, tile, acts, offsets, $i, y, col0, valid)
            };
        }
        row_blocks!(rows, MR, go);
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn block<const M: usize>(
        kind: QuantKind,
        tile: &[u8],
        acts: &QuantRows,
        offsets: &[i32],
        i0: usize,
        y: Out,
        col0: usize,
        valid: usize,
    ) {
        let rows = Rows::<M>::new(acts, offsets, i0);
        let nsb = acts.k / QK_K;
        let acc = match kind {
            QuantKind::Q6K => q6k::<M>(tile.as_ptr(), nsb, &rows),
            QuantKind::Q5K => q45k::<M, true>(tile.as_ptr(), nsb, &rows),
            _ => q45k::<M, false>(tile.as_ptr(), nsb, &rows),
        };
        // SAFETY: AVX-512F is enabled here; the caller owns columns col0..col0 + valid of these rows.
        y.store_tiles(&acc, i0, col0, valid);
    }

    /// Pointers to the quants, per-block `d` and `s`, and (Q6_K) half-block offsets of `M`
    /// consecutive activation rows.
    struct Rows<const M: usize> {
        qs: [*const i8; M],
        d: [*const f32; M],
        s: [*const f32; M],
        off: [*const i32; M],
    }

    impl<const M: usize> Rows<M> {
        fn new(acts: &QuantRows, offsets: &[i32], i0: usize) -> Self {
            let per_row = acts.k / 16;
            Self {
                qs: std::array::from_fn(|i| acts.qs[(i0 + i) * acts.k..].as_ptr()),
                d: std::array::from_fn(|i| acts.d[(i0 + i) * acts.kb..].as_ptr()),
                s: std::array::from_fn(|i| acts.s[(i0 + i) * acts.kb..].as_ptr()),
                off: std::array::from_fn(|i| offsets.get((i0 + i) * per_row..).unwrap_or(&[]).as_ptr()),
            }
        }
    }

    /// Software prefetch distance, in super-block tiles ahead of the one being read. A row tile
    /// is one linear stream, and so are consecutive row tiles of a unit; in decode the weights
    /// come from DRAM, and without this the hardware prefetcher (the nibbles, bit planes and
    /// scales of a tile are three interleaved streams) left a single core at ~7 GB/s.
    const PREFETCH_TILES: usize = 2;

    /// Prefetches this block's share (one eighth) of the tile `PREFETCH_TILES` ahead of `t`,
    /// into L2 (`T1`). Asked into L1 (`T0`), one-row decode on Zen 4 streamed 6–46% less
    /// (median 21%; 9 of 9 alternated pairs over Q4_K, Q5_K and Q6_K LM-head shapes,
    /// bench/RESULTS.md 2026-12-02): a tile's lines are more misses than L1 keeps in flight.
    #[inline(always)]
    unsafe fn prefetch(t: *const u8, tile_bytes: usize, b: usize) {
        let lines = tile_bytes.div_ceil(64).div_ceil(BLOCKS);
        let ahead = t.wrapping_add(PREFETCH_TILES * tile_bytes + 64 * lines * b);
        for j in 0..lines {
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * j) as *const i8);
        }
    }

    /// Broadcast of activation quants `at..at + 4` of a row.
    #[inline(always)]
    unsafe fn bcast4(qs: *const i8, at: usize) -> __m512i {
        _mm512_set1_epi32((qs.add(at) as *const i32).read_unaligned())
    }

    /// 16 bytes at `p` widened to f32 lanes (unsigned).
    #[inline(always)]
    unsafe fn u8x16_ps(p: *const u8) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const _)))
    }

    // Indexing keeps the per-row register arrays visibly parallel.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn q45k<const M: usize, const HIGH: bool>(tile: *const u8, nsb: usize, rows: &Rows<M>) -> [__m512; M] {
        let lay = Layout::of(if HIGH { QuantKind::Q5K } else { QuantKind::Q4K });
        let nibble = _mm512_set1_epi8(0x0F);
        let sixteen = _mm512_set1_epi8(16);
        let mut acc = [_mm512_setzero_ps(); M];
        for sb in 0..nsb {
            let t = tile.add(sb * lay.tile_bytes);
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(lay.d) as *const _));
            let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(lay.dmin) as *const _));
            for b in 0..BLOCKS {
                let blk = sb * BLOCKS + b;
                prefetch(t, lay.tile_bytes, b);
                // Two chains (low and high nibbles) halve the vpdpbusd dependency depth.
                let mut slo = [_mm512_setzero_si512(); M];
                let mut shi = [_mm512_setzero_si512(); M];
                for g in 0..4 {
                    let raw = _mm512_loadu_si512(t.add(64 * (4 * b + g)) as *const _);
                    let mut lo = _mm512_and_si512(raw, nibble);
                    let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), nibble);
                    if HIGH {
                        let masks = t.add(lay.high + 64 * b + 16 * g) as *const u64;
                        lo = _mm512_mask_add_epi8(lo, masks.read_unaligned(), lo, sixteen);
                        hi = _mm512_mask_add_epi8(hi, masks.add(1).read_unaligned(), hi, sixteen);
                    }
                    for i in 0..M {
                        let a = rows.qs[i].add(blk * QK);
                        slo[i] = _mm512_dpbusd_epi32(slo[i], lo, bcast4(a, 4 * g));
                        shi[i] = _mm512_dpbusd_epi32(shi[i], hi, bcast4(a, 16 + 4 * g));
                    }
                }
                let dsc = _mm512_mul_ps(dw, u8x16_ps(t.add(lay.sc + TILE_ROWS * b)));
                let dm = _mm512_mul_ps(dmin, u8x16_ps(t.add(lay.m + TILE_ROWS * b)));
                for i in 0..M {
                    let isum = _mm512_add_epi32(slo[i], shi[i]);
                    let x = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(*rows.d[i].add(blk)));
                    acc[i] = _mm512_fmadd_ps(x, dsc, acc[i]);
                    acc[i] = _mm512_fnmadd_ps(dm, _mm512_set1_ps(*rows.s[i].add(blk)), acc[i]);
                }
            }
        }
        acc
    }

    // Indexing keeps the per-row register arrays visibly parallel.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn q6k<const M: usize>(tile: *const u8, nsb: usize, rows: &Rows<M>) -> [__m512; M] {
        let lay = Layout::of(QuantKind::Q6K);
        let nibble = _mm512_set1_epi8(0x0F);
        let bits45 = _mm512_set1_epi8(0x30);
        let mut acc = [_mm512_setzero_ps(); M];
        for sb in 0..nsb {
            let t = tile.add(sb * lay.tile_bytes);
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(lay.d) as *const _));
            for b in 0..BLOCKS {
                let blk = sb * BLOCKS + b;
                prefetch(t, lay.tile_bytes, b);
                let planes = [
                    _mm512_loadu_si512(t.add(lay.high + 128 * b) as *const _),
                    _mm512_loadu_si512(t.add(lay.high + 128 * b + 64) as *const _),
                ];
                let mut slo = [_mm512_setzero_si512(); M];
                let mut shi = [_mm512_setzero_si512(); M];
                for g in 0..4 {
                    let raw = _mm512_loadu_si512(t.add(64 * (4 * b + g)) as *const _);
                    let p = planes[g / 2];
                    // Bits 4–5 of the low (high) nibble's weights sit at bits 4(g % 2) (+ 2) of
                    // the plane; move them to bits 4–5 and OR them in under the 0x30 mask
                    // (ternary logic 0xF8: a | (b & c)).
                    let (plo, phi) = if g % 2 == 0 {
                        (_mm512_slli_epi16::<4>(p), _mm512_slli_epi16::<2>(p))
                    } else {
                        (p, _mm512_srli_epi16::<2>(p))
                    };
                    let lo = _mm512_ternarylogic_epi32::<0xF8>(_mm512_and_si512(raw, nibble), plo, bits45);
                    let hi = _mm512_ternarylogic_epi32::<0xF8>(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(raw), nibble),
                        phi,
                        bits45,
                    );
                    for i in 0..M {
                        let a = rows.qs[i].add(blk * QK);
                        slo[i] = _mm512_dpbusd_epi32(slo[i], lo, bcast4(a, 4 * g));
                        shi[i] = _mm512_dpbusd_epi32(shi[i], hi, bcast4(a, 16 + 4 * g));
                    }
                }
                let sc = |h: usize| {
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(t.add(lay.sc + TILE_ROWS * (2 * b + h)) as *const _))
                };
                let (sc_lo, sc_hi) = (sc(0), sc(1));
                for i in 0..M {
                    let off = rows.off[i].add(2 * blk);
                    let xlo = _mm512_mullo_epi32(_mm512_sub_epi32(slo[i], _mm512_set1_epi32(*off)), sc_lo);
                    let xhi = _mm512_mullo_epi32(_mm512_sub_epi32(shi[i], _mm512_set1_epi32(*off.add(1))), sc_hi);
                    let scale = _mm512_mul_ps(dw, _mm512_set1_ps(*rows.d[i].add(blk)));
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(xlo, xhi)), scale, acc[i]);
                }
            }
        }
        acc
    }
}

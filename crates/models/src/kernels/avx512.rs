//! AVX-512 VNNI backend. Per 32-weight block of a 16-row tile, each 64-byte load of quants
//! feeds `vpdpbusd` (u8 weights × i8 activations, 4 products per i32 lane) for up to `MR`
//! activation rows at once, so in prefill every weight byte loaded serves `MR` rows; the
//! per-block scale `d_w · d_a` and the offset term `m_w · s_a` are applied in f32.
//!
//! Offsets: Q4_1 and Q5_1 add `m · s` (the GGUF minimum times the activation block sum); Q4_0
//! (Q5_0) stores `q` in 0..16 (0..32) for `q - 8` (`q - 16`), so it adds `-8 d · s` (`-16 d · s`);
//! Q8_0 is signed, so its quants are shifted into u8 by `^ 0x80` (= +128) and it adds
//! `-128 d · s`. Q5's fifth bits arrive as one `__mmask64` per 64-byte load (see `layout`) and
//! are added as `+16` to the selected bytes of the unpacked nibbles.

use std::arch::x86_64::*;
use std::ops::Range;

use super::act::{QuantRows, Rows};
use super::layout::{QuantKind, QK};
use super::Out;

/// Activation rows per register block: 8 f32 accumulators + 8 i32 block sums + 6 temporaries
/// fit the 32 zmm registers.
const MR: usize = 8;

pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("fma")
}

/// See [`super::scalar::tile`]. Safety: [`available`] is true.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
pub(crate) unsafe fn tile(
    kind: QuantKind,
    tile: &[u8],
    acts: &QuantRows,
    rows: Range<usize>,
    y: Out,
    col0: usize,
    valid: usize,
) {
    // Rows in more than one register block read each tile once per block: the next tile is
    // then asked for too (see `q4`).
    let next_tile = rows.len() > MR;
    macro_rules! go {
        ($m:literal, $i:expr) => {
            block::<$m>(kind, tile, acts, $i, next_tile, y, col0, valid)
        };
    }
    row_blocks!(rows, MR, go);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn block<const M: usize>(
    kind: QuantKind,
    tile: &[u8],
    acts: &QuantRows,
    i0: usize,
    next_tile: bool,
    y: Out,
    col0: usize,
    valid: usize,
) {
    debug_assert!(tile.len() == acts.kb * kind.tile_bytes());
    let rows = Rows::<M>::new(acts, i0);
    let acc = match kind {
        QuantKind::Q4_0 => q4::<M, false, false>(tile.as_ptr(), acts.kb, &rows, next_tile),
        QuantKind::Q4_1 => q4::<M, true, false>(tile.as_ptr(), acts.kb, &rows, next_tile),
        QuantKind::Q5_0 => q4::<M, false, true>(tile.as_ptr(), acts.kb, &rows, next_tile),
        QuantKind::Q5_1 => q4::<M, true, true>(tile.as_ptr(), acts.kb, &rows, next_tile),
        QuantKind::Q8_0 => q8::<M>(tile.as_ptr(), acts.kb, &rows, next_tile),
        QuantKind::F16 | QuantKind::BF16 => unreachable!("dense kinds run in `dense`"),
        QuantKind::Q4K | QuantKind::Q5K | QuantKind::Q6K => unreachable!("k-quants run in `kquant`"),
    };
    // SAFETY: AVX-512F is enabled here; the caller owns columns col0..col0 + valid of these rows.
    y.store_tiles(&acc, i0, col0, valid);
}

/// How far ahead (bytes) a tile read once (decode: one register block of rows) asks for its
/// weights: 64 cache lines. 2–8 KiB all beat none by 1.3–1.5x at one row on the Xeon VM
/// (bench/RESULTS.md, 2026-12-02); a thread's tiles are consecutive, so near a tile's end this
/// reaches into the next one.
pub(super) const STREAM_AHEAD: usize = 4096;

/// Prefetch of the `len` bytes `STREAM_AHEAD` past `t`, for a tile streamed once (decode).
#[inline(always)]
pub(super) unsafe fn prefetch_stream(t: *const u8, len: usize) {
    let ahead = t.wrapping_add(STREAM_AHEAD);
    for line in (0..len).step_by(64) {
        // A hint: never faults, even past the end of the weights.
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
    }
}

/// Broadcast of activation quants `at..at + 4` of a row.
#[inline(always)]
unsafe fn bcast4(qs: *const i8, at: usize) -> __m512i {
    _mm512_set1_epi32((qs.add(at) as *const i32).read_unaligned())
}

// Indexing keeps the per-row register arrays visibly parallel.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn q4<const M: usize, const HAS_MIN: bool, const HIGH: bool>(
    tile: *const u8,
    kb: usize,
    rows: &Rows<M>,
    next_tile: bool,
) -> [__m512; M] {
    let kind = match (HAS_MIN, HIGH) {
        (false, false) => QuantKind::Q4_0,
        (true, false) => QuantKind::Q4_1,
        (false, true) => QuantKind::Q5_0,
        (true, true) => QuantKind::Q5_1,
    };
    let tb = kind.tile_bytes();
    let mut acc = [_mm512_setzero_ps(); M];
    for b in 0..kb {
        let t = tile.add(b * tb);
        // Rows in one register block (decode of 1–8 sequences) read each tile once: a stream
        // from DRAM that the hardware prefetcher did not keep ahead of on the Xeon VM, so the
        // bytes `STREAM_AHEAD` on are asked for (Q4_1 tg128 ~190 → ~290 t/s; 4- and 8-way
        // engine ITL -16..20%, bench/RESULTS.md). When the rows span several register blocks
        // (`next_tile`), each block rereads the tile from L1/L2: then the tile's bytes two
        // blocks ahead and the same block of the next tile (a thread's tiles are consecutive)
        // are asked for, so the next tile's stream overlaps the rereads (16-way ITL -4..6%
        // on Zen 4). A hint: never faults, even past the end.
        if !next_tile {
            prefetch_stream(t, tb);
        } else {
            let ahead = t.wrapping_add(2 * tb);
            let next = t.wrapping_add(kb * tb);
            for line in (0..tb).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
                if next_tile {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line) as *const i8);
                }
            }
        }
        let mut isum = [_mm512_setzero_si512(); M];
        for g in 0..4 {
            let (lo, hi) = nibbles::<HIGH>(kind, t, g);
            for i in 0..M {
                let a = rows.qs[i].add(b * QK);
                isum[i] = _mm512_dpbusd_epi32(isum[i], lo, bcast4(a, 4 * g));
                isum[i] = _mm512_dpbusd_epi32(isum[i], hi, bcast4(a, 16 + 4 * g));
            }
        }
        let scales = BlockScales::<HAS_MIN>::new(kind, t);
        for i in 0..M {
            acc[i] = scales.apply(acc[i], isum[i], *rows.d[i].add(b), *rows.s[i].add(b));
        }
    }
    acc
}

/// The unsigned weights of group `g` (bytes `64g..64g + 64`) of the Q4/Q5 tile block at `t`,
/// 16 rows × 4: those of columns `4g..4g + 4` (low nibbles) and `16 + 4g..` (high nibbles),
/// with Q5's fifth bits (`HIGH`) added as +16. Shared with the AMX backend, which stores them
/// as its B tile.
#[inline(always)]
pub(super) unsafe fn nibbles<const HIGH: bool>(kind: QuantKind, t: *const u8, g: usize) -> (__m512i, __m512i) {
    let nibble = _mm512_set1_epi8(0x0F);
    let raw = _mm512_loadu_si512(t.add(64 * g) as *const _);
    let mut lo = _mm512_and_si512(raw, nibble);
    let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), nibble);
    if HIGH {
        let sixteen = _mm512_set1_epi8(16);
        let masks = t.add(kind.h_offset() + 16 * g) as *const u64;
        lo = _mm512_mask_add_epi8(lo, masks.read_unaligned(), lo, sixteen);
        hi = _mm512_mask_add_epi8(hi, masks.add(1).read_unaligned(), hi, sixteen);
    }
    (lo, hi)
}

/// Group `g` of the Q8_0 tile block at `t` as unsigned bytes: i8 → u8 + 128 (`^ 0x80`), for
/// the unsigned operand of `vpdpbusd` (and of the AMX backend's `tdpbsud`).
#[inline(always)]
pub(super) unsafe fn q8_flipped(t: *const u8, g: usize) -> __m512i {
    _mm512_xor_si512(_mm512_loadu_si512(t.add(64 * g) as *const _), _mm512_set1_epi8(-128))
}

/// A tile block's per-row f32 step: the 16 rows' scales `d_w` (and minima `m_w` with
/// `HAS_MIN`), applied to one activation row's i32 block sums. One definition for the VNNI and
/// AMX backends, so that a row gets the same bits from either.
pub(super) struct BlockScales<const HAS_MIN: bool> {
    dw: __m512,
    mw: __m512,
    zero_point: f32,
}

impl<const HAS_MIN: bool> BlockScales<HAS_MIN> {
    #[inline(always)]
    pub(super) unsafe fn new(kind: QuantKind, t: *const u8) -> Self {
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(kind.d_offset()) as *const _));
        let mw = if HAS_MIN {
            _mm512_cvtph_ps(_mm256_loadu_si256(t.add(kind.m_offset()) as *const _))
        } else {
            _mm512_setzero_ps()
        };
        // Q8_0's quants entered as u8 + 128 (`q8_flipped`).
        let zero_point = if kind == QuantKind::Q8_0 { 128.0 } else { kind.zero_point() };
        Self { dw, mw, zero_point }
    }

    /// `acc + d_w · (isum · d_a) + m_w · s_a` (minima) or `acc + d_w · (isum · d_a − zp · s_a)`.
    #[inline(always)]
    pub(super) unsafe fn apply(&self, acc: __m512, isum: __m512i, da: f32, sa: f32) -> __m512 {
        if HAS_MIN {
            let x = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(da));
            let acc = _mm512_fmadd_ps(x, self.dw, acc);
            _mm512_fmadd_ps(self.mw, _mm512_set1_ps(sa), acc)
        } else {
            let off = _mm512_set1_ps(-self.zero_point * sa);
            _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(da), off), self.dw, acc)
        }
    }
}

// Indexing keeps the per-row register arrays visibly parallel.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn q8<const M: usize>(tile: *const u8, kb: usize, rows: &Rows<M>, next_tile: bool) -> [__m512; M] {
    let kind = QuantKind::Q8_0;
    let tb = kind.tile_bytes();
    let mut acc = [_mm512_setzero_ps(); M];
    for b in 0..kb {
        let t = tile.add(b * tb);
        if !next_tile {
            prefetch_stream(t, tb);
        }
        let mut isum = [_mm512_setzero_si512(); M];
        for g in 0..8 {
            // vpdpbusd wants the unsigned operand on the weight side.
            let w = q8_flipped(t, g);
            for i in 0..M {
                isum[i] = _mm512_dpbusd_epi32(isum[i], w, bcast4(rows.qs[i].add(b * QK), 4 * g));
            }
        }
        let scales = BlockScales::<false>::new(kind, t);
        for i in 0..M {
            acc[i] = scales.apply(acc[i], isum[i], *rows.d[i].add(b), *rows.s[i].add(b));
        }
    }
    acc
}

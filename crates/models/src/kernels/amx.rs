//! AMX backend (Intel Sapphire Rapids and later: AMX-TILE + AMX-INT8), for the 32-weight block
//! kinds (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) at [`MIN_ROWS`] or more activation rows (prefill). One
//! `tdpbsud` per block multiplies up to 16 activation rows by the tile's 16 weight rows:
//!
//! - **A** (16 × 32 bytes, signed): the rows' quantized activations for the block, loaded
//!   straight from [`QuantRows`] with the row length as stride;
//! - **B** (8 × 64 bytes, unsigned): the block's weights in the VNNI layout the tiles already
//!   have (`layout`: group `g` holds 4 columns of each of 16 rows). Q4/Q5 quants are unpacked
//!   to bytes (row `g` the low nibbles of group `g`, columns `4g..`; row `4 + g` the high
//!   nibbles, columns `16 + 4g..`), Q8_0's shifted to u8 (`^ 0x80`), exactly as the VNNI
//!   backend feeds `vpdpbusd`;
//! - **C** (16 × 16 i32): each row's 16 block sums, stored and scaled in AVX-512 registers by
//!   the VNNI backend's own [`BlockScales`] step.
//!
//! The integer sums are exact and the f32 steps are the VNNI backend's, so every row gets the
//! same bits as from that backend, alone or in any batch; fewer rows (decode) take the VNNI
//! kernel. Each block's scales still cost an f32 step per
//! (row, block) — the part AMX cannot do — so the gain over VNNI is the integer work, which is
//! most of a Q4 block's (16 `vpdpbusd` per row).
//!
//! Linux hands out the 8 KB of tile state per process on request (`arch_prctl`
//! `ARCH_REQ_XCOMP_PERM`); [`available`] asks once and reports false if refused.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::Cell;
use std::ops::Range;
use std::sync::OnceLock;

use super::act::{QuantRows, Rows};
use super::avx512::{nibbles, q8_flipped, BlockScales};
use super::layout::{Line, QuantKind, QK};
use super::Out;

/// Activation rows per `tdpbsud` (the tile registers' 16 rows).
const MR: usize = 16;
/// Fewer rows a call than this (decode batches) stay on the VNNI kernel: at 8–24 rows AMX was
/// 20–50% slower in every sweep, at 32–256 as fast or faster (bench/RESULTS.md).
const MIN_ROWS: usize = 32;
/// Bytes of one block's B tile: 8 rows (32 columns / 4) of 16 weight rows × 4 bytes.
const B_BYTES: usize = 8 * 64;

pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| super::avx512::available() && cpu_has_amx_int8() && tile_data_permitted())
}

/// CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
fn cpu_has_amx_int8() -> bool {
    // (Leaf 7 exists on every CPU with AVX-512, which `available` checks first.)
    let r = __cpuid_count(7, 0);
    r.edx & (3 << 24) == 3 << 24
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`);
/// without it the first tile instruction raises SIGILL.
#[cfg(target_os = "linux")]
fn tile_data_permitted() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call; it only changes which state this process may use.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn tile_data_permitted() -> bool {
    false
}

/// The 64-byte operand of `ldtilecfg` (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

thread_local! {
    /// The row count this thread's tile registers are configured for (0: not configured).
    static CONFIGURED: Cell<usize> = const { Cell::new(0) };
    /// The current tile's blocks unpacked into B tiles, reused across calls.
    static B_TILES: Cell<Vec<Line>> = const { Cell::new(Vec::new()) };
}

/// C (m × 16 i32): tmm0, tmm3, tmm6, tmm7; A (m × 32 bytes): tmm1, tmm4; B (8 × 64 bytes):
/// tmm2, tmm5.
unsafe fn configure(m: usize) {
    if CONFIGURED.get() == m {
        return;
    }
    let mut cfg = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
    for (t, rows, colsb) in
        [(0, m, 64), (1, m, QK), (2, 8, 64), (3, m, 64), (4, m, QK), (5, 8, 64), (6, m, 64), (7, m, 64)]
    {
        cfg.rows[t] = rows as u8;
        cfg.colsb[t] = colsb as u16;
    }
    asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly));
    CONFIGURED.set(m);
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
    if rows.len() < MIN_ROWS
        || !matches!(kind, QuantKind::Q4_0 | QuantKind::Q4_1 | QuantKind::Q5_0 | QuantKind::Q5_1 | QuantKind::Q8_0)
    {
        return super::avx512::tile(kind, tile, acts, rows, y, col0, valid);
    }
    debug_assert!(tile.len() == acts.kb * kind.tile_bytes());
    let mut b_tiles = B_TILES.take();
    b_tiles.resize(acts.kb * B_BYTES / 64, Line([0; 64]));
    let bp = b_tiles.as_mut_ptr() as *mut u8;
    match kind {
        QuantKind::Q4_0 | QuantKind::Q4_1 => unpack::<false>(kind, tile.as_ptr(), acts.kb, bp),
        QuantKind::Q5_0 | QuantKind::Q5_1 => unpack::<true>(kind, tile.as_ptr(), acts.kb, bp),
        _ => unpack_q8(tile.as_ptr(), acts.kb, bp),
    }
    let has_min = kind.has_min();
    macro_rules! go {
        ($m:literal, $i:expr) => {
            if has_min {
                rows_amx::<$m, true>(kind, tile.as_ptr(), bp, acts, $i, y, col0, valid)
            } else {
                rows_amx::<$m, false>(kind, tile.as_ptr(), bp, acts, $i, y, col0, valid)
            }
        };
    }
    let mut i = rows.start;
    while i < rows.end {
        let m = (rows.end - i).min(MR);
        match m {
            16 => go!(16, i),
            15 => go!(15, i),
            14 => go!(14, i),
            13 => go!(13, i),
            12 => go!(12, i),
            11 => go!(11, i),
            10 => go!(10, i),
            9 => go!(9, i),
            8 => go!(8, i),
            7 => go!(7, i),
            6 => go!(6, i),
            5 => go!(5, i),
            4 => go!(4, i),
            3 => go!(3, i),
            2 => go!(2, i),
            _ => go!(1, i),
        }
        i += m;
    }
    B_TILES.set(b_tiles);
}

/// Q4/Q5 tile blocks → B tiles: per block, rows 0..4 the low nibbles of groups 0..4, rows
/// 4..8 the high ones.
#[inline(always)]
unsafe fn unpack<const HIGH: bool>(kind: QuantKind, tile: *const u8, kb: usize, out: *mut u8) {
    let tb = kind.tile_bytes();
    for b in 0..kb {
        let (t, o) = (tile.add(b * tb), out.add(b * B_BYTES));
        for g in 0..4 {
            let (lo, hi) = nibbles::<HIGH>(kind, t, g);
            _mm512_store_si512(o.add(64 * g) as *mut _, lo);
            _mm512_store_si512(o.add(64 * (4 + g)) as *mut _, hi);
        }
    }
}

/// Q8_0 tile blocks → B tiles: the 8 groups as u8 + 128.
#[inline(always)]
unsafe fn unpack_q8(tile: *const u8, kb: usize, out: *mut u8) {
    let tb = QuantKind::Q8_0.tile_bytes();
    for b in 0..kb {
        for g in 0..8 {
            _mm512_store_si512(out.add(b * B_BYTES + 64 * g) as *mut _, q8_flipped(tile.add(b * tb), g));
        }
    }
}

/// Blocks whose tile work is issued ahead of the scaling that reads their sums: a C tile's
/// store lands tens of cycles after its `tdpbsud` starts, so block `b`'s sums are scaled while
/// the tile unit works on blocks up to `b + AHEAD` (1, 2 and 3 measured alike within the
/// host's noise, bench/RESULTS.md; at most `RING - 1`).
const AHEAD: usize = 2;
/// Blocks in flight: block `b` takes C tile `b % RING` (tmm0, tmm3, tmm6, tmm7) and the A/B
/// pair `b % 2` (tmm1/tmm2, tmm4/tmm5), so consecutive blocks never wait on each other's
/// registers (tile registers are not renamed).
const RING: usize = 4;

/// Block sums into the C tile of ring slot `slot`, stored to `c`.
#[inline(always)]
unsafe fn block_sums(slot: usize, a: *const i8, lda: usize, b: *const u8, c: *mut u8) {
    macro_rules! tdp {
        ($c:literal, $a:literal, $b:literal) => {
            // SAFETY: (caller) A is M rows of 32 bytes at stride `lda`, B one block's 512
            // bytes, C a 16 × 64-byte buffer; the tiles are configured for M rows.
            asm!(
                concat!("tilezero ", $c),
                concat!("tileloadd ", $a, ", [{a} + {lda}*1]"),
                concat!("tileloadd ", $b, ", [{b} + {ldb}*1]"),
                concat!("tdpbsud ", $c, ", ", $a, ", ", $b),
                concat!("tilestored [{c} + {ldb}*1], ", $c),
                a = in(reg) a,
                b = in(reg) b,
                c = in(reg) c,
                lda = in(reg) lda,
                ldb = in(reg) 64usize,
                options(nostack),
            )
        };
    }
    match slot & 3 {
        0 => tdp!("tmm0", "tmm1", "tmm2"),
        1 => tdp!("tmm3", "tmm4", "tmm5"),
        2 => tdp!("tmm6", "tmm1", "tmm2"),
        _ => tdp!("tmm7", "tmm4", "tmm5"),
    }
}

/// Rows `i0..i0 + M` against the tile: per block one `tdpbsud` into a C tile, stored and
/// scaled into the rows' f32 accumulators, the tile work running [`AHEAD`] blocks in front.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn rows_amx<const M: usize, const HAS_MIN: bool>(
    kind: QuantKind,
    tile: *const u8,
    b_tiles: *const u8,
    acts: &QuantRows,
    i0: usize,
    y: Out,
    col0: usize,
    valid: usize,
) {
    configure(M);
    let (tb, kb, lda) = (kind.tile_bytes(), acts.kb, acts.k);
    let rows = Rows::<M>::new(acts, i0);
    let a = rows.qs[0];
    // Never read before a `tilestored` writes it; not zeroed (that was ~9% of a call).
    let mut c = std::mem::MaybeUninit::<[Line; RING * MR]>::uninit();
    let c0 = c.as_mut_ptr() as *mut u8;
    let slot = |b: usize| c0.add((b % RING) * MR * 64);
    let issue = |b: usize| block_sums(b, a.add(b * QK), lda, b_tiles.add(b * B_BYTES), slot(b));
    for b in 0..AHEAD.min(kb) {
        issue(b);
    }
    let mut acc = [_mm512_setzero_ps(); M];
    for b in 0..kb {
        if b + AHEAD < kb {
            issue(b + AHEAD);
        }
        let (scales, sums) = (BlockScales::<HAS_MIN>::new(kind, tile.add(b * tb)), slot(b));
        for i in 0..M {
            let isum = _mm512_load_si512(sums.add(64 * i) as *const _);
            acc[i] = scales.apply(acc[i], isum, *rows.d[i].add(b), *rows.s[i].add(b));
        }
    }
    y.store_tiles(&acc, i0, col0, valid);
}

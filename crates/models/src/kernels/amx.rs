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
use super::slab::LineBuf;
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

// ---------------------------------------------------------------------------------------------
// Prompt rows in bfloat16 (AMX-BF16).
//
// The int8 path above pays an f32 scaling step per (row, 32-weight block): the tile unit does
// the integer work, but the per-block scales of Q4/Q5/Q8 weights and of the activations cannot
// go into the tiles, and that step bounds it (~80 multiply-adds a cycle on the AMX Xeon VM,
// bench/RESULTS.md). With the weights widened once to bfloat16 ([`WideTiles`], 2 bytes a
// weight), `tdpbf16ps` accumulates a whole row in its f32 tile with nothing between blocks
// (pp512 +33–40% on SmolLM2, bench/RESULTS.md). It costs memory, so it serves prefill only
// (decode streams the small quantized tiles), and only the rows the model marks as prompt rows
// (`super::with_prompt_rows`), so that a token's numbers never depend on what else is in its
// batch.

/// Bytes of one block's bfloat16 B tile: 16 rows (pairs of k) × 16 columns × 2 values × 2 bytes.
pub(crate) const WIDE_B_BYTES: usize = 1024;

/// CPUID leaf 7: EDX bit 22 AMX-BF16.
pub(crate) fn wide_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| available() && __cpuid_count(7, 0).edx & (1 << 22) != 0)
}

/// An `n × k` matrix as bfloat16 B tiles: row tile `t` (outputs `16t..16t + 16`), block `b`
/// (inputs `32b..32b + 32`) is the 1 KB tile at `(t · kb + b) · WIDE_B_BYTES`, its row `p`
/// holding, for each column `c`, the pair `w[16t + c][32b + 2p .. + 2]`. Columns past `n` are 0.
/// The bytes count against [`WIDE_BUDGET`] while the tiles live.
pub(crate) struct WideTiles {
    kb: usize,
    n_tiles: usize,
    /// On huge pages where possible, as the quantized tiles (`slab`).
    buf: LineBuf,
}

/// Bytes of bfloat16 tiles the process may hold at once (`PROM_AMX_BF16_BYTES`, default 1 GiB;
/// 0 turns the bfloat16 prompt path off): matrices are packed first come, first served, and
/// the rest keep the quantized path for every row.
pub(crate) const WIDE_BUDGET: usize = 1 << 30;

fn wide_left() -> &'static std::sync::atomic::AtomicUsize {
    static LEFT: OnceLock<std::sync::atomic::AtomicUsize> = OnceLock::new();
    LEFT.get_or_init(|| {
        let bytes = std::env::var("PROM_AMX_BF16_BYTES").ok().and_then(|v| v.parse().ok());
        std::sync::atomic::AtomicUsize::new(bytes.unwrap_or(WIDE_BUDGET))
    })
}

impl WideTiles {
    /// The tiles' bytes for an (n, k) matrix.
    pub(crate) fn bytes_for(n: usize, k: usize) -> usize {
        n.div_ceil(MR) * (k / QK) * WIDE_B_BYTES
    }

    /// Takes `bytes` from the budget; false (taking nothing) when it has less left.
    fn reserve(bytes: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        wide_left().fetch_update(Relaxed, Relaxed, |l| l.checked_sub(bytes)).is_ok()
    }

    /// Packs the matrix whose row `r` `row(r, out)` writes as f32 (`k` values, a multiple of
    /// 32), or `None` without calling it when the budget cannot hold the tiles. Tiles are
    /// packed in parallel.
    pub(crate) fn pack(n: usize, k: usize, row: &(dyn Fn(usize, &mut [f32]) + Sync)) -> Option<Self> {
        debug_assert!(k.is_multiple_of(QK));
        let (kb, n_tiles) = (k / QK, n.div_ceil(MR));
        if !Self::reserve(Self::bytes_for(n, k)) {
            return None;
        }
        let mut buf = LineBuf::zeroed(n_tiles * kb * WIDE_B_BYTES / 64);
        let per_tile = kb * WIDE_B_BYTES / 64;
        let out = buf.as_mut_ptr() as usize;
        super::parallel_for(n_tiles, &|t| {
            // SAFETY: tile t's lines are written by this unit alone; `buf` outlives the call.
            let lines = unsafe { std::slice::from_raw_parts_mut((out as *mut Line).add(t * per_tile), per_tile) };
            // The tile's rows in bfloat16 (rows past `n` stay 0); then word (p, c) of block b
            // is row c's pair at 32b + 2p.
            let (mut w, mut w16) = (vec![0f32; k], vec![0u16; MR * k]);
            for c in 0..MR.min(n - t * MR) {
                row(t * MR + c, &mut w);
                // SAFETY: `wide_available` (the caller's condition for packing) implies AVX-512BW.
                unsafe { to_bf16(&w, &mut w16[c * k..][..k]) };
            }
            for (b, tile) in lines.chunks_exact_mut(WIDE_B_BYTES / 64).enumerate() {
                for (p, line) in tile.iter_mut().enumerate() {
                    for c in 0..MR {
                        let at = c * k + b * QK + 2 * p;
                        let pair = (w16[at] as u32) | (w16[at + 1] as u32) << 16;
                        line.0[4 * c..4 * c + 4].copy_from_slice(&pair.to_le_bytes());
                    }
                }
            }
        });
        Some(Self { kb, n_tiles, buf })
    }

    /// The tiles of `parts` one after another (every part but the last a whole number of row
    /// tiles, as `Tiles::concat`); `None` when the budget cannot hold the copy.
    pub(crate) fn concat(parts: &[&WideTiles]) -> Option<Self> {
        let (kb, n_tiles) = (parts.first()?.kb, parts.iter().map(|p| p.n_tiles).sum::<usize>());
        if !Self::reserve(n_tiles * kb * WIDE_B_BYTES) {
            return None;
        }
        let mut buf = LineBuf::zeroed(n_tiles * kb * WIDE_B_BYTES / 64);
        let mut at = 0;
        for p in parts {
            buf[at..at + p.buf.len()].copy_from_slice(&p.buf);
            at += p.buf.len();
        }
        Some(Self { kb, n_tiles, buf })
    }

    /// The `kb` B tiles of row tile `t`.
    pub(crate) fn row_tile(&self, t: usize) -> &[Line] {
        let per = self.kb * WIDE_B_BYTES / 64;
        &self.buf[t * per..][..per]
    }
}

impl Drop for WideTiles {
    fn drop(&mut self) {
        wide_left().fetch_add(self.n_tiles * self.kb * WIDE_B_BYTES, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `x` (rows of `k` f32) → bfloat16 bits, rounded to nearest even (as `half::bf16::from_f32`;
/// a NaN stays a NaN).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn to_bf16(x: &[f32], out: &mut [u16]) {
    debug_assert!(x.len() == out.len());
    let n16 = x.len() / 16 * 16;
    let (bias, one, qnan) = (_mm512_set1_epi32(0x7FFF), _mm512_set1_epi32(1), _mm512_set1_epi32(0x7FC0_0000));
    for i in (0..n16).step_by(16) {
        let v = _mm512_loadu_ps(x.as_ptr().add(i));
        let bits = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), one);
        let rounded = _mm512_add_epi32(bits, _mm512_add_epi32(bias, lsb));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        let r = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(bits, qnan));
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut _, _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(r)));
    }
    for i in n16..x.len() {
        out[i] = half::bf16::from_f32(x[i]).to_bits();
    }
}

/// Output columns `col0..col0 + valid` (`valid` ≤ 32) of `rows`, from two row tiles' bfloat16
/// B tiles `w0` (columns `col0..col0 + 16`) and `w1` (the next 16; `w0` again when `valid` ≤
/// 16) and the bfloat16 activations `x` (rows of `k`). Rows go 32 at a time, two groups of 16
/// (the last group 1..=16 rows): per block two B and two A tile loads feed four `tdpbf16ps`
/// into four f32 C tiles, which are stored once at the end. Each row's sums run over the
/// blocks in order, whatever rows share its tiles. Safety: [`wide_available`] is true; `x`
/// holds every row of `rows`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn tile_wide(
    w0: &[Line],
    w1: &[Line],
    x: &[u16],
    k: usize,
    rows: Range<usize>,
    y: Out,
    col0: usize,
    valid: usize,
) {
    debug_assert!(rows.end * k <= x.len() && valid <= 2 * MR);
    debug_assert!(w0.len() * 64 == k / QK * WIDE_B_BYTES && w1.len() == w0.len());
    let (kb, lda) = (k / QK, 2 * k);
    let mut i = rows.start;
    while i < rows.end {
        // The top group (16 rows) only when more than 16 rows are left; the bottom one takes
        // the rest of this step (1..=16 rows).
        let n = (rows.end - i).min(2 * MR);
        let (top, bottom) = if n > MR { (MR, n - MR) } else { (0, n) };
        configure_wide(bottom);
        let at = |r: usize| x.as_ptr().add(r * k) as *const u8;
        let (a_top, a_bot) = (at(i), at(i + top));
        let (b0, b1) = (w0.as_ptr() as *const u8, w1.as_ptr() as *const u8);
        macro_rules! run {
            ($($body:literal),*) => {
                // SAFETY: (caller) tiles configured above; A rows are rows of `x` at stride
                // `lda`, each block's 64 bytes inside its row; B one block's 1 KB tile each.
                asm!(
                    "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    "2:",
                    "tileloadd tmm6, [{b0} + {s64}*1]",
                    "tileloadd tmm7, [{b1} + {s64}*1]",
                    $($body,)*
                    "add {at}, 64", "add {ab}, 64", "add {b0}, 1024", "add {b1}, 1024",
                    "dec {kb}",
                    "jnz 2b",
                    at = inout(reg) a_top => _, ab = inout(reg) a_bot => _,
                    b0 = inout(reg) b0 => _, b1 = inout(reg) b1 => _, kb = inout(reg) kb => _,
                    lda = in(reg) lda, s64 = in(reg) 64usize,
                    options(nostack),
                )
            };
        }
        if top > 0 {
            run!(
                "tileloadd tmm4, [{at} + {lda}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{ab} + {lda}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7"
            );
        } else {
            run!("tileloadd tmm5, [{ab} + {lda}*1]", "tdpbf16ps tmm2, tmm5, tmm6", "tdpbf16ps tmm3, tmm5, tmm7");
        }
        // C tiles → y: straight into y's rows when all 32 columns are the matrix's, else
        // through a buffer so that no column past `valid` is written.
        let mut buf = std::mem::MaybeUninit::<[Line; 2 * MR]>::uninit();
        let bp = buf.as_mut_ptr() as *mut f32;
        for (half, r0, nr) in [(0, i, top), (1, i + top, bottom)] {
            if nr == 0 {
                continue;
            }
            let (dst, ld) = if valid == 2 * MR { (y.row_ptr(r0, col0), y.ld * 4) } else { (bp, 2 * 64) };
            macro_rules! store {
                ($c0:literal, $c1:literal) => {
                    // SAFETY: `nr` rows of 32 floats at stride `ld` bytes: y's rows r0..r0 + nr
                    // (this call owns columns col0..col0 + 32) or the buffer.
                    asm!(
                        concat!("tilestored [{d} + {ld}*1], ", $c0),
                        concat!("tilestored [{d1} + {ld}*1], ", $c1),
                        d = in(reg) dst, d1 = in(reg) dst.add(MR), ld = in(reg) ld,
                        options(nostack),
                    )
                };
            }
            if half == 0 {
                store!("tmm0", "tmm1");
            } else {
                store!("tmm2", "tmm3");
            }
            if valid < 2 * MR {
                for r in 0..nr {
                    y.write_row(r0 + r, col0, std::slice::from_raw_parts(bp.add(r * 2 * MR), valid));
                }
            }
        }
        i += n;
    }
}

/// Tiles for [`tile_wide`]: C tmm0, tmm1 (16 rows of 16 f32), tmm2, tmm3 (`bottom` rows); A tmm4
/// (16 rows of 32 bf16), tmm5 (`bottom` rows); B tmm6, tmm7 (16 rows of 16 pairs).
unsafe fn configure_wide(bottom: usize) {
    // Keys above the int8 path's row counts (1..=16).
    let key = 64 + bottom;
    if CONFIGURED.get() == key {
        return;
    }
    let mut cfg = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
    for (t, rows) in [(0, MR), (1, MR), (2, bottom), (3, bottom), (4, MR), (5, bottom), (6, MR), (7, MR)] {
        cfg.rows[t] = rows as u8;
        cfg.colsb[t] = 64;
    }
    asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly));
    CONFIGURED.set(key);
}

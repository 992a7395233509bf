//! The packed weight layout every kernel backend reads: GGUF blocks of 16 consecutive output rows
//! interleaved so one 64-byte load feeds one `vpdpbusd` that advances 16 dot products at once.
//!
//! A *tile* is one 32-column block of 16 rows. Quants come first, as `[group][row][4 bytes]`
//! where byte `j` of group `g` is byte `4g + j` of that row's GGUF `qs`: for the 4- and 5-bit
//! kinds its low nibble is weight `4g + j` and its high nibble weight `16 + 4g + j` (GGUF's nibble
//! order: `qs[j]` holds weights `j` and `j + 16`); for Q8_0 it is weight `4g + j` itself,
//! still signed. For Q5_0/Q5_1, the 16 rows' fifth bits (`qh`) follow as 8 little-endian u64
//! masks, one per (group `g`, nibble `h`): bit `4r + j` of mask `2g + h` is the fifth bit of
//! weight `16h + 4g + j` of row `r`, i.e. exactly the bytes of that group's 64-byte load that get
//! `+16` (AVX-512 loads it as a `__mmask64`). Then the 16 rows' f16 scales `d`, then (Q4_1, Q5_1)
//! the 16 f16 minima `m`. Tiles are stored `[row tile][block]`, so a row tile's whole K extent is
//! one linear stream.
//!
//! The k-quants (Q4_K, Q5_K, Q6_K) tile a whole 256-weight super-block of 16 rows the same way
//! (their layout is in `kquant`).
//!
//! Dense F16/BF16 weights use the same tiles of 32 columns × 16 rows, stored `[column][row]` as
//! raw 16-bit values (1024 bytes), so one 32-byte load is one column of 16 rows.
//!
//! The packing is a pure permutation of the GGUF blocks' bits: memory use equals the file's,
//! plus zero padding up to a multiple of 16 rows (padded rows produce zeros and are never
//! stored to the output).

use half::f16;

use super::kquant;
use super::slab::LineBuf;

/// Output rows per tile: one AVX-512 register of i32/f32 lanes.
pub const TILE_ROWS: usize = 16;
/// Weights per GGUF block of the non-k-quant kinds (and per k-quant sub-block, and per activation
/// block); also the columns of a dense tile.
pub const QK: usize = 32;

/// The weight formats the kernels implement: GGUF's 32-weight block formats, and dense 16-bit
/// floats (which skip activation quantization, see `dense`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantKind {
    /// `w = d * (q - 8)`, q in 0..16.
    Q4_0,
    /// `w = d * q + m`, q in 0..16.
    Q4_1,
    /// `w = d * (q - 16)`, q in 0..32 (low nibble in `qs`, fifth bit in `qh`).
    Q5_0,
    /// `w = d * q + m`, q in 0..32.
    Q5_1,
    /// `w = d * q`, q in -128..128.
    Q8_0,
    /// IEEE half precision.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
    /// k-quant: 256-weight super-blocks of 8 × 32, `w = d · sc · q − dmin · m`, q in 0..16,
    /// 6-bit `sc`, `m` per 32 (see `kquant`).
    Q4K,
    /// As Q4_K with q in 0..32.
    Q5K,
    /// k-quant: `w = d · sc · (q − 32)`, q in 0..64, signed 8-bit `sc` per 16 weights.
    Q6K,
}

impl QuantKind {
    /// Bytes of one GGUF block (32 weights, or a k-quant's 256).
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantKind::Q4_0 => 2 + 16,
            QuantKind::Q4_1 => 2 + 2 + 16,
            QuantKind::Q5_0 => 2 + 4 + 16,
            QuantKind::Q5_1 => 2 + 2 + 4 + 16,
            QuantKind::Q8_0 => 2 + 32,
            QuantKind::F16 | QuantKind::BF16 => 2 * QK,
            QuantKind::Q4K | QuantKind::Q5K | QuantKind::Q6K => kquant::block_bytes(self),
        }
    }

    /// Weights per GGUF block: 256 for the k-quants, else 32.
    pub const fn block_len(self) -> usize {
        if self.is_kquant() {
            kquant::QK_K
        } else {
            QK
        }
    }

    /// The k-quants, which run in `kquant` on 256-weight super-block tiles.
    pub(crate) const fn is_kquant(self) -> bool {
        matches!(self, QuantKind::Q4K | QuantKind::Q5K | QuantKind::Q6K)
    }

    /// Dense 16-bit float weights (no scales, no activation quantization).
    pub(crate) const fn is_dense(self) -> bool {
        matches!(self, QuantKind::F16 | QuantKind::BF16)
    }

    /// Whether the block has a per-block minimum `m` (`w = d * q + m`).
    pub(crate) const fn has_min(self) -> bool {
        matches!(self, QuantKind::Q4_1 | QuantKind::Q5_1)
    }

    /// Whether the quants have a fifth bit (`qh`).
    pub(crate) const fn has_high_bit(self) -> bool {
        matches!(self, QuantKind::Q5_0 | QuantKind::Q5_1)
    }

    /// Quant bytes per row per block (`qs` of the GGUF block).
    pub(crate) const fn qs_bytes(self) -> usize {
        match self {
            QuantKind::Q4_0 | QuantKind::Q4_1 | QuantKind::Q5_0 | QuantKind::Q5_1 => 16,
            QuantKind::Q8_0 => 32,
            QuantKind::F16 | QuantKind::BF16 => 2 * QK,
            // Their 4-bit planes; `kquant::Layout` has the rest.
            QuantKind::Q4K | QuantKind::Q5K | QuantKind::Q6K => kquant::QK_K / 2,
        }
    }

    /// Byte offset of the quants inside a GGUF block.
    const fn qs_offset(self) -> usize {
        self.block_bytes() - self.qs_bytes()
    }

    /// Byte offset, inside a tile, of the 8 fifth-bit masks (Q5_0/Q5_1 only).
    pub(crate) const fn h_offset(self) -> usize {
        TILE_ROWS * self.qs_bytes()
    }

    /// Byte offset, inside a tile, of the 16 f16 scales (the quants and masks precede them).
    pub(crate) const fn d_offset(self) -> usize {
        self.h_offset() + if self.has_high_bit() { 64 } else { 0 }
    }

    /// Byte offset, inside a tile, of the 16 f16 minima (Q4_1, Q5_1 only).
    pub(crate) const fn m_offset(self) -> usize {
        self.d_offset() + 2 * TILE_ROWS
    }

    pub const fn tile_bytes(self) -> usize {
        if self.is_kquant() {
            kquant::Layout::of(self).tile_bytes
        } else if self.is_dense() {
            self.h_offset()
        } else if self.has_min() {
            self.m_offset() + 2 * TILE_ROWS
        } else {
            self.d_offset() + 2 * TILE_ROWS
        }
    }

    /// Whether activation block sums are rounded through f16, as llama.cpp's Q8_1 `s` is.
    /// Q4_1 and Q5_1 pair with Q8_1 in llama.cpp; Q4_0, Q5_0 and Q8_0 pair with Q8_0, whose
    /// integer dot products are exact, so there the correction term uses the exact sum.
    pub(crate) const fn sum_through_f16(self) -> bool {
        self.has_min()
    }

    /// The offset term's weight-side factor per unit of activation block sum `s`, for kinds
    /// without a stored minimum: `q - z` stored as `q`, so `-z · d` (Q8_0's signed quants are
    /// shifted by the SIMD backends themselves).
    pub(crate) const fn zero_point(self) -> f32 {
        match self {
            QuantKind::Q4_0 => 8.0,
            QuantKind::Q5_0 => 16.0,
            _ => 0.0,
        }
    }
}

/// One cache line; the tile buffer is a run of these so every row tile starts 64-byte aligned
/// when the tile size is a multiple of 64 (Q4_1's 320 bytes is).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub [u8; 64]);

/// Packed tiles of an `n × k` matrix. Invariant: `bytes().len() == n_tiles * kb * tile_bytes`.
pub(crate) struct Tiles {
    kind: QuantKind,
    kb: usize,
    n_tiles: usize,
    /// On huge pages where possible (`slab`): decode streams all of it every token.
    buf: LineBuf,
}

impl Tiles {
    /// Packs `n` rows of `k / block_len` GGUF blocks each. The caller checked `data.len()` and
    /// that `k` is a multiple of the block length.
    pub(crate) fn pack(kind: QuantKind, n: usize, k: usize, data: &[u8]) -> Self {
        let (kb, bb, tb, qsb) = (k / kind.block_len(), kind.block_bytes(), kind.tile_bytes(), kind.qs_bytes());
        debug_assert_eq!(data.len(), n * kb * bb);
        let n_tiles = n.div_ceil(TILE_ROWS);
        let total = n_tiles * kb * tb;
        let mut buf = LineBuf::zeroed(total.div_ceil(64));
        // SAFETY: `Line` is 64 plain bytes; the slice covers exactly the initialised buffer.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, buf.len() * 64) };
        for row in 0..n {
            let (t, r) = (row / TILE_ROWS, row % TILE_ROWS);
            for b in 0..kb {
                let src = &data[(row * kb + b) * bb..][..bb];
                let dst = &mut out[(t * kb + b) * tb..][..tb];
                if kind.is_kquant() {
                    kquant::pack_block(kind, src, dst, r);
                    continue;
                }
                if kind.is_dense() {
                    for c in 0..QK {
                        dst[(c * TILE_ROWS + r) * 2..][..2].copy_from_slice(&src[2 * c..][..2]);
                    }
                    continue;
                }
                let qs = &src[kind.qs_offset()..];
                for g in 0..qsb / 4 {
                    dst[(g * TILE_ROWS + r) * 4..][..4].copy_from_slice(&qs[g * 4..][..4]);
                }
                dst[kind.d_offset() + 2 * r..][..2].copy_from_slice(&src[0..2]);
                if kind.has_min() {
                    dst[kind.m_offset() + 2 * r..][..2].copy_from_slice(&src[2..4]);
                }
                if kind.has_high_bit() {
                    // `qh` sits just before `qs`; see the module doc for the mask layout.
                    let qh = u32::from_le_bytes(src[kind.qs_offset() - 4..][..4].try_into().expect("4 bytes"));
                    for (g, h, j) in (0..4).flat_map(|g| (0..2).flat_map(move |h| (0..4).map(move |j| (g, h, j)))) {
                        if qh >> (16 * h + 4 * g + j) & 1 == 1 {
                            let bit = 4 * r + j;
                            dst[kind.h_offset() + 8 * (2 * g + h) + bit / 8] |= 1 << (bit % 8);
                        }
                    }
                }
            }
        }
        Self { kind, kb, n_tiles, buf }
    }

    /// The row tiles of `parts` one after another (same kind and `k`; every part but the last a
    /// whole number of tiles, which the caller checked): a matrix whose outputs are the parts'
    /// outputs in order.
    pub(crate) fn concat(parts: &[&Tiles]) -> Self {
        let (kind, kb) = (parts[0].kind, parts[0].kb);
        let n_tiles = parts.iter().map(|p| p.n_tiles).sum::<usize>();
        let total = n_tiles * kb * kind.tile_bytes();
        let mut buf = LineBuf::zeroed(total.div_ceil(64));
        // SAFETY: `Line` is 64 plain bytes; the slice covers exactly the initialised buffer.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, buf.len() * 64) };
        let mut at = 0;
        for p in parts {
            let b = p.bytes();
            out[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        Self { kind, kb, n_tiles, buf }
    }

    pub(crate) fn kind(&self) -> QuantKind {
        self.kind
    }

    pub(crate) fn n_tiles(&self) -> usize {
        self.n_tiles
    }

    /// The `kb` consecutive tiles of row tile `t`.
    pub(crate) fn row_tile(&self, t: usize) -> &[u8] {
        let len = self.kb * self.kind.tile_bytes();
        &self.bytes()[t * len..][..len]
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: see `pack`.
        let all = unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.buf.len() * 64) };
        &all[..self.n_tiles * self.kb * self.kind.tile_bytes()]
    }
}

/// One GGUF block of a 32-weight kind (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) as f32, as ggml's
/// `dequantize_row_*`: `d · q + m` (Q4_0: `m = -8d`, Q5_0: `-16d`, Q8_0 signed `q`); quant byte
/// `j`'s low nibble is weight `j`, its high nibble weight `j + 16`, and `qh` bit `j` weight `j`'s
/// fifth bit. `out` holds the block's 32 values.
pub(crate) fn dequantize_block(kind: QuantKind, blk: &[u8], out: &mut [f32]) {
    debug_assert_eq!(out.len(), QK);
    let d = f16_at(blk, 0);
    let qs = &blk[kind.qs_offset()..][..kind.qs_bytes()];
    if kind == QuantKind::Q8_0 {
        for (o, &q) in out.iter_mut().zip(qs) {
            *o = d * q as i8 as f32;
        }
        return;
    }
    let m = match kind {
        QuantKind::Q4_1 | QuantKind::Q5_1 => f16_at(blk, 2),
        QuantKind::Q5_0 => -16.0 * d,
        _ => -8.0 * d,
    };
    let qh = match kind.has_high_bit() {
        true => (0..4).fold(0u32, |h, i| h | (blk[kind.qs_offset() - 4 + i] as u32) << (8 * i)),
        false => 0,
    };
    let (lo, hi) = out.split_at_mut(QK / 2);
    for (j, &q) in qs.iter().enumerate() {
        lo[j] = d * ((q & 0x0F) as u32 | (qh >> j & 1) << 4) as f32 + m;
        hi[j] = d * ((q >> 4) as u32 | (qh >> (j + 16) & 1) << 4) as f32 + m;
    }
}

/// Reads the f16 at `bytes[at..at + 2]` (little-endian, as GGUF stores it).
#[inline]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

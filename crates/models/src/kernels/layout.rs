//! The packed weight layout every kernel backend reads: GGUF blocks of 16 consecutive output rows
//! interleaved so one 64-byte load feeds one `vpdpbusd` that advances 16 dot products at once.
//!
//! A *tile* is one 32-column block of 16 rows. Quants come first, as `[group][row][4 bytes]`
//! where byte `j` of group `g` is byte `4g + j` of that row's GGUF `qs`: for the 4-bit kinds
//! its low nibble is weight `4g + j` and its high nibble weight `16 + 4g + j` (GGUF's nibble
//! order: `qs[j]` holds weights `j` and `j + 16`); for Q8_0 it is weight `4g + j` itself,
//! still signed. Then the 16 rows' f16 scales `d`, then (Q4_1 only) the 16 f16 minima `m`.
//! Tiles are stored `[row tile][block]`, so a row tile's whole K extent is one linear stream.
//!
//! The packing is a pure byte permutation of the GGUF blocks: memory use equals the file's,
//! plus zero padding up to a multiple of 16 rows (padded rows produce zeros and are never
//! stored to the output).

use half::f16;

/// Output rows per tile: one AVX-512 register of i32/f32 lanes.
pub const TILE_ROWS: usize = 16;
/// Weights per GGUF block (Q4_0, Q4_1, Q8_0 all use 32).
pub const QK: usize = 32;

/// The GGUF block formats the kernels implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantKind {
    /// `w = d * (q - 8)`, q in 0..16.
    Q4_0,
    /// `w = d * q + m`, q in 0..16.
    Q4_1,
    /// `w = d * q`, q in -128..128.
    Q8_0,
}

impl QuantKind {
    /// Bytes of one GGUF block of 32 weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantKind::Q4_0 => 2 + 16,
            QuantKind::Q4_1 => 2 + 2 + 16,
            QuantKind::Q8_0 => 2 + 32,
        }
    }

    /// Quant bytes per row per block (`qs` of the GGUF block).
    pub(crate) const fn qs_bytes(self) -> usize {
        match self {
            QuantKind::Q4_0 | QuantKind::Q4_1 => 16,
            QuantKind::Q8_0 => 32,
        }
    }

    /// Byte offset of the quants inside a GGUF block.
    const fn qs_offset(self) -> usize {
        self.block_bytes() - self.qs_bytes()
    }

    /// Byte offset, inside a tile, of the 16 f16 scales (the quants precede them).
    pub(crate) const fn d_offset(self) -> usize {
        TILE_ROWS * self.qs_bytes()
    }

    /// Byte offset, inside a tile, of the 16 f16 minima (Q4_1 only).
    pub(crate) const fn m_offset(self) -> usize {
        self.d_offset() + 2 * TILE_ROWS
    }

    pub const fn tile_bytes(self) -> usize {
        match self {
            QuantKind::Q4_1 => self.m_offset() + 2 * TILE_ROWS,
            _ => self.d_offset() + 2 * TILE_ROWS,
        }
    }

    /// Whether activation block sums are rounded through f16, as llama.cpp's Q8_1 `s` is.
    /// Only Q4_1 pairs with Q8_1 in llama.cpp; Q4_0 and Q8_0 pair with Q8_0, whose integer
    /// dot products are exact, so there the correction term uses the exact sum.
    pub(crate) const fn sum_through_f16(self) -> bool {
        matches!(self, QuantKind::Q4_1)
    }
}

/// One cache line; the tile buffer is a `Vec` of these so every row tile starts 64-byte aligned
/// when the tile size is a multiple of 64 (Q4_1's 320 bytes is).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub [u8; 64]);

/// Packed tiles of an `n × k` matrix. Invariant: `bytes().len() == n_tiles * kb * tile_bytes`.
pub(crate) struct Tiles {
    kind: QuantKind,
    kb: usize,
    n_tiles: usize,
    buf: Vec<Line>,
}

impl Tiles {
    /// Packs `n` rows of `k / 32` GGUF blocks each. The caller checked `data.len()` and `k % 32`.
    pub(crate) fn pack(kind: QuantKind, n: usize, k: usize, data: &[u8]) -> Self {
        let (kb, bb, tb, qsb) = (k / QK, kind.block_bytes(), kind.tile_bytes(), kind.qs_bytes());
        debug_assert_eq!(data.len(), n * kb * bb);
        let n_tiles = n.div_ceil(TILE_ROWS);
        let total = n_tiles * kb * tb;
        let mut buf = vec![Line([0; 64]); total.div_ceil(64)];
        // SAFETY: `Line` is 64 plain bytes; the slice covers exactly the initialised buffer.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, buf.len() * 64) };
        for row in 0..n {
            let (t, r) = (row / TILE_ROWS, row % TILE_ROWS);
            for b in 0..kb {
                let src = &data[(row * kb + b) * bb..][..bb];
                let dst = &mut out[(t * kb + b) * tb..][..tb];
                let qs = &src[kind.qs_offset()..];
                for g in 0..qsb / 4 {
                    dst[(g * TILE_ROWS + r) * 4..][..4].copy_from_slice(&qs[g * 4..][..4]);
                }
                dst[kind.d_offset() + 2 * r..][..2].copy_from_slice(&src[0..2]);
                if kind == QuantKind::Q4_1 {
                    dst[kind.m_offset() + 2 * r..][..2].copy_from_slice(&src[2..4]);
                }
            }
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

/// Reads the f16 at `bytes[at..at + 2]` (little-endian, as GGUF stores it).
#[inline]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

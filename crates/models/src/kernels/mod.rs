//! Our own CPU matmul for GGUF Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0, the k-quants Q4_K / Q5_K /
//! Q6_K, and dense F16/BF16 weights:
//! `y (m, n) = x (m, k) · Wᵀ`.
//!
//! candle has no SIMD kernel for Q4_1 or Q5_x, runs f16 weights as an f32 copy, and its thread
//! pool spins between ops; this module replaces all three for the formats llama.cpp's small
//! models ship in. The design:
//!
//! - **Weights** ([`QMatrix`]) are the GGUF blocks, permuted once at load into tiles of 16 output
//!   rows (see `layout`), so one 64-byte load of quants feeds one AVX-512 VNNI `vpdpbusd`
//!   that advances 16 dot products by 4 weights each.
//! - **Activations** are quantized per call to 8-bit blocks exactly as llama.cpp's
//!   `quantize_row_q8_1` does (`act`), so the integer dot products match llama.cpp's.
//! - **Prefill** reuses each weight load for up to 8 activation rows in registers, and walks a
//!   row tile's blocks for all rows while they sit in L1, so it is compute-bound.
//! - **Threads**: units of row tiles are claimed through an atomic cursor by the caller and the
//!   helpers of a small fork-join pool (`pool`) that sleeps when idle.
//! - **Backends**: AMX (Intel's tile unit, for batched rows), AVX-512 VNNI, AVX2 and portable
//!   scalar, chosen at runtime ([`Backend::detect`]); all read the same tiles and are tested
//!   against a dequantizing reference.
//! - **Dense F16/BF16** weights (`dense`) share the tiles (16-bit values instead of quants),
//!   the threading and the output handling, but take the f32 activations as they are.
//!
//! - **k-quants** (`kquant`) tile whole 256-weight super-blocks the same way, with their integer
//!   sub-scales applied per 16 or 32 weights.
//!
//! Out of scope: Q2_K/Q3_K and the i-quants (candle's own kernels serve those), non-CPU devices,
//! and `k` that is not a multiple of the block length (GGUF cannot store it).

/// Walks `$rows` in register blocks of up to `$max` (≤ 8) activation rows, expanding
/// `$go!(M, i)` for each block: `M` a literal (every block size gets its own fully unrolled
/// kernel), `i` the block's first row.
macro_rules! row_blocks {
    ($rows:expr, $max:expr, $go:ident) => {{
        let rows = $rows;
        debug_assert!($max <= 8);
        let mut i = rows.start;
        while i < rows.end {
            let mr = (rows.end - i).min($max);
            match mr {
                8 => $go!(8, i),
                7 => $go!(7, i),
                6 => $go!(6, i),
                5 => $go!(5, i),
                4 => $go!(4, i),
                3 => $go!(3, i),
                2 => $go!(2, i),
                _ => $go!(1, i),
            }
            i += mr;
        }
    }};
}

mod act;
#[cfg(target_arch = "x86_64")]
mod amx;
pub mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod dense;
pub mod fused;
mod kquant;
mod layout;
pub(crate) mod math;
mod pool;
mod scalar;
mod slab;
mod softmax;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::ops::Range;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Storage, Tensor};

use self::act::QuantRows;
use self::layout::{Tiles, QK, TILE_ROWS};
use self::pool::Pool;
use crate::{Error, Result};

pub use self::layout::QuantKind;

/// Threads of the CPU pool every kernel here shares (the calling thread included).
pub(crate) fn pool_threads() -> usize {
    pool::Pool::global().threads()
}

/// Runs `f(0..pool_threads())` with every unit on its own pool thread at once (each part of a
/// step split by sequence gets a core of its own; units may even wait for each other); false,
/// running nothing, when the pool cannot promise that (one thread, or busy with another
/// caller's job). Kernels called inside a unit run on its thread alone.
pub(crate) fn run_side_by_side(f: &(dyn Fn(usize) + Sync)) -> bool {
    pool::Pool::global().run_each(f)
}

/// Runs `f(0..n)` on the kernels' thread pool (one thread per core, the caller among them) and
/// returns when every unit is done. For host work between forward passes, such as sampling a
/// batch's rows: it shares the matmuls' threads, which are still polling for work then, instead
/// of starting threads of its own.
pub fn parallel_for(n: usize, f: &(dyn Fn(usize) + Sync)) {
    Pool::global().run(n, true, f)
}

/// The instruction set a [`QMatrix`] computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Scalar,
    Avx2,
    Avx512Vnni,
    /// AVX-512 VNNI, with AMX tiles for the 32-weight block kinds at two or more rows.
    Amx,
}

impl Backend {
    /// The fastest backend this CPU supports, or the one `PROM_CPU_KERNELS` names (`scalar`,
    /// `avx2`, `avx512`, `amx`) if this CPU supports it: one binary measures each.
    pub fn detect() -> Self {
        static CHOSEN: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let available = Self::available();
            let named = std::env::var("PROM_CPU_KERNELS").ok().and_then(|v| match v.as_str() {
                "scalar" => Some(Backend::Scalar),
                "avx2" => Some(Backend::Avx2),
                "avx512" => Some(Backend::Avx512Vnni),
                "amx" => Some(Backend::Amx),
                _ => None,
            });
            match named {
                Some(b) if available.contains(&b) => b,
                _ => *available.last().unwrap_or(&Backend::Scalar),
            }
        })
    }

    /// Every backend this CPU supports, slowest first.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    pub fn available() -> Vec<Self> {
        let mut v = vec![Backend::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                v.push(Backend::Avx2);
            }
            if avx512::available() {
                v.push(Backend::Avx512Vnni);
            }
            if amx::available() {
                v.push(Backend::Amx);
            }
        }
        v
    }
}

/// Activation rows per pass over a unit's row tiles. Within a pass each tile's weights are
/// loaded from memory once and reused from L1 for every 8-row register block; the pass's
/// quantized activations (≤ 64·k bytes) stay in L2. Longer prompts re-walk the unit's few tiles
/// (tens of KB, still cached) once per 64 rows.
const ROW_CHUNK: usize = 64;
/// Below this many multiply-adds a matmul runs on the calling thread: waking a helper costs more.
const PARALLEL_MIN_MACS: usize = 1 << 16;
/// Matmuls of at most this many rows (decode, single or batched up to 64 sequences) come
/// microseconds apart, so the pool's helpers keep polling after them instead of sleeping (see
/// `pool::Pool::run`); longer prefill matmuls let them sleep. On a quiet 2-core machine, 64
/// instead of 4 cut 16-way decode ITL by ~10% (five alternated pairs, bench/RESULTS.md); on a
/// loaded one (other processes on both cores) a polling helper holds a core the caller needs,
/// and 16-way ITL got worse (41–43 ms vs 36 ms) — llama.cpp's spinning threads make the same
/// trade.
pub(super) const LINGER_MAX_ROWS: usize = 64;

/// An `n × k` GGUF-quantized weight matrix (`n` output features, `k` inputs), packed for the
/// kernels of this module.
pub struct QMatrix {
    n: usize,
    k: usize,
    tiles: Tiles,
    backend: Backend,
    /// The weights as bfloat16 AMX tiles, for prompt rows (see `amx`'s second half): built at
    /// load for the 32-weight block kinds where the backend is AMX, while `amx::WIDE_BUDGET`
    /// lasts.
    #[cfg(target_arch = "x86_64")]
    wide: Option<amx::WideTiles>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("kind", &self.kind())
            .field("n", &self.n)
            .field("k", &self.k)
            .field("backend", &self.backend)
            .finish()
    }
}

impl QMatrix {
    /// Packs `n` rows of raw GGUF blocks (`data`, row-major, `k / 32` blocks per row).
    pub fn from_ggml(kind: QuantKind, n: usize, k: usize, data: &[u8]) -> Result<Self> {
        let op = || format!("{kind:?} matrix ({n}, {k})");
        let len = kind.block_len();
        if k == 0 || !k.is_multiple_of(len) {
            return Err(kernel_error(op(), format!("k = {k} is not a positive multiple of {len}")));
        }
        let want = n * (k / len) * kind.block_bytes();
        if data.len() != want {
            return Err(kernel_error(op(), format!("expected {want} bytes of blocks, found {}", data.len())));
        }
        let backend = Backend::detect();
        Ok(Self {
            n,
            k,
            tiles: Tiles::pack(kind, n, k, data),
            backend,
            #[cfg(target_arch = "x86_64")]
            wide: wide_tiles(kind, backend, n, k, data),
        })
    }

    /// Packs a 2-D CPU `QTensor` of a kind this module implements; `None` for other dtypes
    /// (Q2_K, f32, ...; k-quants too where this CPU has no SIMD kernel for them) and devices,
    /// which stay with candle.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Self>> {
        let kind = match q.dtype() {
            GgmlDType::Q4_0 => QuantKind::Q4_0,
            GgmlDType::Q4_1 => QuantKind::Q4_1,
            GgmlDType::Q5_0 => QuantKind::Q5_0,
            GgmlDType::Q5_1 => QuantKind::Q5_1,
            GgmlDType::Q8_0 => QuantKind::Q8_0,
            GgmlDType::F16 => QuantKind::F16,
            GgmlDType::BF16 => QuantKind::BF16,
            GgmlDType::Q4K if kquant::accelerated(Backend::detect()) => QuantKind::Q4K,
            GgmlDType::Q5K if kquant::accelerated(Backend::detect()) => QuantKind::Q5K,
            GgmlDType::Q6K if kquant::accelerated(Backend::detect()) => QuantKind::Q6K,
            _ => return Ok(None),
        };
        if !q.device().is_cpu() {
            return Ok(None);
        }
        let (n, k) = q.shape().dims2().map_err(|e| Error::Tensor { op: "QMatrix::from_qtensor".into(), source: e })?;
        let data = q.data().map_err(|e| Error::Tensor { op: "QMatrix::from_qtensor".into(), source: e })?;
        Self::from_ggml(kind, n, k, &data).map(Some)
    }

    /// A dense f32 `(n, k)` CPU weight stored as BF16 or F16 when every value converts to it
    /// exactly (a GGUF F16/BF16 tensor, or a 16-bit HF checkpoint, after the loaders widened it
    /// to f32), so the matmul streams half the bytes and computes the same products; `None`
    /// when no 16-bit type holds it exactly, or for shapes and devices this module does not run.
    pub fn from_f32_lossless(w: &Tensor) -> Result<Option<Self>> {
        let op = || "QMatrix::from_f32_lossless".to_string();
        let Ok((n, k)) = w.dims2() else { return Ok(None) };
        if !w.device().is_cpu() || w.dtype() != DType::F32 || k == 0 || !k.is_multiple_of(QK) {
            return Ok(None);
        }
        let w = w.contiguous().map_err(|e| Error::Tensor { op: op(), source: e })?;
        let (storage, layout) = w.storage_and_layout();
        let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
            return Ok(None);
        };
        let vals = &cpu.as_slice::<f32>().map_err(|e| Error::Tensor { op: op(), source: e })?[start..end];
        let Some((kind, bits)) = lossless_16bit(vals) else { return Ok(None) };
        let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        Self::from_ggml(kind, n, k, &bytes).map(Some)
    }

    /// One matrix whose outputs are `parts`' outputs one after another (`[q | k | v]`,
    /// `[gate | up]`): their row tiles concatenated, so a decode step quantizes the input once
    /// and runs one pool dispatch instead of one per part. `None` unless the parts share kind,
    /// `k` and backend and every part but the last has a whole number of 16-row tiles.
    pub fn concat_rows(parts: &[&QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        let same = parts.iter().all(|p| p.kind() == first.kind() && p.k == first.k && p.backend == first.backend);
        let whole = parts[..parts.len() - 1].iter().all(|p| p.n.is_multiple_of(TILE_ROWS));
        if !same || !whole {
            return None;
        }
        let tiles: Vec<&Tiles> = parts.iter().map(|p| &p.tiles).collect();
        Some(Self {
            n: parts.iter().map(|p| p.n).sum(),
            k: first.k,
            tiles: Tiles::concat(&tiles),
            backend: first.backend,
            #[cfg(target_arch = "x86_64")]
            wide: parts
                .iter()
                .map(|p| p.wide.as_ref())
                .collect::<Option<Vec<_>>>()
                .and_then(|w| amx::WideTiles::concat(&w)),
        })
    }

    /// The same matrix computed with `backend`; an error if this CPU lacks it.
    pub fn with_backend(mut self, backend: Backend) -> Result<Self> {
        if !Backend::available().contains(&backend) {
            return Err(kernel_error(format!("{self:?}"), format!("this CPU cannot run the {backend:?} backend")));
        }
        self.backend = backend;
        #[cfg(target_arch = "x86_64")]
        if backend != Backend::Amx {
            self.wide = None;
        }
        Ok(self)
    }

    pub fn kind(&self) -> QuantKind {
        self.tiles.kind()
    }

    /// Dense 16-bit float weights rather than quantized blocks.
    pub fn is_dense(&self) -> bool {
        self.kind().is_dense()
    }

    /// (n, k): output and input features.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `y (m, n) = x (m, k) · Wᵀ`, all row-major.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
        if y.len() != m * self.n {
            return Err(kernel_error(
                format!("{self:?} matmul"),
                format!("y has {} values, expected {} for m = {m}", y.len(), m * self.n),
            ));
        }
        self.matmul_into(x, m, Out { ptr: y.as_mut_ptr(), ld: self.n, len: y.len() })
    }

    /// [`QMatrix::matmul`] into `y`, which may be uninitialised memory of `m · n` f32s: every
    /// element is written exactly once.
    fn matmul_into(&self, x: &[f32], m: usize, y: Out) -> Result<()> {
        if x.len() != m * self.k {
            return Err(kernel_error(
                format!("{self:?} matmul"),
                format!("x has {} values, expected {} for m = {m}", x.len(), m * self.k),
            ));
        }
        if self.kind().is_dense() {
            self.run(&Acts::Dense(x), m, y);
            return Ok(());
        }
        thread_local! {
            // Reused across calls: quantized activations are ~k bytes per row.
            static ACTS: RefCell<QuantRows> = RefCell::new(QuantRows::default());
            static OFFSETS: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
        }
        ACTS.with(|acts| {
            let mut acts = acts.borrow_mut();
            #[cfg(target_arch = "x86_64")]
            if let Some((tiles, ranges)) = self.wide.as_ref().zip(prompt_rows(m)) {
                return self.run_wide(x, m, y, &mut acts, tiles, &ranges);
            }
            acts.quantize(x, m, self.k, self.kind().sum_through_f16());
            if self.kind().is_kquant() {
                OFFSETS.with(|offsets| {
                    let mut offsets = offsets.borrow_mut();
                    kquant::offsets(self.kind(), &acts, &mut offsets);
                    self.run(&Acts::KQuant(&acts, &offsets), m, y);
                });
            } else {
                self.run(&Acts::Quant(&acts, None), m, y);
            }
        });
        Ok(())
    }

    /// [`QMatrix::matmul_into`] with `prompt` rows through the bfloat16 tiles: those rows are
    /// rounded to bfloat16, the others quantized as usual (all of them only if any remain).
    #[cfg(target_arch = "x86_64")]
    fn run_wide(
        &self,
        x: &[f32],
        m: usize,
        y: Out,
        acts: &mut QuantRows,
        tiles: &amx::WideTiles,
        prompt: &[Range<usize>],
    ) {
        thread_local! {
            static X16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
        }
        X16.with(|x16| {
            let mut x16 = x16.borrow_mut();
            x16.resize(m * self.k, 0);
            for r in prompt {
                let span = r.start * self.k..r.end * self.k;
                // SAFETY: `wide` exists only where `amx::wide_available`, which implies AVX-512BW.
                unsafe { amx::to_bf16(&x[span.clone()], &mut x16[span]) };
            }
            let covered: usize = prompt.iter().map(|r| r.len()).sum();
            if covered < m {
                acts.quantize(x, m, self.k, self.kind().sum_through_f16());
            }
            self.run(&Acts::Quant(acts, Some(Wide { x: &x16, rows: prompt, tiles })), m, y);
        });
    }

    /// `x (.., k) → (.., n)` for a CPU tensor of any float dtype (computed in f32).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let op = || format!("{self:?} forward");
        let dims = x.dims();
        if dims.last() != Some(&self.k) || !x.device().is_cpu() {
            return Err(kernel_error(op(), format!("input of shape {dims:?} on {:?}", x.device().location())));
        }
        let m = x.elem_count() / self.k;
        let x32 =
            x.to_dtype(DType::F32).and_then(|t| t.contiguous()).map_err(|e| Error::Tensor { op: op(), source: e })?;
        // Not zeroed: a memset of every matmul output was 3.5% of a batched decode step.
        let mut y = Vec::<f32>::with_capacity(m * self.n);
        {
            let (storage, layout) = x32.storage_and_layout();
            let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
                return Err(kernel_error(op(), "input is not a contiguous CPU tensor".into()));
            };
            let xs = cpu.as_slice::<f32>().map_err(|e| Error::Tensor { op: op(), source: e })?;
            self.matmul_into(&xs[start..end], m, Out { ptr: y.as_mut_ptr(), ld: self.n, len: m * self.n })?;
        }
        // SAFETY: `matmul_into` returned Ok, so it wrote all `m · n` elements (each (row, column)
        // by exactly one tile call; the tiles cover every column of every row).
        unsafe { y.set_len(m * self.n) };
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("dims checked non-empty above") = self.n;
        Tensor::from_vec(y, shape, x.device())
            .and_then(|y| y.to_dtype(x.dtype()))
            .map_err(|e| Error::Tensor { op: op(), source: e })
    }

    fn run(&self, acts: &Acts, m: usize, y: Out) {
        let n_tiles = self.tiles.n_tiles();
        let pool = Pool::global();
        let threads = if m * self.n * self.k < PARALLEL_MIN_MACS { 1 } else { pool.threads() };
        // ~8 units per thread: small enough for the cursor to balance a late-waking helper.
        // The bfloat16 tiles go two row tiles at a time, so their units hold pairs.
        let per_unit = n_tiles.div_ceil(threads * 8).max(1);
        let per_unit = if matches!(acts, Acts::Quant(_, Some(_))) { per_unit.next_multiple_of(2) } else { per_unit };
        let n_units = n_tiles.div_ceil(per_unit);
        let unit = |u: usize| {
            let tiles = u * per_unit..n_tiles.min((u + 1) * per_unit);
            for r0 in (0..m).step_by(ROW_CHUNK) {
                for t in tiles.clone().step_by(2) {
                    self.tiles(t..tiles.end.min(t + 2), acts, r0..m.min(r0 + ROW_CHUNK), y);
                }
            }
        };
        if threads == 1 {
            (0..n_units).for_each(unit);
        } else {
            pool.run(n_units, m <= LINGER_MAX_ROWS, &unit);
        }
    }

    /// Output columns `16t..16t + 16` (clipped to `n`) for activation `rows`, for each row tile
    /// `t` of `ts` (one or two).
    fn tiles(&self, ts: Range<usize>, acts: &Acts, rows: Range<usize>, y: Out) {
        #[cfg(target_arch = "x86_64")]
        if let Acts::Quant(q, Some(wide)) = acts {
            // Prompt rows through the bfloat16 tiles, both row tiles at once; the rows between
            // them as usual.
            let (col0, valid) = (ts.start * TILE_ROWS, (ts.len() * TILE_ROWS).min(self.n - ts.start * TILE_ROWS));
            let (w0, w1) = (wide.tiles.row_tile(ts.start), wide.tiles.row_tile(ts.end - 1));
            let quant = |rows: Range<usize>| {
                for t in ts.clone() {
                    self.tile_quant(t, q, rows.clone(), y);
                }
            };
            let mut at = rows.start;
            for r in wide.rows {
                let (s, e) = (r.start.max(at), r.end.min(rows.end));
                if s >= e {
                    continue;
                }
                if at < s {
                    quant(at..s);
                }
                // SAFETY: `wide` exists only where `amx::wide_available`; `x` holds rows s..e;
                // this unit owns both row tiles' columns.
                unsafe { amx::tile_wide(w0, w1, wide.x, self.k, s..e, y, col0, valid) };
                at = e;
            }
            if at < rows.end {
                quant(at..rows.end);
            }
            return;
        }
        for t in ts {
            self.tile(t, acts, rows.clone(), y);
        }
    }

    /// Output columns `16t..16t + 16` (clipped to `n`) for activation `rows`.
    fn tile(&self, t: usize, acts: &Acts, rows: Range<usize>, y: Out) {
        let (kind, w) = (self.kind(), self.tiles.row_tile(t));
        let (col0, valid) = (t * TILE_ROWS, TILE_ROWS.min(self.n - t * TILE_ROWS));
        match acts {
            Acts::Dense(x) => dense::tile(self.backend, kind, w, x, self.k, rows, y, col0, valid),
            Acts::KQuant(acts, offsets) => kquant::tile(self.backend, kind, w, acts, offsets, rows, y, col0, valid),
            Acts::Quant(acts, _) => self.tile_quant(t, acts, rows, y),
        }
    }

    /// [`QMatrix::tile`] for the 32-weight block kinds, from quantized activations.
    fn tile_quant(&self, t: usize, acts: &QuantRows, rows: Range<usize>, y: Out) {
        let (kind, w) = (self.kind(), self.tiles.row_tile(t));
        let (col0, valid) = (t * TILE_ROWS, TILE_ROWS.min(self.n - t * TILE_ROWS));
        match self.backend {
            // SAFETY: `with_backend`/`detect` admit only backends this CPU supports.
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512Vnni => unsafe { avx512::tile(kind, w, acts, rows, y, col0, valid) },
            #[cfg(target_arch = "x86_64")]
            Backend::Amx => unsafe { amx::tile(kind, w, acts, rows, y, col0, valid) },
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => unsafe { avx2::tile(kind, w, acts, rows, y, col0, valid) },
            _ => scalar::tile(kind, w, acts, rows, y, col0, valid),
        }
    }
}

/// What the tiles multiply: quantized activation rows, or (dense kinds) the f32 rows themselves.
enum Acts<'a> {
    /// With the bfloat16 rows of the prompt, where the matrix has bfloat16 tiles.
    Quant(&'a QuantRows, Option<Wide<'a>>),
    /// k-quant activations, with their per-16 offset sums (`kquant::offsets`).
    KQuant(&'a QuantRows, &'a [i32]),
    Dense(&'a [f32]),
}

/// Prompt rows in bfloat16, for the matrix's bfloat16 tiles.
struct Wide<'a> {
    /// (m, k), filled in `rows`.
    x: &'a [u16],
    /// Sorted, disjoint.
    rows: &'a [Range<usize>],
    #[cfg(target_arch = "x86_64")]
    tiles: &'a amx::WideTiles,
}

thread_local! {
    /// The current forward pass's prompt rows on this thread: `(rows in the batch, ranges)`.
    static PROMPT_ROWS: RefCell<Option<(usize, Vec<Range<usize>>)>> = const { RefCell::new(None) };
}

/// Runs `f` with `rows` (sorted, disjoint ranges of a batch of `total` token rows) marked as
/// prompt tokens on this thread: a matmul over exactly `total` rows inside `f` may compute those
/// rows through bfloat16 tiles (AMX), which is faster for prefill but rounds differently from the
/// quantized path that generated tokens take. Marking rows by what their token is, rather than
/// by the size of the batch, keeps each token's numbers independent of the rows beside it.
pub fn with_prompt_rows<R>(total: usize, rows: Vec<Range<usize>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(usize, Vec<Range<usize>>)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            PROMPT_ROWS.with(|p| *p.borrow_mut() = prev);
        }
    }
    let _restore = Restore(PROMPT_ROWS.with(|p| p.replace(Some((total, rows)))));
    f()
}

/// Runs `f` over rows `picked` (ascending) of the marked batch of `total` rows, gathered into a
/// matrix of `picked.len()` rows (an expert's tokens, the rows that get logits): each keeps its
/// token's mark ([`with_prompt_rows`]). Nothing is marked inside `f` if `total` is not the
/// marked batch.
pub fn with_picked_rows<R>(total: usize, picked: &[u32], f: impl FnOnce() -> R) -> R {
    let marked = PROMPT_ROWS.with(|p| p.borrow().as_ref().filter(|(t, _)| *t == total).map(|(_, r)| r.clone()));
    let mut rows: Vec<Range<usize>> = Vec::new();
    for (j, &row) in picked.iter().enumerate() {
        if marked.as_ref().is_some_and(|m| m.iter().any(|r| r.contains(&(row as usize)))) {
            match rows.last_mut() {
                Some(r) if r.end == j => r.end = j + 1,
                _ => rows.push(j..j + 1),
            }
        }
    }
    with_prompt_rows(picked.len(), rows, f)
}

/// The prompt rows of a matmul over `m` rows, if it is over the marked batch and any are marked.
#[cfg(target_arch = "x86_64")]
fn prompt_rows(m: usize) -> Option<Vec<Range<usize>>> {
    PROMPT_ROWS.with(|p| p.borrow().as_ref().filter(|(t, r)| *t == m && !r.is_empty()).map(|(_, r)| r.clone()))
}

thread_local! {
    /// Set inside [`without_prompt_tiles`].
    static NO_WIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (which loads weights) so that the matrices it packs get no bfloat16 prompt tiles:
/// for a matrix that only ever sees a few rows at once, such as the LM head, where streaming 2
/// bytes a weight costs more than the quantized path.
pub fn without_prompt_tiles<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_WIDE.set(self.0);
        }
    }
    let _restore = Restore(NO_WIDE.replace(true));
    f()
}

/// The bfloat16 tiles of a 32-weight block matrix, where the AMX backend runs it and the budget
/// ([`amx::WIDE_BUDGET`]) allows; `None` otherwise.
#[cfg(target_arch = "x86_64")]
fn wide_tiles(kind: QuantKind, backend: Backend, n: usize, k: usize, data: &[u8]) -> Option<amx::WideTiles> {
    let blocks =
        matches!(kind, QuantKind::Q4_0 | QuantKind::Q4_1 | QuantKind::Q5_0 | QuantKind::Q5_1 | QuantKind::Q8_0);
    if !blocks || backend != Backend::Amx || !amx::wide_available() || NO_WIDE.get() {
        return None;
    }
    let (kb, bb) = (k / QK, kind.block_bytes());
    amx::WideTiles::pack(n, k, &|r, out| {
        for (b, o) in out.chunks_exact_mut(QK).enumerate() {
            layout::dequantize_block(kind, &data[(r * kb + b) * bb..][..bb], o);
        }
    })
}

/// The values as raw BF16 or F16 bits, if one of them represents every value exactly (BF16 is
/// tried first: its test is a bit mask, and it fails at the first value of an F16 tensor).
fn lossless_16bit(vals: &[f32]) -> Option<(QuantKind, Vec<u16>)> {
    use half::slice::HalfFloatSliceExt;
    if vals.iter().all(|v| v.to_bits() & 0xFFFF == 0) {
        return Some((QuantKind::BF16, vals.iter().map(|v| (v.to_bits() >> 16) as u16).collect()));
    }
    let mut h = vec![half::f16::ZERO; vals.len()];
    let mut back = vec![0f32; 4096];
    for (hs, xs) in h.chunks_mut(4096).zip(vals.chunks(4096)) {
        hs.convert_from_f32_slice(xs);
        hs.convert_to_f32_slice(&mut back[..hs.len()]);
        // Bitwise: -0.0 must come back as -0.0.
        if back[..hs.len()].iter().zip(xs).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return None;
        }
    }
    Some((QuantKind::F16, h.iter().map(|v| v.to_bits()).collect()))
}

fn kernel_error(op: String, msg: String) -> Error {
    Error::Tensor { op, source: candle_core::Error::Msg(msg) }
}

/// The output matrix, shared by the threads of one matmul. Each (row, column) is written by
/// exactly one tile call, which is what makes handing out this raw pointer sound.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    ptr: *mut f32,
    ld: usize,
    len: usize,
}

// SAFETY: see the type's invariant; writes go to disjoint elements.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Safety: the caller is the only writer of row `i`, columns `col..col + 16` (clipped).
    pub(crate) unsafe fn row_ptr(&self, i: usize, col: usize) -> *mut f32 {
        debug_assert!(i * self.ld + col < self.len);
        self.ptr.add(i * self.ld + col)
    }

    /// Stores a register block's results: `acc[r]` (16 columns) into row `i0 + r` at `col0`, its
    /// first `valid` lanes only (a tile's last columns may lie past the matrix).
    ///
    /// Safety: AVX-512F is available, and the caller is the only writer of rows
    /// `i0..i0 + acc.len()`, columns `col0..col0 + valid`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn store_tiles(&self, acc: &[std::arch::x86_64::__m512], i0: usize, col0: usize, valid: usize) {
        use std::arch::x86_64::*;
        let mask: __mmask16 = if valid >= TILE_ROWS { !0 } else { (1u16 << valid) - 1 };
        for (r, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(self.row_ptr(i0 + r, col0), mask, *a);
        }
    }

    /// Safety: as for [`Out::row_ptr`].
    pub(crate) unsafe fn write_row(&self, i: usize, col: usize, vals: &[f32]) {
        debug_assert!(i * self.ld + col + vals.len() <= self.len);
        std::ptr::copy_nonoverlapping(vals.as_ptr(), self.ptr.add(i * self.ld + col), vals.len());
    }
}

//! Paged attention on the CPU: every query row of a batch attends to its own sequence's keys and
//! values, read block by block through that sequence's block table, with an online softmax
//! (flash-attention style), so nothing is gathered into a contiguous copy.
//!
//! Block storage layout, per layer (see `nn::kv_cache`):
//! - K: `[block][kv_head][dim][offset]`: transposed inside a block, so the scores of one query row
//!   against 16 keys are 16-lane FMAs over `dim` (no horizontal sums).
//! - V: `[block][kv_head][offset][dim]`: `acc += p_j · v_j` runs along `dim`.
//!
//! Work units are (sequence, kv head, tile of up to [`TILE_TOKENS`] query tokens); a unit
//! computes every query head of the kv head's GQA group for those tokens, so each K/V block
//! is converted (f16 → f32) and read from L1 once per unit, not once per head. Each query row
//! walks its keys in the same order whatever the batch, tile or chunking around it, which is
//! what makes batched results bitwise equal to running a sequence alone.
//!
//! Score order matches the model's reference: `q·k · scale`, then the ALiBi bias, then the
//! softcap, then the causal/sliding-window mask.

use std::cell::RefCell;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::math::exp_neg;
use super::pool::Pool;
#[cfg(target_arch = "x86_64")]
use super::softmax::{probs_avx2, probs_avx512};
use super::softmax::{probs_scalar, LANES};
use crate::{Error, Result};

/// `$f::<N>(args…)` over rows `0..$rows` in groups of up to four, `$r0` the group's first row
/// (each call returns its N): fixed row counts, so each group's row loop unrolls into straight
/// FMAs.
macro_rules! by_four {
    ($rows:expr, $r0:ident, $f:ident($($a:expr),*)) => {{
        let rows = $rows;
        let mut $r0 = 0;
        while $r0 < rows {
            $r0 += match rows - $r0 {
                1 => $f::<1>($($a),*),
                2 => $f::<2>($($a),*),
                3 => $f::<3>($($a),*),
                _ => $f::<4>($($a),*),
            };
        }
    }};
}

/// Query tokens per work unit: enough rows to reuse each converted K/V block, few enough that
/// a decode batch still splits into one unit per (sequence, kv head).
pub const TILE_TOKENS: usize = 8;
/// Keys per online-softmax step. A row's running max and sum are updated, and its accumulator
/// rescaled, once per span rather than once per 16-key block: per block, that bookkeeping cost
/// as much as the block's dot products. Spans are aligned to absolute positions (`SPAN_KEYS`
/// rounded down to whole blocks), so a row's arithmetic never depends on the batch or tile.
const SPAN_KEYS: usize = 64;

/// One layer's cached keys or values.
#[derive(Clone, Copy)]
pub enum KvSlice<'a> {
    F32(KvMem<'a, f32>),
    F16(KvMem<'a, f16>),
    /// int8 quants with one scale per head vector, at `[block][kv_head][offset]` (see
    /// `nn::kv_cache`).
    I8 {
        q: KvMem<'a, i8>,
        scale: KvMem<'a, f16>,
    },
}

/// A layer's values, read a block at a time. Not a slice of the whole layer: while a step
/// runs split by sequence over the cores (`Model::forward_split`), other threads write other
/// blocks of the same layer, so nothing may hold a reference over all of it. [`KvMem::get`]
/// hands out a slice of just the values read, which nobody writes meanwhile.
#[derive(Clone, Copy)]
pub struct KvMem<'a, T> {
    ptr: *const T,
    len: usize,
    _values: std::marker::PhantomData<&'a [T]>,
}

// SAFETY: a `KvMem` only reads, like the `&[T]` it stands for.
unsafe impl<T: Sync> Send for KvMem<'_, T> {}
unsafe impl<T: Sync> Sync for KvMem<'_, T> {}

impl<'a, T> From<&'a [T]> for KvMem<'a, T> {
    fn from(s: &'a [T]) -> Self {
        Self { ptr: s.as_ptr(), len: s.len(), _values: std::marker::PhantomData }
    }
}

impl<'a, T> KvMem<'a, T> {
    /// Safety: `len` values at `ptr` stay allocated for `'a`, and nobody writes a value that
    /// [`KvMem::get`] hands out while that slice lives.
    pub(crate) unsafe fn from_raw(ptr: *const T, len: usize) -> Self {
        Self { ptr, len, _values: std::marker::PhantomData }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_ptr(&self) -> *const T {
        self.ptr
    }

    /// `n` values from `at`. Out of bounds panics, as slice indexing does (`paged_attention`
    /// checks its block tables against the storage first).
    fn get(&self, at: usize, n: usize) -> &'a [T] {
        assert!(at <= self.len && n <= self.len - at, "kv values {at}..{} of {}", at + n, self.len);
        // SAFETY: in bounds; see `from_raw` / `From<&[T]>` for the rest.
        unsafe { std::slice::from_raw_parts(self.ptr.add(at), n) }
    }
}

impl KvSlice<'_> {
    fn len(&self) -> usize {
        match self {
            KvSlice::F32(s) => s.len(),
            KvSlice::F16(s) => s.len(),
            KvSlice::I8 { q, .. } => q.len(),
        }
    }

    /// Asks for `len` values from `at` to be brought into L2 (a hint: no effect where the
    /// target has no prefetch instruction, and never a fault, even out of bounds). L2 rather
    /// than L1: a block's K and V are 64 lines, more than L1 keeps misses in flight for, and a
    /// step's keys and values stream from DRAM; asked into L1 (`T0`) they took ~25% longer
    /// on Zen 4 (`bench/attention_decode.rs`, bench/RESULTS.md 2026-12-02).
    fn prefetch(&self, at: isize, len: usize) {
        let (base, bytes) = match self {
            KvSlice::F32(s) => (s.as_ptr().cast::<u8>().wrapping_offset(at * 4), len * 4),
            KvSlice::F16(s) => (s.as_ptr().cast::<u8>().wrapping_offset(at * 2), len * 2),
            KvSlice::I8 { q, .. } => (q.as_ptr().cast::<u8>().wrapping_offset(at), len),
        };
        #[cfg(target_arch = "x86_64")]
        for off in (0..bytes).step_by(64) {
            // SAFETY: prefetches never fault, whatever the address.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    base.wrapping_add(off).cast::<i8>(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (base, bytes);
    }

    /// Copies one block's `out.len()` values from `at` as f32. `scales_at` is the block's first
    /// scale; `transposed` says the block is `[dim][offset]` (keys) rather than `[offset][dim]`.
    fn read(&self, at: usize, out: &mut [f32], scales_at: usize, bs: usize, transposed: bool) {
        match self {
            KvSlice::F32(s) => out.copy_from_slice(s.get(at, out.len())),
            KvSlice::F16(s) => s.get(at, out.len()).convert_to_f32_slice(out),
            KvSlice::I8 { q, scale } => {
                let (q, scale) = (q.get(at, out.len()), scale.get(scales_at, bs));
                let dim = out.len() / bs;
                for (i, (o, &x)) in out.iter_mut().zip(q).enumerate() {
                    let j = if transposed { i % bs } else { i / dim };
                    *o = x as f32 * scale[j].to_f32();
                }
            }
        }
    }
}

/// One layer of the block pool, laid out as described in the module docs.
pub struct KvBlocks<'a> {
    pub k: KvSlice<'a>,
    pub v: KvSlice<'a>,
    pub block_size: usize,
    pub kv_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
}

/// One sequence's query rows: rows `row..row + len` of `q` are positions `start..start + len`.
pub struct AttnSeq<'a> {
    pub row: usize,
    pub len: usize,
    pub start: usize,
    pub block_table: &'a [u32],
}

pub struct AttnParams<'a> {
    pub heads: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
    /// Keys strictly older than `window` positions are masked.
    pub window: Option<usize>,
    /// ALiBi slope per query head: `score += slope · key_position`.
    pub alibi: Option<&'a [f32]>,
}

/// `out (rows, heads, v_dim) = softmax(q kᵀ) v` for `q (rows, heads, k_dim)`, causal within each
/// sequence. Rows not covered by any sequence are left untouched.
pub fn paged_attention(q: &[f32], seqs: &[AttnSeq], kv: &KvBlocks, p: &AttnParams, out: &mut [f32]) -> Result<()> {
    let (h, kvh, dk, dv, bs) = (p.heads, kv.kv_heads, kv.k_dim, kv.v_dim, kv.block_size);
    let err = |m: String| Err(Error::InvalidInput(format!("paged attention: {m}")));
    if kvh == 0 || h % kvh != 0 || bs == 0 {
        return err(format!("{h} query heads, {kvh} kv heads, block size {bs}"));
    }
    let rows = q.len() / (h * dk).max(1);
    if q.len() != rows * h * dk || out.len() != rows * h * dv {
        return err(format!("q has {} values, out {}, for {h} heads of {dk}/{dv}", q.len(), out.len()));
    }
    let block_k = kvh * dk * bs;
    let num_blocks = kv.k.len() / block_k.max(1);
    if kv.k.len() != num_blocks * block_k || kv.v.len() != num_blocks * kvh * dv * bs {
        return err(format!("K/V storage of {} / {} values is not whole blocks", kv.k.len(), kv.v.len()));
    }
    if p.alibi.is_some_and(|a| a.len() != h) {
        return err(format!("{} ALiBi slopes for {h} heads", p.alibi.map_or(0, <[f32]>::len)));
    }
    let mut units = Vec::new();
    for (si, s) in seqs.iter().enumerate() {
        let needed = (s.start + s.len).div_ceil(bs);
        if s.row + s.len > rows || s.block_table.len() < needed {
            return err(format!(
                "sequence {si}: rows {}..{} of {rows}, block table of {} blocks for {} tokens",
                s.row,
                s.row + s.len,
                s.block_table.len(),
                s.start + s.len
            ));
        }
        if let Some(&b) = s.block_table[..needed].iter().find(|&&b| b as usize >= num_blocks) {
            return err(format!("sequence {si}: block {b} outside a pool of {num_blocks}"));
        }
        for g in 0..kvh {
            for t in (0..s.len).step_by(TILE_TOKENS) {
                units.push(Unit { seq: si, kv_head: g, tile: t, tile_len: TILE_TOKENS.min(s.len - t) });
            }
        }
    }
    let out_ptr = OutPtr(out.as_mut_ptr());
    let run = |u: usize| {
        let unit = &units[u];
        // SAFETY: units write disjoint (row, head) ranges of `out`, which outlives the pool job.
        unsafe { unit_attention(unit, q, &seqs[unit.seq], kv, p, &out_ptr) };
    };
    Pool::global().run(units.len(), true, &run);
    Ok(())
}

struct Unit {
    seq: usize,
    kv_head: usize,
    tile: usize,
    tile_len: usize,
}

struct OutPtr(*mut f32);
// SAFETY: each unit writes only its own rows/heads (see `paged_attention`).
unsafe impl Sync for OutPtr {}

#[derive(Default)]
struct Scratch {
    k: Vec<f32>,
    v: Vec<f32>,
    q: Vec<f32>,
    acc: Vec<f32>,
    /// (running max, running sum) per row.
    ml: Vec<(f32, f32)>,
    scores: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// # Safety
/// No other thread writes the rows `seq.row + unit.tile ..` of heads in `unit.kv_head`'s group.
unsafe fn unit_attention(unit: &Unit, q: &[f32], seq: &AttnSeq, kv: &KvBlocks, p: &AttnParams, out: &OutPtr) {
    // The scratch leaves the thread-local for the call: code inside a `with` closure would be
    // compiled without the AVX-512/FMA features below (every `mul_add` a libm call).
    let mut s = SCRATCH.with(|c| std::mem::take(&mut *c.borrow_mut()));
    #[cfg(target_arch = "x86_64")]
    let done = if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected; the rest is forwarded from the caller.
        unsafe { unit_avx512(&mut s, unit, q, seq, kv, p, out) };
        true
    } else {
        false
    };
    #[cfg(target_arch = "x86_64")]
    let done = done || {
        if super::math::fma_available() {
            // SAFETY: the features were just detected; the rest is forwarded from the caller.
            unsafe { unit_fma(&mut s, unit, q, seq, kv, p, out) };
            true
        } else {
            false
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        // SAFETY: forwarded from the caller.
        unsafe { unit_body::<false, false>(&mut s, unit, q, seq, kv, p, out) };
    }
    SCRATCH.with(|c| *c.borrow_mut() = s);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma,f16c")]
unsafe fn unit_avx512(
    s: &mut Scratch,
    unit: &Unit,
    q: &[f32],
    seq: &AttnSeq,
    kv: &KvBlocks,
    p: &AttnParams,
    out: &OutPtr,
) {
    // SAFETY: forwarded from the caller; AVX-512F/F16C are enabled here.
    unsafe { unit_body::<true, false>(s, unit, q, seq, kv, p, out) }
}

/// The portable body compiled with AVX2/FMA/F16C: `mul_add` one instruction (not a libm
/// call), the 16-lane loops vectorised, the same values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unit_fma(
    s: &mut Scratch,
    unit: &Unit,
    q: &[f32],
    seq: &AttnSeq,
    kv: &KvBlocks,
    p: &AttnParams,
    out: &OutPtr,
) {
    // SAFETY: forwarded from the caller.
    unsafe { unit_body::<false, true>(s, unit, q, seq, kv, p, out) }
}

/// One work unit. Plain loops only (no closures), so that every line is compiled with the
/// caller's target features when inlined into [`unit_avx512`] / [`unit_fma`]. With `SIMD` (AVX-512F + F16C
/// available) an f16 cache is read in registers; otherwise blocks are converted into scratch.
/// f32 blocks are read in place. All paths compute the same values.
#[inline(always)]
unsafe fn unit_body<const SIMD: bool, const AVX2: bool>(
    s: &mut Scratch,
    unit: &Unit,
    q: &[f32],
    seq: &AttnSeq,
    kv: &KvBlocks,
    p: &AttnParams,
    out: &OutPtr,
) {
    let (h, kvh, dk, dv, bs) = (p.heads, kv.kv_heads, kv.k_dim, kv.v_dim, kv.block_size);
    let rep = h / kvh;
    let nrows = unit.tile_len * rep;
    s.k.resize(dk * bs, 0.0);
    s.v.resize(bs * dv, 0.0);
    s.q.resize(nrows * dk, 0.0);
    s.acc.clear();
    s.acc.resize(nrows * dv, 0.0);
    s.ml.clear();
    s.ml.resize(nrows, (f32::NEG_INFINITY, 0.0));
    // Online softmax over spans of keys (see [`SPAN_KEYS`]): scores for a whole span, then one
    // max/exp/sum and one accumulator rescale per row, then `acc += p · v` block by block.
    let span_blocks = (SPAN_KEYS / bs).max(1);
    let stride = (span_blocks * bs).next_multiple_of(LANES);
    s.scores.resize(nrows * stride, 0.0);
    let in_registers = (SIMD || AVX2) && cfg!(target_arch = "x86_64") && bs % LANES == 0 && dv % LANES == 0;
    // Values of the span's blocks converted to f32 when they cannot be read in place.
    let f32_direct = matches!((kv.k, kv.v), (KvSlice::F32(_), KvSlice::F32(_)));
    let f16_direct = in_registers && matches!((kv.k, kv.v), (KvSlice::F16(_), KvSlice::F16(_)));
    if !f32_direct && !f16_direct {
        s.v.resize(span_blocks * bs * dv, 0.0);
    }
    // Row r = i * rep + g: token tile + i, query head kv_head * rep + g (the group's heads are
    // consecutive in `q`, so a token's rows are one slice).
    let round_q = matches!(kv.k, KvSlice::F16(_));
    for i in 0..unit.tile_len {
        let src = &q[((seq.row + unit.tile + i) * h + unit.kv_head * rep) * dk..][..rep * dk];
        let dst = &mut s.q[i * rep * dk..][..rep * dk];
        if round_q {
            // Same precision on both sides of q·k as the f16 cache holds (llama.cpp's CPU
            // attention dots f16 q with f16 k).
            // SAFETY: SIMD means AVX-512F/F16C were detected (see `unit_attention`).
            unsafe { round_to_f16::<SIMD, AVX2>(src, dst) };
        } else {
            dst.copy_from_slice(src);
        }
    }
    let first_pos = seq.start + unit.tile;
    let last_pos = first_pos + unit.tile_len - 1;
    let lo = p.window.map_or(0, |w| (first_pos + 1).saturating_sub(w));
    let Scratch { k: k_buf, v: v_buf, q: q_rows, acc: acc_rows, ml, scores } = s;
    let last_block = last_pos / bs;
    let head_at = |b: usize| seq.block_table[b] as usize * kvh + unit.kv_head;
    let mut b0 = lo / bs;
    // Blocks lie wherever the pool put them, so the hardware prefetcher cannot guess the next
    // one: two blocks are kept asked for ahead of the one being read, from the unit's first.
    let prefetch_block = |b: usize| {
        if b <= last_block {
            let at = head_at(b) as isize;
            kv.k.prefetch(at * (dk * bs) as isize, dk * bs);
            kv.v.prefetch(at * (bs * dv) as isize, bs * dv);
        }
    };
    prefetch_block(b0);
    prefetch_block(b0 + 1);
    while b0 <= last_block {
        // The span holding block b0: blocks sb.. of a multiple of `span_blocks`, cut to the
        // blocks this unit needs (keys before b0 are masked for every row of the unit).
        let sb = b0 / span_blocks * span_blocks;
        let b1 = (sb + span_blocks).min(last_block + 1);
        let key0 = sb * bs;
        for b in b0..b1 {
            let at = head_at(b);
            prefetch_block(b + 2);
            let sc = &mut scores[(b - sb) * bs..];
            match kv.k {
                KvSlice::F32(k) => block_scores(q_rows, dk, k.get(at * dk * bs, dk * bs), bs, stride, sc),
                // SAFETY: `f16_direct` implies AVX-512F/F16C (SIMD) or AVX2/FMA/F16C, and
                // bs % 16 == 0.
                #[cfg(target_arch = "x86_64")]
                KvSlice::F16(k) if f16_direct => unsafe {
                    let kt = k.get(at * dk * bs, dk * bs);
                    if SIMD {
                        block_scores_f16(q_rows, dk, kt, bs, stride, sc)
                    } else {
                        block_scores_f16_avx2(q_rows, dk, kt, bs, stride, sc)
                    }
                },
                _ => {
                    kv.k.read(at * dk * bs, k_buf, at * bs, bs, true);
                    block_scores(q_rows, dk, k_buf, bs, stride, sc);
                }
            }
            if !f32_direct && !f16_direct {
                kv.v.read(at * bs * dv, &mut v_buf[(b - sb) * bs * dv..][..bs * dv], at * bs, bs, false);
            }
        }
        for i in 0..unit.tile_len {
            let qpos = first_pos + i;
            let kmin = p.window.map_or(0, |w| (qpos + 1).saturating_sub(w)).max(b0 * bs);
            let kend = (qpos + 1).min(b1 * bs);
            if kmin >= kend {
                continue;
            }
            let (j0, j1) = (kmin - key0, kend - key0);
            let mut any = false;
            for g in 0..rep {
                let r = i * rep + g;
                let head = unit.kv_head * rep + g;
                let row = &mut scores[r * stride..][..stride];
                let (m, l) = ml[r];
                let (m_new, sum) = if SIMD && p.softcap.is_none() {
                    // SAFETY: SIMD means AVX-512F/FMA were detected (see `unit_attention`).
                    #[cfg(target_arch = "x86_64")]
                    let t = unsafe { probs_avx512(row, j0..j1, key0, p.scale, p.alibi.map(|a| a[head]), m) };
                    #[cfg(not(target_arch = "x86_64"))]
                    let t = probs_scalar(row, j0..j1, key0, p, head, m);
                    t
                } else if AVX2 && p.softcap.is_none() {
                    // SAFETY: AVX2 means AVX2/FMA were detected (see `unit_attention`).
                    #[cfg(target_arch = "x86_64")]
                    let t = unsafe { probs_avx2(row, j0..j1, key0, p.scale, p.alibi.map(|a| a[head]), m) };
                    #[cfg(not(target_arch = "x86_64"))]
                    let t = probs_scalar(row, j0..j1, key0, p, head, m);
                    t
                } else {
                    probs_scalar(row, j0..j1, key0, p, head, m)
                };
                if m_new == f32::NEG_INFINITY {
                    // Every key masked (probabilities zeroed): this row takes nothing here.
                    continue;
                }
                any = true;
                // (The correction cancels between `acc` and `l`; a 1-ulp change in it still moves
                // SmolLM2's perplexity by ~0.1%, because downstream Q8 activation quantization
                // and the f16 cache turn last-bit differences into whole quantization steps.)
                let corr = if m == f32::NEG_INFINITY { 0.0 } else { exp_neg(m - m_new) };
                if corr != 1.0 {
                    for a in acc_rows[r * dv..][..dv].iter_mut() {
                        *a *= corr;
                    }
                }
                ml[r] = (m_new, l * corr + sum);
            }
            if !any {
                continue;
            }
            // `acc += p_j · v_j`, block by block in key order (masked rows add zeros).
            for b in b0..b1 {
                let (k_lo, k_hi) = ((b - sb) * bs, (b - sb + 1) * bs);
                let (a, z) = (j0.max(k_lo), j1.min(k_hi));
                if a >= z {
                    continue;
                }
                let keys = a - k_lo..z - k_lo;
                let sc = &scores[k_lo..];
                let at = head_at(b) * bs * dv;
                #[cfg(target_arch = "x86_64")]
                if f16_direct {
                    let KvSlice::F16(v) = kv.v else { unreachable!("f16_direct checked the cache dtype") };
                    let rows = i * rep..(i + 1) * rep;
                    // SAFETY: `f16_direct` implies AVX-512F/F16C (SIMD) or AVX2/FMA/F16C, and
                    // dv % 16 == 0; the rows' scores and accumulators lie inside the scratch
                    // buffers.
                    unsafe {
                        let (acc, v) = (&mut acc_rows[rows.start * dv..rows.end * dv], v.get(at, bs * dv));
                        if SIMD {
                            pv_f16(acc, sc, rows, stride, keys, v, dv)
                        } else {
                            pv_f16_avx2(acc, sc, rows, stride, keys, v, dv)
                        }
                    };
                    continue;
                }
                let v: &[f32] = match kv.v {
                    KvSlice::F32(v) if f32_direct => v.get(at, bs * dv),
                    _ => &v_buf[(b - sb) * bs * dv..][..bs * dv],
                };
                for g in 0..rep {
                    let r = i * rep + g;
                    let acc = &mut acc_rows[r * dv..][..dv];
                    for j in keys.clone() {
                        let (pj, vj) = (sc[r * stride + j], &v[j * dv..][..dv]);
                        for d in 0..dv {
                            acc[d] = pj.mul_add(vj[d], acc[d]);
                        }
                    }
                }
            }
        }
        b0 = b1;
    }
    for i in 0..unit.tile_len {
        for g in 0..rep {
            let r = i * rep + g;
            let head = unit.kv_head * rep + g;
            let l = s.ml[r].1;
            let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
            // SAFETY: (row, head) belongs to this unit alone (see `paged_attention`).
            let dst =
                unsafe { std::slice::from_raw_parts_mut(out.0.add(((seq.row + unit.tile + i) * h + head) * dv), dv) };
            let acc = &s.acc[r * dv..][..dv];
            for d in 0..dv {
                dst[d] = acc[d] * inv;
            }
        }
    }
}

/// `dst = src` rounded to f16 and back (to nearest even, as `half` rounds), 16 values per
/// instruction with `SIMD`, 8 with `AVX2`.
///
/// # Safety
/// With `SIMD`, AVX-512F and F16C must be available; with `AVX2`, F16C.
#[inline(always)]
unsafe fn round_to_f16<const SIMD: bool, const AVX2: bool>(src: &[f32], dst: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if AVX2 && !SIMD {
        use std::arch::x86_64::*;
        while done + 8 <= src.len().min(dst.len()) {
            // SAFETY: 8 values inside both slices; F16C is the caller's promise.
            unsafe {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(done)));
                _mm256_storeu_ps(dst.as_mut_ptr().add(done), _mm256_cvtph_ps(h));
            }
            done += 8;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        use std::arch::x86_64::*;
        while done + LANES <= src.len().min(dst.len()) {
            // SAFETY: 16 values inside both slices; the features are the caller's promise.
            unsafe {
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_loadu_ps(
                    src.as_ptr().add(done),
                ));
                _mm512_storeu_ps(dst.as_mut_ptr().add(done), _mm512_cvtph_ps(h));
            }
            done += LANES;
        }
    }
    for (d, &x) in dst.iter_mut().zip(src).skip(done) {
        *d = f16::from_f32(x).to_f32();
    }
}

/// [`block_scores`] on f16 keys, converted in registers (the same values: f16 → f32 is exact,
/// and each row's FMA chain runs over `dim` in the same order).
///
/// # Safety
/// AVX-512F and F16C must be available; `bs` a multiple of 16; `kt` holds `dk * bs` values,
/// `q` whole rows of `dk`, `scores` `(rows - 1) * stride + bs` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c,fma")]
unsafe fn block_scores_f16(q: &[f32], dk: usize, kt: &[f16], bs: usize, stride: usize, scores: &mut [f32]) {
    for c in (0..bs).step_by(LANES) {
        // SAFETY: forwarded from the caller.
        unsafe { by_four!(q.len() / dk, r0, scores_f16(q, dk, kt, bs, stride, c, r0, scores)) };
    }
}

/// Scores of rows `r0..r0 + N` against keys `c..c + 16` (see [`block_scores_f16`]); returns N.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn scores_f16<const N: usize>(
    q: &[f32],
    dk: usize,
    kt: &[f16],
    bs: usize,
    stride: usize,
    c: usize,
    r0: usize,
    scores: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    debug_assert!((r0 + N) * dk <= q.len() && dk * bs <= kt.len() && (r0 + N - 1) * stride + bs <= scores.len());
    let (qp, kp) = (q.as_ptr().add(r0 * dk), kt.as_ptr().add(c));
    let mut acc = [_mm512_setzero_ps(); N];
    for d in 0..dk {
        let k = _mm512_cvtph_ps(_mm256_loadu_si256(kp.add(d * bs) as *const __m256i));
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(_mm512_set1_ps(*qp.add(i * dk + d)), k, *a);
        }
    }
    for (i, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(scores.as_mut_ptr().add((r0 + i) * stride + c), *a);
    }
    N
}

/// `acc[r] += Σ_j p[r][j] · v[j]` over keys `keys` of one block for rows `rows` (their
/// probabilities at `scores[r * stride + j]`, their accumulators the consecutive `dv`-wide rows
/// of `acc`), f16 `v` (`[offset][dim]`) converted in registers. Four rows × two 16-lane chunks
/// of accumulators stay in registers across the keys; each converted V chunk serves four rows.
///
/// # Safety
/// AVX-512F and F16C must be available; `dv` a multiple of 16; `acc` holds `rows.len() * dv`
/// values, `v` covers `keys.end * dv` and `scores` `rows.end * stride` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c,fma")]
unsafe fn pv_f16(
    acc: &mut [f32],
    scores: &[f32],
    rows: std::ops::Range<usize>,
    stride: usize,
    keys: std::ops::Range<usize>,
    v: &[f16],
    dv: usize,
) {
    let (acc, scores, row0) = (acc.as_mut_ptr(), scores.as_ptr(), rows.start);
    let at = |r0| PvRows { acc, scores, row0, r0, stride, dv };
    // SAFETY: forwarded from the caller.
    unsafe { by_four!(rows.len(), r0, pv_rows_f16(&at(r0), keys.clone(), v)) };
}

/// Where [`pv_rows_f16`] reads and writes: accumulator row `r0` (of `dv`) is score row
/// `row0 + r0` (of `stride`).
#[cfg(target_arch = "x86_64")]
struct PvRows {
    acc: *mut f32,
    scores: *const f32,
    row0: usize,
    r0: usize,
    stride: usize,
    dv: usize,
}

/// [`pv_f16`] for accumulator rows `r0..r0 + N`; returns N.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pv_rows_f16<const N: usize>(at: &PvRows, keys: std::ops::Range<usize>, v: &[f16]) -> usize {
    use std::arch::x86_64::*;
    let (dv, r0) = (at.dv, at.r0);
    for c0 in (0..dv).step_by(2 * LANES) {
        let two = c0 + LANES < dv;
        let mut a = [[_mm512_setzero_ps(); 2]; N];
        for (i, ai) in a.iter_mut().enumerate() {
            let p = at.acc.add((r0 + i) * dv + c0);
            ai[0] = _mm512_loadu_ps(p);
            if two {
                ai[1] = _mm512_loadu_ps(p.add(LANES));
            }
        }
        for j in keys.clone() {
            let vj = v.as_ptr().add(j * dv + c0);
            let v0 = _mm512_cvtph_ps(_mm256_loadu_si256(vj as *const __m256i));
            let v1 = if two { _mm512_cvtph_ps(_mm256_loadu_si256(vj.add(LANES) as *const __m256i)) } else { v0 };
            for (i, ai) in a.iter_mut().enumerate() {
                let p = _mm512_set1_ps(*at.scores.add((at.row0 + r0 + i) * at.stride + j));
                ai[0] = _mm512_fmadd_ps(p, v0, ai[0]);
                if two {
                    ai[1] = _mm512_fmadd_ps(p, v1, ai[1]);
                }
            }
        }
        for (i, ai) in a.iter().enumerate() {
            let p = at.acc.add((r0 + i) * dv + c0);
            _mm512_storeu_ps(p, ai[0]);
            if two {
                _mm512_storeu_ps(p.add(LANES), ai[1]);
            }
        }
    }
    N
}

/// [`block_scores_f16`] on AVX2: 16 keys as two 8-lane halves, up to four rows a pass, each
/// score the same FMA chain over `dim`.
///
/// # Safety
/// AVX2, FMA and F16C must be available; otherwise as [`block_scores_f16`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn block_scores_f16_avx2(q: &[f32], dk: usize, kt: &[f16], bs: usize, stride: usize, scores: &mut [f32]) {
    for c in (0..bs).step_by(LANES) {
        // SAFETY: forwarded from the caller.
        unsafe { by_four!(q.len() / dk, r0, scores_f16_avx2(q, dk, kt, bs, stride, c, r0, scores)) };
    }
}

/// Scores of rows `r0..r0 + N` against keys `c..c + 16` (see [`block_scores_f16_avx2`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn scores_f16_avx2<const N: usize>(
    q: &[f32],
    dk: usize,
    kt: &[f16],
    bs: usize,
    stride: usize,
    c: usize,
    r0: usize,
    scores: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    debug_assert!((r0 + N) * dk <= q.len() && dk * bs <= kt.len() && (r0 + N - 1) * stride + bs <= scores.len());
    let (qp, kp) = (q.as_ptr().add(r0 * dk), kt.as_ptr().add(c));
    let mut acc = [[_mm256_setzero_ps(); 2]; N];
    for d in 0..dk {
        let k0 = _mm256_cvtph_ps(_mm_loadu_si128(kp.add(d * bs) as *const __m128i));
        let k1 = _mm256_cvtph_ps(_mm_loadu_si128(kp.add(d * bs + 8) as *const __m128i));
        for (i, a) in acc.iter_mut().enumerate() {
            let qd = _mm256_set1_ps(*qp.add(i * dk + d));
            a[0] = _mm256_fmadd_ps(qd, k0, a[0]);
            a[1] = _mm256_fmadd_ps(qd, k1, a[1]);
        }
    }
    for (i, a) in acc.iter().enumerate() {
        let at = scores.as_mut_ptr().add((r0 + i) * stride + c);
        _mm256_storeu_ps(at, a[0]);
        _mm256_storeu_ps(at.add(8), a[1]);
    }
    N
}

/// [`pv_f16`] on AVX2: sixteen value dims (two 8-lane halves) × up to four rows of accumulators
/// in registers across the keys, each element the same FMA chain over the keys.
///
/// # Safety
/// AVX2, FMA and F16C must be available; otherwise as [`pv_f16`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn pv_f16_avx2(
    acc: &mut [f32],
    scores: &[f32],
    rows: std::ops::Range<usize>,
    stride: usize,
    keys: std::ops::Range<usize>,
    v: &[f16],
    dv: usize,
) {
    let (acc, scores, row0) = (acc.as_mut_ptr(), scores.as_ptr(), rows.start);
    let at = |r0| PvRows { acc, scores, row0, r0, stride, dv };
    // SAFETY: forwarded from the caller.
    unsafe { by_four!(rows.len(), r0, pv_rows_f16_avx2(&at(r0), keys.clone(), v)) };
}

/// [`pv_f16_avx2`] for accumulator rows `r0..r0 + N`; returns N.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pv_rows_f16_avx2<const N: usize>(at: &PvRows, keys: std::ops::Range<usize>, v: &[f16]) -> usize {
    use std::arch::x86_64::*;
    let (dv, r0) = (at.dv, at.r0);
    for c0 in (0..dv).step_by(LANES) {
        let mut a = [[_mm256_setzero_ps(); 2]; N];
        for (i, ai) in a.iter_mut().enumerate() {
            let p = at.acc.add((r0 + i) * dv + c0);
            ai[0] = _mm256_loadu_ps(p);
            ai[1] = _mm256_loadu_ps(p.add(8));
        }
        for j in keys.clone() {
            let vj = v.as_ptr().add(j * dv + c0);
            let v0 = _mm256_cvtph_ps(_mm_loadu_si128(vj as *const __m128i));
            let v1 = _mm256_cvtph_ps(_mm_loadu_si128(vj.add(8) as *const __m128i));
            for (i, ai) in a.iter_mut().enumerate() {
                let p = _mm256_set1_ps(*at.scores.add((at.row0 + r0 + i) * at.stride + j));
                ai[0] = _mm256_fmadd_ps(p, v0, ai[0]);
                ai[1] = _mm256_fmadd_ps(p, v1, ai[1]);
            }
        }
        for (i, ai) in a.iter().enumerate() {
            let p = at.acc.add((r0 + i) * dv + c0);
            _mm256_storeu_ps(p, ai[0]);
            _mm256_storeu_ps(p.add(8), ai[1]);
        }
    }
    N
}

/// `scores[r][j] = Σ_d q[r][d] · kt[d][j]` for every row of `q` (rows of `dk`) against a block
/// stored `[dim][offset]`; row `r`'s scores start at `r * stride`.
#[inline(always)]
fn block_scores(q: &[f32], dk: usize, kt: &[f32], bs: usize, stride: usize, scores: &mut [f32]) {
    let rows = q.len() / dk;
    for c in (0..bs).step_by(LANES) {
        let w = LANES.min(bs - c);
        for r0 in (0..rows).step_by(4) {
            let n = 4.min(rows - r0);
            let mut acc = [[0f32; LANES]; 4];
            for d in 0..dk {
                let k = &kt[d * bs + c..][..w];
                for (i, a) in acc.iter_mut().enumerate().take(n) {
                    let qd = q[(r0 + i) * dk + d];
                    for l in 0..w {
                        a[l] = qd.mul_add(k[l], a[l]);
                    }
                }
            }
            for (i, a) in acc.iter().enumerate().take(n) {
                scores[(r0 + i) * stride + c..][..w].copy_from_slice(&a[..w]);
            }
        }
    }
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;

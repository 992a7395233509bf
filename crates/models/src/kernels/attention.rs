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
use crate::{Error, Result};

/// Query tokens per work unit: enough rows to reuse each converted K/V block, few enough that
/// a decode batch still splits into one unit per (sequence, kv head).
pub const TILE_TOKENS: usize = 8;
const LANES: usize = 16;

/// One layer's cached keys or values.
#[derive(Clone, Copy)]
pub enum KvSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// int8 quants with one scale per head vector, at `[block][kv_head][offset]` (see
    /// `nn::kv_cache`).
    I8 {
        q: &'a [i8],
        scale: &'a [f16],
    },
}

impl KvSlice<'_> {
    fn len(&self) -> usize {
        match self {
            KvSlice::F32(s) => s.len(),
            KvSlice::F16(s) => s.len(),
            KvSlice::I8 { q, .. } => q.len(),
        }
    }

    /// Copies one block's `out.len()` values from `at` as f32. `scales_at` is the block's first
    /// scale; `transposed` says the block is `[dim][offset]` (keys) rather than `[offset][dim]`.
    fn read(&self, at: usize, out: &mut [f32], scales_at: usize, bs: usize, transposed: bool) {
        match self {
            KvSlice::F32(s) => out.copy_from_slice(&s[at..at + out.len()]),
            KvSlice::F16(s) => s[at..at + out.len()].convert_to_f32_slice(out),
            KvSlice::I8 { q, scale } => {
                let (q, scale) = (&q[at..at + out.len()], &scale[scales_at..scales_at + bs]);
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
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        // SAFETY: forwarded from the caller.
        unsafe { unit_body::<false>(&mut s, unit, q, seq, kv, p, out) };
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
    unsafe { unit_body::<true>(s, unit, q, seq, kv, p, out) }
}

/// One work unit. Plain loops only (no closures), so that every line is compiled with the
/// caller's target features when inlined into [`unit_avx512`]. With `SIMD` (AVX-512F + F16C
/// available) an f16 cache is read in registers; otherwise blocks are converted into scratch.
/// f32 blocks are read in place. All paths compute the same values.
#[inline(always)]
unsafe fn unit_body<const SIMD: bool>(
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
    s.scores.resize(nrows * bs.next_multiple_of(LANES), 0.0);
    // Row r = i * rep + g: token tile + i, query head kv_head * rep + g.
    let round_q = matches!(kv.k, KvSlice::F16(_));
    for i in 0..unit.tile_len {
        for g in 0..rep {
            let head = unit.kv_head * rep + g;
            let src = &q[((seq.row + unit.tile + i) * h + head) * dk..][..dk];
            let dst = &mut s.q[(i * rep + g) * dk..][..dk];
            for d in 0..dk {
                // Same precision on both sides of q·k as the f16 cache holds (llama.cpp's CPU
                // attention dots f16 q with f16 k).
                dst[d] = if round_q { f16::from_f32(src[d]).to_f32() } else { src[d] };
            }
        }
    }
    let first_pos = seq.start + unit.tile;
    let last_pos = first_pos + unit.tile_len - 1;
    let lo = p.window.map_or(0, |w| (first_pos + 1).saturating_sub(w));
    let Scratch { k: k_buf, v: v_buf, q: q_rows, acc: acc_rows, ml, scores } = s;
    let in_registers = SIMD && cfg!(target_arch = "x86_64") && bs % LANES == 0 && dv % LANES == 0;
    for b in lo / bs..=last_pos / bs {
        let block = seq.block_table[b] as usize;
        let (k_at, v_at) = ((block * kvh + unit.kv_head) * dk * bs, (block * kvh + unit.kv_head) * bs * dv);
        let blk = match (kv.k, kv.v) {
            (KvSlice::F32(k), KvSlice::F32(v)) => Blk::F32(&k[k_at..][..dk * bs], &v[v_at..][..bs * dv]),
            (KvSlice::F16(k), KvSlice::F16(v)) if in_registers => {
                Blk::F16(&k[k_at..][..dk * bs], &v[v_at..][..bs * dv])
            }
            _ => {
                let scales_at = (block * kvh + unit.kv_head) * bs;
                kv.k.read(k_at, k_buf, scales_at, bs, true);
                kv.v.read(v_at, v_buf, scales_at, bs, false);
                Blk::F32(k_buf, v_buf)
            }
        };
        let key0 = b * bs;
        // Scores of every row of the unit against this block: each key vector is loaded once
        // for four rows, and the rows' FMA chains run side by side.
        let stride = bs.next_multiple_of(LANES);
        match blk {
            Blk::F32(kt, _) => block_scores(q_rows, dk, kt, bs, stride, scores),
            // SAFETY: `in_registers` implies AVX-512F/F16C and bs % 16 == 0.
            #[cfg(target_arch = "x86_64")]
            Blk::F16(kt, _) => unsafe { block_scores_f16(q_rows, dk, kt, bs, scores) },
            #[cfg(not(target_arch = "x86_64"))]
            Blk::F16(..) => unreachable!("f16 blocks are read in registers only on x86_64"),
        }
        for i in 0..unit.tile_len {
            let qpos = first_pos + i;
            let kmin = p.window.map_or(0, |w| (qpos + 1).saturating_sub(w)).max(key0);
            let kend = (qpos + 1).min(key0 + bs);
            if kmin >= kend {
                continue;
            }
            let (j0, j1) = (kmin - key0, kend - key0);
            for g in 0..rep {
                let r = i * rep + g;
                let head = unit.kv_head * rep + g;
                let scores = &mut scores[r * stride..][..stride];
                let mut m_blk = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate().take(j1).skip(j0) {
                    let mut x = *sc * p.scale;
                    if let Some(a) = p.alibi {
                        x += a[head] * (key0 + j) as f32;
                    }
                    if let Some(cap) = p.softcap {
                        x = (x / cap).tanh() * cap;
                    }
                    *sc = x;
                    m_blk = m_blk.max(x);
                }
                let (m, l) = ml[r];
                let m_new = m.max(m_blk);
                if m_new == f32::NEG_INFINITY {
                    // Every key masked: this row takes nothing from the block.
                    scores[j0..j1].fill(0.0);
                    continue;
                }
                // (The correction cancels between `acc` and `l`; a 1-ulp change in it still moves
                // SmolLM2's perplexity by ~0.1%, because downstream Q8 activation quantization
                // and the f16 cache turn last-bit differences into whole quantization steps.)
                let corr = if m == f32::NEG_INFINITY { 0.0 } else { exp_neg(m - m_new) };
                let probs = &mut scores[j0..j1];
                for x in probs.iter_mut() {
                    *x = exp_neg(*x - m_new);
                }
                let acc = &mut acc_rows[r * dv..][..dv];
                if corr != 1.0 {
                    for a in acc.iter_mut() {
                        *a *= corr;
                    }
                }
                let mut sum = 0f32;
                for &pj in probs.iter() {
                    sum += pj;
                }
                if let Blk::F32(_, v) = blk {
                    for (jj, &pj) in probs.iter().enumerate() {
                        let vj = &v[(j0 + jj) * dv..][..dv];
                        for d in 0..dv {
                            acc[d] = pj.mul_add(vj[d], acc[d]);
                        }
                    }
                }
                ml[r] = (m_new, l * corr + sum);
            }
            // f16 values: `acc += p_j · v_j` for the token's `rep` rows at once, each V vector
            // converted once for all of them, accumulators in registers across the block's keys
            // (per row the same FMAs in the same order as the f32 path above).
            #[cfg(target_arch = "x86_64")]
            if let Blk::F16(_, v) = blk {
                let rows = i * rep..(i + 1) * rep;
                // SAFETY: `in_registers` implies AVX-512F/F16C and dv % 16 == 0; the rows'
                // scores and accumulators lie inside the scratch buffers.
                unsafe { pv_f16(&mut acc_rows[rows.start * dv..rows.end * dv], scores, rows, stride, j0..j1, v, dv) };
            }
        }
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

/// One block's keys and values, read in place.
#[derive(Clone, Copy)]
enum Blk<'a> {
    F32(&'a [f32], &'a [f32]),
    F16(&'a [f16], &'a [f16]),
}

/// [`block_scores`] on f16 keys, converted in registers (the same values: f16 → f32 is exact,
/// and each row's FMA chain runs over `dim` in the same order).
///
/// # Safety
/// AVX-512F and F16C must be available; `bs` a multiple of 16; `kt` holds `dk * bs` values,
/// `q` whole rows of `dk`, `scores` `rows * bs` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c,fma")]
unsafe fn block_scores_f16(q: &[f32], dk: usize, kt: &[f16], bs: usize, scores: &mut [f32]) {
    use std::arch::x86_64::*;
    let rows = q.len() / dk;
    for c in (0..bs).step_by(LANES) {
        for r0 in (0..rows).step_by(4) {
            let n = 4.min(rows - r0);
            let mut acc = [_mm512_setzero_ps(); 4];
            for d in 0..dk {
                // SAFETY: d * bs + c + 16 <= dk * bs (caller).
                let k = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(kt.as_ptr().add(d * bs + c) as *const __m256i) });
                for (i, a) in acc.iter_mut().enumerate().take(n) {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(q[(r0 + i) * dk + d]), k, *a);
                }
            }
            for (i, a) in acc.iter().enumerate().take(n) {
                // SAFETY: scores holds rows * bs values (caller).
                unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add((r0 + i) * bs + c), *a) };
            }
        }
    }
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
    use std::arch::x86_64::*;
    let n_rows = rows.len();
    for r0 in (0..n_rows).step_by(4) {
        let nr = 4.min(n_rows - r0);
        for c0 in (0..dv).step_by(2 * LANES) {
            let two = c0 + LANES < dv;
            let mut a = [[_mm512_setzero_ps(); 2]; 4];
            for (i, ai) in a.iter_mut().enumerate().take(nr) {
                let at = acc.as_ptr().add((r0 + i) * dv + c0);
                ai[0] = _mm512_loadu_ps(at);
                if two {
                    ai[1] = _mm512_loadu_ps(at.add(LANES));
                }
            }
            for j in keys.clone() {
                let vj = v.as_ptr().add(j * dv + c0);
                let v0 = _mm512_cvtph_ps(_mm256_loadu_si256(vj as *const __m256i));
                let v1 = if two { _mm512_cvtph_ps(_mm256_loadu_si256(vj.add(LANES) as *const __m256i)) } else { v0 };
                for (i, ai) in a.iter_mut().enumerate().take(nr) {
                    let p = _mm512_set1_ps(*scores.get_unchecked((rows.start + r0 + i) * stride + j));
                    ai[0] = _mm512_fmadd_ps(p, v0, ai[0]);
                    if two {
                        ai[1] = _mm512_fmadd_ps(p, v1, ai[1]);
                    }
                }
            }
            for (i, ai) in a.iter().enumerate().take(nr) {
                let at = acc.as_mut_ptr().add((r0 + i) * dv + c0);
                _mm512_storeu_ps(at, ai[0]);
                if two {
                    _mm512_storeu_ps(at.add(LANES), ai[1]);
                }
            }
        }
    }
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
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        super::super::math::test_values(n, seed)
    }

    struct Case {
        heads: usize,
        kvh: usize,
        dk: usize,
        dv: usize,
        bs: usize,
        window: Option<usize>,
        softcap: Option<f32>,
        alibi: bool,
        f16: bool,
        int8: bool,
    }

    /// Every sequence's keys live in scattered blocks; the reference recomputes each row with a
    /// plain two-pass softmax from per-position K/V.
    fn check(c: &Case) {
        let seqs_spec = [(0usize, 5usize), (37, 1), (3, 19), (60, 3)]; // (start, len)
        let num_blocks = 64;
        let block_vals = |dim| num_blocks * c.kvh * dim * c.bs;
        let mut kbuf = values(block_vals(c.dk), 1);
        let mut vbuf = values(block_vals(c.dv), 2);
        if c.f16 {
            for x in kbuf.iter_mut().chain(vbuf.iter_mut()) {
                *x = f16::from_f32(*x).to_f32();
            }
        }
        let (k16, v16): (Vec<f16>, Vec<f16>) =
            (kbuf.iter().map(|&x| f16::from_f32(x)).collect(), vbuf.iter().map(|&x| f16::from_f32(x)).collect());
        // int8: arbitrary quants and one scale per (block, head, offset); the reference reads
        // the dequantized values.
        let (k8, v8): (Vec<i8>, Vec<i8>) = (
            kbuf.iter().map(|&x| (x * 127.0).round() as i8).collect(),
            vbuf.iter().map(|&x| (x * 127.0).round() as i8).collect(),
        );
        let scales: Vec<f16> =
            values(num_blocks * c.kvh * c.bs, 4).iter().map(|&x| f16::from_f32(0.01 + x.abs() / 64.0)).collect();
        if c.int8 {
            for (i, x) in kbuf.iter_mut().enumerate() {
                let (bh, j) = (i / (c.dk * c.bs), i % c.bs);
                *x = k8[i] as f32 * scales[bh * c.bs + j].to_f32();
            }
            for (i, x) in vbuf.iter_mut().enumerate() {
                *x = v8[i] as f32 * scales[i / c.dv].to_f32();
            }
        }
        // Block tables: a fixed permutation of the pool, disjoint per sequence.
        let perm: Vec<u32> = (0..num_blocks as u32).map(|i| (i * 37 + 11) % num_blocks as u32).collect();
        let mut tables = vec![];
        let mut next = 0;
        for &(start, len) in &seqs_spec {
            let n = (start + len).div_ceil(c.bs);
            tables.push(perm[next..next + n].to_vec());
            next += n;
        }
        let rows: usize = seqs_spec.iter().map(|s| s.1).sum();
        let q = values(rows * c.heads * c.dk, 3);
        let mut seqs = vec![];
        let mut row = 0;
        for (i, &(start, len)) in seqs_spec.iter().enumerate() {
            seqs.push(AttnSeq { row, len, start, block_table: &tables[i] });
            row += len;
        }
        let slopes: Vec<f32> = (0..c.heads).map(|h| 0.5f32.powi(h as i32 + 1)).collect();
        let p = AttnParams {
            heads: c.heads,
            scale: 0.3,
            softcap: c.softcap,
            window: c.window,
            alibi: c.alibi.then_some(slopes.as_slice()),
        };
        let kv = KvBlocks {
            k: if c.f16 {
                KvSlice::F16(&k16)
            } else if c.int8 {
                KvSlice::I8 { q: &k8, scale: &scales }
            } else {
                KvSlice::F32(&kbuf)
            },
            v: if c.f16 {
                KvSlice::F16(&v16)
            } else if c.int8 {
                KvSlice::I8 { q: &v8, scale: &scales }
            } else {
                KvSlice::F32(&vbuf)
            },
            block_size: c.bs,
            kv_heads: c.kvh,
            k_dim: c.dk,
            v_dim: c.dv,
        };
        let mut out = vec![f32::NAN; rows * c.heads * c.dv];
        paged_attention(&q, &seqs, &kv, &p, &mut out).unwrap();

        let rep = c.heads / c.kvh;
        let mut worst = 0f32;
        for s in &seqs {
            let key = |pos: usize, g: usize, d: usize| {
                let b = s.block_table[pos / c.bs] as usize;
                kbuf[((b * c.kvh + g) * c.dk + d) * c.bs + pos % c.bs]
            };
            let val = |pos: usize, g: usize, d: usize| {
                let b = s.block_table[pos / c.bs] as usize;
                vbuf[((b * c.kvh + g) * c.bs + pos % c.bs) * c.dv + d]
            };
            for i in 0..s.len {
                let qpos = s.start + i;
                for h in 0..c.heads {
                    let g = h / rep;
                    let qr: Vec<f32> = q[((s.row + i) * c.heads + h) * c.dk..][..c.dk]
                        .iter()
                        .map(|&x| if c.f16 { f16::from_f32(x).to_f32() } else { x })
                        .collect();
                    let lo = c.window.map_or(0, |w| (qpos + 1).saturating_sub(w));
                    let sc: Vec<f32> = (lo..=qpos)
                        .map(|j| {
                            let mut x = (0..c.dk).map(|d| qr[d] * key(j, g, d)).sum::<f32>() * p.scale;
                            if c.alibi {
                                x += slopes[h] * j as f32;
                            }
                            if let Some(cap) = c.softcap {
                                x = (x / cap).tanh() * cap;
                            }
                            x
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = sc.iter().map(|x| (x - m).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for d in 0..c.dv {
                        let want: f32 = (lo..=qpos).zip(&e).map(|(j, w)| w * val(j, g, d)).sum::<f32>() / z;
                        let got = out[((s.row + i) * c.heads + h) * c.dv + d];
                        worst = worst.max((got - want).abs());
                    }
                }
            }
        }
        assert!(worst < 2e-5, "max abs diff {worst}");
    }

    #[test]
    fn matches_reference_across_layouts() {
        let base = Case {
            heads: 6,
            kvh: 2,
            dk: 32,
            dv: 32,
            bs: 16,
            window: None,
            softcap: None,
            alibi: false,
            f16: false,
            int8: false,
        };
        check(&base);
        check(&Case { bs: 8, ..base });
        check(&Case { bs: 5, heads: 4, kvh: 4, dk: 20, dv: 12, ..base });
        check(&Case { window: Some(7), softcap: Some(5.0), ..base });
        check(&Case { alibi: true, heads: 3, kvh: 1, ..base });
        check(&Case { f16: true, ..base });
        check(&Case { f16: true, bs: 5, dv: 12, ..base }); // f16 converted into scratch
        check(&Case { f16: true, window: Some(9), alibi: true, bs: 32, ..base });
        // In registers: 5 rows per kv head (a group of 4 and a tail of 1), 3 value chunks.
        check(&Case { f16: true, heads: 10, kvh: 2, dv: 48, ..base });
        check(&Case { bs: 32, dk: 48, dv: 16, heads: 2, kvh: 1, ..base });
        check(&Case { int8: true, ..base });
        check(&Case { int8: true, bs: 5, heads: 4, kvh: 4, dk: 20, dv: 12, window: Some(7), ..base });
    }

    #[test]
    fn bad_tables_are_errors_not_panics() {
        let (k, v) = (vec![0f32; 2 * 16 * 8], vec![0f32; 2 * 16 * 8]);
        let kv = KvBlocks { k: KvSlice::F32(&k), v: KvSlice::F32(&v), block_size: 16, kv_heads: 1, k_dim: 8, v_dim: 8 };
        let p = AttnParams { heads: 1, scale: 1.0, softcap: None, window: None, alibi: None };
        let q = vec![0f32; 8];
        let mut out = vec![0f32; 8];
        let short = [0u32];
        let e = paged_attention(&q, &[AttnSeq { row: 0, len: 1, start: 20, block_table: &short }], &kv, &p, &mut out);
        assert!(e.unwrap_err().to_string().contains("block table of 1 blocks for 21 tokens"));
        let outside = [7u32];
        let e = paged_attention(&q, &[AttnSeq { row: 0, len: 1, start: 0, block_table: &outside }], &kv, &p, &mut out);
        assert!(e.unwrap_err().to_string().contains("block 7 outside a pool of 2"));
    }
}

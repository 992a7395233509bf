//! Activation rows quantized to 8 bits per 32-value block, exactly as llama.cpp's x86
//! `quantize_row_q8_1` does, so our integer dot products see the same inputs as llama.cpp's:
//! `d = amax / 127` (kept at f16 precision), `q = round_half_even(x * 127 / amax)`, and the
//! block sum `s = d * Σq` (rounded through f16 for Q4_1's Q8_1 pairing; see
//! [`QuantKind::sum_through_f16`](super::QuantKind)).

use half::f16;

use super::layout::QK;
use super::pool::Pool;

/// `m` rows of `k` activations as int8 quants plus per-block f32 `d` and `s`, stored
/// structure-of-arrays so the kernels broadcast 4 quants at a time straight from memory.
#[derive(Default)]
pub(crate) struct QuantRows {
    pub(crate) k: usize,
    pub(crate) kb: usize,
    /// (m, k)
    pub(crate) qs: Vec<i8>,
    /// (m, kb): the block scale, an f16 value widened to f32.
    pub(crate) d: Vec<f32>,
    /// (m, kb): `d * Σq` of the block.
    pub(crate) s: Vec<f32>,
}

/// Pointers to the quants and per-block `d`, `s` of `M` consecutive activation rows (the SIMD
/// tiles' view of [`QuantRows`]).
pub(crate) struct Rows<const M: usize> {
    pub(crate) qs: [*const i8; M],
    pub(crate) d: [*const f32; M],
    pub(crate) s: [*const f32; M],
}

impl<const M: usize> Rows<M> {
    /// Rows `i0..i0 + M`, which must exist. One bounds check for all 3·M pointers: this runs
    /// once per register block of every tile (2% of a 16-way decode step with a check each).
    #[inline(always)]
    pub(crate) fn new(acts: &QuantRows, i0: usize) -> Self {
        let end = i0 + M;
        assert!(end * acts.k <= acts.qs.len() && end * acts.kb <= acts.d.len().min(acts.s.len()), "rows out of range");
        let (q, d, s) = (acts.qs.as_ptr(), acts.d.as_ptr(), acts.s.as_ptr());
        // SAFETY: every row start is inside its buffer (checked above).
        unsafe {
            Self {
                qs: std::array::from_fn(|i| q.add((i0 + i) * acts.k)),
                d: std::array::from_fn(|i| d.add((i0 + i) * acts.kb)),
                s: std::array::from_fn(|i| s.add((i0 + i) * acts.kb)),
            }
        }
    }
}

impl QuantRows {
    /// Quantizes `x` (m, k) into `self`, reusing its buffers. `k` is a multiple of 32.
    pub(crate) fn quantize(&mut self, x: &[f32], m: usize, k: usize, sum_through_f16: bool) {
        debug_assert!(k.is_multiple_of(QK) && x.len() == m * k);
        let kb = k / QK;
        self.k = k;
        self.kb = kb;
        self.qs.resize(m * k, 0);
        self.d.resize(m * kb, 0.0);
        self.s.resize(m * kb, 0.0);
        let nb = m * kb;
        let pool = Pool::global();
        if nb < PARALLEL_MIN_BLOCKS || pool.threads() <= 1 {
            return quantize_range(&mut self.qs, &mut self.d, &mut self.s, x, sum_through_f16);
        }
        // Blocks are independent: split them over the pool (a prefill chunk's activations were
        // quantized on the calling thread while the helper waited; a decode step's are too few
        // to pay for the split).
        let per = nb.div_ceil(pool.threads() * 4);
        let (qs, d, s) = (self.qs.as_mut_ptr() as usize, self.d.as_mut_ptr() as usize, self.s.as_mut_ptr() as usize);
        pool.run(nb.div_ceil(per), m <= super::LINGER_MAX_ROWS, &|u| {
            let (b0, b1) = (u * per, nb.min((u + 1) * per));
            // SAFETY: units own disjoint block ranges of the buffers resized above, which
            // outlive `run`.
            let (qs, d, s) = unsafe {
                (
                    std::slice::from_raw_parts_mut((qs as *mut i8).add(b0 * QK), (b1 - b0) * QK),
                    std::slice::from_raw_parts_mut((d as *mut f32).add(b0), b1 - b0),
                    std::slice::from_raw_parts_mut((s as *mut f32).add(b0), b1 - b0),
                )
            };
            quantize_range(qs, d, s, &x[b0 * QK..b1 * QK], sum_through_f16);
        });
    }
}

/// Below this many 32-value blocks, activations are quantized on the calling thread.
const PARALLEL_MIN_BLOCKS: usize = 2048;

/// Quantizes the blocks of `x` into `qs`, `d`, `s` (as many blocks as `d` holds).
fn quantize_range(qs: &mut [i8], d: &mut [f32], s: &mut [f32], x: &[f32], sum_through_f16: bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the features were just detected.
        return unsafe { quantize_avx512(qs, d, s, x, sum_through_f16) };
    } else if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as above.
        return unsafe { quantize_avx2(qs, d, s, x, sum_through_f16) };
    }
    quantize_blocks(qs, d, s, x, sum_through_f16)
}

/// The portable version, and the specification the SIMD versions follow bit for bit.
fn quantize_blocks(qs: &mut [i8], d: &mut [f32], s: &mut [f32], x: &[f32], sum_through_f16: bool) {
    let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((xb, qb), (d_out, s_out)) in blocks.zip(d.iter_mut().zip(s.iter_mut())) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let (d, id) = scales(amax);
        let mut sum = 0i32;
        for (q, &v) in qb.iter_mut().zip(xb) {
            // |v * id| <= 127 up to rounding; `as` saturates, so no overflow either way.
            let qi = (v * id).round_ties_even() as i32;
            *q = qi as i8;
            sum += qi;
        }
        (*d_out, *s_out) = block_scales(d, sum, sum_through_f16);
    }
}

/// `d = amax / 127` and the multiplier `127 / amax` (0 for an all-zero block), as llama.cpp.
#[inline(always)]
fn scales(amax: f32) -> (f32, f32) {
    (amax / 127.0, if amax != 0.0 { 127.0 / amax } else { 0.0 })
}

/// The stored `d` (f16 precision) and block sum `s`.
#[inline(always)]
fn block_scales(d: f32, sum: i32, sum_through_f16: bool) -> (f32, f32) {
    let d16 = f16::from_f32(d).to_f32();
    (d16, if sum_through_f16 { f16::from_f32(d * sum as f32).to_f32() } else { d16 * sum as f32 })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn quantize_avx512(qs: &mut [i8], d_out: &mut [f32], s_out: &mut [f32], x: &[f32], sum_through_f16: bool) {
    use std::arch::x86_64::*;
    let nb = d_out.len().min(s_out.len()).min(qs.len() / QK).min(x.len() / QK);
    let abs_mask = _mm512_set1_epi32(0x7FFF_FFFF);
    for b in 0..nb {
        let xp = x.as_ptr().add(b * QK);
        let v0 = _mm512_loadu_ps(xp);
        let v1 = _mm512_loadu_ps(xp.add(16));
        let a0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v0), abs_mask));
        let a1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v1), abs_mask));
        let (db, id) = scales(_mm512_reduce_max_ps(_mm512_max_ps(a0, a1)));
        let mul = _mm512_set1_ps(id);
        // Round half to even, as llama.cpp's `_mm256_round_ps(.., _MM_ROUND_NEAREST)`.
        const RNE: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let q0 = _mm512_cvt_roundps_epi32::<RNE>(_mm512_mul_ps(v0, mul));
        let q1 = _mm512_cvt_roundps_epi32::<RNE>(_mm512_mul_ps(v1, mul));
        let qp = qs.as_mut_ptr().add(b * QK) as *mut __m128i;
        _mm_storeu_si128(qp, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(qp.add(1), _mm512_cvtsepi32_epi8(q1));
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        (d_out[b], s_out[b]) = block_scales(db, sum, sum_through_f16);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_avx2(qs: &mut [i8], d_out: &mut [f32], s_out: &mut [f32], x: &[f32], sum_through_f16: bool) {
    use std::arch::x86_64::*;
    let nb = d_out.len().min(s_out.len()).min(qs.len() / QK).min(x.len() / QK);
    let sign = _mm256_set1_ps(-0.0);
    for b in 0..nb {
        let xp = x.as_ptr().add(b * QK);
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(xp.add(8 * i)));
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vi in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        let (db, id) = scales(_mm_cvtss_f32(m4));
        let mul = _mm256_set1_ps(id);
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            _mm256_cvtps_epi32(_mm256_round_ps::<_MM_FROUND_TO_NEAREST_INT>(_mm256_mul_ps(v[i], mul)))
        });
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(_mm256_extracti128_si256::<1>(s), _mm256_castsi256_si128(s));
        let s4 = _mm_hadd_epi32(s4, s4);
        let sum = _mm_cvtsi128_si32(_mm_hadd_epi32(s4, s4));
        // i32 → i8 with the lane order the 128-bit-lane packs scramble, put back by a permute.
        let p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qs.as_mut_ptr().add(b * QK) as *mut __m256i, p);
        (d_out[b], s_out[b]) = block_scales(db, sum, sum_through_f16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_to_even_and_keeps_llama_cpp_scales() {
        // amax 127 → id 1, so quants are the values rounded half-to-even (2.5 → 2, 3.5 → 4).
        let mut x = vec![0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -2.5;
        x[4] = -0.5;
        let mut r = QuantRows::default();
        r.quantize(&x, 1, 32, true);
        assert_eq!(&r.qs[..5], &[127, 2, 4, -2, 0]);
        assert_eq!(r.d[0], 1.0);
        assert_eq!(r.s[0], 131.0);
    }

    #[test]
    fn simd_quantizers_match_the_portable_one_bit_for_bit() {
        let mut seed = 5u32;
        let mut x: Vec<f32> = (0..32 * 37)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 8) as f32 / (1 << 24) as f32 - 0.5) * if seed.is_multiple_of(7) { 50.0 } else { 1.0 }
            })
            .collect();
        // Exact ties (amax 127 → id 1) and an all-zero block.
        x[..32].iter_mut().enumerate().for_each(|(i, v)| *v = if i == 0 { 127.0 } else { i as f32 * 0.5 - 8.0 });
        x[32..64].iter_mut().for_each(|v| *v = 0.0);
        let fresh = || QuantRows { k: x.len(), kb: 37, qs: vec![0; x.len()], d: vec![0.0; 37], s: vec![0.0; 37] };
        for sum_f16 in [false, true] {
            let mut want = fresh();
            quantize_blocks(&mut want.qs, &mut want.d, &mut want.s, &x, sum_f16);
            #[cfg(target_arch = "x86_64")]
            for (ok, f) in [
                (
                    std::arch::is_x86_feature_detected!("avx512bw"),
                    quantize_avx512 as unsafe fn(&mut [i8], &mut [f32], &mut [f32], &[f32], bool),
                ),
                (std::arch::is_x86_feature_detected!("avx2"), quantize_avx2),
            ] {
                if !ok {
                    continue;
                }
                let mut got = fresh();
                // SAFETY: feature checked above.
                unsafe { f(&mut got.qs, &mut got.d, &mut got.s, &x, sum_f16) };
                assert_eq!((&got.qs, &got.d, &got.s), (&want.qs, &want.d, &want.s));
            }
        }
    }

    #[test]
    fn rows_split_over_the_pool_quantize_as_one_pass() {
        let (m, k) = (48, 1536);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0).collect();
        let mut got = QuantRows::default();
        got.quantize(&x, m, k, true);
        let nb = m * k / QK;
        assert!(nb >= PARALLEL_MIN_BLOCKS);
        let (mut qs, mut d, mut s) = (vec![0i8; m * k], vec![0f32; nb], vec![0f32; nb]);
        quantize_blocks(&mut qs, &mut d, &mut s, &x, true);
        assert_eq!((got.qs, got.d, got.s), (qs, d, s));
    }

    #[test]
    fn zero_block_has_zero_scale_and_quants() {
        let mut r = QuantRows::default();
        r.quantize(&[0f32; 64], 2, 32, false);
        assert!(r.qs.iter().all(|&q| q == 0));
        assert_eq!((r.d.as_slice(), r.s.as_slice()), (&[0f32, 0.0][..], &[0f32, 0.0][..]));
    }

    #[test]
    fn sum_through_f16_rounds_like_ggml() {
        // d * Σq = (1/127) * 127 * 32 … pick values whose f32 sum is not an f16.
        let x: Vec<f32> = (0..32).map(|i| if i == 0 { 1.0 } else { 0.9 }).collect();
        let mut a = QuantRows::default();
        let mut b = QuantRows::default();
        a.quantize(&x, 1, 32, true);
        b.quantize(&x, 1, 32, false);
        let sum: i32 = a.qs.iter().map(|&q| q as i32).sum();
        let d = 1.0f32 / 127.0;
        assert_eq!(a.s[0], f16::from_f32(d * sum as f32).to_f32());
        assert_eq!(b.s[0], f16::from_f32(d).to_f32() * sum as f32);
    }
}

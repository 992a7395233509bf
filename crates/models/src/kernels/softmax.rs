//! One attention row's block of scores → probabilities, the online-softmax step of
//! `attention`: scale (and ALiBi, softcap), the block's max, `exp`, and the probabilities' sum
//! in one fixed lane order ([`lane_sum`]), so that the AVX-512 and AVX2 versions give the
//! scalar version's bits.

use super::attention::AttnParams;
use super::math::exp_neg;
#[cfg(target_arch = "x86_64")]
use super::math::{exp_neg_avx2, exp_neg_avx512};

/// Lanes of the probabilities' sum (one AVX-512 register; two AVX2 halves).
pub(super) const LANES: usize = 16;

/// One row's scores against keys `keys` of a block (`key0` its first position) → probabilities
/// in place, with the block's running max `m_new` (≥ `m`, the row's max so far) and their sum.
/// Returns `m_new = -inf` (and leaves the row alone) when every key is masked.
#[inline(always)]
pub(super) fn probs_scalar(
    scores: &mut [f32],
    keys: std::ops::Range<usize>,
    key0: usize,
    p: &AttnParams,
    head: usize,
    m: f32,
) -> (f32, f32) {
    let mut m_blk = f32::NEG_INFINITY;
    for (j, sc) in scores.iter_mut().enumerate().take(keys.end).skip(keys.start) {
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
    let m_new = m.max(m_blk);
    if m_new == f32::NEG_INFINITY {
        scores[keys].fill(0.0);
        return (m_new, 0.0);
    }
    let mut lanes = [0f32; LANES];
    for (j, x) in scores.iter_mut().enumerate().take(keys.end).skip(keys.start) {
        *x = exp_neg(*x - m_new);
        lanes[j % LANES] += *x;
    }
    (m_new, lane_sum(lanes))
}

/// The sum of a row's probabilities in one fixed order, whatever computes them: key `j` goes
/// into lane `j % 16` (keys in increasing order), then the lanes are added pairwise as a tree.
#[inline(always)]
fn lane_sum(mut lanes: [f32; LANES]) -> f32 {
    let mut half = LANES / 2;
    while half > 0 {
        for l in 0..half {
            lanes[l] += lanes[l + half];
        }
        half /= 2;
    }
    lanes[0]
}

/// [`probs_scalar`] without a softcap, 16 keys per instruction: the same operations per key
/// (`exp_neg_avx512` is `exp_neg` lane for lane, the ALiBi term a separate multiply and add)
/// and the sum in [`lane_sum`]'s order, so the results are bitwise those of the scalar version.
///
/// # Safety
/// AVX-512F and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn probs_avx512(
    scores: &mut [f32],
    keys: std::ops::Range<usize>,
    key0: usize,
    scale: f32,
    slope: Option<f32>,
    m: f32,
) -> (f32, f32) {
    use std::arch::x86_64::*;
    let lane = _mm512_setr_ps(0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., 13., 14., 15.);
    let in_keys = |c: usize| -> __mmask16 {
        let (lo, hi) = (keys.start.clamp(c, c + LANES) - c, keys.end.clamp(c, c + LANES) - c);
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16
    };
    let chunks = (keys.start / LANES * LANES..keys.end).step_by(LANES);
    let mut m_vec = _mm512_set1_ps(f32::NEG_INFINITY);
    for c in chunks.clone() {
        let k = in_keys(c);
        // SAFETY: `scores` is a whole number of 16-lane chunks (its stride) covering `keys`.
        let at = unsafe { scores.as_mut_ptr().add(c) };
        let mut x = _mm512_mul_ps(unsafe { _mm512_loadu_ps(at) }, _mm512_set1_ps(scale));
        if let Some(a) = slope {
            // (key0 + j) as f32, exactly: positions are far below 2^24.
            let pos = _mm512_add_ps(_mm512_set1_ps((key0 + c) as f32), lane);
            x = _mm512_add_ps(x, _mm512_mul_ps(_mm512_set1_ps(a), pos));
        }
        unsafe { _mm512_mask_storeu_ps(at, k, x) };
        m_vec = _mm512_mask_max_ps(m_vec, k, m_vec, x);
    }
    let m_new = m.max(_mm512_reduce_max_ps(m_vec));
    if m_new == f32::NEG_INFINITY {
        scores[keys].fill(0.0);
        return (m_new, 0.0);
    }
    let mut sum = _mm512_setzero_ps();
    for c in chunks {
        // SAFETY: as above.
        let at = unsafe { scores.as_mut_ptr().add(c) };
        let e = exp_neg_avx512(_mm512_sub_ps(unsafe { _mm512_loadu_ps(at) }, _mm512_set1_ps(m_new)));
        let k = in_keys(c);
        unsafe { _mm512_mask_storeu_ps(at, k, e) };
        // Lane l holds keys ≡ l (mod 16) in order; keys outside add +0.0, which changes nothing.
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
    }
    let mut lanes = [0f32; LANES];
    // SAFETY: 16 floats into a 16-float array.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sum) };
    (m_new, lane_sum(lanes))
}

/// [`probs_avx512`] on AVX2: the 16 lanes of [`lane_sum`] as two 8-lane halves, the same
/// operations per key, so the results are bitwise those of [`probs_scalar`].
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn probs_avx2(
    scores: &mut [f32],
    keys: std::ops::Range<usize>,
    key0: usize,
    scale: f32,
    slope: Option<f32>,
    m: f32,
) -> (f32, f32) {
    use std::arch::x86_64::*;
    let lane = _mm256_setr_ps(0., 1., 2., 3., 4., 5., 6., 7.);
    let lane_i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let (lo, hi) = (_mm256_set1_epi32(keys.start as i32 - 1), _mm256_set1_epi32(keys.end as i32));
    // All ones in the lanes of keys c..c + 8 that lie inside `keys`.
    let in_keys = |c: usize| -> __m256 {
        let j = _mm256_add_epi32(_mm256_set1_epi32(c as i32), lane_i);
        _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(j, lo), _mm256_cmpgt_epi32(hi, j)))
    };
    // Half-chunks of 8 keys, from the 16-key chunk holding the first key.
    let halves = (keys.start / LANES * LANES..keys.end).step_by(LANES / 2);
    let mut m_vec = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in halves.clone() {
        let k = in_keys(c);
        // SAFETY: `scores` is a whole number of 16-lane chunks (its stride) covering `keys`.
        let at = unsafe { scores.as_mut_ptr().add(c) };
        let old = unsafe { _mm256_loadu_ps(at) };
        let mut x = _mm256_mul_ps(old, _mm256_set1_ps(scale));
        if let Some(a) = slope {
            // (key0 + j) as f32, exactly: positions are far below 2^24.
            let pos = _mm256_add_ps(_mm256_set1_ps((key0 + c) as f32), lane);
            x = _mm256_add_ps(x, _mm256_mul_ps(_mm256_set1_ps(a), pos));
        }
        unsafe { _mm256_storeu_ps(at, _mm256_blendv_ps(old, x, k)) };
        m_vec = _mm256_max_ps(m_vec, _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), x, k));
    }
    let mut maxes = [0f32; 8];
    // SAFETY: 8 floats into an 8-float array.
    unsafe { _mm256_storeu_ps(maxes.as_mut_ptr(), m_vec) };
    let m_new = maxes.iter().fold(m, |a, &b| a.max(b));
    if m_new == f32::NEG_INFINITY {
        scores[keys].fill(0.0);
        return (m_new, 0.0);
    }
    // Lane l of `sums[h]` holds keys ≡ 8h + l (mod 16) in order; keys outside add +0.0.
    let mut sums = [_mm256_setzero_ps(); 2];
    for c in halves {
        // SAFETY: as above.
        let at = unsafe { scores.as_mut_ptr().add(c) };
        let old = unsafe { _mm256_loadu_ps(at) };
        let e = exp_neg_avx2(_mm256_sub_ps(old, _mm256_set1_ps(m_new)));
        let k = in_keys(c);
        unsafe { _mm256_storeu_ps(at, _mm256_blendv_ps(old, e, k)) };
        let h = c / (LANES / 2) % 2;
        sums[h] = _mm256_add_ps(sums[h], _mm256_and_ps(e, k));
    }
    let mut lanes = [0f32; LANES];
    // SAFETY: two 8-float halves into a 16-float array.
    unsafe {
        _mm256_storeu_ps(lanes.as_mut_ptr(), sums[0]);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), sums[1]);
    }
    (m_new, lane_sum(lanes))
}

//! Vectorisable approximations of `exp` and SiLU shared by the kernels, with scalar versions
//! that are the specification the SIMD ones follow.
//!
//! `exp_neg` is Cephes' `expf` polynomial (range reduction by `ln 2` in two parts, degree-6
//! polynomial, exponent bits built directly), valid for `x ≤ 0`, within ~2 ulp of libm.

use std::sync::OnceLock;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
/// Below this `exp` is under f32's normal range: clamp (the result is ~1e-38, i.e. 0 after use).
const X_MIN: f32 = -87.3;

/// Whether the AVX-512 paths of this module (and their callers) can run.
pub(crate) fn avx512_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Whether AVX2 + FMA + F16C are there: the scalar paths (which use `mul_add`) are then compiled
/// with them, so that `mul_add` is one instruction rather than a libm call (same values).
pub(crate) fn fma_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `e^x` for `x ≤ 0`.
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    let x = x.max(X_MIN);
    let n = (x * LOG2E).round_ties_even();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut y = P[0];
    for p in &P[1..] {
        y = y.mul_add(r, *p);
    }
    let y = (y * r).mul_add(r, r) + 1.0;
    // 2^n by building the exponent bits; n ∈ [-126, 0] here.
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `x · sigmoid(x)`, computing `e^{-|x|}` so the exponential never overflows.
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    let e = exp_neg(-x.abs());
    let num = if x >= 0.0 { 1.0 } else { e };
    x * (num / (1.0 + e))
}

#[cfg(target_arch = "x86_64")]
pub(crate) use self::avx512::exp_neg_avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use self::avx512::silu_avx512;

/// [`exp_neg`] on 8 lanes (AVX2 + FMA), operation for operation.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn exp_neg_avx2(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let x = _mm256_max_ps(x, _mm256_set1_ps(X_MIN));
    let n =
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x));
    let mut y = _mm256_set1_ps(P[0]);
    for p in &P[1..] {
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(*p));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(y, r), r, r), _mm256_set1_ps(1.0));
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    _mm256_mul_ps(y, _mm256_castsi256_ps(bits))
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::*;

    /// [`exp_neg`] on 16 lanes, operation for operation.
    #[inline(always)]
    pub(crate) unsafe fn exp_neg_avx512(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(X_MIN));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(LOG2E),
        ));
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x));
        let mut y = _mm512_set1_ps(P[0]);
        for p in &P[1..] {
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(*p));
        }
        let y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(y, r), r, r), _mm512_set1_ps(1.0));
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
        _mm512_mul_ps(y, _mm512_castsi512_ps(bits))
    }

    /// [`silu`] on 16 lanes.
    #[inline(always)]
    pub(crate) unsafe fn silu_avx512(x: __m512) -> __m512 {
        let abs = _mm512_abs_ps(x);
        let e = exp_neg_avx512(_mm512_sub_ps(_mm512_setzero_ps(), abs));
        let one = _mm512_set1_ps(1.0);
        let nonneg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_setzero_ps());
        let num = _mm512_mask_blend_ps(nonneg, e, one);
        _mm512_mul_ps(x, _mm512_div_ps(num, _mm512_add_ps(one, e)))
    }
}

/// Deterministic values in [-1, 1) for the kernels' tests (xorshift32).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_neg_is_close_to_libm() {
        // Down to the clamp; below it the result stays at ~1.2e-38 where libm goes subnormal.
        for i in 0..=87_300 {
            let x = -(i as f32) * 1e-3;
            let (got, want) = (exp_neg(x), x.exp());
            assert!((got - want).abs() <= 4.0 * f32::EPSILON * want.max(f32::MIN_POSITIVE), "{x}: {got} vs {want}");
        }
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(-200.0) < 1e-37);
    }

    #[test]
    fn silu_is_close_to_the_definition() {
        for i in -20_000..=20_000 {
            let x = i as f32 * 1e-3;
            let want = (x as f64 / (1.0 + (-x as f64).exp())) as f32;
            assert!((silu(x) - want).abs() <= 4.0 * f32::EPSILON * want.abs().max(1e-30), "{x}");
        }
        assert!(silu(-200.0).abs() < 1e-30);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_exp_matches_scalar_bit_for_bit() {
        use std::arch::x86_64::*;
        if !fma_available() {
            return;
        }
        let xs: Vec<f32> =
            (-1600..1600).map(|i| -(i as f32 * 0.0625 + 0.013).abs()).chain([-87.3, -88.0, -1e4]).collect();
        for chunk in xs.chunks(8) {
            let mut lanes = [0f32; 8];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let mut e = [0f32; 8];
            // SAFETY: AVX2 and FMA were detected.
            unsafe {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn run(x: &[f32; 8], e: &mut [f32; 8]) {
                    _mm256_storeu_ps(e.as_mut_ptr(), exp_neg_avx2(_mm256_loadu_ps(x.as_ptr())));
                }
                run(&lanes, &mut e);
            }
            for (i, &x) in lanes.iter().enumerate() {
                assert_eq!(e[i].to_bits(), exp_neg(x).to_bits(), "exp at {x}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_matches_scalar_bit_for_bit() {
        use std::arch::x86_64::*;
        if !avx512_available() {
            return;
        }
        let xs: Vec<f32> = (-1600..1600).map(|i| i as f32 * 0.0625 + 0.013).collect();
        for chunk in xs.chunks_exact(16) {
            let (mut e, mut s) = ([0f32; 16], [0f32; 16]);
            // SAFETY: AVX-512F and FMA were detected.
            unsafe {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn run(c: &[f32], e: &mut [f32; 16], s: &mut [f32; 16]) {
                    let x = _mm512_loadu_ps(c.as_ptr());
                    _mm512_storeu_ps(
                        e.as_mut_ptr(),
                        exp_neg_avx512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x))),
                    );
                    _mm512_storeu_ps(s.as_mut_ptr(), silu_avx512(x));
                }
                run(chunk, &mut e, &mut s);
            }
            for (i, &x) in chunk.iter().enumerate() {
                assert_eq!(e[i].to_bits(), exp_neg(-x.abs()).to_bits(), "exp at {x}");
                assert_eq!(s[i].to_bits(), silu(x).to_bits(), "silu at {x}");
            }
        }
    }
}

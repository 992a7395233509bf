//! llama.cpp's reference quantizers for the 32-weight block types (`quantize_row_*_ref` in
//! ggml-quants.c), ported operation for operation so that the same f32 input gives the same
//! bytes as `llama-quantize` (which calls exactly these when no importance matrix is given).
//! The float operations keep C's evaluation order and never fuse a multiply-add: ggml-base is
//! compiled without FMA, and a fused rounding would change ties.

use half::f16;

pub const QK: usize = 32;

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// The value of greatest magnitude (the first of equal magnitudes) and that magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// C's `(int8_t)f` for the in-range values these quantizers produce (truncation toward 0).
fn trunc_i8(f: f32) -> i32 {
    f as i8 as i32
}

/// `w = d·(q − 8)`: 2 bytes of f16 `d`, 16 bytes of nibbles (`qs[j]` = weights `j`, `j + 16`).
pub fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK) {
        let (_, max) = signed_absmax(b);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bytes(d));
        for j in 0..QK / 2 {
            let x0 = b[j] * id;
            let x1 = b[QK / 2 + j] * id;
            let q0 = trunc_i8(x0 + 8.5).min(15) as u8;
            let q1 = trunc_i8(x1 + 8.5).min(15) as u8;
            out.push(q0 | (q1 << 4));
        }
    }
}

/// `w = d·q + m`: f16 `d`, f16 `m`, 16 bytes of nibbles.
pub fn q4_1(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK) {
        let (min, max) = min_max(b);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(min));
        for j in 0..QK / 2 {
            let x0 = (b[j] - min) * id;
            let x1 = (b[QK / 2 + j] - min) * id;
            let q0 = trunc_i8(x0 + 0.5).min(15) as u8;
            let q1 = trunc_i8(x1 + 0.5).min(15) as u8;
            out.push(q0 | (q1 << 4));
        }
    }
}

/// `w = d·(q − 16)`: f16 `d`, 4 bytes of fifth bits, 16 bytes of low nibbles.
pub fn q5_0(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK) {
        let (_, max) = signed_absmax(b);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qh = 0u32;
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            let x0 = b[j] * id;
            let x1 = b[QK / 2 + j] * id;
            let q0 = trunc_i8(x0 + 16.5).min(31) as u8;
            let q1 = trunc_i8(x1 + 16.5).min(31) as u8;
            qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= (((q0 & 0x10) >> 4) as u32) << j;
            qh |= (((q1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
}

/// `w = d·q + m`, q in 0..32: f16 `d`, f16 `m`, 4 bytes of fifth bits, 16 bytes of nibbles.
pub fn q5_1(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK) {
        let (min, max) = min_max(b);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qh = 0u32;
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            let x0 = (b[j] - min) * id;
            let x1 = (b[QK / 2 + j] - min) * id;
            // C's `(uint8_t)(x + 0.5f)`, unclamped as there.
            let q0 = (x0 + 0.5) as u8;
            let q1 = (x1 + 0.5) as u8;
            qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= (((q0 & 0x10) >> 4) as u32) << j;
            qh |= (((q1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(min));
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
}

/// `w = d·q`, q in −127..=127: f16 `d`, 32 signed bytes.
pub fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK) {
        let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16_bytes(d));
        // `roundf` rounds half away from zero, as `f32::round` does.
        out.extend(b.iter().map(|&v| (v * id).round() as i8 as u8));
    }
}

pub fn f16_row(x: &[f32], out: &mut Vec<u8>) {
    out.extend(x.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()));
}

pub fn f32_row(x: &[f32], out: &mut Vec<u8>) {
    out.extend(x.iter().flat_map(|v| v.to_le_bytes()));
}

/// ggml's `ggml_compute_fp32_to_bf16`: round to nearest even; NaN stays a quiet NaN.
pub fn bf16_row(x: &[f32], out: &mut Vec<u8>) {
    for &v in x {
        let u = v.to_bits();
        let b = if (u & 0x7fff_ffff) > 0x7f80_0000 {
            (u >> 16) | 64
        } else {
            u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16
        };
        out.extend_from_slice(&(b as u16).to_le_bytes());
    }
}

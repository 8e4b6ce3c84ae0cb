//! `cv2.normalize(src, None, alpha=0, beta=1, norm_type=NORM_MINMAX, dtype=CV_32F)`, bit-exact.
//!
//! OpenCV (4.x `norm.cpp`) computes `scale = 1/(max-min)` in f64 (0 when `max - min <=
//! DBL_EPSILON`), and because the output is `CV_32F` it rounds `scale` to f32 and takes
//! `shift = (float)0 - (float)(min*scale)`. `convertTo` then maps each value with one fused
//! multiply-add: in f32 for an f32 source (`cvt_32f`), in f64 then rounded to f32 for an f64
//! source (`cvt_64f`). A unit scale with zero shift is a plain copy.

/// Min and max of a sequence, as f64 (`cv::minMaxIdx`); NaNs are skipped. `None` when empty
/// or all NaN.
fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = if v < lo { v } else { lo };
        hi = if v > hi { v } else { hi };
    }
    (lo <= hi).then_some((lo, hi))
}

/// `fmaf(x, a, b)`, correctly rounded, without hardware FMA: the f64 product is exact, so the
/// f64 sum is off only when it lands exactly half-way between two f32 values (musl's `fmaf`
/// test); that rare case takes the library `mul_add`.
#[inline(always)]
fn fma_f32(x: f32, a: f32, b: f32) -> f32 {
    let r = f64::from(x) * f64::from(a) + f64::from(b);
    if r.to_bits() & 0x1fff_ffff != 0x1000_0000 {
        r as f32
    } else {
        x.mul_add(a, b)
    }
}

/// `(float)fma(x, a, b)` (f64 fused multiply-add, then rounded to f32), without hardware FMA:
/// the unfused f64 result is within one rounding of the product and one of the sum from the
/// fused one, so both round to the same f32 unless they lie that close to an f32 rounding
/// midpoint; that rare case takes the library `mul_add`.
#[inline(always)]
fn fma_f64_to_f32(x: f64, a: f64, b: f64) -> f32 {
    let xa = x * a;
    let r = xa + b;
    let f = r as f32;
    let toward = if r > f64::from(f) {
        f.next_up()
    } else {
        f.next_down()
    };
    let midpoint = (f64::from(f) + f64::from(toward)) * 0.5;
    let slack = (xa.abs() + b.abs()) * f64::EPSILON * 2.0 + f64::MIN_POSITIVE;
    if (r - midpoint).abs() > slack || !r.is_finite() {
        f
    } else {
        x.mul_add(a, b) as f32
    }
}

/// Scale and shift exactly as `cv::normalize` derives them for `CV_32F` output.
fn minmax_scale_shift(smin: f64, smax: f64) -> (f64, f64) {
    let scale = if smax - smin > f64::EPSILON {
        1.0 / (smax - smin)
    } else {
        0.0
    };
    let scale = scale as f32 as f64;
    let shift = (0.0f32 - (smin * scale) as f32) as f64;
    (scale, shift)
}

/// Min-max normalises one channel of an interleaved f32 buffer (`src[i * stride + channel]`) into
/// `out` (length `src.len() / stride`), as `cv2.normalize(..., CV_32F)` on that channel.
pub(crate) fn normalize_minmax_f32_channel(
    src: &[f32],
    stride: usize,
    channel: usize,
    out: &mut [f32],
) {
    let chan = || src.iter().skip(channel).step_by(stride).copied();
    let Some((smin, smax)) = min_max(chan().map(f64::from)) else {
        return;
    };
    let (scale, shift) = minmax_scale_shift(smin, smax);
    if (scale - 1.0).abs() < f64::EPSILON && shift.abs() < f64::EPSILON {
        for (o, v) in out.iter_mut().zip(chan()) {
            *o = v;
        }
        return;
    }
    let (a, b) = (scale as f32, shift as f32);
    for (o, v) in out.iter_mut().zip(chan()) {
        *o = fma_f32(v, a, b);
    }
}

/// Min-max normalises an f64 buffer into f32, as `cv2.normalize(src_f64, ..., CV_32F)`.
pub(crate) fn normalize_minmax_f64_to_f32(src: &[f64], out: &mut [f32]) {
    let Some((smin, smax)) = min_max(src.iter().copied()) else {
        return;
    };
    let (scale, shift) = minmax_scale_shift(smin, smax);
    if (scale - 1.0).abs() < f64::EPSILON && shift.abs() < f64::EPSILON {
        for (o, &v) in out.iter_mut().zip(src) {
            *o = v as f32;
        }
        return;
    }
    for (o, &v) in out.iter_mut().zip(src) {
        *o = fma_f64_to_f32(v, scale, shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_fma_is_correctly_rounded() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..200_000 {
            let x = f32::from_bits((next() as u32 & 0x3fff_ffff) | 0x3000_0000) - 1.0;
            let a = f32::from_bits((next() as u32 & 0x00ff_ffff) | 0x3f00_0000);
            let b = -f32::from_bits((next() as u32 & 0x007f_ffff) | 0x3e00_0000);
            assert_eq!(fma_f32(x, a, b).to_bits(), x.mul_add(a, b).to_bits());
            let (xd, ad, bd) = (
                f64::from_bits(next() >> 12 | 0x3ff0_0000_0000_0000) - 1.5,
                f64::from(a),
                f64::from(b),
            );
            assert_eq!(
                fma_f64_to_f32(xd, ad, bd).to_bits(),
                (xd.mul_add(ad, bd) as f32).to_bits()
            );
        }
    }

    #[test]
    fn constant_input_maps_to_zero() {
        let src = [3.0f32; 8];
        let mut out = [9.0f32; 4];
        normalize_minmax_f32_channel(&src, 2, 1, &mut out);
        assert_eq!(out, [0.0; 4]);
        let mut out64 = [9.0f32; 3];
        normalize_minmax_f64_to_f32(&[-2.0; 3], &mut out64);
        assert_eq!(out64, [0.0; 3]);
    }

    #[test]
    fn range_maps_to_unit_interval() {
        let src = [-1.0f32, 0.0, 1.0, 3.0];
        let mut out = [0.0f32; 4];
        normalize_minmax_f32_channel(&src, 1, 0, &mut out);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[3], 1.0);
        assert!((out[1] - 0.25).abs() < 1e-7);
    }
}

//! `cv2.normalize(src, None, alpha=0, beta=1, norm_type=NORM_MINMAX, dtype=CV_32F)`, bit-exact.
//!
//! OpenCV (4.x `norm.cpp`) computes `scale = 1/(max-min)` in f64 (0 when `max - min <=
//! DBL_EPSILON`), and because the output is `CV_32F` it rounds `scale` to f32 and takes
//! `shift = (float)0 - (float)(min*scale)`. `convertTo` then maps each value with one fused
//! multiply-add: in f32 for an f32 source (`cvt_32f`), in f64 then rounded to f32 for an f64
//! source (`cvt_64f`). A unit scale with zero shift is a plain copy.

use rayon::prelude::*;

/// Independent min/max accumulators: min and max are exact, so splitting the scan into lanes
/// gives the same extremes as one left-to-right scan (up to the sign of a zero extreme, which
/// [`minmax_scale_shift`] maps to the same scale and shift), and LLVM vectorises it.
const LANES: usize = 8;

/// Values per parallel chunk of the element-wise passes.
const PAR_CHUNK: usize = 1 << 16;

/// Running min and max of lanes of values, NaNs skipped (`v < lo` is false for NaN).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinMax {
    lo: [f64; LANES],
    hi: [f64; LANES],
}

impl MinMax {
    pub(crate) fn new() -> Self {
        Self {
            lo: [f64::INFINITY; LANES],
            hi: [f64::NEG_INFINITY; LANES],
        }
    }

    #[inline(always)]
    fn add(&mut self, lane: usize, v: f64) {
        self.lo[lane] = if v < self.lo[lane] { v } else { self.lo[lane] };
        self.hi[lane] = if v > self.hi[lane] { v } else { self.hi[lane] };
    }

    pub(crate) fn merge(mut self, o: Self) -> Self {
        for l in 0..LANES {
            self.lo[l] = if o.lo[l] < self.lo[l] {
                o.lo[l]
            } else {
                self.lo[l]
            };
            self.hi[l] = if o.hi[l] > self.hi[l] {
                o.hi[l]
            } else {
                self.hi[l]
            };
        }
        self
    }

    /// `(min, max)`, `None` when every value was NaN or there were none.
    pub(crate) fn finish(self) -> Option<(f64, f64)> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for l in 0..LANES {
            lo = if self.lo[l] < lo { self.lo[l] } else { lo };
            hi = if self.hi[l] > hi { self.hi[l] } else { hi };
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Min and max of `chunk` (any length).
    pub(crate) fn of<T: Copy + Into<f64>>(chunk: &[T]) -> Self {
        let mut m = Self::new();
        let mut blocks = chunk.chunks_exact(LANES);
        for b in &mut blocks {
            for (l, &v) in b.iter().enumerate() {
                m.add(l, v.into());
            }
        }
        for (l, &v) in blocks.remainder().iter().enumerate() {
            m.add(l, v.into());
        }
        m
    }
}

/// Min and max of `values` as f64 (`cv::minMaxIdx`), NaNs skipped; in parallel chunks on the
/// current rayon pool (exact either way). `None` when empty or all NaN.
#[cfg(test)]
fn min_max<T: Copy + Into<f64> + Send + Sync>(values: &[T]) -> Option<(f64, f64)> {
    values
        .par_chunks(PAR_CHUNK)
        .map(MinMax::of)
        .reduce(MinMax::new, MinMax::merge)
        .finish()
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

/// The branch-free common case of [`fma_f64_to_f32`]: `(f, true)` when `f` is certainly what it
/// returns, `(f, false)` when the caller must call it. Sufficient test: the rounding midpoints
/// next to `f` are half of `f`'s f32 ulp away from it, or a quarter on the side towards zero when
/// `|f|` is a power of two (taken here for both sides, by reading the binade of `|f| (1 -
/// 2^-24)`, exact in f64, which drops to the binade below exactly for powers of two), so `r` is at
/// least `half_gap - |r - f|` from any midpoint; when that exceeds `fma_f64_to_f32`'s slack, it
/// takes its fast branch. Zero and subnormal `f` give no gap (they go the slow way), NaN and
/// infinities fail the comparison. All f64 arithmetic and bit masks, so it vectorises.
#[inline(always)]
fn fma_f64_to_f32_fast(x: f64, a: f64, b: f64) -> (f32, bool) {
    const EXPONENT: u64 = 0x7ff0_0000_0000_0000;
    const ULP_BELOW_ONE: f64 = 1.0 - 1.0 / (1u64 << 24) as f64;
    const HALF_ULP: f64 = 1.0 / (1u64 << 24) as f64;
    let xa = x * a;
    let r = xa + b;
    let f = r as f32;
    let fb = f64::from(f);
    let binade = f64::from_bits((fb.abs() * ULP_BELOW_ONE).to_bits() & EXPONENT);
    let half_gap = binade * HALF_ULP;
    let slack = (xa.abs() + b.abs()) * f64::EPSILON * 2.0 + f64::MIN_POSITIVE;
    (f, half_gap - (r - fb).abs() > slack)
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

/// Whether `cv::normalize` takes its plain-copy branch for this scale and shift.
fn is_identity(scale: f64, shift: f64) -> bool {
    (scale - 1.0).abs() < f64::EPSILON && shift.abs() < f64::EPSILON
}

#[cfg(test)]
/// `out[i] = fmaf(src[i], a, b)` for one chunk: the f64 evaluation everywhere (vectorised),
/// then the rare midpoint cases again with the exact routine.
fn scale_f32_chunk(src: &[f32], a: f32, b: f32, out: &mut [f32]) {
    let mut midpoint = false;
    for (o, &v) in out.iter_mut().zip(src) {
        let r = f64::from(v) * f64::from(a) + f64::from(b);
        midpoint |= r.to_bits() & 0x1fff_ffff == 0x1000_0000;
        *o = r as f32;
    }
    if midpoint {
        for (o, &v) in out.iter_mut().zip(src) {
            *o = fma_f32(v, a, b);
        }
    }
}

/// Min-max normalises one channel of an interleaved f32 buffer (`src[i * stride + channel]`) into
/// `out` (length `src.len() / stride`), as `cv2.normalize(..., CV_32F)` on that channel. The
/// reference [`normalize_minmax_hv`] is tested against (this one against OpenCV's output).
#[cfg(test)]
pub(crate) fn normalize_minmax_f32_channel(
    src: &[f32],
    stride: usize,
    channel: usize,
    out: &mut [f32],
) {
    let chan: Vec<f32> = src.iter().skip(channel).step_by(stride).copied().collect();
    let Some((smin, smax)) = min_max(&chan) else {
        return;
    };
    let (scale, shift) = minmax_scale_shift(smin, smax);
    if is_identity(scale, shift) {
        out.copy_from_slice(&chan);
        return;
    }
    out.par_chunks_mut(PAR_CHUNK)
        .zip(chan.par_chunks(PAR_CHUNK))
        .for_each(|(o, s)| scale_f32_chunk(s, scale as f32, shift as f32, o));
}

/// What `cv2.normalize(..., NORM_MINMAX, CV_32F)` does to each value of an f32 map, given the
/// map's min and max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum UnitScaleF32 {
    /// No min and max (empty or all NaN): OpenCV leaves the destination as it was; callers
    /// start from zeros.
    Zero,
    /// Unit scale, zero shift: a plain copy.
    Copy,
    /// `fmaf(v, scale, shift)`.
    Fma(f32, f32),
}

impl UnitScaleF32 {
    /// The scaling for a map with these extremes (`None`: no number in it).
    pub(crate) fn from_min_max(extremes: Option<(f64, f64)>) -> Self {
        let Some((smin, smax)) = extremes else {
            return Self::Zero;
        };
        let (scale, shift) = minmax_scale_shift(smin, smax);
        if is_identity(scale, shift) {
            Self::Copy
        } else {
            Self::Fma(scale as f32, shift as f32)
        }
    }

    /// The normalised value of `v`.
    #[inline(always)]
    pub(crate) fn apply(self, v: f32) -> f32 {
        match self {
            Self::Zero => 0.0,
            Self::Copy => v,
            Self::Fma(a, b) => fma_f32(v, a, b),
        }
    }
}

/// Min and max of each channel of an interleaved `(h, v)` buffer (lanes alternate between the
/// two channels), on the current rayon pool.
pub(crate) fn min_max_hv(hv: &[f32]) -> [Option<(f64, f64)>; 2] {
    debug_assert!(LANES.is_multiple_of(2) && hv.len().is_multiple_of(2));
    let m = hv
        .par_chunks(PAR_CHUNK)
        .map(MinMax::of)
        .reduce(MinMax::new, MinMax::merge);
    let channel = |c: usize| {
        let mut one = MinMax::new();
        for l in (c..LANES).step_by(2) {
            one.lo[l] = m.lo[l];
            one.hi[l] = m.hi[l];
        }
        one.finish()
    };
    [channel(0), channel(1)]
}

/// What `cv2.normalize(src_f64, ..., NORM_MINMAX, CV_32F)` does to each value, given the map's
/// extremes (see [`MinMax`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum UnitScaleF64 {
    /// No min and max (empty or all NaN): the destination keeps what it held.
    Keep,
    /// Unit scale, zero shift: `v as f32`.
    Convert,
    /// `(float)fma(v, scale, shift)`.
    Fma(f64, f64),
}

impl UnitScaleF64 {
    /// The scaling for a map with these extremes (`None`: no number in it).
    pub(crate) fn from_min_max(extremes: Option<(f64, f64)>) -> Self {
        let Some((smin, smax)) = extremes else {
            return Self::Keep;
        };
        let (scale, shift) = minmax_scale_shift(smin, smax);
        if is_identity(scale, shift) {
            Self::Convert
        } else {
            Self::Fma(scale, shift)
        }
    }

    /// Normalises `src` into `out` (same length; untouched for [`UnitScaleF64::Keep`]): a
    /// vectorised evaluation per block of [`LANES`] values, and a block holding a value it is not
    /// sure of redone value by value with the exact routine.
    #[inline]
    pub(crate) fn apply(self, src: &[f64], out: &mut [f32]) {
        match self {
            Self::Keep => {}
            Self::Convert => {
                for (o, &v) in out.iter_mut().zip(src) {
                    *o = v as f32;
                }
            }
            Self::Fma(scale, shift) => {
                let mut blocks = out.chunks_exact_mut(LANES).zip(src.chunks_exact(LANES));
                for (o, s) in &mut blocks {
                    let s: &[f64; LANES] = s.try_into().expect("LANES values");
                    let mut f = [0f32; LANES];
                    let mut sure = [false; LANES];
                    for j in 0..LANES {
                        (f[j], sure[j]) = fma_f64_to_f32_fast(s[j], scale, shift);
                    }
                    if sure.iter().all(|&ok| ok) {
                        o.copy_from_slice(&f);
                    } else {
                        for (o, &v) in o.iter_mut().zip(s) {
                            *o = fma_f64_to_f32(v, scale, shift);
                        }
                    }
                }
                let rest = src.len() - src.len() % LANES;
                for (o, &v) in out[rest..].iter_mut().zip(&src[rest..]) {
                    *o = fma_f64_to_f32(v, scale, shift);
                }
            }
        }
    }
}

/// Min-max normalises an f64 buffer into f32, as `cv2.normalize(src_f64, ..., CV_32F)` (the
/// whole-map form of [`UnitScaleF64`], which the fixtures test it against OpenCV through).
#[cfg(test)]
pub(crate) fn normalize_minmax_f64_to_f32(src: &[f64], out: &mut [f32]) {
    let scale = UnitScaleF64::from_min_max(min_max(src));
    out.par_chunks_mut(PAR_CHUNK)
        .zip(src.par_chunks(PAR_CHUNK))
        .for_each(|(o, s)| scale.apply(s, o));
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

    #[test]
    fn bulk_paths_match_the_per_value_routines() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        // values near f32 midpoints, tiny and subnormal values, zeros of both signs, ties
        let mut v64: Vec<f64> = (0..50_000)
            .map(|i| match i % 5 {
                0 => f64::from_bits(next() >> 12 | 0x3ff0_0000_0000_0000) - 1.5,
                1 => f64::from(f32::from_bits(next() as u32 & 0x3fff_ffff)) * 1.000_000_1,
                2 => f64::from(f32::from_bits(next() as u32 & 0x00ff_ffff)),
                3 => -0.0,
                _ => (next() % 7) as f64 * 0.125,
            })
            .collect();
        v64.push(3.0);
        let mut out = vec![0f32; v64.len()];
        normalize_minmax_f64_to_f32(&v64, &mut out);
        let lo = v64.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v64.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (scale, shift) = minmax_scale_shift(lo, hi);
        assert!(
            v64.iter()
                .zip(&out)
                .all(|(&v, o)| fma_f64_to_f32(v, scale, shift).to_bits() == o.to_bits())
        );
        let v32: Vec<f32> = v64.iter().map(|&v| v as f32).collect();
        let mut hv = Vec::new();
        for (&a, &b) in v32.iter().zip(v32.iter().rev()) {
            hv.extend([a, b]);
        }
        let [hs, vs] = min_max_hv(&hv).map(UnitScaleF32::from_min_max);
        let h: Vec<f32> = hv.iter().step_by(2).map(|&x| hs.apply(x)).collect();
        let v: Vec<f32> = hv.iter().skip(1).step_by(2).map(|&x| vs.apply(x)).collect();
        let (mut h1, mut v1) = (vec![0f32; v32.len()], vec![0f32; v32.len()]);
        normalize_minmax_f32_channel(&hv, 2, 0, &mut h1);
        normalize_minmax_f32_channel(&hv, 2, 1, &mut v1);
        assert_eq!(h, h1);
        assert_eq!(v, v1);
        let lo = v32.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v32.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (scale, shift) = minmax_scale_shift(f64::from(lo), f64::from(hi));
        let (a, b) = (scale as f32, shift as f32);
        assert!(
            v32.iter()
                .zip(&h)
                .all(|(&x, o)| fma_f32(x, a, b).to_bits() == o.to_bits())
        );
    }
}

//! OpenCV-exact separable filters: `cv2.Sobel(src_f32, CV_64F, dx, dy, ksize)` and
//! `cv2.GaussianBlur(src_f64, (3, 3), 0)`, both with the default `BORDER_REFLECT_101`.
//!
//! OpenCV runs these as a `FilterEngine`: a generic `RowFilter` (a left-to-right dot product per
//! pixel, in f64) into a row buffer, then a `SymmColumnFilter` that pairs rows symmetric about the
//! centre (`s = k0*c + delta; s += k[j]*(below_j ± above_j)`). We keep exactly that order of
//! operations, so the results are bit-identical; the work is vectorised across pixels, never
//! across taps, which keeps the per-pixel order.
//!
//! Neither pass is fused (no FMA): the row pass products are exact anyway (f32 x an integer below
//! 2^18 fits in 53 bits), and the column pass `s += k*(a±b)` rounds the product, as OpenCV's build
//! does (a fused version differs in the last bit; the fixtures pin it).

use crate::normalize::{MinMax, UnitScaleF32};

/// OpenCV's `borderInterpolate(p, len, BORDER_REFLECT_101)`: `gfedcb|abcdefgh|gfedcba`.
pub(crate) fn reflect_101(mut p: isize, len: usize) -> usize {
    let len = len as isize;
    if len == 1 {
        return 0;
    }
    while p < 0 || p >= len {
        if p < 0 {
            p = -p;
        } else {
            p = 2 * (len - 1) - p;
        }
    }
    p as usize
}

/// One axis of `cv::getSobelKernels(dx, dy, ksize, normalize=false)`: the smoothing kernel
/// (`order == 0`, binomial row) or the derivative kernel (`order >= 1`), as f64.
pub(crate) fn sobel_kernel(ksize: usize, order: usize) -> Vec<f64> {
    let ksize = if ksize == 1 && order > 0 { 3 } else { ksize };
    let mut k = vec![0i64; ksize + 1];
    if ksize == 1 {
        k[0] = 1;
    } else if ksize == 3 {
        let v: [i64; 3] = match order {
            0 => [1, 2, 1],
            1 => [-1, 0, 1],
            _ => [1, -2, 1],
        };
        k[..3].copy_from_slice(&v);
    } else {
        k[0] = 1;
        for _ in 0..ksize.saturating_sub(order + 1) {
            let mut old = k[0];
            for j in 1..=ksize {
                let new = k[j] + k[j - 1];
                k[j - 1] = old;
                old = new;
            }
        }
        for _ in 0..order {
            let mut old = -k[0];
            for j in 1..=ksize {
                let new = k[j - 1] - k[j];
                k[j - 1] = old;
                old = new;
            }
        }
    }
    k.truncate(ksize);
    k.into_iter().map(|v| v as f64).collect()
}

/// Whether a column kernel is symmetric or antisymmetric about its centre (all the kernels used
/// here are one or the other; OpenCV picks `SymmColumnFilter` for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnSymmetry {
    /// `k[r+j] == k[r-j]`.
    Symmetric,
    /// `k[r+j] == -k[r-j]`, `k[r] == 0`.
    Antisymmetric,
}

/// Reusable buffers of the separable filter (one per thread / tile).
#[derive(Debug, Default)]
pub(crate) struct SeparableScratch {
    padded_row: Vec<f64>,
    /// Ring of row-filtered rows, slot `row % ky.len()`.
    ring: Vec<f64>,
}

/// Where the row pass reads its source rows from, widened to f64.
pub(crate) trait RowSource: Sync {
    /// Writes source row `y` (`dest.len()` = width values) into `dest`.
    fn load_row(&self, y: usize, dest: &mut [f64]);
}

/// A row-major f32 or f64 map of width `w`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a, T> {
    /// The values, `h * w`.
    pub(crate) data: &'a [T],
    /// Row length.
    pub(crate) w: usize,
}

impl<T: Copy + Into<f64> + Sync> RowSource for Rows<'_, T> {
    #[inline]
    fn load_row(&self, y: usize, dest: &mut [f64]) {
        for (d, &v) in dest
            .iter_mut()
            .zip(&self.data[y * self.w..(y + 1) * self.w])
        {
            *d = v.into();
        }
    }
}

/// One channel of the interleaved `(h, v)` map, min-max normalised on the fly (the f32 values
/// `cv2.normalize` would have written, then widened).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormalizedChannel<'a> {
    /// The interleaved map, `h * w * 2`.
    pub(crate) hv: &'a [f32],
    /// 0 for h, 1 for v.
    pub(crate) channel: usize,
    /// The channel's normalisation.
    pub(crate) scale: UnitScaleF32,
    /// Row length.
    pub(crate) w: usize,
}

impl RowSource for NormalizedChannel<'_> {
    #[inline]
    fn load_row(&self, y: usize, dest: &mut [f64]) {
        let row = &self.hv[2 * y * self.w..2 * (y + 1) * self.w];
        let pairs = row.chunks_exact(2);
        match self.scale {
            UnitScaleF32::Zero => dest.fill(0.0),
            UnitScaleF32::Copy => {
                for (d, p) in dest.iter_mut().zip(pairs) {
                    *d = f64::from(p[self.channel]);
                }
            }
            s @ UnitScaleF32::Fma(..) => {
                for (d, p) in dest.iter_mut().zip(pairs) {
                    *d = f64::from(s.apply(p[self.channel]));
                }
            }
        }
    }
}

/// Output pixels computed together in registers: the per-pixel order of operations is unchanged,
/// only the loops are blocked so that accumulators stay in vector registers across taps.
const LANES: usize = 8;

/// Reflect-101 padding of source row `y`, widened to f64 once: `pad[j] = src[reflect(j - rx)]`.
fn pad_row<S: RowSource>(src: &S, y: usize, w: usize, rx: usize, pad: &mut Vec<f64>) {
    pad.resize(w + 2 * rx, 0.0);
    src.load_row(y, &mut pad[rx..rx + w]);
    for j in (0..rx).chain(w + rx..w + 2 * rx) {
        pad[j] = pad[rx + reflect_101(j as isize - rx as isize, w)];
    }
}

/// OpenCV's generic `RowFilter`: `acc[i] = sum_k kx[k] * src[reflect(i + k - rx)]`, k ascending
/// (the first product starts the sum, each further one is added to it).
fn row_pass<S: RowSource>(src: &S, y: usize, kx: &[f64], pad: &mut Vec<f64>, acc: &mut [f64]) {
    let kn = kx.len();
    pad_row(src, y, acc.len(), kn / 2, pad);
    let (&k0, rest) = kx.split_first().expect("kernel is not empty");
    let mut blocks = acc.chunks_exact_mut(LANES);
    let mut x = 0;
    for a in &mut blocks {
        let p = &pad[x..x + LANES + kn - 1];
        let mut s = [0.0f64; LANES];
        let p0: &[f64; LANES] = p[..LANES].try_into().expect("LANES values");
        for j in 0..LANES {
            s[j] = k0 * p0[j];
        }
        for (k, &kv) in rest.iter().enumerate() {
            let q: &[f64; LANES] = p[k + 1..k + 1 + LANES].try_into().expect("LANES values");
            for j in 0..LANES {
                s[j] += kv * q[j];
            }
        }
        a.copy_from_slice(&s);
        x += LANES;
    }
    for (i, a) in blocks.into_remainder().iter_mut().enumerate() {
        let p = &pad[x + i..x + i + kn];
        let mut s = k0 * p[0];
        for (&kv, &v) in rest.iter().zip(&p[1..]) {
            s += kv * v;
        }
        *a = s;
    }
}

/// OpenCV's `SymmColumnFilter` for one output row: `s = kc * c + 0` (symmetric) or `s = 0`
/// (antisymmetric), then `s = k[j] * (below_j ± above_j) + s` for `j = 1..=ry`. `below[j - 1]`
/// and `above[j - 1]` are the row-filtered rows `j` below and above (reflected).
fn column_pass<const SYMMETRIC: bool>(
    centre: &[f64],
    below: &[&[f64]],
    above: &[&[f64]],
    ky: &[f64],
    out: &mut [f64],
) {
    let ry = ky.len() / 2;
    let kc = ky[ry];
    let kside = &ky[ry + 1..];
    let mut blocks = out.chunks_exact_mut(LANES);
    let mut x = 0;
    for o in &mut blocks {
        let mut s = [0.0f64; LANES];
        if SYMMETRIC {
            let c: &[f64; LANES] = centre[x..x + LANES].try_into().expect("LANES values");
            for j in 0..LANES {
                s[j] = kc * c[j] + 0.0;
            }
        }
        for ((&kv, b), t) in kside.iter().zip(below).zip(above) {
            let b: &[f64; LANES] = b[x..x + LANES].try_into().expect("LANES values");
            let t: &[f64; LANES] = t[x..x + LANES].try_into().expect("LANES values");
            for j in 0..LANES {
                let d = if SYMMETRIC { b[j] + t[j] } else { b[j] - t[j] };
                s[j] = mul_then_add(kv, d, s[j]);
            }
        }
        o.copy_from_slice(&s);
        x += LANES;
    }
    for (i, o) in blocks.into_remainder().iter_mut().enumerate() {
        let xi = x + i;
        let mut s = if SYMMETRIC {
            kc * centre[xi] + 0.0
        } else {
            0.0
        };
        for ((&kv, b), t) in kside.iter().zip(below).zip(above) {
            let d = if SYMMETRIC {
                b[xi] + t[xi]
            } else {
                b[xi] - t[xi]
            };
            s = mul_then_add(kv, d, s);
        }
        *o = s;
    }
}

/// Filters output rows `y0..y0 + out.len() / w` of [`sep_filter`] (`out` holds just those rows).
///
/// Row-filtered rows live in a ring of `ky.len()` rows: the rows one output row needs (with
/// reflection) always lie in `max(0, y - ry)..=min(h - 1, y + ry)`, at most `ky.len()`
/// consecutive source rows, and the window only moves down, so each source row is filtered once
/// per band and the working set stays in cache.
#[allow(clippy::too_many_arguments)]
fn sep_filter_rows<S: RowSource>(
    src: &S,
    h: usize,
    w: usize,
    kx: &[f64],
    ky: &[f64],
    ky_symmetry: ColumnSymmetry,
    y0: usize,
    out: &mut [f64],
    scratch: &mut SeparableScratch,
) -> MinMax {
    let mut extremes = MinMax::new();
    let ry = ky.len() / 2;
    assert!(ry <= MAX_RADIUS, "column kernel of {} taps", ky.len());
    let slots = ky.len();
    scratch.ring.resize(slots * w, 0.0);
    let SeparableScratch { padded_row, ring } = scratch;
    let mut next_row = y0.saturating_sub(ry); // first source row not yet filtered
    for (dy, o) in out.chunks_exact_mut(w).enumerate() {
        let y = y0 + dy;
        let hi = (y + ry).min(h - 1);
        while next_row <= hi {
            let slot = next_row % slots;
            row_pass(
                src,
                next_row,
                kx,
                padded_row,
                &mut ring[slot * w..(slot + 1) * w],
            );
            next_row += 1;
        }
        let ring: &[f64] = ring;
        let row = |r: usize| {
            let slot = r % slots;
            &ring[slot * w..(slot + 1) * w]
        };
        let mut below: [&[f64]; MAX_RADIUS] = [&[]; MAX_RADIUS];
        let mut above: [&[f64]; MAX_RADIUS] = [&[]; MAX_RADIUS];
        for j in 1..=ry {
            below[j - 1] = row(reflect_101((y + j) as isize, h));
            above[j - 1] = row(reflect_101(y as isize - j as isize, h));
        }
        let (below, above) = (&below[..ry], &above[..ry]);
        match ky_symmetry {
            ColumnSymmetry::Symmetric => column_pass::<true>(row(y), below, above, ky, o),
            ColumnSymmetry::Antisymmetric => column_pass::<false>(row(y), below, above, ky, o),
        }
        extremes = extremes.merge(MinMax::of(o));
    }
    extremes
}

/// Largest column-kernel radius (OpenCV's Sobel sizes go up to 31).
const MAX_RADIUS: usize = 15;

/// Fewest output rows in a parallel band: each band re-filters up to `ky.len() - 1` source rows
/// that its neighbour also filters (to identical values), so bands are only cut for threads.
const MIN_BAND_ROWS: usize = 32;

/// `cv::sepFilter2D` with a generic row filter and a symmetric/antisymmetric column filter,
/// `delta = 0`, `BORDER_REFLECT_101`. `out` gets `h * w` values; returns their min and max
/// (taken while each output row is still in cache).
///
/// With more than one thread in the current rayon pool the output rows are cut into one band per
/// thread, filtered in parallel; every value is computed by the same operations either way.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sep_filter<S: RowSource>(
    src: &S,
    h: usize,
    w: usize,
    kx: &[f64],
    ky: &[f64],
    ky_symmetry: ColumnSymmetry,
    out: &mut [f64],
    scratch: &mut SeparableScratch,
) -> MinMax {
    use rayon::prelude::*;
    debug_assert_eq!(out.len(), h * w);
    if h == 0 || w == 0 {
        return MinMax::new();
    }
    let band = h.div_ceil(rayon::current_num_threads()).max(MIN_BAND_ROWS);
    if band >= h {
        return sep_filter_rows(src, h, w, kx, ky, ky_symmetry, 0, out, scratch);
    }
    out.par_chunks_mut(band * w)
        .enumerate()
        .map_init(SeparableScratch::default, |s, (b, o)| {
            sep_filter_rows(src, h, w, kx, ky, ky_symmetry, b * band, o, s)
        })
        .reduce(MinMax::new, MinMax::merge)
}

/// `acc + k * x` with two roundings: OpenCV's column loop is not FMA-contracted (checked
/// against its output bit for bit; a fused version differs in the last bit).
#[inline(always)]
fn mul_then_add(k: f64, x: f64, acc: f64) -> f64 {
    k * x + acc
}

/// `cv2.Sobel(src, CV_64F, dx, dy, ksize)` for `(dx, dy)` = `(1, 0)` (`horizontal = true`) or
/// `(0, 1)`.
#[cfg(test)]
pub(crate) fn sobel_f32(
    src: &[f32],
    h: usize,
    w: usize,
    ksize: usize,
    horizontal: bool,
    out: &mut [f64],
    scratch: &mut SeparableScratch,
) {
    debug_assert_eq!(src.len(), h * w);
    sobel(
        &Rows { data: src, w },
        h,
        w,
        ksize,
        horizontal,
        out,
        scratch,
    );
}

/// `cv2.Sobel(src, CV_64F, dx, dy, ksize)` (as [`sep_filter`]) of any row source; returns the
/// output's min and max.
pub(crate) fn sobel<S: RowSource>(
    src: &S,
    h: usize,
    w: usize,
    ksize: usize,
    horizontal: bool,
    out: &mut [f64],
    scratch: &mut SeparableScratch,
) -> MinMax {
    let (dx, dy) = if horizontal { (1, 0) } else { (0, 1) };
    let kx = sobel_kernel(ksize, dx);
    let ky = sobel_kernel(ksize, dy);
    let sym = if dy == 0 {
        ColumnSymmetry::Symmetric
    } else {
        ColumnSymmetry::Antisymmetric
    };
    sep_filter(src, h, w, &kx, &ky, sym, out, scratch)
}

/// `cv2.GaussianBlur(src, (3, 3), 0)` on f64: sigma 0 with ksize 3 takes OpenCV's fixed
/// small-kernel table `[0.25, 0.5, 0.25]`.
pub(crate) fn gaussian_blur_3x3_f64(
    src: &[f64],
    h: usize,
    w: usize,
    out: &mut [f64],
    scratch: &mut SeparableScratch,
) {
    const K: [f64; 3] = [0.25, 0.5, 0.25];
    debug_assert_eq!(src.len(), h * w);
    let src = Rows { data: src, w };
    sep_filter(&src, h, w, &K, &K, ColumnSymmetry::Symmetric, out, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_101_matches_opencv() {
        // gfedcb|abcdefgh|gfedcba
        let idx: Vec<usize> = (-3..11).map(|p| reflect_101(p, 8)).collect();
        assert_eq!(idx, vec![3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4]);
        assert_eq!(reflect_101(-5, 1), 0);
        // repeated reflection when the kernel is wider than the image
        assert_eq!(reflect_101(-4, 3), 0);
        assert_eq!(reflect_101(5, 3), 1);
    }

    #[test]
    fn sobel_kernels_are_binomial() {
        assert_eq!(sobel_kernel(5, 0), vec![1.0, 4.0, 6.0, 4.0, 1.0]);
        assert_eq!(sobel_kernel(5, 1), vec![-1.0, -2.0, 0.0, 2.0, 1.0]);
        assert_eq!(sobel_kernel(3, 1), vec![-1.0, 0.0, 1.0]);
        let k21 = sobel_kernel(21, 0);
        assert_eq!(k21[10], 184_756.0);
        assert_eq!(k21.iter().sum::<f64>(), (1u64 << 20) as f64);
        let d21 = sobel_kernel(21, 1);
        assert_eq!(d21[10], 0.0);
        assert!(d21.iter().zip(d21.iter().rev()).all(|(a, b)| *a == -*b));
    }

    #[test]
    fn sobel_of_a_ramp_is_constant() {
        let (h, w) = (9, 12);
        let src: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        let mut out = vec![0.0; h * w];
        let mut s = SeparableScratch::default();
        sobel_f32(&src, h, w, 3, true, &mut out, &mut s);
        // interior: (1+2+1) * 2 = 8 per unit slope
        assert_eq!(out[4 * w + 5], 8.0);
        // reflect-101 at the border flattens the slope to 0
        assert_eq!(out[4 * w], 0.0);
    }
}

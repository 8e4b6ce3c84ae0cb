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

/// A source pixel type the row pass reads (f32 for Sobel, f64 for the Gaussian).
pub(crate) trait FilterSource: Copy + Send + Sync {
    fn widen(self) -> f64;
}

impl FilterSource for f32 {
    #[inline]
    fn widen(self) -> f64 {
        self as f64
    }
}

impl FilterSource for f64 {
    #[inline]
    fn widen(self) -> f64 {
        self
    }
}

/// OpenCV's generic `RowFilter`: `acc[i] = sum_k kx[k] * src[reflect(i + k - rx)]`, k ascending.
fn row_pass<S: FilterSource>(srow: &[S], kx: &[f64], pad: &mut Vec<f64>, acc: &mut [f64]) {
    let w = srow.len();
    let rx = kx.len() / 2;
    pad.clear();
    pad.extend(
        (0..w + kx.len() - 1).map(|j| srow[reflect_101(j as isize - rx as isize, w)].widen()),
    );
    let k0 = kx[0];
    for (a, &p) in acc.iter_mut().zip(&pad[..w]) {
        *a = k0 * p;
    }
    for (k, &kv) in kx.iter().enumerate().skip(1) {
        for (a, &p) in acc.iter_mut().zip(&pad[k..k + w]) {
            *a += kv * p;
        }
    }
}

/// `cv::sepFilter2D` with a generic row filter and a symmetric/antisymmetric column filter,
/// `delta = 0`, `BORDER_REFLECT_101`. `out` gets `h * w` values.
///
/// Row-filtered rows live in a ring of `ky.len()` rows: the rows one output row needs (with
/// reflection) always span at most that many consecutive source rows, and the window only moves
/// down, so each source row is filtered once and the working set stays in cache.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sep_filter<S: FilterSource>(
    src: &[S],
    h: usize,
    w: usize,
    kx: &[f64],
    ky: &[f64],
    ky_symmetry: ColumnSymmetry,
    out: &mut [f64],
    scratch: &mut SeparableScratch,
) {
    debug_assert_eq!(src.len(), h * w);
    debug_assert_eq!(out.len(), h * w);
    if h == 0 || w == 0 {
        return;
    }
    let ry = ky.len() / 2;
    let slots = ky.len();
    scratch.ring.resize(slots * w, 0.0);
    let SeparableScratch { padded_row, ring } = scratch;
    let mut next_row = 0; // first source row not yet filtered
    for y in 0..h {
        let hi = (y + ry).min(h - 1);
        while next_row <= hi {
            let slot = next_row % slots;
            row_pass(
                &src[next_row * w..(next_row + 1) * w],
                kx,
                padded_row,
                &mut ring[slot * w..(slot + 1) * w],
            );
            next_row += 1;
        }
        let row = |r: usize| {
            let slot = r % slots;
            &ring[slot * w..(slot + 1) * w]
        };
        let o = &mut out[y * w..(y + 1) * w];
        match ky_symmetry {
            ColumnSymmetry::Symmetric => {
                let kc = ky[ry];
                for (a, &c) in o.iter_mut().zip(row(y)) {
                    *a = kc * c + 0.0;
                }
            }
            ColumnSymmetry::Antisymmetric => o.fill(0.0),
        }
        for j in 1..=ry {
            let rb = row(reflect_101((y + j) as isize, h));
            let ra = row(reflect_101(y as isize - j as isize, h));
            let kv = ky[ry + j];
            match ky_symmetry {
                ColumnSymmetry::Symmetric => {
                    for ((a, &b), &t) in o.iter_mut().zip(rb).zip(ra) {
                        *a = mul_then_add(kv, b + t, *a);
                    }
                }
                ColumnSymmetry::Antisymmetric => {
                    for ((a, &b), &t) in o.iter_mut().zip(rb).zip(ra) {
                        *a = mul_then_add(kv, b - t, *a);
                    }
                }
            }
        }
    }
}

/// `acc + k * x` with two roundings: OpenCV's column loop is not FMA-contracted (checked
/// against its output bit for bit; a fused version differs in the last bit).
#[inline(always)]
fn mul_then_add(k: f64, x: f64, acc: f64) -> f64 {
    k * x + acc
}

/// `cv2.Sobel(src, CV_64F, dx, dy, ksize)` for `(dx, dy)` = `(1, 0)` (`horizontal = true`) or
/// `(0, 1)`.
pub(crate) fn sobel_f32(
    src: &[f32],
    h: usize,
    w: usize,
    ksize: usize,
    horizontal: bool,
    out: &mut [f64],
    scratch: &mut SeparableScratch,
) {
    let (dx, dy) = if horizontal { (1, 0) } else { (0, 1) };
    let kx = sobel_kernel(ksize, dx);
    let ky = sobel_kernel(ksize, dy);
    let sym = if dy == 0 {
        ColumnSymmetry::Symmetric
    } else {
        ColumnSymmetry::Antisymmetric
    };
    sep_filter(src, h, w, &kx, &ky, sym, out, scratch);
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
    sep_filter(src, h, w, &K, &K, ColumnSymmetry::Symmetric, out, scratch);
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

//! An "oracle" model: HoVer-Net head outputs rendered from a known instance label map.
//!
//! Used by tests and benches (here and in downstream crates) to get np/hv/tp maps that look like
//! a well-trained model's at any size, so post-processing and merging can be checked against the
//! labels they came from. It is the HoVer-Net training target (Graham et al. 2019): np = the
//! nucleus mask smoothed by a Gaussian (sigma `np_sigma`, scipy-style `reflect` border, radius
//! `int(4 sigma + 0.5)`); hv = per-instance x / y offsets from the instance centroid, divided by
//! the largest offset on each side so each side spans [-1, 0] and [0, 1]; tp = the class id of
//! each instance pixel, 0 elsewhere.

use crate::PostprocError;
use crate::canvas::{check_len, check_size};

/// Rendered head outputs of one canvas, in the layout [`crate::CanvasView`] borrows.
#[derive(Debug, Clone, PartialEq)]
pub struct HoverNetTargets {
    /// Canvas height.
    pub height: usize,
    /// Canvas width.
    pub width: usize,
    /// Nucleus probability, `height * width`.
    pub np: Vec<f32>,
    /// Interleaved `(h, v)`, `height * width * 2`.
    pub hv: Vec<f32>,
    /// Class ids as floats, `height * width`.
    pub tp: Vec<f32>,
}

/// Renders the targets of `labels` (row-major, > 0 = instance id) with optional per-pixel class
/// ids `types` (0 where absent: all instances get class 1).
///
/// # Errors
/// [`PostprocError::BufferLength`] when a buffer does not hold `height * width` values.
pub fn render_hovernet_targets(
    labels: &[i32],
    types: Option<&[u8]>,
    height: usize,
    width: usize,
    np_sigma: f32,
) -> Result<HoverNetTargets, PostprocError> {
    check_size(height, width)?;
    check_len("labels", labels.len(), height, width, 1)?;
    if let Some(t) = types {
        check_len("tp", t.len(), height, width, 1)?;
    }
    let (h, w) = (height, width);
    let n = h * w;
    let max = labels.iter().copied().max().unwrap_or(0).max(0) as usize;
    // centroid and one-sided extents per label
    let mut sum = vec![(0f64, 0f64, 0u64); max + 1];
    for y in 0..h {
        for x in 0..w {
            let l = labels[y * w + x];
            if l > 0 {
                let s = &mut sum[l as usize];
                s.0 += x as f64;
                s.1 += y as f64;
                s.2 += 1;
            }
        }
    }
    let cen: Vec<(f64, f64)> = sum
        .iter()
        .map(|s| {
            if s.2 > 0 {
                (s.0 / s.2 as f64, s.1 / s.2 as f64)
            } else {
                (0.0, 0.0)
            }
        })
        .collect();
    // [min dx, max dx, min dy, max dy]
    let mut ext = vec![[0f64; 4]; max + 1];
    for y in 0..h {
        for x in 0..w {
            let l = labels[y * w + x];
            if l > 0 {
                let (cx, cy) = cen[l as usize];
                let e = &mut ext[l as usize];
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                e[0] = e[0].min(dx);
                e[1] = e[1].max(dx);
                e[2] = e[2].min(dy);
                e[3] = e[3].max(dy);
            }
        }
    }
    let side = |d: f64, lo: f64, hi: f64| {
        if d < 0.0 {
            d / -lo
        } else if d > 0.0 {
            d / hi
        } else {
            0.0
        }
    };
    let mut hv = vec![0f32; 2 * n];
    let mut tp = vec![0f32; n];
    let mut mask = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let l = labels[i];
            if l <= 0 {
                continue;
            }
            let (cx, cy) = cen[l as usize];
            let e = ext[l as usize];
            hv[2 * i] = side(x as f64 - cx, e[0], e[1]) as f32;
            hv[2 * i + 1] = side(y as f64 - cy, e[2], e[3]) as f32;
            mask[i] = 1.0;
            tp[i] = types.map_or(1.0, |t| f32::from(t[i]));
        }
    }
    let np = gaussian_blur(&mask, h, w, np_sigma);
    Ok(HoverNetTargets {
        height,
        width,
        np,
        hv,
        tp,
    })
}

/// Separable Gaussian blur with scipy's defaults (`truncate = 4`, `mode = "reflect"`).
fn gaussian_blur(src: &[f32], h: usize, w: usize, sigma: f32) -> Vec<f32> {
    if sigma.is_nan() || sigma <= 0.0 || h == 0 || w == 0 {
        return src.to_vec();
    }
    let r = (4.0 * sigma + 0.5) as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-0.5 * (i as f32 / sigma).powi(2)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    // scipy "reflect": d c b a | a b c d | d c b a
    let refl = |p: isize, len: usize| -> usize {
        let len = len as isize;
        let period = 2 * len;
        let m = p.rem_euclid(period);
        (if m < len { m } else { period - 1 - m }) as usize
    };
    let mut tmp = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut a = 0.0;
            for (j, kv) in k.iter().enumerate() {
                a += kv * src[y * w + refl(x as isize + j as isize - r, w)];
            }
            tmp[y * w + x] = a;
        }
    }
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for (j, kv) in k.iter().enumerate() {
            let sy = refl(y as isize + j as isize - r, h);
            for x in 0..w {
                out[y * w + x] += kv * tmp[sy * w + x];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_span_minus_one_to_one() {
        let (h, w) = (7, 9);
        let mut lab = vec![0; h * w];
        for y in 1..6 {
            for x in 2..7 {
                lab[y * w + x] = 3;
            }
        }
        let t = render_hovernet_targets(&lab, None, h, w, 1.0).unwrap();
        assert_eq!(t.hv[2 * (w + 2)], -1.0);
        assert_eq!(t.hv[2 * (w + 6)], 1.0);
        assert_eq!(t.hv[2 * (3 * w + 4) + 1], 0.0);
        assert!(t.np[3 * w + 4] > 0.9 && t.np[0] < 0.1);
        assert_eq!(t.tp[3 * w + 4], 1.0);
    }
}

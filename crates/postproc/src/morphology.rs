//! Binary `cv2.morphologyEx` (`MORPH_OPEN`, `MORPH_CLOSE`) on 0/1 images with OpenCV's
//! structuring elements and default border (`BORDER_CONSTANT` with
//! `morphologyDefaultBorderValue()`: pixels outside the image never erode nor dilate anything).
//!
//! OpenCV applies the element without reflection for both erosion and dilation:
//! `dst(y, x) = min/max over element pixels (i, j) of src(y + i - anchor_y, x + j - anchor_x)`;
//! this matters for the even 20 x 20 kernel of `_proc_ls`, whose anchor (10, 10) spans offsets
//! -10..=+9. Each element is a list of bands (contiguous rows sharing one horizontal run), and each
//! band is evaluated with row and column prefix counts, so the cost per pixel does not depend on the
//! element size.

/// A structuring element as bands of rows `dy0..=dy1` that all cover columns `dx0..=dx1`
/// (offsets relative to the anchor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    bands: Vec<Band>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Band {
    dy0: isize,
    dy1: isize,
    dx0: isize,
    dx1: isize,
}

impl Element {
    /// `cv2.getStructuringElement(MORPH_ELLIPSE, (5, 5))`: rows `00100 / 11111 x3 / 00100`.
    pub(crate) fn ellipse_5x5() -> Self {
        Self::ellipse(5, 5)
    }

    /// `cv2.getStructuringElement(MORPH_ELLIPSE, (w, h))`, anchor at the centre.
    pub(crate) fn ellipse(w: usize, h: usize) -> Self {
        let r = (h / 2) as isize;
        let c = (w / 2) as isize;
        let inv_r2 = if r > 0 { 1.0 / (r * r) as f64 } else { 0.0 };
        let mut bands: Vec<Band> = Vec::new();
        for i in 0..h as isize {
            let dy = i - r;
            if dy.abs() > r {
                continue;
            }
            let dx = (c as f64 * (((r * r - dy * dy) as f64) * inv_r2).sqrt()).round_ties_even()
                as isize;
            let j1 = (c - dx).max(0);
            let j2 = (c + dx + 1).min(w as isize);
            if j2 <= j1 {
                continue;
            }
            let (dx0, dx1) = (j1 - c, j2 - 1 - c);
            match bands.last_mut() {
                Some(b) if b.dx0 == dx0 && b.dx1 == dx1 && b.dy1 + 1 == dy => b.dy1 = dy,
                _ => bands.push(Band {
                    dy0: dy,
                    dy1: dy,
                    dx0,
                    dx1,
                }),
            }
        }
        Self { bands }
    }

    /// `np.ones((h, w))` with OpenCV's default anchor `(w / 2, h / 2)`.
    pub(crate) fn rect(w: usize, h: usize) -> Self {
        let (ax, ay) = ((w / 2) as isize, (h / 2) as isize);
        Self {
            bands: vec![Band {
                dy0: -ay,
                dy1: h as isize - 1 - ay,
                dx0: -ax,
                dx1: w as isize - 1 - ax,
            }],
        }
    }
}

/// Reusable buffers for the morphology passes.
#[derive(Debug, Default)]
pub(crate) struct MorphScratch {
    row_prefix: Vec<u32>,
    horiz: Vec<u8>,
    col_prefix: Vec<u32>,
    band_out: Vec<u8>,
    tmp: Vec<u8>,
    /// One row of the neutral value, standing for rows outside the image.
    neutral_row: Vec<u8>,
}

/// One band of an erosion (`erode = true`: a pixel stays 1 only if the in-image part of its
/// window holds no 0) or dilation (a pixel becomes 1 if the window holds a 1). Writes 0/1.
fn band_pass(
    src: &[u8],
    h: usize,
    w: usize,
    b: Band,
    erode: bool,
    s: &mut MorphScratch,
    out: &mut [u8],
) {
    let hit = |v: u8| if erode { v == 0 } else { v != 0 };
    s.row_prefix.resize(w + 1, 0);
    s.horiz.resize(h * w, 0);
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        s.row_prefix[0] = 0;
        for (x, &v) in row.iter().enumerate() {
            s.row_prefix[x + 1] = s.row_prefix[x] + u32::from(hit(v));
        }
        let hz = &mut s.horiz[y * w..(y + 1) * w];
        for (x, o) in hz.iter_mut().enumerate() {
            let lo = (x as isize + b.dx0).clamp(0, w as isize) as usize;
            let hi = (x as isize + b.dx1 + 1).clamp(0, w as isize) as usize;
            *o = u8::from(hi > lo && s.row_prefix[hi] > s.row_prefix[lo]);
        }
    }
    // column prefix counts, row-major: col_prefix[y * w + x] = hits in rows 0..y of column x
    s.col_prefix.clear();
    s.col_prefix.resize((h + 1) * w, 0);
    for y in 0..h {
        for x in 0..w {
            s.col_prefix[(y + 1) * w + x] = s.col_prefix[y * w + x] + u32::from(s.horiz[y * w + x]);
        }
    }
    for y in 0..h {
        let lo = (y as isize + b.dy0).clamp(0, h as isize) as usize;
        let hi = (y as isize + b.dy1 + 1).clamp(0, h as isize) as usize;
        let o = &mut out[y * w..(y + 1) * w];
        if hi <= lo {
            o.fill(u8::from(erode));
            continue;
        }
        let (plo, phi) = (
            &s.col_prefix[lo * w..(lo + 1) * w],
            &s.col_prefix[hi * w..(hi + 1) * w],
        );
        for ((o, a), b) in o.iter_mut().zip(plo).zip(phi) {
            let any_hit = b > a;
            *o = u8::from(any_hit != erode);
        }
    }
}

/// `a AND b` for an erosion, `a OR b` for a dilation (on 0/1 images, min and max).
#[inline(always)]
fn op<const ERODE: bool>(a: u8, b: u8) -> u8 {
    if ERODE { a & b } else { a | b }
}

/// `out[x] = op(src[x - 2..=x + 2])` over one row, pixels outside the row ignored. The interior
/// is five shifted slices combined element-wise, which LLVM vectorises (16 pixels per op).
fn ellipse5_row<const ERODE: bool>(r: &[u8], o: &mut [u8]) {
    let w = r.len();
    if w >= 5 {
        let inner = &mut o[2..w - 2];
        for ((((o, &a), &b), &c), (&d, &e)) in inner
            .iter_mut()
            .zip(&r[..w - 4])
            .zip(&r[1..w - 3])
            .zip(&r[2..w - 2])
            .zip(r[3..w - 1].iter().zip(&r[4..]))
        {
            *o = op::<ERODE>(op::<ERODE>(op::<ERODE>(a, b), op::<ERODE>(c, d)), e);
        }
    }
    for x in (0..w.min(2)).chain(w.saturating_sub(2).max(2)..w) {
        let lo = x.saturating_sub(2);
        let hi = (x + 3).min(w);
        o[x] = r[lo..hi]
            .iter()
            .fold(u8::from(ERODE), |a, &b| op::<ERODE>(a, b));
    }
}

/// Erosion or dilation by the 5x5 ellipse (`00100 / 11111 x3 / 00100`) directly: a 5-wide
/// horizontal pass, then 3 rows of it and the centre column of the rows 2 above and below
/// (rows outside the image are neutral: all ones for an erosion, zeros for a dilation).
fn ellipse5<'a, const ERODE: bool>(
    src: &'a [u8],
    h: usize,
    w: usize,
    s: &'a mut MorphScratch,
    out: &mut [u8],
) {
    s.horiz.resize(h * w, 0);
    for (r, hz) in src.chunks_exact(w).zip(s.horiz.chunks_exact_mut(w)) {
        ellipse5_row::<ERODE>(r, hz);
    }
    s.neutral_row.clear();
    s.neutral_row.resize(w, u8::from(ERODE));
    let neutral = &s.neutral_row[..];
    let horiz = &s.horiz;
    let row = |buf: &'a [u8], y: isize| -> &'a [u8] {
        if y < 0 || y >= h as isize {
            neutral
        } else {
            &buf[y as usize * w..(y as usize + 1) * w]
        }
    };
    for (y, o) in out.chunks_exact_mut(w).enumerate() {
        let y = y as isize;
        let (hc, hu, hd) = (row(horiz, y), row(horiz, y - 1), row(horiz, y + 1));
        let (su, sd) = (row(src, y - 2), row(src, y + 2));
        for ((((o, &a), &b), &c), (&d, &e)) in
            o.iter_mut().zip(hc).zip(hu).zip(hd).zip(su.iter().zip(sd))
        {
            *o = op::<ERODE>(op::<ERODE>(op::<ERODE>(a, b), op::<ERODE>(c, d)), e);
        }
    }
}

/// Erosion (`erode = true`) or dilation of a 0/1 image by `el`.
pub(crate) fn erode_or_dilate(
    src: &[u8],
    h: usize,
    w: usize,
    el: &Element,
    erode: bool,
    s: &mut MorphScratch,
    out: &mut [u8],
) {
    debug_assert_eq!(src.len(), h * w);
    debug_assert_eq!(out.len(), h * w);
    if h == 0 || w == 0 {
        return;
    }
    if *el == Element::ellipse_5x5() {
        if erode {
            ellipse5::<true>(src, h, w, s, out);
        } else {
            ellipse5::<false>(src, h, w, s, out);
        }
        return;
    }
    let mut band_out = std::mem::take(&mut s.band_out);
    band_out.resize(h * w, 0);
    for (k, &b) in el.bands.iter().enumerate() {
        if k == 0 {
            band_pass(src, h, w, b, erode, s, out);
        } else {
            band_pass(src, h, w, b, erode, s, &mut band_out);
            for (o, &v) in out.iter_mut().zip(&band_out) {
                *o = if erode { *o & v } else { *o | v };
            }
        }
    }
    s.band_out = band_out;
}

/// `cv2.morphologyEx(img, MORPH_OPEN, el)` in place (erode, then dilate).
pub(crate) fn open(img: &mut [u8], h: usize, w: usize, el: &Element, s: &mut MorphScratch) {
    let mut tmp = std::mem::take(&mut s.tmp);
    tmp.resize(h * w, 0);
    erode_or_dilate(img, h, w, el, true, s, &mut tmp);
    erode_or_dilate(&tmp, h, w, el, false, s, img);
    s.tmp = tmp;
}

/// `cv2.morphologyEx(img, MORPH_CLOSE, el)` in place (dilate, then erode).
pub(crate) fn close(img: &mut [u8], h: usize, w: usize, el: &Element, s: &mut MorphScratch) {
    let mut tmp = std::mem::take(&mut s.tmp);
    tmp.resize(h * w, 0);
    erode_or_dilate(img, h, w, el, false, s, &mut tmp);
    erode_or_dilate(&tmp, h, w, el, true, s, img);
    s.tmp = tmp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipse_5x5_matches_opencv() {
        let e = Element::ellipse_5x5();
        assert_eq!(
            e.bands,
            vec![
                Band {
                    dy0: -2,
                    dy1: -2,
                    dx0: 0,
                    dx1: 0
                },
                Band {
                    dy0: -1,
                    dy1: 1,
                    dx0: -2,
                    dx1: 2
                },
                Band {
                    dy0: 2,
                    dy1: 2,
                    dx0: 0,
                    dx1: 0
                },
            ]
        );
    }

    #[test]
    fn even_rect_anchor_is_asymmetric() {
        let e = Element::rect(20, 20);
        assert_eq!(
            e.bands,
            vec![Band {
                dy0: -10,
                dy1: 9,
                dx0: -10,
                dx1: 9
            }]
        );
    }

    #[test]
    fn opening_removes_small_and_keeps_border_blobs() {
        let (h, w) = (9, 9);
        let mut img = vec![0u8; h * w];
        img[4 * w + 4] = 1; // a lone pixel disappears
        for y in 0..5 {
            for x in 0..5 {
                img[y * w + x] = 1; // a 5x5 square in the corner survives (border does not erode)
            }
        }
        img[4 * w + 4] = 1;
        open(
            &mut img,
            h,
            w,
            &Element::ellipse_5x5(),
            &mut MorphScratch::default(),
        );
        assert_eq!(img[0], 1);
        assert_eq!(img[2 * w + 2], 1);
        assert_eq!(img[8 * w + 8], 0);
    }
}

//! Resizing of 8-bit RGB regions with OpenCV's `cv2.resize` semantics, which TIAToolbox uses:
//! `INTER_AREA` (exact pixel-area averaging when shrinking; OpenCV's linear-like weights when
//! enlarging) and `INTER_CUBIC` (Keys cubic, a = -0.75, replicated border, 11-bit fixed-point
//! horizontal weights). Both are separable: a horizontal pass per source row, then a vertical
//! pass. Results agree with OpenCV to within rounding (at most 1 grey level on a few pixels).

/// A resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// OpenCV `INTER_AREA`.
    Area,
    /// OpenCV `INTER_CUBIC`.
    Cubic,
}

/// Per output coordinate: the first source index and its weights.
struct Taps {
    start: Vec<usize>,
    len: usize,
    weights: Vec<f32>,
}

const COEF_SCALE: f32 = 2048.0; // OpenCV INTER_RESIZE_COEF_SCALE

fn cubic_coeffs(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// Taps over a clamped source index range, as (index, weight) lists padded to a fixed length.
fn taps_from_lists(lists: Vec<Vec<(usize, f32)>>) -> Taps {
    let len = lists.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut start = Vec::with_capacity(lists.len());
    let mut weights = Vec::with_capacity(lists.len() * len);
    for l in lists {
        // Indices in a list are consecutive; pad with zero weights after the last one.
        let s = l.first().map_or(0, |t| t.0);
        start.push(s);
        for k in 0..len {
            weights.push(l.get(k).map_or(0.0, |t| t.1));
        }
    }
    Taps {
        start,
        len,
        weights,
    }
}

/// Cubic taps for `dst` outputs over `src` inputs. Out-of-range taps are folded onto the edge
/// pixel (replicated border), so each list stays consecutive.
fn cubic_taps(src: usize, dst: usize, quantise: bool) -> Taps {
    let scale = src as f64 / dst as f64;
    let mut lists = Vec::with_capacity(dst);
    for d in 0..dst {
        let fx = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let sx = fx.floor();
        let c = cubic_coeffs(fx - sx);
        let sx = sx as i64;
        let mut l: Vec<(usize, f32)> = Vec::with_capacity(4);
        for (k, w) in c.into_iter().enumerate() {
            let w = if quantise {
                (w * COEF_SCALE).round_ties_even()
            } else {
                w
            };
            let i = (sx - 1 + k as i64).clamp(0, src as i64 - 1) as usize;
            match l.iter_mut().find(|t| t.0 == i) {
                Some(t) => t.1 += w,
                None => l.push((i, w)),
            }
        }
        l.sort_by_key(|t| t.0);
        lists.push(l);
    }
    taps_from_lists(lists)
}

/// Area taps (OpenCV `computeResizeAreaTab`) when shrinking; OpenCV's INTER_AREA linear weights
/// when enlarging.
fn area_taps(src: usize, dst: usize) -> Taps {
    let scale = src as f64 / dst as f64;
    let mut lists = Vec::with_capacity(dst);
    if scale >= 1.0 {
        for d in 0..dst {
            let fsx1 = d as f64 * scale;
            let fsx2 = fsx1 + scale;
            let cell = scale.min(src as f64 - fsx1);
            let mut sx1 = fsx1.ceil() as i64;
            let sx2 = (fsx2.floor() as i64).min(src as i64 - 1);
            sx1 = sx1.min(sx2);
            let mut l = Vec::new();
            if sx1 as f64 - fsx1 > 1e-3 {
                l.push(((sx1 - 1) as usize, ((sx1 as f64 - fsx1) / cell) as f32));
            }
            for sx in sx1..sx2 {
                l.push((sx as usize, (1.0 / cell) as f32));
            }
            if fsx2 - sx2 as f64 > 1e-3 {
                l.push((
                    sx2 as usize,
                    ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32,
                ));
            }
            lists.push(l);
        }
    } else {
        let inv = 1.0 / scale;
        for d in 0..dst {
            let sx = (d as f64 * scale).floor() as i64;
            let mut fx = ((d + 1) as f64 - (sx + 1) as f64 * inv) as f32;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            let (a, b) = (
                sx.clamp(0, src as i64 - 1) as usize,
                (sx + 1).clamp(0, src as i64 - 1) as usize,
            );
            lists.push(if a == b {
                vec![(a, 1.0)]
            } else {
                vec![(a, 1.0 - fx), (b, fx)]
            });
        }
    }
    taps_from_lists(lists)
}

/// Resizes an interleaved 8-bit image with `channels` channels from `sw x sh` to `dw x dh`.
/// Returns the input unchanged when the sizes are equal.
///
/// # Panics
/// If `src.len() != sw * sh * channels` (a caller bug, not bad input).
pub fn resize_u8(
    src: &[u8],
    sw: usize,
    sh: usize,
    channels: usize,
    dw: usize,
    dh: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(
        src.len(),
        sw * sh * channels,
        "resize_u8: buffer does not match its size"
    );
    if sw == dw && sh == dh {
        return src.to_vec();
    }
    if dw == 0 || dh == 0 || sw == 0 || sh == 0 {
        return vec![255; dw * dh * channels];
    }
    let (xt, yt, quantised) = match filter {
        Filter::Cubic => (cubic_taps(sw, dw, true), cubic_taps(sh, dh, true), true),
        Filter::Area => (area_taps(sw, dw), area_taps(sh, dh), false),
    };
    let row_len = dw * channels;
    // Horizontal pass for each source row that some output row needs, cached by source row.
    let mut hrows: Vec<Option<Vec<f32>>> = vec![None; sh];
    let mut out = vec![0u8; dh * row_len];
    let vscale = if quantised {
        1.0 / (COEF_SCALE * COEF_SCALE)
    } else {
        1.0
    };
    let mut acc = vec![0f32; row_len];
    let mut freed = 0;
    for dy in 0..dh {
        let ys = yt.start[dy];
        acc.iter_mut().for_each(|a| *a = 0.0);
        for k in 0..yt.len {
            let wy = yt.weights[dy * yt.len + k];
            if wy == 0.0 {
                continue;
            }
            let sy = (ys + k).min(sh - 1);
            let row = hrows[sy].get_or_insert_with(|| {
                horizontal(
                    &src[sy * sw * channels..(sy + 1) * sw * channels],
                    sw,
                    channels,
                    &xt,
                    dw,
                )
            });
            let w = wy * vscale;
            for (a, v) in acc.iter_mut().zip(row.iter()) {
                *a += v * w;
            }
        }
        for (o, a) in out[dy * row_len..(dy + 1) * row_len].iter_mut().zip(&acc) {
            *o = round_ties_even_fast(*a).clamp(0.0, 255.0) as u8;
        }
        // Free rows no later output row can need (taps start positions are non-decreasing).
        if dy + 1 < dh {
            let next = yt.start[dy + 1];
            for r in hrows.iter_mut().take(next).skip(freed) {
                *r = None;
            }
            freed = freed.max(next);
        }
    }
    out
}

/// `x.round_ties_even()` without a call to libm's `rintf` (which `round_ties_even` becomes
/// without SSE4.1, at ~10% of an enlarged patch read): adding and subtracting 1.5 x 2^23 rounds
/// to an integer, half to even, in IEEE round-to-nearest, exactly for |x| < 2^22 (outputs here
/// are pixel values, far inside; -0.0 may come out as 0.0, the same byte once clamped); larger
/// values go the slow way.
fn round_ties_even_fast(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    if x.abs() < 4_194_304.0 {
        (x + MAGIC) - MAGIC
    } else {
        x.round_ties_even()
    }
}

fn horizontal(row: &[u8], sw: usize, cn: usize, xt: &Taps, dw: usize) -> Vec<f32> {
    let mut out = vec![0f32; dw * cn];
    for dx in 0..dw {
        let s = xt.start[dx];
        for c in 0..cn {
            let mut v = 0f32;
            for k in 0..xt.len {
                let w = xt.weights[dx * xt.len + k];
                if w != 0.0 {
                    let sx = (s + k).min(sw - 1);
                    v += f32::from(row[sx * cn + c]) * w;
                }
            }
            out[dx * cn + c] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant() {
        let src = vec![77u8; 10 * 7 * 3];
        for f in [Filter::Area, Filter::Cubic] {
            for (w, h) in [(3, 2), (20, 15), (10, 7), (13, 4)] {
                let out = resize_u8(&src, 10, 7, 3, w, h, f);
                assert_eq!(out.len(), w * h * 3);
                assert!(out.iter().all(|&v| v == 77), "{f:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn area_by_two_averages_blocks() {
        // 4x2 grey -> 2x1: means of 2x2 blocks.
        let src = [0u8, 10, 20, 30, 40, 50, 60, 70];
        let out = resize_u8(&src, 4, 2, 1, 2, 1, Filter::Area);
        assert_eq!(out, vec![25, 45]);
    }

    #[test]
    fn fast_rounding_equals_round_ties_even() {
        // Every quarter and a spread of other values from -1000 to 1000 (ties included), the
        // edges of the fast range, and values beyond it.
        let mut xs: Vec<f32> = (-4000..=4000).map(|k| k as f32 * 0.25).collect();
        xs.extend((0..20_000).map(|k| (k as f32 * 0.1003) - 1000.0));
        xs.extend([
            4_194_303.5,
            -4_194_303.5,
            4_194_304.0,
            8_388_609.0,
            -0.5,
            0.49999997,
            f32::MAX,
        ]);
        for x in xs {
            // Equal values (a -0.0 may come out as 0.0: the same byte once clamped).
            assert_eq!(round_ties_even_fast(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn cubic_weights_sum_to_one() {
        let t = cubic_taps(100, 257, true);
        for d in 0..257 {
            let s: f32 = t.weights[d * t.len..(d + 1) * t.len].iter().sum();
            assert!((s - COEF_SCALE).abs() <= 2.0, "{s}");
        }
        let t = area_taps(1000, 333);
        for d in 0..333 {
            let s: f32 = t.weights[d * t.len..(d + 1) * t.len].iter().sum();
            assert!((s - 1.0).abs() < 1e-4, "{s}");
        }
    }
}

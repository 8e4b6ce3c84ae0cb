//! Rasterise a contour the way `cv2.fillPoly` / `cv2.drawContours(..., FILLED)` do for contours
//! of border-pixel centres: a pixel is set when its centre is inside the polygon (even-odd rule)
//! or on its boundary.
//!
//! For a contour traced around a pixel blob (`cv2.findContours`), this gives back exactly the
//! blob's pixels (with its holes filled, as the outer contour has none), so the Zarr maps and the
//! stored polygons describe the same pixels. Any contour works, self-touching or degenerate ones
//! included: a 1-pixel line gives its pixels, a single point its pixel. Exact integer
//! arithmetic; rows are visited top to bottom with an active-edge list, so a contour of `n`
//! points spanning `h` rows costs `O(n log n + h + spans)`.

/// One edge with `y0 <= y1`.
#[derive(Debug, Clone, Copy)]
struct Edge {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

/// Call `emit(y, x0, x1)` for every maximal run of set pixels `x0..=x1` of row `y`, rows in
/// increasing order, runs in increasing `x` within a row.
pub(crate) fn for_each_span(contour: &[[i64; 2]], mut emit: impl FnMut(i64, i64, i64)) {
    let n = contour.len();
    if n == 0 {
        return;
    }
    let mut edges: Vec<Edge> = (0..n)
        .map(|i| {
            let [ax, ay] = contour[i];
            let [bx, by] = contour[(i + 1) % n];
            if ay <= by {
                Edge {
                    x0: ax,
                    y0: ay,
                    x1: bx,
                    y1: by,
                }
            } else {
                Edge {
                    x0: bx,
                    y0: by,
                    x1: ax,
                    y1: ay,
                }
            }
        })
        .collect();
    edges.sort_unstable_by_key(|e| e.y0);
    let y_min = edges[0].y0;
    let y_max = edges.iter().map(|e| e.y1).max().unwrap_or(y_min);
    let mut next = 0;
    let mut active: Vec<Edge> = Vec::new();
    // Crossings as rationals (numerator, denominator > 0) and closed integer intervals.
    let mut crossings: Vec<(i64, i64)> = Vec::new();
    let mut intervals: Vec<(i64, i64)> = Vec::new();
    for y in y_min..=y_max {
        while next < edges.len() && edges[next].y0 <= y {
            active.push(edges[next]);
            next += 1;
        }
        active.retain(|e| e.y1 >= y);
        crossings.clear();
        intervals.clear();
        for e in &active {
            let dy = e.y1 - e.y0;
            if dy == 0 {
                // Horizontal (or a single point): its pixels are boundary.
                intervals.push((e.x0.min(e.x1), e.x0.max(e.x1)));
                continue;
            }
            let num = e.x0 * dy + (y - e.y0) * (e.x1 - e.x0);
            if num.rem_euclid(dy) == 0 {
                let x = num.div_euclid(dy);
                intervals.push((x, x));
            }
            if y < e.y1 {
                crossings.push((num, dy));
            }
        }
        crossings.sort_unstable_by(|a, b| {
            (i128::from(a.0) * i128::from(b.1)).cmp(&(i128::from(b.0) * i128::from(a.1)))
        });
        for pair in crossings.chunks_exact(2) {
            let start = ceil_div(pair[0].0, pair[0].1);
            let end = pair[1].0.div_euclid(pair[1].1);
            if start <= end {
                intervals.push((start, end));
            }
        }
        intervals.sort_unstable();
        let mut current: Option<(i64, i64)> = None;
        for &(a, b) in &intervals {
            current = match current {
                Some((s, e)) if a <= e + 1 => Some((s, e.max(b))),
                Some((s, e)) => {
                    emit(y, s, e);
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((s, e)) = current {
            emit(y, s, e);
        }
    }
}

fn ceil_div(num: i64, den: i64) -> i64 {
    let q = num.div_euclid(den);
    if num.rem_euclid(den) == 0 { q } else { q + 1 }
}

/// Every set pixel `[x, y]`, in raster order (tests and the pixel-square fallback).
pub(crate) fn raster_pixels(contour: &[[i64; 2]]) -> Vec<[i64; 2]> {
    let mut pixels = Vec::new();
    for_each_span(contour, |y, x0, x1| {
        pixels.extend((x0..=x1).map(|x| [x, y]))
    });
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_includes_boundary() {
        let px = raster_pixels(&[[0, 0], [2, 0], [2, 2], [0, 2]]);
        assert_eq!(px.len(), 9);
    }

    #[test]
    fn diamond_and_degenerate_contours() {
        // Pixel-centre diamond of radius 2: |x| + |y| <= 2 -> 13 pixels.
        let px = raster_pixels(&[[0, -2], [-2, 0], [0, 2], [2, 0]]);
        assert_eq!(px.len(), 13);
        assert!(px.iter().all(|[x, y]| x.abs() + y.abs() <= 2));
        // A single point and a back-and-forth line.
        assert_eq!(raster_pixels(&[[5, 7]]), vec![[5, 7]]);
        assert_eq!(
            raster_pixels(&[[0, 0], [3, 3]]),
            vec![[0, 0], [1, 1], [2, 2], [3, 3]]
        );
    }

    #[test]
    fn concave_shape_has_no_fill_across_the_notch() {
        // U shape: columns 0 and 4 are 5 high, joined by row 4.
        let contour = [
            [0, 0],
            [0, 4],
            [4, 4],
            [4, 0],
            [3, 0],
            [3, 3],
            [1, 3],
            [1, 0],
        ];
        let px = raster_pixels(&contour);
        assert!(!px.contains(&[2, 0]));
        assert!(!px.contains(&[2, 2]));
        assert!(px.contains(&[2, 3]));
        assert_eq!(px.len(), 5 * 5 - 3);
    }

    #[test]
    fn non_lattice_edges_include_exact_boundary_points_only() {
        // Triangle (0,0) (4,0) (0,2): edge (4,0)-(0,2) passes through (2,1).
        let px = raster_pixels(&[[0, 0], [4, 0], [0, 2]]);
        assert!(px.contains(&[2, 1]));
        assert!(!px.contains(&[3, 1]));
        assert_eq!(px.len(), 5 + 3 + 1);
    }
}

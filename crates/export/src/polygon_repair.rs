//! Decide whether a contour is a valid simple polygon, and if not, split it into valid loops.
//!
//! `cv2.findContours` traces the border of an 8-connected blob through pixel centres. Most
//! contours are simple polygons. Others are not (shapely's `is_valid` is false): a blob with a
//! one-pixel neck or a one-pixel spur is traced along the neck or spur twice, so its contour
//! touches itself, runs back over its own edges, or has no area at all (a one-pixel-wide line,
//! fewer than 3 points). TIAToolbox then stores `polygon.buffer(0.01)`.
//!
//! Here ([`classify_contour`]):
//! 1. Consecutive repeated points are dropped.
//! 2. **Simple** — the ring does not touch or cross itself and has area: kept as it is.
//! 3. **Loops** — the contour's edges are horizontal, vertical or diagonal (always true for
//!    `findContours` output): it is walked point by point and cut into closed loops wherever it
//!    comes back to a point it has visited. Zero-area loops (spurs, lines) are dropped; the
//!    others become the polygons of a MultiPolygon (a Polygon when one is left). They touch only
//!    at points, which OGC/GEOS validity allows, and this is accepted only if no two loops share
//!    an edge, no diagonals cross, and no loop lies inside another.
//! 4. **Pixel squares** — anything else (no area left, crossing or nested loops, a contour that
//!    is not simple and has other edge directions): the caller replaces the polygon by the union
//!    of the squares of the pixels the contour rasterises to (`crate::pixel_squares`).

use std::collections::HashMap;

/// A closed ring of integer points (the first point is not repeated).
pub(crate) type IntRing = Vec<[i64; 2]>;

/// What a contour is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContourShape {
    /// A valid simple polygon (consecutive duplicates removed).
    Simple(IntRing),
    /// Simple loops with area, touching one another at points only.
    Loops(Vec<IntRing>),
    /// Use the pixel squares.
    PixelSquares,
}

/// Classify a contour; see the module docs.
pub(crate) fn classify_contour(contour: &[[i64; 2]]) -> ContourShape {
    let points = dedup_cyclic(contour);
    if points.len() < 3 {
        return ContourShape::PixelSquares;
    }
    match expand_lattice(&points) {
        Some(chain) => classify_lattice(points, &chain),
        None => {
            if is_simple_general(&points) && ring_area2(&points) != 0 {
                ContourShape::Simple(points)
            } else {
                ContourShape::PixelSquares
            }
        }
    }
}

fn classify_lattice(points: IntRing, chain: &[[i64; 2]]) -> ContourShape {
    let repeats = has_repeated_point(chain);
    if diagonals_cross(chain) {
        return ContourShape::PixelSquares;
    }
    if !repeats {
        // A lattice chain with unit steps, no repeated point and no crossing diagonals is a
        // Jordan curve, hence has area.
        return ContourShape::Simple(points);
    }
    let loops: Vec<IntRing> = split_loops(chain)
        .into_iter()
        .filter(|l| l.len() >= 3 && ring_area2(l) != 0)
        .collect();
    if loops.is_empty() || loops_share_an_edge(&loops) || any_nested(&loops) {
        return ContourShape::PixelSquares;
    }
    ContourShape::Loops(loops.into_iter().map(|l| drop_collinear(&l)).collect())
}

/// Drop consecutive repeated points, the last-equals-first one included.
pub(crate) fn dedup_cyclic(contour: &[[i64; 2]]) -> IntRing {
    let mut points: IntRing = Vec::with_capacity(contour.len());
    for &p in contour {
        if points.last() != Some(&p) {
            points.push(p);
        }
    }
    while points.len() > 1 && points.first() == points.last() {
        points.pop();
    }
    points
}

/// Twice the signed area (shoelace), exact.
pub(crate) fn ring_area2(ring: &[[i64; 2]]) -> i128 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let [x0, y0] = ring[i];
            let [x1, y1] = ring[(i + 1) % n];
            i128::from(x0) * i128::from(y1) - i128::from(x1) * i128::from(y0)
        })
        .sum()
}

/// Every lattice point along the ring when all its edges are horizontal, vertical or diagonal
/// (the closing point not repeated); `None` otherwise.
fn expand_lattice(points: &[[i64; 2]]) -> Option<Vec<[i64; 2]>> {
    let n = points.len();
    let mut chain = Vec::with_capacity(n * 2);
    for i in 0..n {
        let [x0, y0] = points[i];
        let [x1, y1] = points[(i + 1) % n];
        let (dx, dy) = (x1 - x0, y1 - y0);
        if !(dx == 0 || dy == 0 || dx.abs() == dy.abs()) {
            return None;
        }
        let steps = dx.abs().max(dy.abs());
        let (ux, uy) = (dx.signum(), dy.signum());
        chain.extend((0..steps).map(|k| [x0 + k * ux, y0 + k * uy]));
    }
    Some(chain)
}

fn pack(p: [i64; 2]) -> (i64, i64) {
    (p[0], p[1])
}

fn has_repeated_point(chain: &[[i64; 2]]) -> bool {
    let mut keys: Vec<(i64, i64)> = chain.iter().copied().map(pack).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// Two diagonal steps crossing in the middle of one pixel cell.
fn diagonals_cross(chain: &[[i64; 2]]) -> bool {
    let n = chain.len();
    let mut cells: Vec<(i64, i64, bool)> = (0..n)
        .filter_map(|i| {
            let [x0, y0] = chain[i];
            let [x1, y1] = chain[(i + 1) % n];
            (x0 != x1 && y0 != y1).then(|| (x0.min(x1), y0.min(y1), (x1 - x0) == (y1 - y0)))
        })
        .collect();
    cells.sort_unstable();
    cells
        .windows(2)
        .any(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1 && w[0].2 != w[1].2)
}

/// Cut a closed walk into loops with no repeated point: whenever the walk returns to a point
/// still on the stack, the points since then form a loop.
pub(crate) fn split_loops(walk: &[[i64; 2]]) -> Vec<IntRing> {
    let mut loops = Vec::new();
    let mut stack: Vec<[i64; 2]> = Vec::with_capacity(walk.len());
    let mut position: HashMap<[i64; 2], usize> = HashMap::with_capacity(walk.len());
    for &p in walk {
        if let Some(&k) = position.get(&p) {
            let piece: IntRing = stack.drain(k + 1..).collect();
            for q in &piece {
                position.remove(q);
            }
            let mut ring = Vec::with_capacity(piece.len() + 1);
            ring.push(p);
            ring.extend(piece);
            loops.push(ring);
        } else {
            position.insert(p, stack.len());
            stack.push(p);
        }
    }
    // The walk is closed: what is left returns to its first point.
    if !stack.is_empty() {
        loops.push(stack);
    }
    loops
}

/// Undirected edges used by two loops (or twice by one).
fn loops_share_an_edge(loops: &[IntRing]) -> bool {
    let mut edges: Vec<((i64, i64), (i64, i64))> = loops
        .iter()
        .flat_map(|ring| {
            let n = ring.len();
            (0..n).map(move |i| {
                let a = pack(ring[i]);
                let b = pack(ring[(i + 1) % n]);
                if a <= b { (a, b) } else { (b, a) }
            })
        })
        .collect();
    edges.sort_unstable();
    edges.windows(2).any(|w| w[0] == w[1])
}

fn bounds(ring: &[[i64; 2]]) -> [i64; 4] {
    ring.iter().fold(
        [i64::MAX, i64::MAX, i64::MIN, i64::MIN],
        |[x0, y0, x1, y1], &[x, y]| [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
    )
}

/// Whether some loop lies inside another (tested with the midpoint of its first edge, which is
/// on no other loop's boundary when loops share no edge and no diagonals cross).
fn any_nested(loops: &[IntRing]) -> bool {
    let boxes: Vec<[i64; 4]> = loops.iter().map(|l| bounds(l)).collect();
    for (i, outer) in loops.iter().enumerate() {
        for (j, inner) in loops.iter().enumerate() {
            let (a, b) = (boxes[i], boxes[j]);
            let inside_box = i != j && b[0] >= a[0] && b[1] >= a[1] && b[2] <= a[2] && b[3] <= a[3];
            if inside_box && contains_edge_midpoint(outer, inner) {
                return true;
            }
        }
    }
    false
}

/// Even-odd test of the midpoint of `inner`'s first edge against `outer` (exact, doubled
/// coordinates). The midpoint must not lie on `outer`'s boundary.
pub(crate) fn contains_edge_midpoint(outer: &[[i64; 2]], inner: &[[i64; 2]]) -> bool {
    let a = inner[0];
    let b = inner[1 % inner.len()];
    let (px, py) = (i128::from(a[0] + b[0]), i128::from(a[1] + b[1]));
    let n = outer.len();
    let mut inside = false;
    for i in 0..n {
        let (xi, yi) = (2 * i128::from(outer[i][0]), 2 * i128::from(outer[i][1]));
        let j = (i + 1) % n;
        let (xj, yj) = (2 * i128::from(outer[j][0]), 2 * i128::from(outer[j][1]));
        if (yi > py) != (yj > py) {
            // x of the edge at py, compared with px: (xi - px) + (py - yi) * (xj - xi) / (yj - yi) > 0.
            let lhs = (xi - px) * (yj - yi) + (py - yi) * (xj - xi);
            let right_of_point = if yj > yi { lhs > 0 } else { lhs < 0 };
            if right_of_point {
                inside = !inside;
            }
        }
    }
    inside
}

/// Drop points in the middle of straight runs.
pub(crate) fn drop_collinear(ring: &[[i64; 2]]) -> IntRing {
    let n = ring.len();
    if n < 4 {
        return ring.to_vec();
    }
    (0..n)
        .filter(|&i| {
            let p = ring[(i + n - 1) % n];
            let q = ring[i];
            let r = ring[(i + 1) % n];
            let (ax, ay) = (q[0] - p[0], q[1] - p[1]);
            let (bx, by) = (r[0] - q[0], r[1] - q[1]);
            let straight = ax * by - ay * bx == 0 && ax * bx + ay * by > 0;
            !straight
        })
        .map(|i| ring[i])
        .collect()
}

/// Simplicity of a ring with arbitrary edges: no two non-adjacent edges meet, adjacent edges do
/// not fold back onto each other. `O(n²)`; used only for contours that are not lattice chains.
fn is_simple_general(ring: &[[i64; 2]]) -> bool {
    let n = ring.len();
    let edge = |i: usize| (ring[i], ring[(i + 1) % n]);
    for i in 0..n {
        let (a, b) = edge(i);
        for j in i + 1..n {
            let (c, d) = edge(j);
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                // They share one point; they must not overlap along a line.
                let (shared, p, q) = if j == i + 1 { (b, a, d) } else { (a, b, c) };
                let u = [p[0] - shared[0], p[1] - shared[1]];
                let v = [q[0] - shared[0], q[1] - shared[1]];
                let cross =
                    i128::from(u[0]) * i128::from(v[1]) - i128::from(u[1]) * i128::from(v[0]);
                let dot = i128::from(u[0]) * i128::from(v[0]) + i128::from(u[1]) * i128::from(v[1]);
                if cross == 0 && dot > 0 {
                    return false;
                }
            } else if segments_meet(a, b, c, d) {
                return false;
            }
        }
    }
    true
}

fn orient(a: [i64; 2], b: [i64; 2], c: [i64; 2]) -> i128 {
    let v = i128::from(b[0] - a[0]) * i128::from(c[1] - a[1])
        - i128::from(b[1] - a[1]) * i128::from(c[0] - a[0]);
    v.signum()
}

fn on_segment(a: [i64; 2], b: [i64; 2], p: [i64; 2]) -> bool {
    p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

/// Closed segments `ab` and `cd` share at least one point.
fn segments_meet(a: [i64; 2], b: [i64; 2], c: [i64; 2], d: [i64; 2]) -> bool {
    let (o1, o2, o3, o4) = (
        orient(a, b, c),
        orient(a, b, d),
        orient(c, d, a),
        orient(c, d, b),
    );
    if o1 != o2 && o3 != o4 {
        return true;
    }
    (o1 == 0 && on_segment(a, b, c))
        || (o2 == 0 && on_segment(a, b, d))
        || (o3 == 0 && on_segment(c, d, a))
        || (o4 == 0 && on_segment(c, d, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_contours_are_kept() {
        let square = vec![[0, 0], [3, 0], [3, 3], [0, 3]];
        assert_eq!(
            classify_contour(&square),
            ContourShape::Simple(square.clone())
        );
        let mut closed = square.clone();
        closed.push([0, 0]);
        closed.insert(1, [0, 0]);
        assert_eq!(classify_contour(&closed), ContourShape::Simple(square));
        // Not a lattice chain, but simple.
        let tri = vec![[0, 0], [5, 1], [1, 4]];
        assert_eq!(classify_contour(&tri), ContourShape::Simple(tri.clone()));
    }

    #[test]
    fn two_blobs_joined_at_a_point_become_two_loops() {
        // Two diamonds sharing the point (2, 0), traced as one figure-eight contour.
        let contour = [
            [0, 0],
            [1, -1],
            [2, 0],
            [3, -1],
            [4, 0],
            [3, 1],
            [2, 0],
            [1, 1],
        ];
        let ContourShape::Loops(loops) = classify_contour(&contour) else {
            panic!("expected loops");
        };
        assert_eq!(loops.len(), 2);
        assert!(loops.iter().all(|l| ring_area2(l).abs() == 4));
    }

    #[test]
    fn spur_is_dropped() {
        // A square with a one-pixel spur going right from (2, 1) and back.
        let contour = [[0, 0], [2, 0], [2, 1], [5, 1], [2, 1], [2, 2], [0, 2]];
        let ContourShape::Loops(loops) = classify_contour(&contour) else {
            panic!("expected loops");
        };
        assert_eq!(loops.len(), 1);
        assert_eq!(ring_area2(&loops[0]).abs(), 8);
        assert_eq!(loops[0].len(), 4);
    }

    #[test]
    fn degenerate_contours_go_to_pixel_squares() {
        assert_eq!(classify_contour(&[[1, 1]]), ContourShape::PixelSquares);
        assert_eq!(
            classify_contour(&[[0, 0], [4, 0]]),
            ContourShape::PixelSquares
        );
        assert_eq!(
            classify_contour(&[[0, 0], [4, 0], [4, 3], [4, 0]]),
            ContourShape::PixelSquares
        );
        // Bow tie with crossing non-lattice edges.
        assert_eq!(
            classify_contour(&[[0, 0], [4, 2], [4, 0], [0, 2]]),
            ContourShape::PixelSquares
        );
        // Crossing diagonals.
        assert_eq!(
            classify_contour(&[[0, 0], [1, 1], [1, 0], [0, 1]]),
            ContourShape::PixelSquares
        );
    }

    #[test]
    fn nested_loops_go_to_pixel_squares() {
        // Outer square, then an inner square touching it at (0, 0).
        let contour = [
            [0, 0],
            [6, 0],
            [6, 6],
            [0, 6],
            [0, 0],
            [2, 1],
            [3, 1],
            [3, 2],
            [2, 2],
            [1, 1],
        ];
        assert_eq!(classify_contour(&contour), ContourShape::PixelSquares);
    }

    #[test]
    fn midpoint_containment() {
        let outer = vec![[0, 0], [4, 0], [4, 4], [0, 4]];
        assert!(contains_edge_midpoint(&outer, &[[1, 1], [2, 1], [2, 2]]));
        assert!(!contains_edge_midpoint(&outer, &[[5, 1], [6, 1], [6, 2]]));
    }
}

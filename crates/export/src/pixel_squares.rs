//! The union of a set of pixel squares as valid polygons (the fallback for contours that are not
//! valid polygons, see `crate::polygon_repair`).
//!
//! Pixel `(x, y)` is the square `[x - 0.5, x + 0.5] × [y - 0.5, y + 0.5]`. The pixels are grouped
//! into 4-connected components; each component gives one polygon whose boundary is made of the
//! pixel edges between the component and the rest. Where a component touches itself diagonally,
//! its boundary is cut into separate rings at that corner, so every ring is simple: the outer
//! ring is the shell, rings around enclosed background are holes (touching the shell at most at
//! corners). Components touch one another only at corners. The result is valid under OGC/GEOS
//! rules by construction.
//!
//! Corners are returned in *corner coordinates*: corner `(cx, cy)` is the point
//! `(cx - 0.5, cy - 0.5)`.

use std::collections::HashMap;

use crate::polygon_repair::{
    IntRing, contains_edge_midpoint, drop_collinear, ring_area2, split_loops,
};

/// A polygon: shell, then holes, in corner coordinates. Shells have positive signed area
/// (shoelace in `(x, y)`), holes negative.
pub(crate) type CornerPolygon = Vec<IntRing>;

/// The polygons of the union of the squares of `pixels` (any order, duplicates allowed).
pub(crate) fn pixel_square_polygons(pixels: &[[i64; 2]]) -> Vec<CornerPolygon> {
    if pixels.is_empty() {
        return Vec::new();
    }
    let (mut x0, mut y0, mut x1, mut y1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
    for &[x, y] in pixels {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    // Bitmap with a one-pixel empty border.
    let w = (x1 - x0 + 3) as usize;
    let h = (y1 - y0 + 3) as usize;
    let index = |x: i64, y: i64| (y - y0 + 1) as usize * w + (x - x0 + 1) as usize;
    let mut label = vec![0u32; w * h];
    for &[x, y] in pixels {
        label[index(x, y)] = u32::MAX;
    }
    let mut polygons = Vec::new();
    let mut next_label = 0u32;
    let mut queue = Vec::new();
    for start in 0..label.len() {
        if label[start] != u32::MAX {
            continue;
        }
        next_label += 1;
        let current = next_label;
        label[start] = current;
        queue.clear();
        queue.push(start);
        let mut members = Vec::new();
        while let Some(i) = queue.pop() {
            members.push(i);
            for j in [i - 1, i + 1, i - w, i + w] {
                if label[j] == u32::MAX {
                    label[j] = current;
                    queue.push(j);
                }
            }
        }
        members.sort_unstable();
        let to_xy = |i: usize| [(i % w) as i64 - 1 + x0, (i / w) as i64 - 1 + y0];
        polygons.extend(component_polygons(&members, &label, w, current, to_xy));
    }
    polygons
}

/// The polygon(s) of one 4-connected component.
fn component_polygons(
    members: &[usize],
    label: &[u32],
    w: usize,
    current: u32,
    to_xy: impl Fn(usize) -> [i64; 2],
) -> Vec<CornerPolygon> {
    // Directed boundary edges, the component on their right in screen (y-down) terms, which is
    // a positive shoelace area for the outer ring.
    let mut edges: Vec<([i64; 2], [i64; 2])> = Vec::new();
    for &i in members {
        let [x, y] = to_xy(i);
        if label[i - w] != current {
            edges.push(([x, y], [x + 1, y]));
        }
        if label[i + 1] != current {
            edges.push(([x + 1, y], [x + 1, y + 1]));
        }
        if label[i + w] != current {
            edges.push(([x + 1, y + 1], [x, y + 1]));
        }
        if label[i - 1] != current {
            edges.push(([x, y + 1], [x, y]));
        }
    }
    let mut outgoing: HashMap<[i64; 2], Vec<usize>> = HashMap::with_capacity(edges.len());
    for (k, e) in edges.iter().enumerate() {
        outgoing.entry(e.0).or_default().push(k);
    }
    let mut used = vec![false; edges.len()];
    let mut rings: Vec<IntRing> = Vec::new();
    for first in 0..edges.len() {
        if used[first] {
            continue;
        }
        // Walk a closed circuit (every corner has as many edges in as out).
        let start = edges[first].0;
        let mut walk = vec![start];
        used[first] = true;
        let mut at = edges[first].1;
        while at != start {
            walk.push(at);
            let next = outgoing[&at]
                .iter()
                .copied()
                .find(|&k| !used[k])
                .expect("pixel boundaries are closed");
            used[next] = true;
            at = edges[next].1;
        }
        rings.extend(split_loops(&walk));
    }
    let rings: Vec<IntRing> = rings.iter().map(|r| drop_collinear(r)).collect();
    let (shells, holes): (Vec<IntRing>, Vec<IntRing>) =
        rings.into_iter().partition(|r| ring_area2(r) > 0);
    assemble(shells, holes)
}

/// Put each hole in its shell. A 4-connected component has exactly one shell; should there be
/// more, each hole goes to the smallest shell that contains it.
fn assemble(shells: Vec<IntRing>, holes: Vec<IntRing>) -> Vec<CornerPolygon> {
    let mut polygons: Vec<CornerPolygon> = shells.into_iter().map(|s| vec![s]).collect();
    if polygons.len() == 1 {
        polygons[0].extend(holes);
        return polygons;
    }
    for hole in holes {
        let owner = (0..polygons.len())
            .filter(|&k| contains_edge_midpoint(&polygons[k][0], &hole))
            .min_by_key(|&k| ring_area2(&polygons[k][0]))
            .unwrap_or(0);
        polygons[owner].push(hole);
    }
    polygons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area2(p: &CornerPolygon) -> i128 {
        p.iter().map(|r| ring_area2(r)).sum()
    }

    #[test]
    fn single_pixel_and_line() {
        let p = pixel_square_polygons(&[[3, 4]]);
        assert_eq!(p, vec![vec![vec![[3, 4], [4, 4], [4, 5], [3, 5]]]]);
        let line = pixel_square_polygons(&[[0, 0], [1, 0], [2, 0]]);
        assert_eq!(line.len(), 1);
        assert_eq!(line[0][0].len(), 4);
        assert_eq!(area2(&line[0]), 6);
    }

    #[test]
    fn diagonal_pixels_are_separate_polygons() {
        let p = pixel_square_polygons(&[[0, 0], [1, 1], [2, 2]]);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn ring_with_a_hole_and_a_self_touching_corner() {
        // 3x3 ring around (1, 1): one shell, one hole.
        let ring: Vec<[i64; 2]> = (0..3)
            .flat_map(|y| (0..3).map(move |x| [x, y]))
            .filter(|&p| p != [1, 1])
            .collect();
        let p = pixel_square_polygons(&ring);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].len(), 2);
        assert_eq!(area2(&p[0]), 16);
        // Remove a corner pixel of a 4x4 ring so that the hole touches the outside at a corner:
        // pixels around the 2x2 hole, with (3, 3) missing: the hole's ring and the shell touch.
        let mut pixels: Vec<[i64; 2]> = (0..4)
            .flat_map(|y| (0..4).map(move |x| [x, y]))
            .filter(|&[x, y]| !((1..3).contains(&x) && (1..3).contains(&y)))
            .collect();
        pixels.retain(|&p| p != [3, 3]);
        let p = pixel_square_polygons(&pixels);
        assert_eq!(p.len(), 1);
        assert_eq!(area2(&p[0]), 2 * pixels.len() as i128);
    }

    #[test]
    fn inverted_hole_is_split_into_shell_and_hole() {
        // Pixels around (1, 1) except (2, 2): the enclosed pixel (1, 1) and the outside meet at
        // corner (2, 2), where the outer boundary touches itself.
        let pixels = [[0, 0], [1, 0], [2, 0], [0, 1], [2, 1], [0, 2], [1, 2]];
        let p = pixel_square_polygons(&pixels);
        assert_eq!(p.len(), 1);
        assert_eq!(area2(&p[0]), 2 * pixels.len() as i128);
        assert_eq!(p[0].len(), 2, "shell and hole");
    }
}

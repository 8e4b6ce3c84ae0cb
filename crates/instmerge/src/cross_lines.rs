//! A static R-tree of the cross tiles' removal regions (margin lines, or our inner square),
//! built once from the tile layout: for an arriving instance, which later crosses may remove it.

use mtseg_tiling::PostprocTile;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::margin_rules::{Rect, RuleSet, cross_removal_regions};

type Line = GeomWithData<Rectangle<[i64; 2]>, usize>;

/// The removal regions of every cross tile, keyed by the cross's index in the layout.
#[derive(Debug)]
pub(crate) struct CrossLines {
    tree: RTree<Line>,
}

impl CrossLines {
    /// Indexes the removal regions of each cross tile of `tiles`.
    pub(crate) fn new(tiles: &[PostprocTile], margin: i64, rules: RuleSet) -> Self {
        let lines: Vec<Line> = tiles
            .iter()
            .enumerate()
            .filter_map(|(i, t)| cross_removal_regions(t, margin, rules).map(|l| (i, l)))
            .flat_map(|(i, lines)| {
                lines.into_iter().map(move |r| {
                    GeomWithData::new(Rectangle::from_corners([r[0], r[1]], [r[2], r[3]]), i)
                })
            })
            .collect();
        Self {
            tree: RTree::bulk_load(lines),
        }
    }

    /// The crosses after `tile_index` (in merge order) with a removal region meeting `bbox`
    /// (closed), ascending and without repeats.
    pub(crate) fn later_crosses(&self, bbox: &Rect, tile_index: usize) -> Vec<usize> {
        let env = AABB::from_corners([bbox[0], bbox[1]], [bbox[2], bbox[3]]);
        let mut out: Vec<usize> = self
            .tree
            .locate_in_envelope_intersecting(&env)
            .map(|l| l.data)
            .filter(|&c| c > tile_index)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtseg_tiling::{Size2, TileSet, tile_layout};

    const TIA: RuleSet = RuleSet {
        edge_boundary_lines: true,
        closed_boxes: true,
    };

    #[test]
    fn finds_the_crosses_whose_lines_a_box_meets() {
        // 300 x 300, tiles of 100, margin 10: crosses at corners (100,100), (200,100), ...
        let tiles = tile_layout(Size2::new(300, 300), 100, 10, |_| true).unwrap();
        let idx = CrossLines::new(&tiles, 10, TIA);
        let cross_at = |cx: i64, cy: i64| {
            tiles
                .iter()
                .position(|t| {
                    t.set == TileSet::Cross && t.bounds == [cx - 20, cy - 20, cx + 20, cy + 20]
                })
                .unwrap()
        };
        let c11 = cross_at(100, 100);
        // touches the top line of the square [90, 110]^2 from above
        assert_eq!(idx.later_crosses(&[95, 85, 99, 90], 0), vec![c11]);
        assert!(idx.later_crosses(&[95, 85, 99, 89], 0).is_empty());
        // strictly inside the square: meets no line
        assert!(idx.later_crosses(&[95, 95, 105, 105], 0).is_empty());
        // a long box across two corners
        assert_eq!(
            idx.later_crosses(&[105, 95, 195, 100], 0),
            vec![c11, cross_at(200, 100)]
        );
        // only later crosses count
        assert!(idx.later_crosses(&[95, 85, 99, 90], c11).is_empty());
        // ours: the pixels of the square [90, 110) x [90, 110)
        let ours = CrossLines::new(
            &tiles,
            10,
            RuleSet {
                edge_boundary_lines: false,
                closed_boxes: false,
            },
        );
        assert!(ours.later_crosses(&[95, 85, 99, 90], 0).is_empty()); // touches it from above
        assert_eq!(ours.later_crosses(&[95, 85, 99, 91], 0), vec![c11]); // its last row is 90
        assert_eq!(ours.later_crosses(&[95, 95, 105, 105], 0), vec![c11]); // inside
        assert!(ours.later_crosses(&[110, 95, 115, 105], 0).is_empty()); // first column 110
    }
}

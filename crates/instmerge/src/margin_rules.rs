//! TIAToolbox's margin rules (`_get_sel_indices_margin_lines`, reference section 3.3), in canvas
//! coordinates: which of a tile's own instances it drops, and which earlier instances a cross
//! section tile removes.
//!
//! Boxes are `[x0, y0, x1, y1]` with `x1`/`y1` exclusive pixel bounds, tested as the closed
//! rectangles shapely builds from them (`shapely.box(*bbox)`): touching counts as intersecting,
//! and containment allows shared edges.

use mtseg_tiling::{PostprocTile, TileSet};

/// `[x0, y0, x1, y1]`, closed.
pub(crate) type Rect = [i64; 4];

/// Closed-interval intersection (shapely / STRtree envelope `intersects`).
pub(crate) fn intersects(a: &Rect, b: &Rect) -> bool {
    a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3]
}

/// Closed containment of `inner` in `outer` (shapely `contains` for a non-degenerate `inner`;
/// instance boxes always are, as they hold at least one pixel).
pub(crate) fn contains(outer: &Rect, inner: &Rect) -> bool {
    outer[0] <= inner[0] && inner[2] <= outer[2] && outer[1] <= inner[1] && inner[3] <= outer[3]
}

fn shift(r: Rect, tl: [i64; 2]) -> Rect {
    [r[0] + tl[0], r[1] + tl[1], r[2] + tl[0], r[3] + tl[1]]
}

/// Nominal (unclipped) tile width, height and top-left corner.
fn geometry(tile: &PostprocTile) -> (i64, i64, [i64; 2]) {
    let b = tile.bounds;
    (b[2] - b[0], b[3] - b[1], [b[0], b[1]])
}

/// Which rules to apply: TIAToolbox's, or ours (see [`crate::TiaToolboxCompat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleSet {
    /// Strips test a boundary line on their image-border sides (TIAToolbox).
    pub(crate) edge_boundary_lines: bool,
    /// Boxes are TIAToolbox's closed rectangles (each reaching one pixel past its pixels);
    /// `false`: the pixel-exact boxes below, which give every nucleus exactly one owner.
    pub(crate) closed_boxes: bool,
}

/// The margin boxes, top, bottom, left, right (canvas coordinates), as tested by full tiles
/// and crosses (`contains`) or strips (`intersects`).
///
/// TIAToolbox (`closed_boxes`): `[0, 0, w, m]`, `[0, h-m, w, h]`, ... as closed rectangles.
/// Ours, for `intersects` (strips): the margin's pixels `0..m`, i.e. a box `m` reaching `m-1`;
/// for `contains` (full tiles): the margin less its innermost pixel line, which is a strip's cut
/// line, so that a nucleus touching that line stays with the full tile (the strip drops it).
fn margin_boxes(tile: &PostprocTile, m: i64, rules: RuleSet) -> [Rect; 4] {
    let (w, h, tl) = geometry(tile);
    // ours: `m - 1` serves both tests (pixels `0..m` meet `[x0, x1)` iff `x0 <= m - 1`; pixels
    // `0..m-1` contain it iff `x1 <= m - 1`), and mirrored on the far sides
    let e = if rules.closed_boxes { m } else { m - 1 };
    [
        [0, 0, w, e],
        [0, h - e, w, h],
        [0, 0, e, h],
        [w - e, 0, w, h],
    ]
    .map(|r| shift(r, tl))
}

/// The boundary lines, top, bottom, left, right (canvas coordinates): TIAToolbox's closed 1-px
/// boxes (meeting the first *two* pixel lines), or ours, the outermost pixel line only.
fn boundary_lines(tile: &PostprocTile, rules: RuleSet) -> [Rect; 4] {
    let (w, h, tl) = geometry(tile);
    let t = i64::from(rules.closed_boxes);
    [
        [0, 0, w, t],
        [0, h - t, w, h],
        [0, 0, t, h],
        [w - t, 0, w, h],
    ]
    .map(|r| shift(r, tl))
}

/// The sides of a strip that TIAToolbox cuts (always flag 0): left/right of a vertical strip,
/// top/bottom of a horizontal one. Its other two sides have flag 0 only on the image border.
fn cut_sides(set: TileSet) -> [bool; 4] {
    match set {
        TileSet::VerticalStrip => [false, false, true, true],
        TileSet::HorizontalStrip => [true, true, false, false],
        TileSet::Full | TileSet::Cross => [false; 4],
    }
}

/// Whether `tile` drops its own instance with box `bbox` (canvas coordinates).
///
/// * Full tiles and crosses: dropped when a selected margin box (flagged sides; all four for a
///   cross) contains the box.
/// * Strips: dropped when the box intersects the margin box of a flagged side or the boundary
///   line of an unflagged one. Without `edge_boundary_lines` (our fix), an unflagged side that
///   is not a cut side lies on the image border and removes nothing.
pub(crate) fn removed_in_tile(
    tile: &PostprocTile,
    margin: i64,
    bbox: &Rect,
    rules: RuleSet,
) -> bool {
    let flags = tile.flags.to_array();
    match tile.set {
        TileSet::Full => {
            let boxes = margin_boxes(tile, margin, rules);
            (0..4).any(|k| flags[k] && contains(&boxes[k], bbox))
        }
        TileSet::Cross => {
            // a cross's own margins: the closed boxes in both rule sets (a box not meeting the
            // inner 2m x 2m square lies in one of them)
            let closed = RuleSet {
                closed_boxes: true,
                ..rules
            };
            margin_boxes(tile, margin, closed)
                .iter()
                .any(|mb| contains(mb, bbox))
        }
        TileSet::VerticalStrip | TileSet::HorizontalStrip => {
            let boxes = margin_boxes(tile, margin, rules);
            let lines = boundary_lines(tile, rules);
            let cut = cut_sides(tile.set);
            (0..4).any(|k| {
                if flags[k] {
                    intersects(&boxes[k], bbox)
                } else if cut[k] || rules.edge_boundary_lines {
                    intersects(&lines[k], bbox)
                } else {
                    false
                }
            })
        }
    }
}

/// Where a cross tile removes earlier instances (canvas coordinates; a box meeting one of these
/// is removed when the cross has instances). TIAToolbox: the four margin lines, sides of the
/// `2m x 2m` square centred on the tile corner, as closed segments. Ours: the pixels of that
/// square (`[c-m, c+m)` on both axes), exactly the nuclei the cross keeps of its own, so that
/// a nucleus touching the square from outside is no longer removed by the cross *and* by its
/// own tile. `None` for other tile sets.
pub(crate) fn cross_removal_regions(
    tile: &PostprocTile,
    margin: i64,
    rules: RuleSet,
) -> Option<Vec<Rect>> {
    if tile.set != TileSet::Cross {
        return None;
    }
    let (w, h, tl) = geometry(tile);
    let m = margin;
    if !rules.closed_boxes {
        // pixels m..w-m meet a box [x0, x1) iff x0 <= w-m-1 and x1 >= m+1
        let k = [m + 1, m + 1, w - m - 1, h - m - 1];
        if m < 1 || k[0] > k[2] || k[1] > k[3] {
            return Some(Vec::new());
        }
        return Some(vec![shift(k, tl)]);
    }
    Some(
        [
            [m, m, w - m, m],
            [m, h - m, w - m, h - m],
            [m, m, m, h - m],
            [w - m, m, w - m, h - m],
        ]
        .map(|r| shift(r, tl))
        .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtseg_tiling::SideFlags;

    const TIA: RuleSet = RuleSet {
        edge_boundary_lines: true,
        closed_boxes: true,
    };
    const OURS: RuleSet = RuleSet {
        edge_boundary_lines: false,
        closed_boxes: false,
    };

    fn tile(set: TileSet, bounds: Rect, flags: [u8; 4]) -> PostprocTile {
        PostprocTile {
            set,
            bounds,
            flags: SideFlags::from_array(flags.map(|f| f == 1)),
        }
    }

    #[test]
    fn full_tile_drops_boxes_contained_in_flagged_margins_only() {
        // 100 x 100 tile at (100, 0), margin 10, right and bottom flagged.
        let t = tile(TileSet::Full, [100, 0, 200, 100], [0, 1, 0, 1]);
        let gone = |b: Rect, r| removed_in_tile(&t, 10, &b, r);
        assert!(gone([191, 40, 200, 50], TIA) && gone([191, 40, 200, 50], OURS));
        // starts on the margin's inner column 190 (a strip's cut line): TIAToolbox drops it
        // (and so does the strip), we keep it
        assert!(gone([190, 40, 200, 50], TIA));
        assert!(!gone([190, 40, 200, 50], OURS));
        assert!(!gone([189, 40, 195, 50], TIA)); // crosses the margin's inner edge
        assert!(gone([150, 91, 160, 100], OURS)); // bottom margin
        assert!(!gone([100, 40, 110, 50], TIA)); // left margin: side not flagged
        assert!(!gone([150, 0, 160, 10], TIA)); // top margin: not flagged
        assert!(!gone([150, 40, 160, 50], TIA)); // interior
    }

    #[test]
    fn full_tile_without_flags_keeps_everything() {
        let t = tile(TileSet::Full, [0, 0, 100, 100], [0, 0, 0, 0]);
        assert!(!removed_in_tile(&t, 10, &[0, 0, 5, 5], TIA));
    }

    #[test]
    fn cross_uses_all_four_margin_boxes_whatever_its_flags() {
        let t = tile(TileSet::Cross, [80, 80, 120, 120], [0, 0, 0, 0]);
        for r in [TIA, OURS] {
            assert!(removed_in_tile(&t, 10, &[80, 95, 90, 105], r)); // left margin
            assert!(removed_in_tile(&t, 10, &[95, 110, 105, 120], r)); // bottom margin
            assert!(!removed_in_tile(&t, 10, &[85, 85, 95, 95], r)); // meets the inner square
            assert!(!removed_in_tile(&t, 10, &[95, 95, 105, 105], r)); // centre
        }
    }

    #[test]
    fn strips_drop_boxes_touching_margins_and_cut_lines() {
        // vertical strip 20 wide, 100 high, interior (top and bottom flagged)
        let t = tile(TileSet::VerticalStrip, [90, 100, 110, 200], [1, 1, 0, 0]);
        let gone = |b: Rect, r| removed_in_tile(&t, 10, &b, r);
        assert!(gone([90, 150, 95, 160], TIA) && gone([90, 150, 95, 160], OURS)); // cut column 90
        // x0 = 91 meets TIAToolbox's closed line [90, 91] but not column 90
        assert!(gone([91, 150, 95, 160], TIA));
        assert!(!gone([91, 150, 95, 160], OURS));
        assert!(!gone([92, 150, 98, 160], TIA));
        assert!(gone([100, 150, 110, 160], OURS)); // last column 109
        assert!(gone([100, 150, 109, 160], TIA)); // x1 = 109 meets the line [109, 110]
        assert!(!gone([100, 150, 109, 160], OURS));
        assert!(gone([95, 105, 100, 115], TIA) && gone([95, 105, 100, 115], OURS)); // top margin
        // first row 110, just below the margin rows 100..110: TIAToolbox's closed box meets it
        // (and the cross above drops it as lying in its own margin), we keep it
        assert!(gone([95, 110, 100, 115], TIA));
        assert!(!gone([95, 110, 100, 115], OURS));
        assert!(!gone([95, 111, 100, 120], TIA));
        // horizontal strip: cut sides are top and bottom
        let h = tile(TileSet::HorizontalStrip, [100, 90, 200, 110], [0, 0, 1, 1]);
        assert!(removed_in_tile(&h, 10, &[150, 90, 155, 95], OURS));
        assert!(removed_in_tile(&h, 10, &[185, 95, 195, 100], OURS)); // right margin
        assert!(!removed_in_tile(&h, 10, &[150, 95, 155, 100], OURS));
    }

    #[test]
    fn image_border_sides_of_strips_differ_between_compat_and_fixed() {
        // vertical strip in the first tile row: top on the image border (flag 0)
        let t = tile(TileSet::VerticalStrip, [90, 0, 110, 100], [0, 1, 0, 0]);
        let touching_top = [95, 0, 105, 8];
        assert!(removed_in_tile(&t, 10, &touching_top, TIA)); // TIAToolbox: lost
        let edge_only = RuleSet {
            edge_boundary_lines: false,
            ..TIA
        };
        assert!(!removed_in_tile(&t, 10, &touching_top, edge_only)); // ours: kept
        assert!(!removed_in_tile(&t, 10, &touching_top, OURS));
        // the cut sides keep their lines in both modes
        assert!(removed_in_tile(&t, 10, &[90, 0, 95, 8], OURS));
        // horizontal strip on the left image border
        let h = tile(TileSet::HorizontalStrip, [0, 90, 100, 110], [0, 0, 0, 1]);
        assert!(removed_in_tile(&h, 10, &[0, 95, 6, 105], TIA));
        assert!(!removed_in_tile(&h, 10, &[0, 95, 6, 105], OURS));
    }

    #[test]
    fn cross_removal_regions_frame_or_fill_the_corner_square() {
        let t = tile(TileSet::Cross, [80, 80, 120, 120], [1, 1, 1, 1]);
        let l = cross_removal_regions(&t, 10, TIA).unwrap();
        assert_eq!(
            l,
            vec![
                [90, 90, 110, 90],
                [90, 110, 110, 110],
                [90, 90, 90, 110],
                [110, 90, 110, 110]
            ]
        );
        // ours: pixels 90..110 meet [x0, x1) iff x0 <= 109 and x1 >= 91
        assert_eq!(
            cross_removal_regions(&t, 10, OURS).unwrap(),
            vec![[91, 91, 109, 109]]
        );
        let full = tile(TileSet::Full, [0, 0, 100, 100], [0, 1, 0, 1]);
        assert!(cross_removal_regions(&full, 10, TIA).is_none());
        let flat = tile(TileSet::Cross, [100, 100, 100, 100], [1, 1, 1, 1]);
        assert!(cross_removal_regions(&flat, 0, OURS).unwrap().is_empty());
    }

    #[test]
    fn closed_rectangle_predicates() {
        assert!(intersects(&[0, 0, 1, 1], &[1, 1, 2, 2]));
        assert!(!intersects(&[0, 0, 1, 1], &[2, 0, 3, 1]));
        assert!(intersects(&[5, 5, 5, 9], &[0, 0, 5, 5])); // a degenerate line still meets
        assert!(contains(&[0, 0, 10, 10], &[0, 0, 10, 10]));
        assert!(!contains(&[0, 0, 10, 10], &[0, 0, 11, 10]));
        assert!(!contains(&[0, 0, 10, 0], &[0, 0, 1, 1])); // margin 0 contains nothing
    }
}

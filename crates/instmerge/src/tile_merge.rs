//! The streaming, order-independent merge of per-tile instances ([`TileMerger`]).

mod merger_state;

pub(crate) use merger_state::MergerState;

use std::collections::{BTreeMap, BTreeSet};

use mtseg_postproc::{LayerRegion, NucleusInstance};
use mtseg_tiling::{PostprocTile, TileSet};
use serde::{Deserialize, Serialize};

use crate::cross_lines::CrossLines;
use crate::id_order::OrderKey;
use crate::instance_index::{Pending, PendingIndex};
use crate::margin_rules::{Rect, RuleSet, cross_removal_regions, removed_in_tile};
use crate::{MergeError, TiaToolboxCompat};

/// What the merge needs to know of an instance: the box the margin rules test and the point
/// that orders the final ids. Both in canvas coordinates (the tile offset already added, as
/// `mtseg_postproc` does when given the tile origin).
pub trait MergeItem {
    /// `[x0, y0, x1, y1]`, `x1`/`y1` exclusive (TIAToolbox's `box`).
    fn merge_box(&self) -> [i32; 4];
    /// `[x, y]` that orders ids (row-major); must lie inside the instance's tile.
    fn position(&self) -> [f64; 2];
}

impl MergeItem for NucleusInstance {
    /// The nucleus bounding box.
    fn merge_box(&self) -> [i32; 4] {
        self.bbox
    }
    /// The centroid.
    fn position(&self) -> [f64; 2] {
        self.centroid
    }
}

impl MergeItem for LayerRegion {
    /// The box of the whole layer class in the tile, which TIAToolbox gives each polygon of the
    /// class and tests in its margin rules (kept for parity).
    fn merge_box(&self) -> [i32; 4] {
        self.bbox
    }
    /// The first contour point (OpenCV starts at the top-most, then left-most, border pixel);
    /// the box corner for an empty contour.
    fn position(&self) -> [f64; 2] {
        let p = self
            .contour
            .first()
            .copied()
            .unwrap_or([self.bbox[0], self.bbox[1]]);
        [f64::from(p[0]), f64::from(p[1])]
    }
}

/// One final instance with its id. Serialises with serde (e.g. one JSON line per instance);
/// through `serde_json` it round-trips exactly, floats included (the workspace enables
/// `serde_json`'s `float_roundtrip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedItem<T> {
    /// 1-based, contiguous, in row-major order of [`MergeItem::position`] (y, then x, then tile
    /// index and index within the tile for exact ties); 0 is left for background.
    pub id: u64,
    /// Index in the layout of the tile it came from.
    pub tile_index: usize,
    /// The instance, as post-processing gave it.
    pub item: T,
}

/// Counters of one merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeStats {
    /// Tiles pushed.
    pub tiles: usize,
    /// Instances pushed.
    pub instances_in: usize,
    /// Dropped by their own tile's margin rules.
    pub removed_by_margin: usize,
    /// Removed by a later cross tile's margin lines.
    pub removed_by_cross: usize,
    /// Given ids and handed out.
    pub emitted: usize,
    /// Most instances held at once (pending a cross or waiting for their id).
    pub peak_held: usize,
}

/// Merges the instances of the tiles of one layout ([`mtseg_tiling::tile_layout`]) as
/// TIAToolbox's tile mode does in its fixed order (all full tiles, vertical strips, horizontal
/// strips, crosses), while accepting the tiles in **any** order, and hands out final instances
/// with ids as soon as no tile still to come can change them.
///
/// Push each tile once with [`push`](Self::push) (an empty `Vec` for a tile without instances),
/// take final instances with [`drain_final`](Self::drain_final) whenever convenient, and end with
/// [`finish`](Self::finish). See the crate docs for the algorithm and the memory story.
#[derive(Debug)]
pub struct TileMerger<T> {
    // PROPERTIES
    tiles: Vec<PostprocTile>,
    margin: i64,
    rules: RuleSet,
    /// `false` for [`TileMerger::without_rules`]: every instance pushed is kept.
    apply_rules: bool,
    crosses: CrossLines,
    // STATE
    /// `Some(had_instances)` once the tile is in.
    arrived: Vec<Option<bool>>,
    /// `(top, index)` of the tiles still to come: no later instance lies above the first.
    unarrived_tops: BTreeSet<(i64, usize)>,
    /// Survivors that a cross still to come may remove.
    pending: PendingIndex<T>,
    /// Final instances waiting for their id.
    ready: BTreeMap<OrderKey, (usize, T)>,
    next_id: u64,
    stats: MergeStats,
}

impl<T: MergeItem> TileMerger<T> {
    /// A merger for `tiles` (in TIAToolbox's merge order, as `tile_layout` gives them) and
    /// `margin` pixels. `compat.grid_extent` is not read here.
    ///
    /// # Errors
    /// [`MergeError::EmptyTile`] for a tile with `x1 < x0` or `y1 < y0` (zero-width tiles, as
    /// margin 0 gives, are accepted and can only be pushed empty);
    /// [`MergeError::MarginTooLarge`] for a margin past `i32::MAX`.
    pub fn new(
        tiles: Vec<PostprocTile>,
        margin: u64,
        compat: TiaToolboxCompat,
    ) -> Result<Self, MergeError> {
        let margin = i32::try_from(margin)
            .map(i64::from)
            .map_err(|_| MergeError::MarginTooLarge { margin })?;
        if let Some((index, t)) = tiles
            .iter()
            .enumerate()
            .find(|(_, t)| t.bounds[2] < t.bounds[0] || t.bounds[3] < t.bounds[1])
        {
            return Err(MergeError::EmptyTile {
                index,
                bounds: t.bounds,
            });
        }
        let rules = RuleSet {
            edge_boundary_lines: compat.edge_boundary_lines,
            closed_boxes: compat.closed_margin_boxes,
        };
        let crosses = CrossLines::new(&tiles, margin, rules);
        let unarrived_tops = tiles
            .iter()
            .enumerate()
            .map(|(i, t)| (t.bounds[1], i))
            .collect();
        Ok(Self {
            arrived: vec![None; tiles.len()],
            tiles,
            margin,
            rules,
            apply_rules: true,
            crosses,
            unarrived_tops,
            pending: PendingIndex::default(),
            ready: BTreeMap::new(),
            next_id: 1,
            stats: MergeStats::default(),
        })
    }

    /// A merger for `tiles` that applies no rule: every instance pushed is final and kept, with
    /// ids in the same row-major order as [`new`](Self::new)'s. For instances that already
    /// partition the canvas between the tiles, e.g. HoVer-Net+ layer polygons cut to the part
    /// of the canvas each tile owns.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn without_rules(tiles: Vec<PostprocTile>) -> Result<Self, MergeError> {
        let mut m = Self::new(tiles, 0, TiaToolboxCompat::OFF)?;
        m.apply_rules = false;
        Ok(m)
    }

    /// The layout this merger was built for.
    pub fn tiles(&self) -> &[PostprocTile] {
        &self.tiles
    }

    /// Counters so far.
    pub fn stats(&self) -> MergeStats {
        self.stats
    }

    /// Instances held now (pending a cross, or final and waiting for their id).
    pub fn held(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// Whether every tile has been pushed.
    pub fn is_complete(&self) -> bool {
        self.unarrived_tops.is_empty()
    }

    /// The first canvas row that an instance not yet handed out by
    /// [`drain_final`](Self::drain_final) may touch: the smallest of the tops of the tiles still
    /// to come and the box tops of the instances held. Rows above it are final for every output
    /// (e.g. a dense instance map can be written up to it). `None` when nothing can come any more.
    pub fn first_open_row(&self) -> Option<i64> {
        let unarrived = self.unarrived_tops.first().map(|&(top, _)| top);
        let ready = self
            .ready
            .values()
            .map(|(_, item)| i64::from(item.merge_box()[1]))
            .min();
        [unarrived, self.pending.min_top(), ready]
            .into_iter()
            .flatten()
            .min()
    }

    /// Merges the instances of the tile at `tile_index` (canvas coordinates, in the order
    /// post-processing gave them): drops those its own margin rules remove and those a later
    /// cross tile (already in, with instances) removes; a cross also removes the earlier
    /// instances on its margin lines (a merger built [`without_rules`](Self::without_rules)
    /// keeps them all). On error nothing is changed.
    ///
    /// # Errors
    /// [`MergeError::UnknownTile`], [`MergeError::TileTwice`], and
    /// [`MergeError::InstanceOutsideTile`] for an instance whose position is not inside the
    /// tile or whose box is empty (coordinates not offset by the tile origin?).
    pub fn push(&mut self, tile_index: usize, items: Vec<T>) -> Result<(), MergeError> {
        let tile = *self.tiles.get(tile_index).ok_or(MergeError::UnknownTile {
            index: tile_index,
            tiles: self.tiles.len(),
        })?;
        if self.arrived[tile_index].is_some() {
            return Err(MergeError::TileTwice { index: tile_index });
        }
        for (index, it) in items.iter().enumerate() {
            check_inside(&tile, tile_index, index, it)?;
        }
        let nonempty = !items.is_empty();
        self.stats.tiles += 1;
        self.stats.instances_in += items.len();
        self.arrived[tile_index] = Some(nonempty);
        self.unarrived_tops.remove(&(tile.bounds[1], tile_index));
        for (index, item) in items.into_iter().enumerate() {
            if !self.apply_rules {
                let key = OrderKey::new(item.position(), tile_index, index);
                self.ready.insert(key, (tile_index, item));
                continue;
            }
            let bbox: Rect = item.merge_box().map(i64::from);
            if removed_in_tile(&tile, self.margin, &bbox, self.rules) {
                self.stats.removed_by_margin += 1;
                continue;
            }
            let later = self.crosses.later_crosses(&bbox, tile_index);
            if later.iter().any(|&c| self.arrived[c] == Some(true)) {
                self.stats.removed_by_cross += 1;
                continue;
            }
            let waits = later.iter().filter(|&&c| self.arrived[c].is_none()).count();
            let key = OrderKey::new(item.position(), tile_index, index);
            if waits == 0 {
                self.ready.insert(key, (tile_index, item));
            } else {
                self.pending.insert(Pending {
                    key,
                    tile: tile_index,
                    bbox,
                    waits,
                    item,
                });
            }
        }
        if self.apply_rules
            && tile.set == TileSet::Cross
            && let Some(lines) = cross_removal_regions(&tile, self.margin, self.rules)
        {
            let out = self.pending.resolve_cross(tile_index, &lines, nonempty);
            self.stats.removed_by_cross += out.removed;
            for p in out.released {
                self.ready.insert(p.key, (p.tile, p.item));
            }
        }
        self.stats.peak_held = self.stats.peak_held.max(self.held());
        Ok(())
    }

    /// Final instances whose id can no longer change, ascending id: those above every tile
    /// still to come and before every instance still pending. Their memory leaves the merger.
    pub fn drain_final(&mut self) -> Vec<MergedItem<T>> {
        let top = self.unarrived_tops.first().map(|&(top, _)| top as f64);
        let pending_min = self.pending.min_key().copied();
        let mut out = Vec::new();
        while let Some(entry) = self.ready.first_entry() {
            let key = *entry.key();
            if top.is_some_and(|t| key.y >= t) || pending_min.is_some_and(|p| key >= p) {
                break;
            }
            let (tile_index, item) = entry.remove();
            out.push(MergedItem {
                id: self.next_id,
                tile_index,
                item,
            });
            self.next_id += 1;
        }
        self.stats.emitted += out.len();
        out
    }

    /// The remaining final instances, once every tile is in.
    ///
    /// # Errors
    /// [`MergeError::MissingTiles`] when a tile was never pushed.
    pub fn finish(mut self) -> Result<Vec<MergedItem<T>>, MergeError> {
        if let Some(&(_, first)) = self.unarrived_tops.iter().min_by_key(|(_, i)| *i) {
            return Err(MergeError::MissingTiles {
                missing: self.unarrived_tops.len(),
                first,
                bounds: self.tiles[first].bounds,
            });
        }
        // With every cross in, nothing can be pending any more.
        debug_assert_eq!(self.pending.len(), 0);
        Ok(self.drain_final())
    }
}

/// [`MergeError::InstanceOutsideTile`] unless `item` (number `index` of tile `tile_index`) has a
/// non-empty box and its position inside the tile.
fn check_inside<T: MergeItem>(
    tile: &PostprocTile,
    tile_index: usize,
    index: usize,
    item: &T,
) -> Result<(), MergeError> {
    let b = tile.bounds;
    let [x, y] = item.position();
    let bb = item.merge_box();
    let inside = x >= b[0] as f64 && x <= b[2] as f64 && y >= b[1] as f64 && y <= b[3] as f64;
    if !inside || bb[2] <= bb[0] || bb[3] <= bb[1] {
        return Err(MergeError::InstanceOutsideTile {
            tile: tile_index,
            bounds: b,
            index,
            position: [x, y],
            bbox: bb,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtseg_tiling::{SideFlags, Size2, tile_layout};

    #[derive(Debug, Clone, PartialEq)]
    struct Item {
        bbox: [i32; 4],
    }

    impl MergeItem for Item {
        fn merge_box(&self) -> [i32; 4] {
            self.bbox
        }
        fn position(&self) -> [f64; 2] {
            [
                f64::from(self.bbox[0] + self.bbox[2]) / 2.0,
                f64::from(self.bbox[1] + self.bbox[3]) / 2.0,
            ]
        }
    }

    fn item(x: i32, y: i32, s: i32) -> Item {
        Item {
            bbox: [x, y, x + s, y + s],
        }
    }

    fn layout() -> Vec<PostprocTile> {
        // 200 x 200, tiles of 100, margin 10: 4 full, 2 + 2 strips, 1 cross at (100, 100)
        tile_layout(Size2::new(200, 200), 100, 10, |_| true).unwrap()
    }

    fn index_of(tiles: &[PostprocTile], set: TileSet, x0: i64, y0: i64) -> usize {
        tiles
            .iter()
            .position(|t| t.set == set && t.bounds[0] == x0 && t.bounds[1] == y0)
            .unwrap()
    }

    #[test]
    fn a_cross_removes_earlier_instances_whatever_the_arrival_order() {
        let tiles = layout();
        let full = index_of(&tiles, TileSet::Full, 0, 0);
        let cross = index_of(&tiles, TileSet::Cross, 80, 80);
        // a nucleus of the first full tile meeting the cross's left line x = 90, and one far away
        let near = item(85, 50, 8); // [85, 93] x [50, 58]: not in a margin, not on a line
        let on_line = Item {
            bbox: [84, 86, 91, 92], // its last column 90 and row 91 meet the cross's square
        };
        let from_cross = item(95, 95, 10);
        for cross_first in [false, true] {
            let mut m = TileMerger::new(tiles.clone(), 10, TiaToolboxCompat::OFF).unwrap();
            let mut push = |i: usize, v: Vec<Item>| m.push(i, v).unwrap();
            if cross_first {
                push(cross, vec![from_cross.clone()]);
                push(full, vec![near.clone(), on_line.clone()]);
            } else {
                push(full, vec![near.clone(), on_line.clone()]);
                push(cross, vec![from_cross.clone()]);
            }
            for i in 0..tiles.len() {
                if i != full && i != cross {
                    m.push(i, Vec::new()).unwrap();
                }
            }
            assert_eq!(m.stats().removed_by_cross, 1);
            let out = m.finish().unwrap();
            let got: Vec<_> = out.iter().map(|o| (o.id, o.item.clone())).collect();
            assert_eq!(got, vec![(1, near.clone()), (2, from_cross.clone())]);
        }
    }

    #[test]
    fn an_empty_cross_removes_nothing_as_in_tiatoolbox() {
        let tiles = layout();
        let full = index_of(&tiles, TileSet::Full, 0, 0);
        let on_line = Item {
            bbox: [84, 86, 91, 92],
        };
        let mut m = TileMerger::new(tiles.clone(), 10, TiaToolboxCompat::OFF).unwrap();
        m.push(full, vec![on_line.clone()]).unwrap();
        assert_eq!(m.held(), 1);
        assert!(m.drain_final().is_empty()); // pending: the cross is still to come
        for i in 0..tiles.len() {
            if i != full {
                m.push(i, Vec::new()).unwrap();
            }
        }
        let out = m.finish().unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].item, on_line);
    }

    #[test]
    fn ids_are_handed_out_band_by_band_in_row_major_order() {
        let tiles = layout();
        let mut m = TileMerger::new(tiles.clone(), 10, TiaToolboxCompat::OFF).unwrap();
        let a = index_of(&tiles, TileSet::Full, 0, 0);
        let b = index_of(&tiles, TileSet::Full, 100, 0);
        m.push(b, vec![item(130, 20, 5)]).unwrap();
        m.push(a, vec![item(20, 40, 5)]).unwrap();
        // the vertical strip of the first row (top 0) is still to come: nothing is final yet
        assert!(m.drain_final().is_empty());
        let v = index_of(&tiles, TileSet::VerticalStrip, 90, 0);
        m.push(v, Vec::new()).unwrap();
        // next tiles to come start at y = 90 (horizontal strips): both are above
        let first = m.drain_final();
        assert_eq!(
            first
                .iter()
                .map(|o| (o.id, o.item.bbox[0]))
                .collect::<Vec<_>>(),
            vec![(1, 130), (2, 20)]
        );
        for i in 0..tiles.len() {
            if ![a, b, v].contains(&i) {
                m.push(i, Vec::new()).unwrap();
            }
        }
        assert!(m.finish().unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error_and_changes_nothing() {
        let tiles = layout();
        let mut m = TileMerger::new(tiles.clone(), 10, TiaToolboxCompat::OFF).unwrap();
        let n = tiles.len();
        assert_eq!(
            m.push(n, vec![]).unwrap_err().to_string(),
            format!("tile index {n} is not in the layout of {n} tiles")
        );
        let err = m.push(0, vec![item(150, 150, 5)]).unwrap_err();
        assert!(
            matches!(err, MergeError::InstanceOutsideTile { tile: 0, .. }),
            "{err}"
        );
        assert_eq!(m.stats().tiles, 0);
        m.push(0, vec![]).unwrap();
        assert!(matches!(
            m.push(0, vec![]),
            Err(MergeError::TileTwice { index: 0 })
        ));
        let err = m.finish().unwrap_err();
        assert!(
            matches!(err, MergeError::MissingTiles { missing, first: 1, .. } if missing == n - 1)
        );
        let bad = vec![PostprocTile {
            set: TileSet::Full,
            bounds: [0, 0, -1, 10],
            flags: SideFlags::NONE,
        }];
        assert!(matches!(
            TileMerger::<Item>::new(bad, 1, TiaToolboxCompat::OFF),
            Err(MergeError::EmptyTile { index: 0, .. })
        ));
    }

    #[test]
    fn an_empty_tile_contributes_nothing() {
        // TIAToolbox's `_process_instance_predictions` with an empty dict returns ({}, []).
        let tiles = vec![PostprocTile {
            set: TileSet::Full,
            bounds: [0, 0, 50, 50],
            flags: SideFlags::NONE,
        }];
        let mut m = TileMerger::<Item>::new(tiles, 8, TiaToolboxCompat::OFF).unwrap();
        m.push(0, Vec::new()).unwrap();
        assert_eq!(m.stats().tiles, 1);
        assert!(m.finish().unwrap().is_empty());
    }
}

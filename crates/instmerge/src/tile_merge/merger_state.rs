//! A [`TileMerger`]'s state without its layout, for checkpoints: which tiles are in, the
//! instances it holds (pending a cross or waiting for their id), the next id and the counters.
//! The layout-derived parts (cross R-tree, rules) are rebuilt by `new` / `without_rules`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{MergeItem, MergeStats, TileMerger, check_inside};
use crate::MergeError;
use crate::id_order::OrderKey;
use crate::instance_index::Pending;
use crate::margin_rules::{Rect, removed_in_tile};

/// What a [`TileMerger`] holds between two pushes, without its layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MergerState<T> {
    /// One character per tile of the layout: `.` not merged yet, `0` merged without instances,
    /// `1` merged with instances.
    pub(crate) arrived: String,
    /// Instances a cross still to come may remove, in id order.
    pub(crate) pending: Vec<HeldInstance<T>>,
    /// Final instances waiting for their id, in id order.
    pub(crate) ready: Vec<HeldInstance<T>>,
    /// The id the next instance handed out gets.
    pub(crate) next_id: u64,
    /// Counters so far.
    pub(crate) stats: MergeStats,
}

/// One instance a merger holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeldInstance<T> {
    /// Index of its tile in the layout.
    pub(crate) tile: usize,
    /// Its index in the list pushed for that tile (breaks id-order ties).
    pub(crate) index: usize,
    /// Crosses still to come that may remove it (0 for a final instance).
    pub(crate) waits: usize,
    /// The instance.
    pub(crate) item: T,
}

impl<T> MergerState<T> {
    /// The instances held, pending then ready.
    pub(crate) fn items(&self) -> impl Iterator<Item = &T> {
        self.pending.iter().chain(&self.ready).map(|h| &h.item)
    }

    /// Number of instances held.
    pub(crate) fn held(&self) -> usize {
        self.pending.len() + self.ready.len()
    }
}

impl<T: MergeItem + Clone> TileMerger<T> {
    /// A copy of what this merger holds and has seen.
    pub(crate) fn state(&self) -> MergerState<T> {
        let arrived = self
            .arrived
            .iter()
            .map(|a| match a {
                None => '.',
                Some(false) => '0',
                Some(true) => '1',
            })
            .collect();
        let pending = self
            .pending
            .iter()
            .map(|p| HeldInstance {
                tile: p.tile,
                index: p.key.index,
                waits: p.waits,
                item: p.item.clone(),
            })
            .collect();
        let ready = self
            .ready
            .iter()
            .map(|(key, (tile, item))| HeldInstance {
                tile: *tile,
                index: key.index,
                waits: 0,
                item: item.clone(),
            })
            .collect();
        MergerState {
            arrived,
            pending,
            ready,
            next_id: self.next_id,
            stats: self.stats,
        }
    }

    /// Whether tile `index` has been pushed.
    pub(crate) fn has_arrived(&self, index: usize) -> bool {
        self.arrived.get(index).is_some_and(Option::is_some)
    }

    /// Puts `state` into this merger, fresh from [`new`](Self::new) or
    /// [`without_rules`](Self::without_rules) with the layout, margin and rules the state was
    /// taken under. Checks that the state is one this merger could have reached: every held
    /// instance comes from a tile that is in, lies inside it, survived its rules, and waits for
    /// exactly the crosses still to come that may remove it. `name` prefixes the messages.
    ///
    /// # Errors
    /// [`MergeError::CheckpointInvalid`] naming the first inconsistency; the merger is then
    /// left half restored and must be dropped.
    pub(crate) fn restore(&mut self, state: MergerState<T>, name: &str) -> Result<(), MergeError> {
        debug_assert_eq!(self.stats.tiles, 0, "restore into a fresh merger");
        let invalid = |what: String| MergeError::CheckpointInvalid {
            what: format!("{name}: {what}"),
        };
        let n = self.tiles.len();
        if state.arrived.chars().count() != n {
            return Err(invalid(format!(
                "{} tile states for a layout of {n} tiles",
                state.arrived.chars().count()
            )));
        }
        for (i, c) in state.arrived.chars().enumerate() {
            self.arrived[i] = match c {
                '.' => None,
                '0' => Some(false),
                '1' => Some(true),
                other => {
                    return Err(invalid(format!(
                        "tile state {other:?} of tile {i} (expected '.', '0' or '1')"
                    )));
                }
            };
            if self.arrived[i].is_some() {
                self.unarrived_tops.remove(&(self.tiles[i].bounds[1], i));
            }
        }
        let arrived_count = self.arrived.iter().filter(|a| a.is_some()).count();
        if state.stats.tiles != arrived_count {
            return Err(invalid(format!(
                "{} tiles counted, {arrived_count} marked as merged",
                state.stats.tiles
            )));
        }
        if state.next_id == 0 || state.stats.emitted as u64 != state.next_id - 1 {
            return Err(invalid(format!(
                "next id {} after {} instances handed out",
                state.next_id, state.stats.emitted
            )));
        }
        let pending_count = state.pending.len();
        let mut seen = HashSet::new();
        for (k, h) in state.pending.into_iter().chain(state.ready).enumerate() {
            let is_pending = k < pending_count;
            let (key, bbox) = self.check_held(&h, is_pending).map_err(|what| {
                invalid(format!(
                    "instance {} of tile {} ({}): {what}",
                    h.index,
                    h.tile,
                    if is_pending { "pending" } else { "final" }
                ))
            })?;
            if !seen.insert((h.tile, h.index)) {
                return Err(invalid(format!(
                    "instance {} of tile {} twice",
                    h.index, h.tile
                )));
            }
            if is_pending {
                self.pending.insert(Pending {
                    key,
                    tile: h.tile,
                    bbox,
                    waits: h.waits,
                    item: h.item,
                });
            } else {
                self.ready.insert(key, (h.tile, h.item));
            }
        }
        self.next_id = state.next_id;
        self.stats = state.stats;
        Ok(())
    }

    /// The id-order key and box of a held instance, if this merger could hold it as it is.
    fn check_held(&self, h: &HeldInstance<T>, pending: bool) -> Result<(OrderKey, Rect), String> {
        let tile = *self
            .tiles
            .get(h.tile)
            .ok_or("its tile is not in the layout")?;
        if self.arrived[h.tile].is_none() {
            return Err("its tile is not merged yet".into());
        }
        check_inside(&tile, h.tile, h.index, &h.item).map_err(|e| e.to_string())?;
        let key = OrderKey::new(h.item.position(), h.tile, h.index);
        let bbox: Rect = h.item.merge_box().map(i64::from);
        if !self.apply_rules {
            return match (pending, h.waits) {
                (false, 0) => Ok((key, bbox)),
                _ => Err("a merger without rules holds no pending instances".into()),
            };
        }
        if removed_in_tile(&tile, self.margin, &bbox, self.rules) {
            return Err("its tile's margin rules remove it".into());
        }
        let later = self.crosses.later_crosses(&bbox, h.tile);
        if later.iter().any(|&c| self.arrived[c] == Some(true)) {
            return Err("a cross with instances that is in removes it".into());
        }
        let waits = later.iter().filter(|&&c| self.arrived[c].is_none()).count();
        if h.waits != waits || pending != (waits > 0) {
            return Err(format!(
                "it waits for {} crosses, {waits} that may remove it are still to come",
                h.waits
            ));
        }
        Ok((key, bbox))
    }
}

//! The pending instances: survivors of their own tile's margin rules that a cross tile not yet
//! merged may still remove. An rstar R-tree over their boxes, updated in place (insert when an
//! instance arrives, remove when a cross resolves it), never rebuilt.

use std::collections::{BTreeSet, HashMap};

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::id_order::OrderKey;
use crate::margin_rules::Rect;

type Entry = GeomWithData<Rectangle<[i64; 2]>, u64>;

/// One instance waiting for the crosses that may remove it.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    /// Its place in the id order.
    pub(crate) key: OrderKey,
    /// Index of its tile in the layout.
    pub(crate) tile: usize,
    /// Its box (canvas coordinates).
    pub(crate) bbox: Rect,
    /// Crosses after its tile whose margin lines meet its box and that have not arrived.
    pub(crate) waits: usize,
    /// The instance.
    pub(crate) item: T,
}

/// What one cross tile did to the pending instances.
#[derive(Debug)]
pub(crate) struct CrossOutcome<T> {
    /// Instances removed (the cross had instances).
    pub(crate) removed: usize,
    /// Instances no cross can remove any more (the cross was empty and was their last wait).
    pub(crate) released: Vec<Pending<T>>,
}

/// Pending instances, indexed by box and by id order.
#[derive(Debug)]
pub(crate) struct PendingIndex<T> {
    tree: RTree<Entry>,
    slots: HashMap<u64, Pending<T>>,
    order: BTreeSet<(OrderKey, u64)>,
    next_slot: u64,
}

impl<T> Default for PendingIndex<T> {
    fn default() -> Self {
        Self {
            tree: RTree::new(),
            slots: HashMap::new(),
            order: BTreeSet::new(),
            next_slot: 0,
        }
    }
}

fn rect(b: &Rect) -> Rectangle<[i64; 2]> {
    Rectangle::from_corners([b[0], b[1]], [b[2], b[3]])
}

impl<T> PendingIndex<T> {
    /// Number of pending instances.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The smallest id-order key among pending instances.
    pub(crate) fn min_key(&self) -> Option<&OrderKey> {
        self.order.first().map(|(k, _)| k)
    }

    /// The smallest box top among pending instances.
    pub(crate) fn min_top(&self) -> Option<i64> {
        (self.tree.size() > 0).then(|| self.tree.root().envelope().lower()[1])
    }

    /// The pending instances, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pending<T>> {
        self.order
            .iter()
            .filter_map(|(_, slot)| self.slots.get(slot))
    }

    /// Adds an instance (`p.waits > 0`).
    pub(crate) fn insert(&mut self, p: Pending<T>) {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.tree.insert(GeomWithData::new(rect(&p.bbox), slot));
        self.order.insert((p.key, slot));
        self.slots.insert(slot, p);
    }

    fn take(&mut self, slot: u64) -> Option<Pending<T>> {
        let p = self.slots.remove(&slot)?;
        self.tree.remove(&GeomWithData::new(rect(&p.bbox), slot));
        self.order.remove(&(p.key, slot));
        Some(p)
    }

    /// Resolves the arrival of the cross at layout index `cross` with removal regions `lines`:
    /// the pending instances of earlier tiles whose box meets one are removed if the cross
    /// had instances (`nonempty`, TIAToolbox's rule), else one wait is struck off each and those
    /// left with none are released, in id order.
    pub(crate) fn resolve_cross(
        &mut self,
        cross: usize,
        lines: &[Rect],
        nonempty: bool,
    ) -> CrossOutcome<T> {
        let mut hits: Vec<u64> = lines
            .iter()
            .flat_map(|l| {
                let env = AABB::from_corners([l[0], l[1]], [l[2], l[3]]);
                self.tree
                    .locate_in_envelope_intersecting(&env)
                    .map(|e| e.data)
            })
            .filter(|s| self.slots.get(s).is_some_and(|p| p.tile < cross))
            .collect();
        hits.sort_unstable();
        hits.dedup();
        let mut out = CrossOutcome {
            removed: 0,
            released: Vec::new(),
        };
        for slot in hits {
            if nonempty {
                self.take(slot);
                out.removed += 1;
            } else if let Some(p) = self.slots.get_mut(&slot) {
                p.waits = p.waits.saturating_sub(1);
                if p.waits == 0 {
                    out.released.extend(self.take(slot));
                }
            }
        }
        out.released.sort_by_key(|p| p.key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(tile: usize, bbox: Rect, waits: usize) -> Pending<&'static str> {
        Pending {
            key: OrderKey::new([bbox[0] as f64, bbox[1] as f64], tile, 0),
            tile,
            bbox,
            waits,
            item: "n",
        }
    }

    const LINES: [Rect; 4] = [
        [90, 90, 110, 90],
        [90, 110, 110, 110],
        [90, 90, 90, 110],
        [110, 90, 110, 110],
    ];

    #[test]
    fn a_nonempty_cross_removes_earlier_instances_on_its_lines() {
        let mut idx = PendingIndex::default();
        idx.insert(pending(0, [85, 85, 92, 92], 1)); // meets the top and left lines
        idx.insert(pending(1, [108, 100, 115, 104], 1)); // meets the right line
        idx.insert(pending(9, [88, 88, 91, 91], 1)); // a later tile: not this cross's
        assert_eq!(idx.len(), 3);
        let out = idx.resolve_cross(5, &LINES, true);
        assert_eq!(out.removed, 2);
        assert!(out.released.is_empty());
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.min_key().unwrap().tile, 9);
        // the R-tree was updated in place: a second pass finds nothing of tiles < 5
        assert_eq!(idx.resolve_cross(5, &LINES, true).removed, 0);
    }

    #[test]
    fn an_empty_cross_releases_instances_once_all_their_crosses_are_in() {
        let mut idx = PendingIndex::default();
        idx.insert(pending(0, [85, 85, 92, 92], 2));
        idx.insert(pending(0, [100, 100, 112, 104], 1));
        let out = idx.resolve_cross(5, &LINES, false);
        assert_eq!(out.removed, 0);
        assert_eq!(out.released.len(), 1); // the second one; the first still waits
        assert_eq!(out.released[0].bbox, [100, 100, 112, 104]);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.min_key().unwrap().x, 85.0);
    }
}

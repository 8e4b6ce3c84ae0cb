//! The order in which merged instances receive their final ids, shared by the merger
//! (`tile_merge`) and the index of instances still pending a cross tile (`instance_index`).

use std::cmp::Ordering;

/// Total order of final ids: position y, x (IEEE total order), tile index, index in the tile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrderKey {
    pub(crate) y: f64,
    pub(crate) x: f64,
    pub(crate) tile: usize,
    pub(crate) index: usize,
}

impl OrderKey {
    pub(crate) fn new(position: [f64; 2], tile: usize, index: usize) -> Self {
        Self {
            y: position[1],
            x: position[0],
            tile,
            index,
        }
    }
}

impl Ord for OrderKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.y
            .total_cmp(&o.y)
            .then(self.x.total_cmp(&o.x))
            .then(self.tile.cmp(&o.tile))
            .then(self.index.cmp(&o.index))
    }
}

impl PartialOrd for OrderKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for OrderKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for OrderKey {}

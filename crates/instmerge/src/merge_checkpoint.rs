//! The checkpoint of the streaming tile-mode driver ([`MergeCheckpoint`]) and the fingerprint
//! of the run it belongs to. How resume works and what a checkpoint costs: see
//! [`StreamingTileMode`](crate::StreamingTileMode).

use mtseg_postproc::{LayerRegion, NpHvParams, NucleusInstance};
use mtseg_tiling::{PostprocTile, Size2, TileSet};
use serde::{Deserialize, Serialize};

use crate::MergeError;
use crate::tiatoolbox_compat::TiaToolboxCompat;
use crate::tile_merge::MergerState;

/// The checkpoint layout this build writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// The state of a [`StreamingTileMode`](crate::StreamingTileMode) between two `push_rows`
/// calls, without the rows of its window: the tiles post-processed so far, the instances its
/// mergers hold (pending a cross tile or waiting for their id, none of them handed out yet),
/// the next ids, the counters, the first canvas row it needs again
/// ([`resume_row`](Self::resume_row)) and a fingerprint of the run (canvas size, tile layout,
/// margin, maps, [`TiaToolboxCompat`], [`NpHvParams`]) that
/// [`StreamingTileMode::resume`](crate::StreamingTileMode::resume) checks.
///
/// Serialises with serde; through `serde_json` it round-trips exactly (floats included: the
/// workspace enables `serde_json`'s `float_roundtrip`). Its size follows the instances held
/// (about a tile row of them plus those on the margin lines of crosses still to come) plus one
/// byte per tile, never the canvas width times the window's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeCheckpoint {
    /// The checkpoint layout ([`FORMAT`]).
    pub(crate) format: u32,
    /// The run it belongs to.
    pub(crate) run: RunFingerprint,
    /// Tiles post-processed, in the driver's order (by end row): the next tile to process is
    /// the one at this position of that order.
    pub(crate) tiles_done: usize,
    /// The driver's window start: the smallest top of the tiles still to process.
    pub(crate) resume_row: usize,
    /// The most rows the window held before the checkpoint.
    pub(crate) peak_window_rows: usize,
    /// The nucleus merger.
    pub(crate) nuclei: MergerState<NucleusInstance>,
    /// The layer merger (HoVer-Net+ only).
    pub(crate) layers: Option<MergerState<LayerRegion>>,
}

impl MergeCheckpoint {
    /// The first canvas row the resumed driver must be fed (its `push_rows` starts there):
    /// the top of the highest tile still to process. Rows above it are never needed again.
    pub fn resume_row(&self) -> usize {
        self.resume_row
    }

    /// Tiles post-processed before the checkpoint.
    pub fn tiles_done(&self) -> usize {
        self.tiles_done
    }

    /// Tiles of the layout the checkpoint was taken for.
    pub fn tile_count(&self) -> usize {
        self.run.tiles
    }

    /// Instances the checkpoint holds (nuclei and layer polygons not handed out yet).
    pub fn held(&self) -> usize {
        self.nuclei.held() + self.layers.as_ref().map_or(0, MergerState::held)
    }

    /// The nuclei the checkpoint holds: merged but not handed out yet (pending a cross tile or
    /// waiting for their id).
    pub fn held_nuclei(&self) -> impl Iterator<Item = &NucleusInstance> {
        self.nuclei.items()
    }

    /// The layer polygons the checkpoint holds (HoVer-Net+), as
    /// [`held_nuclei`](Self::held_nuclei).
    pub fn held_layers(&self) -> impl Iterator<Item = &LayerRegion> {
        self.layers.iter().flat_map(MergerState::items)
    }

    /// [`MergeError::CheckpointMismatch`] unless this checkpoint was written in this build's
    /// layout for the run `run`.
    pub(crate) fn check_fits(&self, run: &RunFingerprint) -> Result<(), MergeError> {
        if self.format != FORMAT {
            return Err(mismatch(format!(
                "checkpoint format {} (this build reads format {FORMAT})",
                self.format
            )));
        }
        self.run.check_fits(run)
    }
}

fn mismatch(what: String) -> MergeError {
    MergeError::CheckpointMismatch { what }
}

/// What a checkpoint must have been taken under to be resumed: every input of
/// [`StreamingTileMode::new`](crate::StreamingTileMode::new).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunFingerprint {
    /// Canvas width and height.
    canvas: [u64; 2],
    /// Tiles in the layout.
    tiles: usize,
    /// FNV-1a 64 of every tile's set, bounds and side flags, in layout order (hex).
    tiles_digest: String,
    /// Margin in pixels.
    margin: u64,
    /// Which optional maps the rows carry.
    maps: MapsFingerprint,
    /// The TIAToolbox switches.
    compat: CompatFingerprint,
    /// The post-processing constants.
    np_hv: NpHvFingerprint,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapsFingerprint {
    tp: bool,
    ls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompatFingerprint {
    edge_boundary_lines: bool,
    grid_extent: Option<[u64; 2]>,
    closed_margin_boxes: bool,
    layer_margin_rules: bool,
}

/// [`NpHvParams`], `np_threshold` widened to `f64` (exact).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NpHvFingerprint {
    scale_factor: f64,
    np_threshold: f64,
    edge_threshold: f64,
    min_blob_area: usize,
}

impl NpHvFingerprint {
    fn bits(&self) -> [u64; 4] {
        [
            self.scale_factor.to_bits(),
            self.np_threshold.to_bits(),
            self.edge_threshold.to_bits(),
            self.min_blob_area as u64,
        ]
    }
}

impl RunFingerprint {
    /// The fingerprint of a driver built with these arguments.
    pub(crate) fn new(
        canvas: Size2,
        tiles: &[PostprocTile],
        margin: u64,
        np_hv: &NpHvParams,
        compat: TiaToolboxCompat,
        [tp, ls]: [bool; 2],
    ) -> Self {
        Self {
            canvas: [canvas.width, canvas.height],
            tiles: tiles.len(),
            tiles_digest: format!("{:016x}", tiles_digest(tiles)),
            margin,
            maps: MapsFingerprint { tp, ls },
            compat: CompatFingerprint {
                edge_boundary_lines: compat.edge_boundary_lines,
                grid_extent: compat.grid_extent.map(|s| [s.width, s.height]),
                closed_margin_boxes: compat.closed_margin_boxes,
                layer_margin_rules: compat.layer_margin_rules,
            },
            np_hv: NpHvFingerprint {
                scale_factor: np_hv.scale_factor,
                np_threshold: f64::from(np_hv.np_threshold),
                edge_threshold: np_hv.edge_threshold,
                min_blob_area: np_hv.min_blob_area,
            },
        }
    }

    /// [`MergeError::CheckpointMismatch`] naming the first input that differs from `run`'s.
    fn check_fits(&self, run: &Self) -> Result<(), MergeError> {
        let differs = |what: &str, ours: String, given: String| {
            mismatch(format!("{what}: checkpoint {ours}, this run {given}"))
        };
        let size = |c: [u64; 2]| format!("{} x {}", c[0], c[1]);
        if self.canvas != run.canvas {
            return Err(differs("canvas size", size(self.canvas), size(run.canvas)));
        }
        if self.tiles != run.tiles {
            let n = |t: usize| format!("{t} tiles");
            return Err(differs("tile layout", n(self.tiles), n(run.tiles)));
        }
        if self.tiles_digest != run.tiles_digest {
            let d = |d: &str| format!("tile bounds digest {d}");
            return Err(differs(
                "tile layout",
                d(&self.tiles_digest),
                d(&run.tiles_digest),
            ));
        }
        if self.margin != run.margin {
            let m = |m: u64| format!("{m} px");
            return Err(differs("margin", m(self.margin), m(run.margin)));
        }
        if self.maps != run.maps {
            let m = |m: MapsFingerprint| {
                let names: Vec<&str> = [("tp", m.tp), ("ls", m.ls)]
                    .into_iter()
                    .filter_map(|(name, on)| on.then_some(name))
                    .collect();
                format!(
                    "np, hv{}",
                    names.iter().map(|n| format!(", {n}")).collect::<String>()
                )
            };
            return Err(differs("maps", m(self.maps), m(run.maps)));
        }
        if self.compat != run.compat {
            let c = |c: CompatFingerprint| format!("{c:?}");
            return Err(differs("TIAToolbox compat", c(self.compat), c(run.compat)));
        }
        if self.np_hv.bits() != run.np_hv.bits() {
            let p = |p: NpHvFingerprint| format!("{p:?}");
            return Err(differs("np/hv parameters", p(self.np_hv), p(run.np_hv)));
        }
        Ok(())
    }
}

/// FNV-1a 64 over each tile's set, bounds and side flags, in order (stable across builds,
/// unlike `std`'s hasher).
fn tiles_digest(tiles: &[PostprocTile]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for t in tiles {
        let set: u8 = match t.set {
            TileSet::Full => 0,
            TileSet::VerticalStrip => 1,
            TileSet::HorizontalStrip => 2,
            TileSet::Cross => 3,
        };
        eat(&[set]);
        for v in t.bounds {
            eat(&v.to_le_bytes());
        }
        eat(&t.flags.to_array().map(u8::from));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtseg_tiling::tile_layout;

    #[test]
    fn the_digest_sees_every_tile_field_and_the_order() {
        let tiles = tile_layout(Size2::new(300, 200), 100, 10, |_| true).unwrap();
        let base = tiles_digest(&tiles);
        // FNV-1a 64 of nothing is its offset basis
        assert_eq!(tiles_digest(&[]), 0xcbf2_9ce4_8422_2325);
        let mut moved = tiles.clone();
        moved[3].bounds[2] += 1;
        let mut set = tiles.clone();
        set[0].set = TileSet::Cross;
        let mut flags = tiles.clone();
        flags[0].flags.top = !flags[0].flags.top;
        let mut swapped = tiles.clone();
        swapped.swap(0, 1);
        for other in [moved, set, flags, swapped] {
            assert_ne!(tiles_digest(&other), base);
        }
    }
}

//! Cross-tile instance merge: TIAToolbox's tile-mode margin rules, made order-independent and
//! streaming, plus the tile-mode driver.
//!
//! # Place in the pipeline
//!
//! ```text
//! stitch -> tiling (tile_layout) -> postproc (per tile) -> [instmerge] -> export
//! ```
//!
//! In: the instances `mtseg_postproc` finds in each post-processing tile of
//! [`mtseg_tiling::tile_layout`] (nuclei as [`mtseg_postproc::NucleusInstance`], HoVer-Net+ layer
//! polygons as [`mtseg_postproc::LayerRegion`]), in canvas coordinates, tiles in any order.
//! Out: the final instances, each with a stable id ([`MergedItem`]), in id order, handed out as
//! soon as they are final, for `export` to write and forget. [`TileMerger`] is the streaming
//! merge; [`tile_mode`] runs post-processing and the merge over a whole canvas held in memory,
//! and [`full_canvas_mode`] runs one post-processing call on it (to compare with).
//!
//! ```
//! use mtseg_instmerge::{CanvasMaps, MergedItem, TileModeParams, full_canvas_mode, tile_mode};
//! use mtseg_postproc::{NucleusInstance, render_hovernet_targets};
//! // two 9 x 9 nuclei on a 96 x 96 canvas, the second across the tile seam x = 48
//! let (h, w) = (96, 96);
//! let mut labels = vec![0; h * w];
//! for y in 3..12 { for x in 2..11 { labels[y * w + x] = 1; } }
//! for y in 60..69 { for x in 44..53 { labels[y * w + x] = 2; } }
//! let t = render_hovernet_targets(&labels, None, h, w, 1.0)?;
//! let canvas = CanvasMaps { height: h, width: w, np: &t.np, hv: &t.hv, tp: Some(&t.tp), ls: None };
//! let tiled = tile_mode(&canvas, &TileModeParams::new(48, 12))?;
//! let full = full_canvas_mode(&canvas, &TileModeParams::new(48, 12).np_hv)?;
//! let boxes = |v: &[MergedItem<NucleusInstance>]| v.iter().map(|n| (n.id, n.item.bbox)).collect::<Vec<_>>();
//! assert_eq!(boxes(&tiled.nuclei), vec![(1, [2, 3, 11, 12]), (2, [44, 60, 53, 69])]);
//! assert_eq!(boxes(&tiled.nuclei), boxes(&full.nuclei));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Algorithm
//!
//! TIAToolbox merges tiles one after the other in a fixed order (all full tiles, then vertical
//! strips, horizontal strips, cross sections; reference section 3.2-3.3). Every tile drops some
//! of its own instances (its *margin rules*: contained in a flagged margin box for full tiles and
//! crosses, meeting a margin box or a 1-px boundary line for strips); a cross section with at
//! least one instance also removes every instance merged *before* it whose box meets one of its
//! four *margin lines* (the `2m x 2m` square around the tile corner). So an instance of tile `t`
//! is in TIAToolbox's final set exactly when
//!
//! > it survives `t`'s margin rules, and no cross section that comes after `t` in that order,
//! > has instances, and has a margin line meeting the instance's box.
//!
//! That statement depends only on the layout and on the tiles themselves, not on when they
//! arrive, and [`TileMerger`] evaluates it incrementally:
//!
//! 1. At construction, the removal regions of every cross tile of the layout (its margin lines,
//!    or with our fixes the pixels of its inner square) go into a static R-tree
//!    (`cross_lines.rs`), built once.
//! 2. When tile `t` arrives, each instance that survives `t`'s own rules (`margin_rules.rs`) is
//!    looked up in that R-tree: the later crosses whose lines meet its box. If one of them is
//!    already in and had instances, the instance is dropped. If all of them are in (or there are
//!    none), it is **final**. Otherwise it is *pending* on the crosses still to come and goes into
//!    the pending R-tree (`instance_index.rs`), an rstar tree updated in place, never rebuilt.
//! 3. When a cross arrives, the pending R-tree is queried with its removal regions: the pending
//!    instances of earlier tiles it meets are removed from the tree and dropped if the cross had
//!    instances; otherwise one wait is struck off each, and those with none left are final.
//! 4. Final instances wait in an ordered map until their id is certain: ids are 1, 2, 3, ... in
//!    row-major order of the position (centroid for nuclei), ties broken by tile index and index
//!    in the tile. [`TileMerger::drain_final`] hands out, in id order, every final instance that
//!    lies above the top of every tile still to come and precedes every pending instance; no
//!    later arrival can come before it, so its id is fixed.
//!
//! The result (instances and ids) is therefore the same for any arrival order, arrival
//! granularity (all at once, row band by row band) and thread count; `tests/merge_properties.rs`
//! checks it against a literal re-implementation of TIAToolbox's sequential loop.
//!
//! # Memory
//!
//! An instance is held from its tile's arrival until (a) the last cross that may remove it
//! arrives (only instances meeting a cross's margin lines wait for this) and (b) every tile
//! with a smaller top has arrived. When the pipeline feeds tiles as their canvas rows become
//! final, that is about one tile row plus `2m` of rows: memory follows the canvas width, not the
//! slide's nucleus count. [`MergeStats::peak_held`] reports the most held at once. Per tile
//! the merge costs `O(k log n)` for `k` instances; TIAToolbox rebuilds an STRtree over all
//! accumulated instances for every cross tile (`O(N)` each).
//!
//! # Checkpoint and resume
//!
//! A whole-slide run killed half way need not start again: between two `push_rows` calls,
//! [`StreamingTileMode::checkpoint`] gives a [`MergeCheckpoint`] (serde, JSON-exact; the
//! instances held and one byte per tile, no map rows), and [`StreamingTileMode::resume`],
//! given the same arguments as `new`, continues from [`MergeCheckpoint::resume_row`] and hands
//! out exactly what the first driver would have. A checkpoint of another run (canvas, layout,
//! margin, maps, compat, np/hv parameters) is refused ([`MergeError::CheckpointMismatch`]).
//! [`StreamingTileMode`] documents what a checkpoint holds and costs.
//!
//! ```
//! use mtseg_instmerge::{MergeCheckpoint, RowChunk, StreamingTileMode, TiaToolboxCompat};
//! use mtseg_postproc::{NpHvParams, render_hovernet_targets};
//! use mtseg_tiling::{Size2, tile_layout};
//! // two 12 x 12 nuclei on a 96 x 96 canvas, tiles of 48, margin 12
//! let (h, w) = (96, 96);
//! let mut labels = vec![0; h * w];
//! for y in 3..15 { for x in 2..14 { labels[y * w + x] = 1; } }
//! for y in 60..72 { for x in 42..54 { labels[y * w + x] = 2; } }
//! let t = render_hovernet_targets(&labels, None, h, w, 1.0)?;
//! let rows = |y0: usize, n: usize| RowChunk {
//!     y0, rows: n, np: &t.np[y0 * w..(y0 + n) * w], hv: &t.hv[2 * y0 * w..2 * (y0 + n) * w],
//!     tp: None, ls: None,
//! };
//! let size = Size2::new(w as u64, h as u64);
//! let tiles = tile_layout(size, 48, 12, |_| true)?;
//! let (np_hv, compat, maps) = (NpHvParams::hovernet(), TiaToolboxCompat::OFF, [false, false]);
//! let mut first = StreamingTileMode::new(size, tiles.clone(), 12, np_hv, compat, maps)?;
//! let mut out = first.push_rows(rows(0, 50))?.nuclei;
//! assert_eq!(out.len(), 1); // the first nucleus is final and handed out
//! let json = serde_json::to_string(&first.checkpoint())?;
//! drop(first); // the process is killed
//! let checkpoint: MergeCheckpoint = serde_json::from_str(&json)?;
//! let y = checkpoint.resume_row(); // rows from here on are fed again
//! let mut second = StreamingTileMode::resume(size, tiles, 12, np_hv, compat, maps, checkpoint)?;
//! out.extend(second.push_rows(rows(y, h - y))?.nuclei);
//! out.extend(second.finish()?.nuclei);
//! let boxes: Vec<_> = out.iter().map(|n| (n.id, n.item.bbox)).collect();
//! assert_eq!(boxes, vec![(1, [2, 3, 14, 15]), (2, [42, 60, 54, 72])]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from TIAToolbox (each switchable with [`TiaToolboxCompat`])
//!
//! * **Lost edge nuclei.** A strip side on the image border has flag 0, so TIAToolbox tests it
//!   against a 1-px boundary line and drops the nuclei touching the image border inside the
//!   strip, which the full tiles on both sides had already dropped as lying in their margins. We
//!   test a strip's boundary lines only on its two cut sides.
//! * **Grid anchoring.** TIAToolbox sizes the tile grid by the selected-output bounding box but
//!   places it at the canvas origin, one stride up and left of that box, so the last column/row
//!   of tissue can lie outside every tile. [`tile_mode`] covers the whole canvas it is given.
//! * **Margin edges.** TIAToolbox tests pixel boxes as closed rectangles, so each margin box and
//!   1-px line meets one pixel line more than it covers; a nucleus whose box starts or ends
//!   exactly on a margin edge is dropped by both tiles that share it. Our boxes are pixel-exact,
//!   a nucleus touching a strip's cut line stays with the full tile, and a cross removes the
//!   earlier nuclei meeting the pixels of its inner `2m x 2m` square (those it keeps itself).
//! * **Tissue layers.** TIAToolbox runs the HoVer-Net+ layer polygons through the nucleus
//!   margin rules with the box of the whole class in the tile, which strips and crosses always
//!   meet, so most of the layer area is lost in tile mode (mostly the cross sections are left).
//!   Ours: each tile keeps the polygons of the part of the canvas it owns in TIAToolbox's dense
//!   tile-mode layer map (full tiles, then strips, then crosses overwrite), so the polygons
//!   partition exactly that map.
//! * **Ids.** TIAToolbox keys instances by `uuid4`; ours come from position (above).
//!
//! On the `hgsc_nest` canvas (1500 x 1500, tiles 500, margin 64) TIAToolbox's rules keep 1236
//! nuclei, ours 1255 (full-canvas mode: 1265); `tests/tiatoolbox_differences.rs` pins each fix.
//!
//! # Choices a reader may question
//!
//! * **No R-tree of all accumulated instances.** Deciding removal from the layout (step 2) needs
//!   only the crosses' lines; the pending tree holds the few instances waiting for a cross.
//! * **An empty cross removes nothing** (TIAToolbox's early return for an empty instance dict),
//!   kept for parity; it is why instances on a cross's lines must wait for that cross.
//! * **Layer polygons** are per-tile fragments (each tile's polygons cut to the part of the
//!   canvas it owns, see the differences above), not unioned across tiles. A union of the
//!   fragments is left for later. With [`TiaToolboxCompat::exact`] they go through the nucleus
//!   rules with the box TIAToolbox tests (the box of the whole layer class in the tile).
//! * **Positions must lie inside their tile** (checked): it is what lets a tile's top bound the
//!   ids of everything still to come.
//!
//! # Logging
//!
//! A `tracing` debug span per [`tile_mode`] / [`full_canvas_mode`] call; no events.

#![forbid(unsafe_code)]

mod cross_lines;
mod id_order;
mod instance_index;
mod margin_rules;
mod merge_checkpoint;
mod merge_errors;
mod streaming_tile_mode;
mod tiatoolbox_compat;
mod tile_merge;
mod tile_mode;

pub use merge_checkpoint::MergeCheckpoint;
pub use merge_errors::MergeError;
pub use streaming_tile_mode::{RowChunk, StreamedInstances, StreamingTileMode};
pub use tiatoolbox_compat::TiaToolboxCompat;
pub use tile_merge::{MergeItem, MergeStats, MergedItem, TileMerger};
pub use tile_mode::{
    CanvasInstances, CanvasMaps, TileModeParams, dense_tile_layer_map, full_canvas_mode, tile_mode,
};

//! Streaming stitch: per-patch model outputs in, final canvas rows out, in bounded memory.
//!
//! This crate is the `stitch` stage of mtseg-pipeline, a peer of TIAToolbox's
//! `MultiTaskSegmentor.infer_wsi` stitching (horizontal merge, vertical normalisation):
//!
//! ```text
//! infer --[PredictionBatch: PatchPrediction {index, output_box, heads}]--> stitch
//! stitch --[CanvasRows {y0, rows, width, origin, heads}]--> postproc (tile mode)
//! stitch --> FullCanvas (full post-processing mode), ProbabilityStore (saved maps, Zarr V3)
//! ```
//!
//! Rows come out as soon as no later patch can touch them, so post-processing starts while
//! inference goes on. The values are those of TIAToolbox: float32 per-pixel sum and count, mean
//! `sum / max(count, 1)` in float32, the same summation order, and pixels of the canvas that no
//! patch covered are 0. It does not depend on the other mtseg crates: the grid arrives as plain
//! `[x0, y0, x1, y1]` boxes.
//!
//! # Example
//! ```
//! use mtseg_stitch::*;
//! // A 4 x 2 slide, patch output 2 x 2, stride 2: two patches side by side, one head.
//! let boxes = [[0, 0, 2, 2], [2, 0, 4, 2]];
//! let plan = CanvasPlan::without_mask(&boxes, [4, 2])?;
//! let params = StitchParams::new(plan, [2, 2], vec![HeadSpec::new("np", 1)], MemoryBudget::unlimited())?;
//! let mut stitcher = Stitcher::new(params)?;
//! let patch = |index: usize, v: f32| PatchPrediction {
//!     index, output_box: boxes[index], heads: vec![HeadBlock::new(1, vec![v; 4])],
//! };
//! assert!(stitcher.push(patch(1, 2.0))?.is_empty()); // out of order: waits for patch 0
//! let rows = stitcher.push(patch(0, 1.0))?;            // both merged: rows 0..2 are final
//! assert_eq!(rows[0].heads[0], [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
//! stitcher.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Types
//! - [`CanvasPlan`]: the canvas (mask bounding box plus touching patches, TIAToolbox's
//!   `mask_padding`) and the merge order, from the grid's output boxes, the mask-selected indices
//!   and the slide size.
//! - [`StitchParams`] (fixed) and [`Stitcher`] (running state): `push(patch) -> final rows`,
//!   `finish()`.
//! - [`run_rows_stage`] / [`run_full_canvas_stage`] (and `spawn_*`): the stage on crossbeam
//!   channels. [`FullCanvas`]: the whole canvas, in RAM or spilled to Zarr.
//!   [`ProbabilityStore`]: the saved maps.
//! - [`MemoryBudget`] / [`MemoryReservation`]: `[pipeline] memory_limit` and what holds it.
//!
//! # Algorithm
//! 1. **Plan.** Mask bounds = bounding box of the selected output boxes. "Inside" = every grid
//!    box that is not strictly outside it (touching counts, so the canvas is the tissue box plus
//!    one ring of patches). Canvas = `[min_x, min(W, max_x)) × [min_y, min(H, max_y))` over the
//!    inside boxes. Bands = inside boxes grouped by top edge; merge order = bands top to bottom,
//!    left to right (the grid's row-major order).
//! 2. **Order.** A patch that arrives before its turn waits in a reservation-backed map keyed by
//!    merge rank; patches are merged strictly in merge order, so results do not depend on arrival
//!    order, batch size or threads.
//! 3. **Horizontal merge** (`patches_to_bands.rs`): each head block is added into the current band
//!    (`out_h` rows × canvas width, zeros at the start), columns clipped to the canvas; the band's
//!    count is per column. An all-zero block is skipped and not counted (QUIRK below). Band rows
//!    that overlap rows still open from earlier bands are summed apart; the others in place.
//! 4. **Band done.** When a band's last selected patch is merged (bands without selected patches
//!    are done at once), the band is added into the open-row accumulator at its top row.
//! 5. **Vertical normalisation** (`bands_to_rows.rs`): rows above the next band's top edge are
//!    final: they are normalised, `sum / max(count, 1)` in float32, and handed out; the rows
//!    still open move to the front of the accumulator. Rows past the canvas are dropped
//!    (TIAToolbox's `clip_probabilities_to_shape`).
//! 6. **Finish.** Every selected patch must have arrived; the rows of the last band come out.
//!
//! Any stride from 1 up works (TIAToolbox needs `out/2 <= stride <= out`, its issue #1071); with a
//! stride larger than the output, the gaps are 0. Counts are `u32` (TIAToolbox's `uint8` would wrap
//! past 255 overlaps).
//!
//! **QUIRK (reproduced, TIAToolbox 9.4):** `merge_batch_to_canvas` skips a block with
//! `not np.any(block)`: a head's block whose values are all zero adds nothing *and does not
//! increment the count*, so where it overlaps other patches the mean is over the non-zero blocks
//! only. It is decided per head, on the whole (unclipped) block; `-0.0` is zero, NaN is not.
//! [`StitchMetrics::zero_blocks`] counts them.
//!
//! # Memory
//! Held for the whole run (reserved at [`Stitcher::new`] as "the stitch window", see
//! [`StitchParams::window_bytes`]):
//! - the open rows: `out_h × canvas_w × ΣC` f32 sums, where each band sums its rows that no
//!   earlier band touches in place;
//! - the current band's overlap rows (`(out_h − stride) × canvas_w × ΣC` f32; none when
//!   stride ≥ out_h, the TIAToolbox default);
//! - per open band (at most `ceil(out_h / stride) + 1`) one u32 count per column and head: a
//!   band's count is the same on all its rows, so counts are never stored per pixel.
//!
//! That is about `out_h × canvas_w × ΣC × 4` bytes (105 MB for HoVer-Net fast on a 40k-wide
//! canvas with 4 channels): it grows with the canvas *width*, never with its height or area.
//! Held while waiting: out-of-order patches (`out_h × out_w × ΣC × 4` bytes each), from an
//! up-front allowance ([`StitchParams::reorder_allowance`]) then one by one. Not tracked (as
//! DataFusion does not track batches in flight): patches on the input channel and emitted rows on
//! the output channel, `capacity × (batch or stride × canvas_w × ΣC × 4)` bytes, planned by the
//! pipeline from the channel capacities.
//!
//! Full-canvas mode ([`FullCanvasBuilder`]) decides once, up front: the whole canvas
//! (`H × W × ΣC × 4`) is reserved, or, when refused, every row goes to a temporary Zarr V3 store
//! (sharded, zstd) whose shard rows are aligned to the stitcher's row step, so rows are written
//! without a copy (else through a buffer of one shard row, at most 256 rows × canvas width,
//! reserved). The canvas never has to fit. A refused window or buffer is an error that names
//! `[pipeline] memory_limit`. Spilled data lives in a temporary directory removed on drop,
//! including after an error or a panic. Results are bytewise identical with and without spill,
//! for any arrival order, batch size and channel capacity.
//!
//! # Logging
//! `debug!` when the full canvas spills; `trace!` per batch; `warn!` when a partial output cannot
//! be removed. No subscriber is installed.
#![forbid(unsafe_code)]

mod bands_to_rows;
mod canvas_plan;
mod canvas_rows;
mod full_canvas;
mod memory_budget;
mod patch_prediction;
mod patches_to_bands;
mod probability_store;
mod stitch_errors;
mod stitch_stage;
mod stitcher;
mod zarr_row_writer;
mod zarr_spill;

pub use canvas_plan::{CanvasPlan, MaskPadding, PlannedBand, PlannedPatch};
pub use canvas_rows::CanvasRows;
pub use full_canvas::{CanvasRegion, FullCanvas, FullCanvasBuilder};
pub use memory_budget::{
    MemoryBudget, MemoryLimit, MemoryLimitParseError, MemoryRefused, MemoryReservation,
    usable_ram_bytes,
};
pub use patch_prediction::{HeadBlock, PatchPrediction, PredictionBatch};
pub use patches_to_bands::merge_batch_to_canvas;
pub use probability_store::ProbabilityStore;
pub use stitch_errors::{PlanError, StitchError};
pub use stitch_stage::{
    StageHandle, StitchReport, run_full_canvas_stage, run_rows_stage, spawn_full_canvas_stage,
    spawn_rows_stage,
};
pub use stitcher::{HeadSpec, StitchMetrics, StitchParams, Stitcher};
pub use zarr_row_writer::ZarrLayout;
pub use zarr_spill::SpillConfig;

//! Streaming stitch: per-patch model outputs in, final canvas rows out, in bounded memory.
//!
//! This crate is the stitching of mtseg-pipeline, a peer of TIAToolbox's
//! `MultiTaskSegmentor.infer_wsi` stitching (horizontal merge, vertical normalisation):
//!
//! ```text
//! infer --[PatchPrediction {index, output_box, heads}]--> Stitcher
//! Stitcher --[CanvasRows {y0, rows, width, origin, heads, memory}]--> postproc/instmerge (tile mode)
//!                                                                --> ProbabilityStore (saved maps, Zarr V3)
//! ```
//!
//! Rows come out as soon as no later patch can touch them, so post-processing starts while
//! inference goes on. The values are those of TIAToolbox: float32 per-pixel sum and count, mean
//! `sum / max(count, 1)` in float32, the same summation order, and pixels of the canvas that no
//! patch covered are 0. Of the other mtseg crates it depends only on `mtseg-types` (the
//! [`MemoryLimit`] and the [`Size2`] of slides and patches): the grid arrives as plain
//! `[x0, y0, x1, y1]` boxes.
//!
//! The crate holds the stitcher, its memory budget and the probability store, not a stage loop:
//! driving them (patches in from inference, rows out on a bounded channel to post-processing and
//! into the store, errors, cancellation, timing) is the pipeline's stitch stage, so that each
//! stage runner exists in one place.
//!
//! # Example
//! ```
//! use mtseg_stitch::*;
//! // A 4 x 2 slide, patch output 2 x 2, stride 2: two patches side by side, one head.
//! let boxes = [[0, 0, 2, 2], [2, 0, 4, 2]];
//! let plan = CanvasPlan::without_mask(&boxes, Size2::new(4, 2))?;
//! let params = StitchParams::new(plan, Size2::square(2), vec![HeadSpec::new("np", 1)], MemoryBudget::unlimited())?;
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
//!   `push_with(patch, emit)` (rows handed out one by one, waiting for memory), `finish()` /
//!   `finish_with(emit)`; [`StitchParams::with_first_row`] starts at a canvas row.
//! - [`ProbabilityStore`]: the saved maps, written row by row as the stitcher hands them out;
//!   a store a killed run left is continued with [`ProbabilityStore::reopen`] from a row up to
//!   its [`ProbabilityStore::durable_rows`].
//! - [`MemoryBudget`] / [`MemoryReservation`] / [`HeldMemory`]: `[pipeline] memory_limit` and
//!   what holds it.
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
//! **Starting at a row** ([`StitchParams::first_row`], to resume a slide whose rows above were
//! handled by a run that was killed): the rows from the first row `y` on are exactly those a
//! stitcher started at 0 hands out. Their values depend only on the bands that cover them, and
//! every band ending at or above `y` covers none of them: the stitcher starts at the first band
//! whose bottom is below `y` ([`CanvasPlan::first_band_reaching`]) with its accumulator at that
//! band's top, needs the selected patches from there on ([`CanvasPlan::selected_reaching`])
//! and ignores earlier ones if they are pushed. The rows between that band's top and `y` are
//! summed without the bands above them and dropped, never handed out nor reserved; rows from
//! `y` on get the same sums of the same bands in the same order (a band's rows summed in place
//! or apart give the same floats, as each sum starts from `+0.0`). A `y` in a gap between bands
//! (stride larger than the patch) first hands out the gap's rows, zeros as in a full run.
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
//! Everything whose size depends on the slide is reserved from the [`MemoryBudget`]
//! (`[pipeline] memory_limit`) before it is allocated, with `W` the canvas width, `ΣC` the
//! channels of all heads and 4 bytes a value:
//! - **The stitch window**, for the whole run ([`StitchParams::window_bytes`], reserved at
//!   [`Stitcher::new`]): the open rows (`out_h × W × ΣC` f32 sums; each band sums in place the
//!   rows no earlier band touches), the current band's overlap rows (`(out_h − stride) × W × ΣC`,
//!   none when stride ≥ out_h, the TIAToolbox default), one divisor row and per open band (at
//!   most `ceil(out_h / stride) + 1`) one u32 count per column and head: a band's count is the
//!   same on all its rows, so counts are never stored per pixel. About `out_h × W × ΣC × 4`
//!   bytes (105 MB for HoVer-Net fast, 4 channels, on a 40k-wide canvas): it grows with the
//!   canvas *width*, never with its height or area.
//! - **Waiting patches**: out-of-order patches (`out_h × out_w × ΣC × 4` bytes each), from an
//!   up-front allowance ([`StitchParams::reorder_allowance`]) then one by one.
//! - **Rows handed out** ([`Stitcher::push_with`], [`Stitcher::push`]): every [`CanvasRows`]
//!   holds its bytes ([`CanvasRows::memory`], a [`HeldMemory`]) from before it is made until the
//!   consumer drops it, wherever it is (in a channel, in the consumer's hands). An item has at
//!   most [`StitchParams::max_chunk_rows`] rows (the band step, or
//!   [`StitchParams::rows_per_chunk`]), and fewer when the budget could never hold that many
//!   next to the window and what the consumer holds for good ([`StitchParams::consumer_held`]);
//!   so a bounded channel of capacity `n` holds at most
//!   `n × chunk_bytes = n × max_chunk_rows × W × ΣC × 4` bytes ([`StitchParams::chunk_bytes`]).
//!   When the next item does not fit, the stitcher *waits* for bytes to be given back (the
//!   consumer dropping rows), which stops it taking patches and so, upstream, blocks inference:
//!   it waits as long as some bytes come back at least every [`StitchParams::memory_wait`]
//!   (default 60 s); a consumer that keeps rows while waiting for more than the budget holds
//!   gets an error that names `[pipeline] memory_limit` instead of a hang, as does a budget
//!   without room for one row next to the window (at once).
//! - **The probability store** ([`ProbabilityStore`]): one shard-row buffer
//!   (`shard_h × W × ΣC × 4`), reserved when it is made; rows are copied into it, and a full
//!   buffer is compressed and written by the store's own thread (each shard written once:
//!   never two writers on one chunk).
//!
//! Nothing here keeps the whole canvas: rows are the consumer's once handed out. A refused
//! reservation is an error that names `[pipeline] memory_limit`.
//!
//! **The bound.** With the reserved bytes never above the limit, the peak RSS of a process
//! running the stitcher is at most `memory_limit + C`, where `C` does not depend on the slide
//! size (but for one small term of zarrs', below):
//! ```text
//! C = B + Z + A + R
//! B  the model's batches in flight, allocated by inference, not by this crate:
//!    (input capacity + 2) × batch × out_h × out_w × ΣC × 4
//!    (39.4 MiB for batch 16, capacity 4, 164 x 164 x 4 channels)
//! Z  zarrs/zstd encoding scratch and the writer thread, only while saving the maps: 10-20 MiB
//!    measured, the same at 40k and 80k wide (shards are at most 2048 px wide). zarrs'
//!    FilesystemStore also keeps a lock entry per file written (about 100 bytes per shard:
//!    1.5 MB for a 40k x 40k canvas), the one term that grows with the slide's area
//! A  malloc keeping freed row buffers: glibc's dynamic mmap threshold keeps freed blocks under
//!    32 MiB in its arena (trimmed above 64 MiB), measured up to 30 MiB at the RSS peak and
//!    62 MiB between two items; it does not grow past that (buffers over 32 MiB per head are
//!    always mmapped and given back), and it is 0 when the threshold is fixed
//!    (MALLOC_MMAP_THRESHOLD_=1048576 or mallopt(M_MMAP_THRESHOLD) before the first thread)
//! R  the process itself (code, stacks): about 5 MiB
//! ```
//! Measured with `cargo bench -p mtseg-stitch --bench stitch_throughput` (10k², 10k × 40k and
//! 40k², 256 MiB and 1 GiB budgets, batch 16, input capacity 4; the table is written to
//! `target/stitch-bench-summary.txt`), when the crate also had a full-canvas mode (spilled to
//! Zarr) whose runs these maxima include: RSS minus the bytes reserved at the same instant (1 ms
//! samples) was at most 98 MiB with glibc's default malloc (peak RSS − peak reservation at most
//! 73 MiB) and at most 66 MiB with the threshold fixed (`--malloc-fixed`), so `C ≈ 100 MiB` for
//! that model; the only run whose peak RSS passed the limit was 40k² rows under 256 MiB, by
//! 26 MiB (12 MiB with the threshold fixed).
//!
//! # Logging
//! `warn!` when a partial probability store cannot be removed. No subscriber is installed.
#![forbid(unsafe_code)]

mod bands_to_rows;
mod canvas_plan;
mod canvas_rows;
mod memory_budget;
mod patch_prediction;
mod patches_to_bands;
mod probability_store;
mod row_sink;
mod stitch_errors;
mod stitcher;
mod zarr_row_writer;

pub use canvas_plan::{CanvasPlan, MaskPadding, PlannedBand, PlannedPatch};
pub use canvas_rows::CanvasRows;
pub use memory_budget::{
    HeldMemory, MemoryBudget, MemoryRefused, MemoryReservation, usable_ram_bytes,
};
/// The memory limit and 2-D size of the shared vocabulary, re-exported for callers of
/// [`MemoryBudget::new`], [`CanvasPlan::new`] and [`StitchParams::new`].
pub use mtseg_types::{MemoryLimit, Size2};
pub use patch_prediction::{HeadBlock, HeadSlice, PatchPrediction, PatchView};
pub use patches_to_bands::merge_batch_to_canvas;
pub use probability_store::ProbabilityStore;
pub use stitch_errors::{PlanError, StitchError};
pub use stitcher::{HeadSpec, StitchMetrics, StitchParams, Stitcher};
pub use zarr_row_writer::ZarrLayout;

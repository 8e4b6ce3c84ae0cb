//! Where patches and post-processing tiles lie: the second stage of mtseg-pipeline.
//!
//! `tiling` turns a slide's size at the processing resolution into the patch grid the model runs
//! on, drops patches without tissue and reads the patches (from `slide`) into [`PatchBatch`]es,
//! which the pipeline hands to `infer`; later in the flow, it tells `postproc`/`instmerge` which
//! post-processing tiles the stitched canvas is cut into ([`tile_layout`]).
//!
//! # Overview
//! - [`PatchGridBuilder`] / [`PatchGrid`]: TIAToolbox's `get_coordinates` (row-major output boxes
//!   every stride from 0 to `ceil(W / stride) * stride`, input boxes centred on them).
//! - [`select_patches`], [`filter_by_mask`]: TIAToolbox's `filter_coordinates` on the input boxes
//!   (any tissue pixel keeps a patch), with its exact mask-pixel mapping or ours ([`MaskRule`]).
//! - [`read_batch`]: one [`PatchBatch`] of selected patches, the slide data they share read once
//!   ([`SlideReader::read_regions`](mtseg_slide::SlideReader::read_regions)), in parallel
//!   (rayon); the pipeline's reader stage calls it batch by batch and sends the batches on.
//! - [`tile_layout`]: full tiles, vertical strips, horizontal strips and cross sections with their
//!   side flags (TIAToolbox's `_get_tile_info`).
//!
//! ```
//! use mtseg_tiling::{PatchGridBuilder, Size2};
//! // HoVer-Net fast on a 504 x 504 canvas: 256 -> 164 patches every 164 px.
//! let grid = PatchGridBuilder::new(Size2::new(504, 504), Size2::new(256, 256))
//!     .patch_output(Size2::new(164, 164))
//!     .stride(Size2::new(164, 164))
//!     .build()?;
//! assert_eq!(grid.len(), 16);
//! let first = grid.get(0).unwrap();
//! assert_eq!(first.input, [-46, -46, 210, 210]);
//! assert_eq!(first.output, [0, 0, 164, 164]);
//! # Ok::<(), mtseg_tiling::GridError>(())
//! ```
//!
//! # Choices a reader might question
//! - Shapes are [`Size2`] (width, height, from `mtseg-types`) here and in every stage crate. TIAToolbox passes the output
//!   patch to `get_coordinates` as (h, w) while the other shapes are (w, h) (harmless for its square
//!   presets); we use (w, h) throughout, so non-square outputs are placed correctly.
//! - Patches within a batch are read in parallel and the batch keeps their order; the stitcher
//!   accepts out-of-order arrival anyway, so a future reader may reorder freely.
//! - No stage loop lives here: reading batch after batch, sending them on, cancelling and timing
//!   are the pipeline's reader stage, so each stage runner exists in one place.
//!
//! # Logging
//! None: the crate emits no `tracing` events.
#![forbid(unsafe_code)]

mod mask_filter;
mod patch_extraction;
mod patch_grid;
mod tile_layout;
mod tiling_errors;

pub use mask_filter::{MaskRule, box_has_tissue, box_in_mask, filter_by_mask, select_patches};
/// The one 2-D size type of the workspace (width, height), from `mtseg-types`.
pub use mtseg_types::{PatchBatch, PatchBox, Size2};
pub use patch_extraction::{ExtractParams, read_batch};
pub use patch_grid::{PatchGrid, PatchGridBuilder};
pub use tile_layout::{PostprocTile, SideFlags, TileSet, tile_layout};
pub use tiling_errors::GridError;

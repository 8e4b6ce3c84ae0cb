//! HoVer-Net / HoVer-Net+ post-processing: model head outputs -> nucleus instances and tissue
//! layers, reproducing TIAToolbox 2.1.3 (`HoVerNet._proc_np_hv`, `get_instance_info`,
//! `HoVerNetPlus._proc_ls`, `_get_layer_info`) bit for bit, many times faster.
//!
//! # Place in the pipeline
//!
//! ```text
//! stitch (final canvas rows) -> tiling (post-processing tiles) -> [postproc] -> instmerge -> export
//! ```
//!
//! A [`CanvasView`] borrows the stitched np / hv (/ tp / ls) maps of one full canvas or one tile.
//! [`postprocess_nuclei`] gives the instance label map and one [`NucleusInstance`] per nucleus
//! (box, centroid, contour, type, type probability) with the tile's offset added; `instmerge` then
//! applies TIAToolbox's margin rules across tiles. [`postprocess_layers`] does the same for the
//! HoVer-Net+ layer head ([`LayerRegion`]). [`postprocess_tiles`] runs many tiles on the rayon pool.
//! A worker that post-processes tile after tile should keep an [`NpHvWorkspace`] and call
//! [`postprocess_nuclei_with`] (same results, no per-call allocation of the ~30 bytes per pixel of
//! intermediate maps).
//!
//! # Example
//!
//! ```
//! use mtseg_postproc::{CanvasView, NpHvParams, postprocess_nuclei, render_hovernet_targets};
//!
//! // an "oracle" model output for two 9x9 nuclei on a 16x24 canvas
//! let (h, w) = (16, 24);
//! let mut labels = vec![0; h * w];
//! for y in 3..12 {
//!     for x in 2..11 { labels[y * w + x] = 1; }
//!     for x in 13..22 { labels[y * w + x] = 2; }
//! }
//! let t = render_hovernet_targets(&labels, None, h, w, 1.0)?;
//! let view = CanvasView::new(h, w, &t.np, &t.hv)?.with_types(&t.tp)?;
//! let out = postprocess_nuclei(&view, &NpHvParams::hovernet(), [100, 200])?;
//! assert_eq!(out.instances.len(), 2);
//! assert_eq!(out.instances[0].bbox, [102, 203, 111, 212]);
//! assert_eq!(out.instances[0].type_id, Some(1));
//! # Ok::<(), mtseg_postproc::PostprocError>(())
//! ```
//!
//! # Choices a reader may question
//!
//! * **Bit-exact, not "close".** Every float step uses the float type and the operation order of
//!   the library TIAToolbox calls: the Sobel as OpenCV's row filter + symmetric column filter in f64
//!   (no FMA there, as OpenCV's build), `cv2.normalize` to f32 with its f32-rounded scale and one
//!   fused multiply-add per value, the f32 -> f64 promotions numpy makes, the 3x3 Gaussian as
//!   OpenCV's `[0.25, 0.5, 0.25]` table. The speed comes from doing the same operations in a
//!   better layout (register-blocked, vectorised loops; run-based labelling; scanline hole
//!   filling; fused passes), never from reordering float operations.
//! * **The watershed** gives scikit-image's labels: ties between equal-valued markers are decided
//!   by scikit-image's heap layout, so a fast flood (`std` binary heap, only markers with an open
//!   neighbour) checks that every such tie is harmless (no pixel claimed with two labels within a
//!   tie block) and otherwise starts again with a line-by-line copy of scikit-image's heap; the
//!   argument is in `watershed.rs`, and a test compares both on tie-heavy images. The test
//!   fixtures (`tests/fixtures`, made by `tools/fixtures/postproc_reference.py`) pin all of it.
//! * **Whole-canvas min-max normalisation** is kept (it makes results depend on the tile extent),
//!   because TIAToolbox does it and downstream merging expects its outputs.
//! * **Instance ids** are the marker labels (1..N in raster order of each marker's first pixel), as
//!   TIAToolbox's; markers with no pixel inside the np mask leave gaps, as there.
//! * **Differences from TIAToolbox**, kept on purpose and pinned by tests: a canvas fully covered by
//!   nuclei keeps all its instances (TIAToolbox drops the smallest label); class-id maps are
//!   saturated to 0..=255 after half-to-even rounding; NaN inputs give unspecified labels (never a
//!   panic). OpenCV wraps its contour counter after 126 borders and re-traces to find parents; we
//!   keep exact ids, which only changes anything if OpenCV's re-tracing would fail.
//! * **Parallelism**: one call works on one canvas; inside it the two Sobel channels (each cut into
//!   row bands when the pool has threads), the element-wise passes (in chunks; min/max reductions
//!   are exact in any order) and the per-instance records run on the current rayon pool. Every
//!   value is computed by the same operations whatever the split, so results never depend on the
//!   thread count. The flood fills and the watershed are sequential.
//!
//! # Logging
//!
//! `tracing` debug spans per call (`np_hv_to_instances`, `instance_info`, `proc_layers`); no events.

#![forbid(unsafe_code)]

mod canvas;
mod canvas_to_outputs;
mod contours;
mod fill_holes;
mod hovernet_targets;
mod instance_info;
mod label_components;
mod layers;
mod morphology;
mod normalize;
mod np_hv_params;
mod np_hv_to_instances;
mod postproc_errors;
mod sobel;
mod watershed;

#[cfg(test)]
mod kernel_fixture_tests;

pub use canvas::CanvasView;
pub use canvas_to_outputs::{
    LayersOutput, NucleiOutput, TileInput, postprocess_layers, postprocess_nuclei,
    postprocess_nuclei_with, postprocess_tiles,
};
pub use hovernet_targets::{HoverNetTargets, render_hovernet_targets};
pub use instance_info::{NucleusInstance, instance_info};
pub use layers::{LAYER_KERNEL_SIZE, LayerRegion, MIN_EPITHELIUM_AREA, layer_info, proc_layers};
pub use np_hv_params::NpHvParams;
pub use np_hv_to_instances::{NpHvWorkspace, np_hv_to_instances, np_hv_to_instances_with};
pub use postproc_errors::PostprocError;

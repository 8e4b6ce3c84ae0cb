//! Fast test models for mtseg-pipeline: known nucleus label rasters at any size, an "oracle"
//! HoVer-Net that renders its head outputs from them, and the metrics that compare a pipeline's
//! nuclei with the truth.
//!
//! A random-weight HoVer-Net gives about one nucleus per 1500² image, which checks nothing
//! downstream of inference. The oracle gives the outputs a well-trained model would (the HoVer-Net
//! training targets of the true labels), in milliseconds per patch, so stitching,
//! post-processing, cross-tile merging and export can be checked end to end, against the truth,
//! on slides of any size.
//!
//! # Place in the pipeline
//!
//! ```text
//! LabelSource (RasterLabels, MosaicLabels) --(labels of each patch's input box)--> OracleModel
//! tiling --(patch batches + indices)--> OracleModel (an mtseg_infer::Model) --(HeadOutputs)--> stitch
//! ... postproc / instmerge --(instance map)--> match_instances / aji <-- LabelSource (truth)
//! ```
//!
//! # Brief overview
//!
//! - [`LabelSource`]: a nucleus instance + class raster (and optionally a layer raster) read by
//!   region (0 outside).
//! - [`RasterLabels`]: one in memory, e.g. the histolytics `hgsc_nest` masks
//!   ([`RasterLabels::hgsc_nest`], 1500², 1294 nuclei) read from their `.npz` files.
//! - [`MosaicLabels`]: a source tiled `nx x ny` times (as `vips arrayjoin` tiles its image), each
//!   copy's ids offset so all are unique, optionally cropped; holds only the base.
//! - [`OracleModel`]: implements `mtseg_infer::Model` (heads np, hv, optional tp, optional
//!   HoVer-Net+ ls); patch index -> input box via a lookup (e.g. [`grid_origins`]) -> rendered
//!   targets -> centre crop.
//! - Tissue layers (HoVer-Net+): a source may carry a layer class raster
//!   ([`RasterLabels::with_layers`], tiled by [`MosaicLabels`]), e.g. the deterministic bands,
//!   holes and blobs of [`synthetic_layer_raster`]; the oracle's `ls` head is that raster under
//!   each output box.
//! - [`match_instances`] ([`MatchStats`]: tp, fp, fn, F1, mean IoU), [`aji`], [`aji_plus`].
//! - [`npy`]: the numpy array reader (`.npy`, `.npy.gz`, `.npz` members) and writer every crate's
//!   tests and benches use for their fixtures.
//! - Output readers for end-to-end tests: [`read_annotation_store`] (a TIAToolbox `.db`, geometry
//!   decoded) and [`read_zarr_array`] (a Zarr V3 map).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use mtseg_infer::{BatchView, HeadKind, Model};
//! use mtseg_test_models::{LabelSource, MosaicLabels, OracleModel, RasterLabels, grid_origins};
//!
//! // a 40 x 40 raster with one 11 x 11 nucleus, tiled 3 x 3 and cropped to 100 x 100
//! let mut labels = vec![0; 40 * 40];
//! for y in 10..21 { for x in 10..21 { labels[y * 40 + x] = 1; } }
//! let base = Arc::new(RasterLabels::new(40, 40, labels, None)?);
//! let slide: Arc<dyn LabelSource> = Arc::new(MosaicLabels::covering(base, [100, 100])?);
//! assert_eq!(slide.instance_count(), 9);
//! // patches of 64 px predicting their centre 32 px, every 32 px
//! let origins = grid_origins(slide.size(), 32, 64, 32);
//! let mut model = OracleModel::builder(slide, origins).input_size(64).output_size(32).build()?;
//! let pixels = vec![255u8; 64 * 64 * 3]; // ignored: the oracle knows the answer
//! let out = model.forward(BatchView::new(&pixels, &[0], 64, 64)?)?;
//! let np = out.head(HeadKind::Np).unwrap().patch(0).unwrap();
//! assert!(np[15 * 32 + 15] > 0.9); // slide pixel (15, 15) is inside the first nucleus
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Choices a reader might question
//!
//! - **Render over the input box, crop the output.** A nucleus cut by a patch's output border
//!   keeps the hv of its whole extent, so overlapping patches agree and the stitched canvas equals
//!   the whole-slide rendering (away from the slide border, and for nuclei smaller than the
//!   input-output margin).
//! - **Ids are compacted per patch** before rendering: the renderer allocates per id up to the
//!   largest, and a mosaic's ids run to millions.
//! - **An unknown patch index predicts background** rather than failing: `mtseg_infer` has no
//!   error for it; [`OracleCounters::unknown_patches`] counts them so tests can assert none.
//! - **Metrics follow HoVer-Net's `compute_stats.py`**: a match needs IoU strictly above the
//!   threshold; below 0.5 the one-to-one matching maximises the summed IoU (the Hungarian method,
//!   run per connected group of overlapping instances); AJI pairs each true nucleus with its
//!   best-IoU prediction even when another already took it (AJI+ does not).
//!
//! # Logging
//!
//! A `tracing` debug event per oracle forward (patches, unknown indices). Never prints.

#![forbid(unsafe_code)]

mod instance_matching;
mod label_source;
mod layer_raster;
mod linear_assignment;
mod mosaic_labels;
pub mod npy;
mod oracle_model;
mod output_readers;
mod raster_labels;
mod repo_paths;
mod test_models_errors;

pub use instance_matching::{MatchStats, aji, aji_plus, match_instances, rasterise_contours};
pub use label_source::LabelSource;
pub use layer_raster::{SYNTHETIC_LAYER_PERIOD, rasterise_layer_polygons, synthetic_layer_raster};
pub use mosaic_labels::MosaicLabels;
pub use oracle_model::{OracleCounters, OracleModel, OracleModelBuilder, grid_origins};
pub use output_readers::{
    AnnotationStoreContents, OutputReadError, StoredAnnotation, WkbPolygon, read_annotation_store,
    read_zarr_array,
};
pub use raster_labels::{HISTOLYTICS_KEY, RasterLabels};
pub use repo_paths::{cheap_model, repo_root};
pub use test_models_errors::{LabelError, OracleError};

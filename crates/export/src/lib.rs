//! Writers for a slide's final nuclei and tissue layers: TIAToolbox's SQLite `AnnotationStore`,
//! QuPath GeoJSON and a Zarr V3 store, each written under a temporary name and renamed into
//! place only when complete.
//!
//! This crate is the `export` stage of mtseg-pipeline, the peer of TIAToolbox's
//! `MultiTaskSegmentor` saving (`save_predictions` to `.db`, QuPath JSON and `.zarr`):
//!
//! ```text
//! postproc --> instmerge --[final instances: MergedItem<NucleusInstance / LayerRegion>]--> export --> files
//! stitch ----(optional probability maps, written into SlideExporter::probabilities_dir)--^
//! ```
//!
//! It writes the instances as `instmerge` hands them out: a [`MergedItem`] (final id) around
//! postproc's [`NucleusInstance`] or [`LayerRegion`], moved into the slide frame at the
//! processing resolution ([`NucleusInstance::translate`]); the pipeline decides the final paths.
//!
//! [`MergedItem`]: mtseg_instmerge::MergedItem
//! [`NucleusInstance`]: mtseg_postproc::NucleusInstance
//! [`LayerRegion`]: mtseg_postproc::LayerRegion
//! [`NucleusInstance::translate`]: mtseg_postproc::NucleusInstance::translate
//! Its only mtseg dependencies are those two torch-free crates, so that one type crosses the
//! seam instead of a copy of every contour in an export record of its own.
//!
//! # Example
//! ```
//! use mtseg_export::*;
//! use mtseg_instmerge::MergedItem;
//! use mtseg_postproc::NucleusInstance;
//! let dir = tempfile::tempdir()?;
//! let spec = SlideExportSpec {
//!     slide_path: "CMU-1.svs".into(), stem: "CMU-1".into(),
//!     paths: vec![
//!         (Task::Nuclei, Format::AnnotationStore, dir.path().join("CMU-1.db")),
//!         (Task::Nuclei, Format::QuPath, dir.path().join("CMU-1.geojson")),
//!         (Task::Nuclei, Format::Zarr, dir.path().join("CMU-1.zarr")),
//!     ],
//!     overwrite: false, gzip_geojson: false,
//!     scale_factor: [2.0, 2.0], processing_size: [64, 48],
//!     processing_mpp: Some([0.5, 0.5]), baseline_mpp: Some([0.25, 0.25]),
//!     nuclei_classes: vec!["Background".into(), "Neoplastic".into()], layer_classes: vec![],
//!     save_instance_map: true, save_layer_map: false,
//!     provenance: serde_json::json!({"model": "hovernet_fast-pannuke"}),
//! };
//! let mut exporter = SlideExporter::create(spec)?;
//! let nucleus = NucleusInstance {
//!     label: 7, contour: vec![[10, 10], [14, 10], [14, 13], [10, 13]], bbox: [10, 10, 15, 14],
//!     centroid: [12.0, 11.5], type_id: Some(1), type_prob: Some(0.9),
//! };
//! exporter.write_nuclei(&[MergedItem { id: 1, tile_index: 0, item: nucleus }])?;
//! exporter.rows_final(14)?; // no later nucleus touches rows above 14
//! let summary = exporter.finish()?;
//! assert_eq!(summary.nuclei, 1);
//! assert!(dir.path().join("CMU-1.db").is_file() && dir.path().join("CMU-1.zarr").is_dir());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Types
//! - What comes in: `MergedItem<NucleusInstance>` and `MergedItem<LayerRegion>`, with their
//!   coordinate conventions at [`SlideExporter::write_nuclei`]. [`Task`], [`Format`]: names.
//! - [`SlideExportSpec`]: paths, resolution, classes, provenance. [`check_outputs`]: the
//!   up-front check (existing outputs, writable directories) the pipeline runs before any work.
//! - [`SlideExporter`]: `create` → `write_nuclei` / `write_layers` / `rows_final` → `finish`
//!   ([`ExportSummary`]). [`ZarrOutputLayout`]: chunking of the Zarr store.
//! - [`annotation_key`]: the deterministic UUID of a record. [`ExportError`]: every failure,
//!   naming its file.
//!
//! # Formats
//! - **`.db`** (`annotation_store.rs`): TIAToolbox's exact schema and metadata, zlib-compressed
//!   WKB geometry at baseline (`contour × scale_factor`), shapely's `objtype` / centroid / area /
//!   bounds, properties as Python's compact JSON,
//!   `{"box":[x0,y0,x1,y1],"centroid":[x,y],"prob":p,"type":"Neoplastic"}` for nuclei,
//!   `{"box":[..],"type":"Basal Epithelium"}` for layers. As in TIAToolbox (QUIRK kept), `box`
//!   and `centroid` stay at the processing resolution. A class id without a name is stored as
//!   the id, no type head as `null`. Extra metadata row `mtseg_provenance`.
//! - **QuPath GeoJSON** (`qupath_geojson.rs`): a streamed `FeatureCollection`, nuclei as
//!   `detection`s, layers as `annotation`s, TIAToolbox's tab20 class colours.
//! - **Zarr V3** (`zarr_output.rs`): instance / layer maps rasterised from the contours, and
//!   per-instance tables (ids, boxes, centroids, types, probabilities, ragged contours).
//!
//! # Geometry
//! Every stored polygon is valid (shapely `is_valid`), so TIAToolbox never has to repair it:
//! a contour that is a simple polygon is stored as it is (the vertices TIAToolbox stores); a
//! contour that touches itself (a neck or spur one pixel wide) is cut into its loops with area,
//! stored as a MultiPolygon (TIAToolbox stores `buffer(0.01)` of it: the same area plus slivers
//! around the spurs); a degenerate contour (one point, a line, no area left) becomes the union
//! of the squares of its pixels. [`ExportSummary`] counts both repairs.
//!
//! # Memory
//! Nothing grows with the number of records except what SQLite keeps on disk: GeoJSON features
//! are streamed, Zarr tables are held one chunk (65 536 rows) at a time, and the dense maps hold
//! only the shard rows (256 pixel rows each) between the last [`SlideExporter::rows_final`] row
//! and the lowest row touched, and there only the 256 × 256 tiles a record touched
//! ([`SlideExporter::map_buffer_bytes`]). SQLite's page cache is 64 MiB. Two steps of 256
//! records are held prepared (below).
//!
//! # Threads
//! Each record's valid geometry, key, zlib-compressed `.db` row and GeoJSON feature are
//! computed on the rayon pool (the caller's, else the global one), 256 records at a time, while
//! the previous 256 are written in order by the calling thread: the files are the same for any
//! thread count or batching (`benches/million_nuclei.rs` measures the writers, `RESULTS.md`).
//!
//! # Errors and atomicity
//! [`check_outputs`] fails before any work when an output exists without `overwrite` or a
//! directory is missing or not writable. Everything is written to `.<name>.partial-<pid>-<n>`
//! next to the final path; [`SlideExporter::finish`] fsyncs and renames. Dropping an unfinished
//! exporter (an error, a panic) removes every temporary. With `overwrite`, an existing output is
//! replaced only at `finish`, so it stays intact if the run fails.
//!
//! # Logging
//! `debug!` per repaired contour and at start and finish; one `warn!` per slide when contours
//! were repaired; `warn!` when a temporary cannot be removed. No subscriber is installed.
#![forbid(unsafe_code)]

mod annotation_keys;
mod annotation_store;
mod atomic_file;
mod class_colours;
mod export_errors;
mod export_names;
mod export_spec;
mod overlay_png;
mod pixel_squares;
mod polygon_geometry;
mod polygon_raster;
mod polygon_repair;
mod python_json;
mod qupath_geojson;
mod slide_exporter;
mod zarr_label_map;
mod zarr_output;
mod zarr_tables;

pub use annotation_keys::{KEY_NAMESPACE, annotation_key};
pub use export_errors::ExportError;
pub use export_names::{Format, Task};
pub use export_spec::{ExportSummary, FileSummary, SlideExportSpec, check_outputs};
pub use overlay_png::{OverlayBase, write_overlay_png};
pub use slide_exporter::SlideExporter;
pub use zarr_label_map::ZarrOutputLayout;

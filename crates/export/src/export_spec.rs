//! What to write for one slide ([`SlideExportSpec`]), the up-front check of its outputs
//! ([`check_outputs`]) and what was written ([`ExportSummary`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::atomic_file::{parent_dir, unique_sibling};
use crate::export_errors::ExportError;
use crate::export_names::{Format, Task};

/// Everything the exporter needs to know about one slide's outputs.
///
/// Built by the pipeline; nothing here is read from a config file. The processing resolution is
/// the resolution the model ran at; the records' coordinates are in its pixels.
#[derive(Debug, Clone)]
pub struct SlideExportSpec {
    /// The slide (named in errors and stored as provenance).
    pub slide_path: PathBuf,
    /// The slide's file stem; seeds the annotation keys ([`crate::annotation_key`]).
    pub stem: String,
    /// Final path of each output. Several tasks may share one Zarr path (one store per slide,
    /// one group per task); any other repeated path is an error.
    pub paths: Vec<(Task, Format, PathBuf)>,
    /// Replace existing outputs (at [`crate::SlideExporter::finish`], never before).
    pub overwrite: bool,
    /// Gzip the QuPath GeoJSON (the pipeline names it `.geojson.gz`).
    pub gzip_geojson: bool,
    /// Processing pixels → baseline (level 0) pixels, `[sx, sy]` (TIAToolbox
    /// `_calculate_scale_factor`). Applied to polygon coordinates only.
    pub scale_factor: [f64; 2],
    /// `[width, height]` of the slide at the processing resolution: the size of the dense maps.
    pub processing_size: [u64; 2],
    /// Microns per pixel at the processing resolution, `[x, y]`, when known.
    pub processing_mpp: Option<[f64; 2]>,
    /// Microns per pixel at baseline, `[x, y]`, when known.
    pub baseline_mpp: Option<[f64; 2]>,
    /// Nucleus class names, index = class id (TIAToolbox includes `0: "Background"`); may be
    /// empty (no type head).
    pub nuclei_classes: Vec<String>,
    /// Layer class names, index = class id; may be empty.
    pub layer_classes: Vec<String>,
    /// Rasterise the nuclei into `nuclei_segmentation/instance_map` of the Zarr store.
    pub save_instance_map: bool,
    /// Rasterise the layers into `layer_segmentation/layer_map` of the Zarr store.
    pub save_layer_map: bool,
    /// Config and model hashes, versions...: stored as the Zarr root's `mtseg.provenance`
    /// attribute and the `.db`'s `mtseg_provenance` metadata row.
    pub provenance: serde_json::Value,
}

/// What [`crate::SlideExporter::finish`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// Nuclei written.
    pub nuclei: u64,
    /// Layer polygons written.
    pub layers: u64,
    /// Polygons (nuclei and layers) whose contour was not a valid simple polygon and was
    /// repaired by splitting it into its loops (see the crate docs, "Geometry").
    pub split_polygons: u64,
    /// Polygons replaced by the union of their pixel squares (degenerate contours).
    pub pixel_square_polygons: u64,
    /// One entry per file or store, in the order of [`SlideExportSpec::paths`].
    pub files: Vec<FileSummary>,
}

/// One written file or store.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    /// Its final path.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// The tasks it holds (a Zarr store may hold both).
    pub tasks: Vec<Task>,
    /// Records written to it (all tasks).
    pub records: u64,
    /// Its size on disk in bytes (all files of a Zarr store).
    pub bytes: u64,
}

/// Check, before any work, that every output of `spec` can be written.
///
/// # Errors
/// - [`ExportError::OutputExists`] when an output exists and `spec.overwrite` is off;
/// - [`ExportError::OutputDirMissing`] / [`ExportError::OutputDirNotWritable`] when its
///   directory is missing or a file cannot be created there (checked by creating and removing
///   a hidden probe file);
/// - [`ExportError::DuplicateOutput`] / [`ExportError::InvalidSpec`] for an inconsistent spec
///   (a path used twice, a task and format listed twice, a scale factor that is not finite and
///   positive).
pub fn check_outputs(spec: &SlideExportSpec) -> Result<(), ExportError> {
    validate_spec(spec)?;
    let mut probed: Vec<PathBuf> = Vec::new();
    for (_, _, path) in &spec.paths {
        if !spec.overwrite && path.symlink_metadata().is_ok() {
            return Err(ExportError::OutputExists { path: path.clone() });
        }
        let dir = parent_dir(path);
        if probed.contains(&dir) {
            continue;
        }
        if !dir.is_dir() {
            return Err(ExportError::OutputDirMissing {
                dir,
                path: path.clone(),
            });
        }
        probe_writable(&dir)?;
        probed.push(dir);
    }
    Ok(())
}

/// Spec consistency: scale factor, duplicate paths, duplicate (task, format) pairs.
fn validate_spec(spec: &SlideExportSpec) -> Result<(), ExportError> {
    let invalid = |reason: String| ExportError::InvalidSpec {
        slide: spec.slide_path.clone(),
        reason,
    };
    if !spec.scale_factor.iter().all(|s| s.is_finite() && *s > 0.0) {
        return Err(invalid(format!(
            "scale_factor {:?} must be finite and positive",
            spec.scale_factor
        )));
    }
    let mut by_path: BTreeMap<&Path, (Task, Format)> = BTreeMap::new();
    let mut pairs: Vec<(Task, Format)> = Vec::new();
    for &(task, format, ref path) in &spec.paths {
        if pairs.contains(&(task, format)) {
            return Err(invalid(format!("{task} {format} is listed twice in paths")));
        }
        pairs.push((task, format));
        if let Some(&(first_task, first_format)) = by_path.get(path.as_path()) {
            let shared_zarr = first_format == Format::Zarr && format == Format::Zarr;
            if !shared_zarr {
                return Err(ExportError::DuplicateOutput {
                    path: path.clone(),
                    first: format!("{first_task} {first_format}"),
                    second: format!("{task} {format}"),
                });
            }
        } else {
            by_path.insert(path, (task, format));
        }
    }
    Ok(())
}

/// Create and remove a hidden probe file in `dir`.
fn probe_writable(dir: &Path) -> Result<(), ExportError> {
    let probe = unique_sibling(&dir.join("mtseg-export-probe"), "probe");
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(file) => {
            drop(file);
            std::fs::remove_file(&probe)
                .map_err(|e| ExportError::io("remove probe file", &probe, e))
        }
        Err(source) => Err(ExportError::OutputDirNotWritable {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

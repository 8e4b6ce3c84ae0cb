//! The names of the tasks and formats.

use std::fmt;

/// What a set of instances describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// Nuclei ([`mtseg_postproc::NucleusInstance`]), TIAToolbox's `nuclei_segmentation`.
    Nuclei,
    /// Tissue layers ([`mtseg_postproc::LayerRegion`]), TIAToolbox's `layer_segmentation`.
    Layers,
}

impl Task {
    /// TIAToolbox's task name: `"nuclei_segmentation"` or `"layer_segmentation"` (also the Zarr
    /// group name).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Task::Nuclei => "nuclei_segmentation",
            Task::Layers => "layer_segmentation",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// TIAToolbox's SQLite `AnnotationStore` (`.db`).
    AnnotationStore,
    /// QuPath GeoJSON (`.geojson`, or `.geojson.gz` with [`crate::SlideExportSpec::gzip_geojson`]).
    QuPath,
    /// A Zarr V3 store (`.zarr` directory) holding every task configured for it.
    Zarr,
}

impl Format {
    /// The name used in the run config's `[output] formats` list: `"annotationstore"`,
    /// `"qupath"` or `"zarr"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Format::AnnotationStore => "annotationstore",
            Format::QuPath => "qupath",
            Format::Zarr => "zarr",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

//! The plain records the exporter takes (one final nucleus, one tissue-layer polygon) and the
//! names of the tasks and formats.

use std::fmt;

/// One final nucleus, as `instmerge` hands it out.
///
/// Coordinates are pixels at the **processing resolution** in the slide frame (the canvas offset
/// already added), with TIAToolbox's conventions: contour points are the centres of the border
/// pixels (`cv2.findContours` output, `[x, y]`), `bbox` is `[x0, y0, x1, y1]` with exclusive
/// `x1, y1`, `centroid` is `[x, y]` in the pixel-index frame (no `+0.5`).
#[derive(Debug, Clone, PartialEq)]
pub struct NucleusRecord {
    /// Instance id, > 0; ids arrive in increasing order. It is the value of the nucleus's pixels
    /// in the Zarr instance map and the seed of its annotation key.
    pub id: u64,
    /// Outer contour, `[x, y]` points (not closed: the first point is not repeated).
    pub contour: Vec<[i32; 2]>,
    /// Bounding box `[x0, y0, x1, y1]` (exclusive end).
    pub bbox: [i32; 4],
    /// Centroid `[x, y]`.
    pub centroid: [f64; 2],
    /// Class id (index into [`crate::SlideExportSpec::nuclei_classes`]); `None` without a type
    /// head.
    pub type_id: Option<u32>,
    /// Fraction of the nucleus's pixels that voted for `type_id`; `None` without a type head.
    pub type_prob: Option<f64>,
}

/// One tissue-layer polygon (HoVer-Net+ `layer_segmentation`).
///
/// Same coordinate conventions as [`NucleusRecord`]. As in TIAToolbox's `_get_layer_info`, a
/// class may have several polygons, and a hole of a layer arrives as a polygon of its own with
/// the same type (QUIRK kept in the `.db` and GeoJSON). The Zarr layer map reads the polygons
/// of a class even-odd: a hole, inside two of them, stays background.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRecord {
    /// Polygon id, > 0; ids arrive in increasing order.
    pub id: u64,
    /// Contour, `[x, y]` points (not closed).
    pub contour: Vec<[i32; 2]>,
    /// Bounding box `[x0, y0, x1, y1]` (exclusive end); TIAToolbox gives one box per class.
    pub bbox: [i32; 4],
    /// Layer class id (index into [`crate::SlideExportSpec::layer_classes`]); at most 255 when a
    /// layer map is saved (it is `u8`).
    pub type_id: u32,
}

/// What a set of records describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// Nuclei ([`NucleusRecord`]), TIAToolbox's `nuclei_segmentation`.
    Nuclei,
    /// Tissue layers ([`LayerRecord`]), TIAToolbox's `layer_segmentation`.
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

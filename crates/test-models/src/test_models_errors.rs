//! Errors of the crate, split by phase: making a label source, building an oracle model.

use std::path::PathBuf;

/// A label source could not be loaded or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// The file could not be read.
    #[error("cannot read label file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a readable `.npz` / `.npy` array of the kind expected.
    #[error("label file {path} is not usable: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the values found.
        detail: String,
    },
    /// A buffer or raster has another size than the one stated.
    #[error("{what} has {found} values, expected {expected} ({width} x {height})")]
    Size {
        /// Which buffer: `"labels"`, `"types"`, `"type raster <path>"`.
        what: String,
        /// Its length or pixel count.
        found: usize,
        /// `width * height`.
        expected: usize,
        /// Width the labels have.
        width: usize,
        /// Height the labels have.
        height: usize,
    },
    /// A mosaic would have more instances than `i32` ids can number, or an impossible shape.
    #[error("invalid mosaic: {detail}")]
    Mosaic {
        /// What is wrong, with the values.
        detail: String,
    },
}

/// An oracle model could not be built from its parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The output patch does not fit in the input patch, or a size is zero.
    #[error(
        "oracle model needs 0 < output_size <= input_size, got input {input_size}, output {output_size}"
    )]
    Sizes {
        /// The input patch side.
        input_size: usize,
        /// The output patch side.
        output_size: usize,
    },
    /// The np smoothing is negative or not a number.
    #[error("oracle np_sigma must be >= 0, got {np_sigma}")]
    Sigma {
        /// The value given.
        np_sigma: f32,
    },
    /// An `ls` head was asked for over a label source without a layer raster.
    #[error(
        "oracle `ls` head needs a label source with a layer raster (num_layers() is 0); add one, e.g. RasterLabels::with_layers"
    )]
    NoLayers,
}

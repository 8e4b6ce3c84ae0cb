//! Errors, split by phase: [`PlanError`] (building the canvas plan), [`StitchError`] (running).

use mtseg_types::Size2;
use std::path::PathBuf;

use thiserror::Error;

use crate::memory_budget::MemoryRefused;

/// The canvas plan could not be built from the grid, the selection and the slide size.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The mask kept no patch (TIAToolbox: "No patch coordinates remain after filtering.").
    #[error("no patch coordinates remain after mask filtering: nothing to stitch")]
    NoPatches,
    /// The slide has no pixels at the processing resolution.
    #[error("slide size {slide_size} has no pixels")]
    EmptySlide {
        /// The slide's size at the processing resolution.
        slide_size: Size2,
    },
    /// A selected index is not a grid index.
    #[error("selected patch index {index} is out of range: the grid has {grid_len} patches")]
    SelectedOutOfRange {
        /// The bad index.
        index: usize,
        /// Number of grid patches.
        grid_len: usize,
    },
    /// A selected index is listed twice.
    #[error("selected patch index {index} is listed twice")]
    DuplicateSelected {
        /// The repeated index.
        index: usize,
    },
    /// An output box has a negative origin or no area.
    #[error(
        "output box {index} is {bbox:?}: expected [x0, y0, x1, y1] with 0 <= x0 < x1, 0 <= y0 < y1"
    )]
    InvalidBox {
        /// Grid index.
        index: usize,
        /// The box.
        bbox: [i64; 4],
    },
    /// The canvas would start outside the slide.
    #[error("output box {index} {bbox:?} starts outside the slide of size {slide_size}")]
    BoxOutsideSlide {
        /// Grid index.
        index: usize,
        /// The box.
        bbox: [i64; 4],
        /// The slide's size at the processing resolution.
        slide_size: Size2,
    },
    /// The grid is too large to index with `u32`.
    #[error("the grid has {count} patches; at most 4294967294 are supported")]
    TooManyPatches {
        /// Number of grid patches.
        count: usize,
    },
    /// Stitching was asked to start at a canvas row past the canvas.
    #[error(
        "cannot start stitching at canvas row {first_row}: the canvas has {height} rows \
         (a start row is at most the canvas height)"
    )]
    FirstRowPastCanvas {
        /// The requested first row.
        first_row: usize,
        /// Canvas height in rows.
        height: usize,
    },
    /// The patch output size or channel counts do not fit the plan.
    #[error("invalid stitch parameters: {reason}")]
    InvalidParams {
        /// What is wrong, with the values.
        reason: String,
    },
}

/// Stitching failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StitchError {
    /// The plan or parameters are invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A memory reservation was refused (the message names `[pipeline] memory_limit`).
    #[error(transparent)]
    Memory(#[from] MemoryRefused),
    /// A patch index that is not a selected grid patch.
    #[error(
        "patch {index} is not one of the {selected} selected patches of the plan (grid of {grid_len})"
    )]
    UnknownPatch {
        /// The patch's grid index.
        index: usize,
        /// Number of selected patches.
        selected: usize,
        /// Number of grid patches.
        grid_len: usize,
    },
    /// A patch arrived twice.
    #[error("patch {index} arrived twice")]
    DuplicatePatch {
        /// The patch's grid index.
        index: usize,
    },
    /// A patch's output box differs from the planned one.
    #[error("patch {index} has output box {found:?}, but the grid says {expected:?}")]
    BoxMismatch {
        /// The patch's grid index.
        index: usize,
        /// Box from the plan (slide coordinates).
        expected: [i64; 4],
        /// Box on the patch.
        found: [i64; 4],
    },
    /// A patch has the wrong number of heads.
    #[error("patch {index} has {found} heads, expected {expected}")]
    HeadCount {
        /// The patch's grid index.
        index: usize,
        /// Heads in the params.
        expected: usize,
        /// Heads on the patch.
        found: usize,
    },
    /// A head block has the wrong shape.
    #[error(
        "patch {index} head {head}: block has {found_channels} channels and {found_len} values, \
         expected {expected_channels} channels and {expected_len} values ({height}x{width}x{expected_channels})"
    )]
    BlockShape {
        /// The patch's grid index.
        index: usize,
        /// Head number.
        head: usize,
        /// Channels in the params.
        expected_channels: usize,
        /// Channels on the block.
        found_channels: usize,
        /// Values expected.
        expected_len: usize,
        /// Values found.
        found_len: usize,
        /// Patch output height.
        height: usize,
        /// Patch output width.
        width: usize,
    },
    /// The input ended before every selected patch arrived.
    #[error(
        "input ended with {missing} of {selected} selected patches missing (first missing: grid index {first_missing})"
    )]
    MissingPatches {
        /// How many are missing.
        missing: usize,
        /// Number of selected patches.
        selected: usize,
        /// Grid index of the first missing patch in merge order.
        first_missing: usize,
    },
    /// Rows were given to a writer out of order or of the wrong shape.
    #[error("rows out of order or of the wrong shape: {reason}")]
    RowsMismatch {
        /// What was wrong, with the values.
        reason: String,
    },
    /// A partial probability store cannot be continued from the row asked for: fewer of its
    /// rows are on disk.
    #[error(
        "cannot continue the probability store {path} at canvas row {first_row}: its rows are on \
         disk only up to row {durable_rows}; resume at or above that row"
    )]
    StoreBehind {
        /// The store's final path.
        path: PathBuf,
        /// The row the stitch resumes at.
        first_row: usize,
        /// Canvas rows on disk.
        durable_rows: usize,
    },
    /// A partial probability store was written for another canvas or other heads.
    #[error(
        "the partial probability store {path} was written for another slide or model: its \
         {key} is {found}, expected {expected}"
    )]
    StoreMismatch {
        /// The store's partial path.
        path: PathBuf,
        /// What differs (an attribute of `mtseg_stitch`, an array's shape).
        key: String,
        /// The value for this run.
        expected: String,
        /// The value in the store.
        found: String,
    },
    /// A Zarr store operation failed.
    #[error("zarr {action} failed at {path}: {source}")]
    Zarr {
        /// What was being done.
        action: &'static str,
        /// The store or array path.
        path: PathBuf,
        /// The zarrs error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file system operation failed.
    #[error("{action} failed at {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An output path exists already.
    #[error("output {path} exists; remove it or choose another path")]
    OutputExists {
        /// The path.
        path: PathBuf,
    },
    /// The downstream receiver hung up before all rows were sent (for a caller's `emit` to
    /// return, as to `Stitcher::push_with`).
    #[error("the stitch output channel was closed by its receiver before all rows were sent")]
    OutputClosed,
    /// An earlier error (a refused reservation for final rows, a failed write, a closed output)
    /// stopped the stitcher while it handed out rows; it cannot go on. Start a new one.
    #[error(
        "the stitcher was interrupted by an earlier error while handing out rows; start a new one"
    )]
    Interrupted,
    /// The Zarr writer thread of a `ProbabilityStore` panicked.
    #[error("the zarr writer thread panicked: {message}")]
    WriterPanicked {
        /// The panic message.
        message: String,
    },
}

impl StitchError {
    pub(crate) fn zarr(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Zarr {
            action,
            path: path.into(),
            source: Box::new(source),
        }
    }
}

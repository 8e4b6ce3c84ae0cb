//! [`ExportError`]: every failure names the file (or the slide and record) it is about.

use std::path::PathBuf;

use thiserror::Error;

use crate::export_names::Task;

/// Exporting failed. Whatever the variant, no file was left half-written under a final name.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExportError {
    /// An output file exists and `[output] overwrite` is off.
    #[error("output {path} already exists; set `[output] overwrite = true` to replace it")]
    OutputExists {
        /// The existing output.
        path: PathBuf,
    },
    /// The directory an output goes to does not exist (or is not a directory).
    #[error("output directory {dir} of {path} does not exist or is not a directory")]
    OutputDirMissing {
        /// The directory.
        dir: PathBuf,
        /// The output that would go there.
        path: PathBuf,
    },
    /// A file could not be created in the directory an output goes to.
    #[error("output directory {dir} is not writable (creating a file in it failed: {source})")]
    OutputDirNotWritable {
        /// The directory.
        dir: PathBuf,
        /// Why the probe file could not be created.
        source: std::io::Error,
    },
    /// Two outputs (other than several tasks in one Zarr store) have the same path.
    #[error("output {path} is configured twice ({first} and {second})")]
    DuplicateOutput {
        /// The path.
        path: PathBuf,
        /// The first use, e.g. `nuclei_segmentation annotationstore`.
        first: String,
        /// The second use.
        second: String,
    },
    /// The export spec is inconsistent.
    #[error("invalid export spec for slide {slide}: {reason}")]
    InvalidSpec {
        /// The slide.
        slide: PathBuf,
        /// What is wrong, with the values.
        reason: String,
    },
    /// A record cannot be exported (e.g. an empty contour, an id of 0).
    #[error("slide {slide}: {task} record {id} is invalid: {reason}")]
    InvalidRecord {
        /// The slide.
        slide: PathBuf,
        /// The record's task.
        task: Task,
        /// The record's id.
        id: u64,
        /// What is wrong, with the values.
        reason: String,
    },
    /// Record ids must increase.
    #[error("slide {slide}: {task} record {id} arrived after record {previous}; ids must increase")]
    RecordOrder {
        /// The slide.
        slide: PathBuf,
        /// The records' task.
        task: Task,
        /// The late id.
        id: u64,
        /// The id before it.
        previous: u64,
    },
    /// A record of a task with a dense map touches rows that were already declared final with
    /// [`crate::SlideExporter::rows_final`].
    #[error(
        "slide {slide}: {task} record {id} touches row {row}, but rows above {final_row} were \
         declared final"
    )]
    RowsAlreadyFinal {
        /// The slide.
        slide: PathBuf,
        /// The record's task.
        task: Task,
        /// The record's id.
        id: u64,
        /// The record's top row.
        row: i64,
        /// The row passed to `rows_final`.
        final_row: u64,
    },
    /// A file-system operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An SQLite operation failed.
    #[error("could not {action} {path}: {source}")]
    Sqlite {
        /// What was being done.
        action: &'static str,
        /// The `.db` file (its temporary name while writing).
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A Zarr operation failed.
    #[error("could not {action} in Zarr store {path}: {source}")]
    Zarr {
        /// What was being done.
        action: &'static str,
        /// The store or array.
        path: PathBuf,
        /// The zarrs error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ExportError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ExportError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sqlite(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: rusqlite::Error,
    ) -> Self {
        ExportError::Sqlite {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn zarr(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ExportError::Zarr {
            action,
            path: path.into(),
            source: Box::new(source),
        }
    }
}

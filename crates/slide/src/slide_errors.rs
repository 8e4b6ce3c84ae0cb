//! Errors of opening and reading slides. Every message names the file.

use std::path::PathBuf;

/// A slide could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file does not exist or cannot be read.
    #[error("cannot open slide {path}: {reason}")]
    Io {
        /// The slide.
        path: PathBuf,
        /// What the operating system said.
        reason: String,
    },
    /// The file is empty.
    #[error("slide {path} is an empty file")]
    Empty {
        /// The slide.
        path: PathBuf,
    },
    /// No backend can read this file.
    #[error(
        "slide {path} is not a format mtseg can read ({reason}); supported: OpenSlide formats (SVS, NDPI, MRXS, ...), tiled or stripped TIFF, PNG, JPEG"
    )]
    Unsupported {
        /// The slide.
        path: PathBuf,
        /// Why each backend refused it.
        reason: String,
    },
    /// The file is in a known format but damaged or inconsistent.
    #[error("slide {path} is corrupt: {reason}")]
    Corrupt {
        /// The slide.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The requested backend is not compiled in.
    #[error("cannot open slide {path} with the {backend} backend: {reason}")]
    BackendUnavailable {
        /// The slide.
        path: PathBuf,
        /// The backend.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

/// A region could not be read from an open slide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Decoding tile or region data failed.
    #[error("cannot read {what} of slide {path}: {reason}")]
    Decode {
        /// The slide.
        path: PathBuf,
        /// Which part, e.g. "tile 12 of level 0".
        what: String,
        /// Why.
        reason: String,
    },
    /// The request itself is impossible (bad level, empty or oversized region).
    #[error("invalid read of slide {path}: {reason}")]
    InvalidRequest {
        /// The slide.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The resolution asks for metadata the slide lacks.
    #[error("slide {path}: {reason}")]
    Resolution {
        /// The slide.
        path: PathBuf,
        /// What is missing, e.g. "has no microns-per-pixel metadata; give [input] mpp".
        reason: String,
    },
}

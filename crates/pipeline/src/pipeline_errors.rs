//! Errors of one slide's run. A slide error is reported and the other slides go on.

use std::path::PathBuf;

/// What went wrong with one slide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlideError {
    /// The slide could not be opened.
    #[error(transparent)]
    Open(#[from] mtseg_slide::OpenError),
    /// The slide could not be read.
    #[error(transparent)]
    Read(#[from] mtseg_slide::ReadError),
    /// The tissue mask image could not be used.
    #[error("tissue mask {mask} for slide {slide}: {reason}")]
    Mask {
        /// The slide.
        slide: PathBuf,
        /// The mask file.
        mask: PathBuf,
        /// Why.
        reason: String,
    },
    /// No patch to run, or an impossible grid.
    #[error("slide {slide}: {source}")]
    Grid {
        /// The slide.
        slide: PathBuf,
        /// Why.
        source: mtseg_tiling::GridError,
    },
    /// The stitch canvas cannot be planned.
    #[error("slide {slide}: {source}")]
    Canvas {
        /// The slide.
        slide: PathBuf,
        /// Why.
        source: mtseg_stitch::PlanError,
    },
    /// In patch mode, an image is not one model input patch.
    #[error(
        "image {slide} is {width} x {height} px, but patch mode needs images of exactly {want_width} x {want_height} (the model's input patch); use mode = \"wsi\" for larger images"
    )]
    PatchSize {
        /// The image.
        slide: PathBuf,
        /// Its width.
        width: u64,
        /// Its height.
        height: u64,
        /// The model's input width.
        want_width: u64,
        /// The model's input height.
        want_height: u64,
    },
}

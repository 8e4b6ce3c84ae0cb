//! Whole-slide image reading for mtseg-pipeline.
//!
//! This crate is the source of the data flow: the `tiling` crate asks it for patches (a box at the
//! processing resolution) and for the tissue mask; everything downstream sees only RGB patches.
//!
//! # Overview
//! - [`SlideReader`]: levels, dimensions, mpp and objective power ([`SlideInfo`]), and
//!   [`SlideReader::read_region`] of a box at a target [`Resolution`] (mpp, objective power or a
//!   baseline scale), read from the best pyramid level and resampled exactly as TIAToolbox's
//!   `read_bounds(..., coord_space="resolution")` computes it; pixels outside the slide are white.
//!   [`SlideReader::read_regions`] reads many boxes (a batch of overlapping patches) with one
//!   decode of the level data they share, in parallel (rayon), each image identical to
//!   `read_region`'s.
//! - Three backends behind [`open_slide`]: OpenSlide (feature `openslide`, Debian's
//!   libopenslide), a pure-Rust TIFF reader (tiled or stripped pyramids, JPEG/Deflate/LZW, Aperio
//!   SVS and libvips pyramids), and plain images (PNG/JPEG/TIFF through `image`, mpp from the
//!   config). [`Backend::Auto`] picks one from the file.
//! - [`TissueMask`]: Otsu on the grey 1.25x thumbnail (TIAToolbox's `auto_get_mask`) or a user
//!   mask image, with constant-time "any tissue in this box" queries.
//!
//! ```no_run
//! use mtseg_slide::{open_slide, Interpolation, OpenOptions, Resolution, SlideReader, TissueMask};
//! let slide = open_slide("data/cmu_small_region.svs".as_ref(), OpenOptions::default())?;
//! let (w, h) = slide.dimensions_at(Resolution::Mpp(0.25))?;   // 4431 x 5922
//! let patch = slide.read_region([-46, -46, 210, 210], Resolution::Mpp(0.25), Interpolation::Optimise)?;
//! assert_eq!(patch.dimensions(), (256, 256));
//! let mask = TissueMask::otsu(slide.as_ref())?;
//! println!("{w} x {h}, {} tissue pixels in the mask", mask.tissue_pixels());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Choices a reader might question
//! - Resampling is OpenCV's `INTER_AREA` / `INTER_CUBIC`, re-implemented (see `resample`), so
//!   patches match TIAToolbox's within rounding without linking OpenCV.
//! - [`Interpolation::Optimise`] (the default) uses area when shrinking and cubic when enlarging,
//!   as TIAToolbox documents. TIAToolbox 2.1.3 actually does the opposite in the read path its
//!   engine uses (its scale factor is inverted); [`Interpolation::TiaToolbox`] reproduces that
//!   for parity runs. See the README's "Differences from TIAToolbox".
//! - The TIFF backend decodes JPEG tiles itself (zune-jpeg, RGB output) rather than through the
//!   `tiff` crate, which returns JPEG data in the stream's own colour space.
//!
//! # Logging
//! `warn!` when a TIFF has an unreadable trailing IFD (the pyramid ends there); `debug!` for IFDs
//! that are not pyramid levels.
#![forbid(unsafe_code)]

mod image_backend;
mod open_slide;
#[cfg(feature = "openslide")]
mod openslide_backend;
mod pixel_formats;
#[cfg(feature = "test-utils")]
pub mod reader_suite;
mod region_union;
mod resample;
mod resolution;
mod slide_errors;
mod slide_reader;
mod tiff_backend;
mod tissue_mask;

pub use image::RgbImage;
pub use image_backend::ImageSlide;
pub use open_slide::{Backend, OpenOptions, open_slide};
#[cfg(feature = "openslide")]
pub use openslide_backend::{OpenSlideSlide, detect_vendor};
pub use resample::{Filter, resize_u8};
pub use resolution::{LevelInfo, LevelRead, Resolution, SlideInfo, levels_from_sizes};
pub use slide_errors::{OpenError, ReadError};
pub use slide_reader::{Interpolation, MAX_READ_PIXELS, SlideReader};
pub use tiff_backend::TiffSlide;
pub use tissue_mask::{TissueMask, otsu_threshold, rgb_to_grey};

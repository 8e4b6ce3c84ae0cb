//! Plain images (PNG, JPEG, TIFF, ... anything the `image` crate decodes) as one-level slides,
//! decoded once and kept in memory; their resolution comes from the config (`[input] mpp`), as
//! TIAToolbox's `VirtualWSIReader` with `wsireader_kwargs={"mpp": ...}`.

use std::path::{Path, PathBuf};

use image::{ImageReader, Limits, RgbImage};

use crate::region_union;
use crate::resolution::{LevelInfo, Resolution, SlideInfo};
use crate::slide_errors::{OpenError, ReadError};
use crate::slide_reader::{Interpolation, SlideReader};

/// Largest decoded plain image (2 GiB); bigger images belong in a tiled pyramid TIFF.
const MAX_IMAGE_BYTES: u64 = 2 << 30;

/// A plain image held in memory.
#[derive(Debug)]
pub struct ImageSlide {
    path: PathBuf,
    image: RgbImage,
    info: SlideInfo,
}

impl ImageSlide {
    /// Decodes `path`; `mpp` is its resolution in microns per pixel, if known.
    pub fn open(path: &Path, mpp: Option<f64>) -> Result<Self, OpenError> {
        let reader = ImageReader::open(path)
            .map_err(|e| OpenError::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .with_guessed_format()
            .map_err(|e| OpenError::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if reader.format().is_none() {
            return Err(OpenError::Unsupported {
                path: path.to_path_buf(),
                reason: "not an image format the image decoder recognises".into(),
            });
        }
        let mut reader = reader;
        let mut limits = Limits::default();
        limits.max_alloc = Some(MAX_IMAGE_BYTES);
        reader.limits(limits);
        let decoded = reader.decode().map_err(|e| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let image = if decoded.color().has_alpha() {
            // Composite over white, as TIAToolbox's background_composite.
            let rgba = decoded.to_rgba8();
            let (w, h) = rgba.dimensions();
            let data = crate::pixel_formats::rgba_over_white(rgba.as_raw());
            RgbImage::from_raw(w, h, data).expect("w * h * 3 bytes")
        } else {
            decoded.to_rgb8()
        };
        let (w, h) = image.dimensions();
        let info = SlideInfo {
            levels: vec![LevelInfo {
                width: u64::from(w),
                height: u64::from(h),
                downsample: 1.0,
            }],
            mpp: mpp.map(|m| [m, m]),
            objective_power: None,
            format: "image".into(),
        };
        Ok(Self {
            path: path.to_path_buf(),
            image,
            info,
        })
    }
}

impl SlideReader for ImageSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &SlideInfo {
        &self.info
    }

    /// Every box on its own, in parallel: the image is in memory, nothing is decoded, and a
    /// union would only add a copy.
    fn read_regions(
        &self,
        boxes: &[[i64; 4]],
        res: Resolution,
        interpolation: Interpolation,
    ) -> Result<Vec<RgbImage>, ReadError> {
        let plans = region_union::plan_all(self, boxes, res, interpolation)?;
        region_union::read_each(self, &plans)
    }

    fn read_level_inside(
        &self,
        _level: usize,
        x: u64,
        y: u64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, ReadError> {
        Ok(image::imageops::crop_imm(&self.image, x as u32, y as u32, width, height).to_image())
    }
}

//! The OpenSlide backend (feature `openslide`): every format OpenSlide knows (Aperio SVS,
//! Hamamatsu NDPI, MIRAX, Leica SCN, Philips TIFF, generic tiled TIFF, ...), through openslide-rs
//! and Debian's libopenslide.

use std::path::{Path, PathBuf};

use image::RgbImage;
use openslide_rs::{Address, OpenSlide, Region, Size};

use crate::resolution::{LevelInfo, SlideInfo};
use crate::slide_errors::{OpenError, ReadError};
use crate::slide_reader::SlideReader;

/// A slide opened with OpenSlide.
pub struct OpenSlideSlide {
    path: PathBuf,
    slide: OpenSlide,
    info: SlideInfo,
    /// Per level, `openslide.level[N].tile-width` and `-height` when OpenSlide reports them.
    tiles: Vec<Option<(u64, u64)>>,
}

impl std::fmt::Debug for OpenSlideSlide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSlideSlide")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The vendor OpenSlide detects for `path`, or `None` if OpenSlide does not recognise it.
pub fn detect_vendor(path: &Path) -> Option<String> {
    OpenSlide::detect_vendor(path)
        .ok()
        .filter(|v| !v.is_empty())
}

fn property_f64(slide: &OpenSlide, name: &str) -> Option<f64> {
    slide
        .property_value(name)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
}

impl OpenSlideSlide {
    /// Opens `path` with OpenSlide.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let vendor = detect_vendor(path).ok_or_else(|| OpenError::Unsupported {
            path: path.to_path_buf(),
            reason: "OpenSlide does not recognise it".into(),
        })?;
        let slide = OpenSlide::new(path).map_err(|e| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("OpenSlide ({vendor}): {e}"),
        })?;
        let dims = slide.all_level_dimensions().to_vec();
        let ds = slide.all_level_downsamples().to_vec();
        if dims.is_empty() || dims.len() != ds.len() {
            return Err(OpenError::Corrupt {
                path: path.to_path_buf(),
                reason: "OpenSlide reports no levels".into(),
            });
        }
        let levels = dims
            .iter()
            .zip(&ds)
            .map(|(d, &s)| LevelInfo {
                width: u64::from(d.w),
                height: u64::from(d.h),
                downsample: s,
            })
            .collect();
        // As TIAToolbox's OpenSlideWSIReader: openslide.mpp-x/y, else the TIFF resolution tags.
        let mut mpp = match (
            property_f64(&slide, "openslide.mpp-x"),
            property_f64(&slide, "openslide.mpp-y"),
        ) {
            (Some(x), Some(y)) => Some([x, y]),
            _ => None,
        };
        if mpp.is_none() {
            let unit = slide
                .property_value("tiff.ResolutionUnit")
                .unwrap_or_default();
            let per_unit = match unit.trim() {
                "centimeter" => Some(10_000.0),
                "inch" => Some(25_400.0),
                _ => None,
            };
            if let (Some(u), Some(x), Some(y)) = (
                per_unit,
                property_f64(&slide, "tiff.XResolution"),
                property_f64(&slide, "tiff.YResolution"),
            ) {
                mpp = Some([u / x, u / y]);
            }
        }
        let mut info = SlideInfo {
            levels,
            mpp,
            objective_power: property_f64(&slide, "openslide.objective-power"),
            format: format!("openslide ({vendor})"),
        };
        info.estimate_missing_metadata();
        let tiles = (0..info.levels.len())
            .map(|l| {
                let side = |s: &str| {
                    property_f64(&slide, &format!("openslide.level[{l}].tile-{s}"))
                        .map(|v| v as u64)
                };
                side("width").zip(side("height"))
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            slide,
            info,
            tiles,
        })
    }
}

impl SlideReader for OpenSlideSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &SlideInfo {
        &self.info
    }

    /// Level 0, and levels whose downsample is a whole number: OpenSlide takes a location at
    /// level 0 and divides it by the downsample, so other levels are painted at sub-pixel offsets
    /// that depend on where a read starts.
    fn read_crops_exactly(&self, level: usize) -> bool {
        self.info
            .levels
            .get(level)
            .is_some_and(|l| level == 0 || l.downsample.fract() == 0.0)
    }

    fn tile_size(&self, level: usize) -> Option<(u64, u64)> {
        self.tiles.get(level).copied().flatten()
    }

    fn read_level_inside(
        &self,
        level: usize,
        x: u64,
        y: u64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, ReadError> {
        let ds = self.info.levels[level].downsample;
        let to_u32 = |v: f64| u32::try_from(v.round() as u64).ok();
        let (Some(bx), Some(by)) = (to_u32(x as f64 * ds), to_u32(y as f64 * ds)) else {
            return Err(ReadError::InvalidRequest {
                path: self.path.clone(),
                reason: format!("location ({x}, {y}) of level {level} is out of OpenSlide's range"),
            });
        };
        let region = Region {
            size: Size {
                w: width,
                h: height,
            },
            level: level as u32,
            address: Address { x: bx, y: by },
        };
        let argb = self
            .slide
            .read_region(&region)
            .map_err(|e| ReadError::Decode {
                path: self.path.clone(),
                what: format!("region {width} x {height} at ({x}, {y}) of level {level}"),
                reason: e.to_string(),
            })?;
        // Premultiplied BGRA (little-endian ARGB words) composited over white, as TIAToolbox does.
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for p in argb.chunks_exact(4) {
            let a = p[3];
            let over = 255 - a;
            rgb.extend_from_slice(&[
                p[2].saturating_add(over),
                p[1].saturating_add(over),
                p[0].saturating_add(over),
            ]);
        }
        RgbImage::from_raw(width, height, rgb).ok_or_else(|| ReadError::Decode {
            path: self.path.clone(),
            what: format!("region {width} x {height} of level {level}"),
            reason: "OpenSlide returned a buffer of the wrong size".into(),
        })
    }
}

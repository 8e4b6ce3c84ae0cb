//! The [`SlideReader`] trait every backend implements, and the reads built on it: a box at a
//! target resolution and a thumbnail, both as TIAToolbox computes them.

use std::path::Path;

use image::RgbImage;

use crate::resample::{Filter, resize_u8};
use crate::resolution::{Resolution, SlideInfo};
use crate::slide_errors::ReadError;

/// The largest region one read may produce (256 Mpx, 768 MB of RGB): a guard against absurd
/// requests or metadata, not a practical limit (patches are ~0.07 Mpx).
pub const MAX_READ_PIXELS: u64 = 1 << 28;

/// How a region is resampled from the pyramid level it is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// Area when shrinking, cubic when enlarging (TIAToolbox's documented "optimise").
    #[default]
    Optimise,
    /// What TIAToolbox 2.1.3's `read_bounds(coord_space="resolution")` does: its scale factor is
    /// inverted, so it uses cubic when shrinking and area when enlarging.
    TiaToolbox,
    /// Always area.
    Area,
    /// Always cubic.
    Cubic,
}

impl Interpolation {
    /// The filter for a read of `src` pixels resized to `dst` pixels per axis.
    pub fn filter(self, src: (u64, u64), dst: (u64, u64)) -> Filter {
        let enlarging = dst.0 > src.0 || dst.1 > src.1;
        let shrinking = dst.0 < src.0 || dst.1 < src.1;
        match self {
            Self::Optimise if enlarging => Filter::Cubic,
            Self::Optimise => Filter::Area,
            Self::TiaToolbox if shrinking => Filter::Cubic,
            Self::TiaToolbox => Filter::Area,
            Self::Area => Filter::Area,
            Self::Cubic => Filter::Cubic,
        }
    }
}

/// A whole-slide image (or a plain image) that can be read region by region, from any thread.
pub trait SlideReader: Send + Sync {
    /// The file.
    fn path(&self) -> &Path;

    /// Levels, resolution metadata, format.
    fn info(&self) -> &SlideInfo;

    /// Reads `width x height` pixels of `level` starting at (`x`, `y`) in that level's pixels. The
    /// caller guarantees the region lies inside the level and is not empty.
    fn read_level_inside(
        &self,
        level: usize,
        x: u64,
        y: u64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, ReadError>;

    /// Reads any region of `level`; pixels outside the level are white (255), as TIAToolbox pads.
    fn read_level(
        &self,
        level: usize,
        x: i64,
        y: i64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, ReadError> {
        let info = self.info();
        let Some(lv) = info.levels.get(level) else {
            return Err(ReadError::InvalidRequest {
                path: self.path().to_path_buf(),
                reason: format!(
                    "level {level} does not exist (the slide has {})",
                    info.levels.len()
                ),
            });
        };
        if u64::from(width) * u64::from(height) > MAX_READ_PIXELS || width == 0 || height == 0 {
            return Err(ReadError::InvalidRequest {
                path: self.path().to_path_buf(),
                reason: format!(
                    "a {width} x {height} region is empty or larger than {MAX_READ_PIXELS} pixels"
                ),
            });
        }
        let (lw, lh) = (lv.width as i64, lv.height as i64);
        let ix0 = x.clamp(0, lw);
        let iy0 = y.clamp(0, lh);
        let ix1 = (x + i64::from(width)).clamp(0, lw);
        let iy1 = (y + i64::from(height)).clamp(0, lh);
        if ix0 == x && iy0 == y && ix1 - ix0 == i64::from(width) && iy1 - iy0 == i64::from(height) {
            return self.read_level_inside(level, x as u64, y as u64, width, height);
        }
        let mut out = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
        if ix1 > ix0 && iy1 > iy0 {
            let inner = self.read_level_inside(
                level,
                ix0 as u64,
                iy0 as u64,
                (ix1 - ix0) as u32,
                (iy1 - iy0) as u32,
            )?;
            image::imageops::replace(&mut out, &inner, ix0 - x, iy0 - y);
        }
        Ok(out)
    }

    /// The slide's size in pixels at `res`, as TIAToolbox's `slide_dimensions`.
    fn dimensions_at(&self, res: Resolution) -> Result<(u64, u64), ReadError> {
        self.info()
            .dimensions_at(res)
            .map_err(|reason| resolution_error(self.path(), reason))
    }

    /// Reads the box `[x0, y0, x1, y1)` given in pixels at `res` (it may extend past the slide; that
    /// part is white), as TIAToolbox's `read_bounds(..., coord_space="resolution")`: read from the
    /// best pyramid level, then resized to exactly `x1 - x0` by `y1 - y0`.
    fn read_region(
        &self,
        bounds: [i64; 4],
        res: Resolution,
        interpolation: Interpolation,
    ) -> Result<RgbImage, ReadError> {
        let plan = plan_region(self, bounds, res, interpolation)?;
        let raw = self.read_level(plan.level, plan.x, plan.y, plan.width, plan.height)?;
        Ok(plan.finish(raw))
    }

    /// Reads every box of `boxes` as [`read_region`](Self::read_region) does, pixel for pixel,
    /// decoding the slide data they share once: consecutive boxes whose level reads are close
    /// (their union is at most 1.5 times their summed area, and at most 16 Mpx) are read as one
    /// union, split along the level's tiles into pieces read in parallel on the current rayon
    /// pool; each box is then cut from the union and resampled (in parallel). Boxes far apart,
    /// and levels that do not [`read_crops_exactly`](Self::read_crops_exactly), are read one by
    /// one (in parallel). The images are in the order of `boxes`. Backends whose reads copy from
    /// decoded tiles kept in memory do the same with less copying: the TIFF backend decodes each
    /// tile of the unions once, in parallel, then copies every box from its tile cache; the
    /// plain-image backend reads every box alone.
    ///
    /// # Errors
    /// The error [`read_region`](Self::read_region) gives for the first box that is invalid
    /// (empty, oversized, or a resolution the slide lacks metadata for); otherwise the error of a
    /// read that failed (a damaged tile), naming the slide.
    fn read_regions(
        &self,
        boxes: &[[i64; 4]],
        res: Resolution,
        interpolation: Interpolation,
    ) -> Result<Vec<RgbImage>, ReadError> {
        crate::region_union::read_regions(self, boxes, res, interpolation)
    }

    /// Whether reading any rectangle of `level` gives exactly the pixels of that rectangle cut
    /// from a read of a larger one. [`read_regions`](Self::read_regions) merges reads of such
    /// levels only. True unless a backend says otherwise (OpenSlide, for levels it reads at
    /// sub-pixel offsets).
    fn read_crops_exactly(&self, level: usize) -> bool {
        let _ = level;
        true
    }

    /// The size (width, height) of the tiles or strips `level` is stored and decoded in, if the
    /// backend knows it: [`read_regions`](Self::read_regions) splits a union along tile
    /// boundaries, so that the pieces it reads in parallel do not decode the same tile. `None`
    /// (the default): the union is read in one piece.
    fn tile_size(&self, level: usize) -> Option<(u64, u64)> {
        let _ = level;
        None
    }

    /// The whole slide at `res` (TIAToolbox's `slide_thumbnail`, a baseline-space read that picks
    /// area when shrinking and cubic when enlarging).
    fn thumbnail(&self, res: Resolution) -> Result<RgbImage, ReadError> {
        let info = self.info();
        let (level, scale) = info
            .optimal_level(res)
            .map_err(|reason| resolution_error(self.path(), reason))?;
        let lv = info.levels[level];
        let (w0, h0) = info.dimensions();
        let lw = (w0 as f64 / lv.downsample).round_ties_even().max(1.0);
        let lh = (h0 as f64 / lv.downsample).round_ties_even().max(1.0);
        let ow = (lw * scale[0]).round_ties_even().max(1.0) as u32;
        let oh = (lh * scale[1]).round_ties_even().max(1.0) as u32;
        let raw = self.read_level(level, 0, 0, lw as u32, lh as u32)?;
        let filter = if scale[0] > 1.0 || scale[1] > 1.0 {
            Filter::Cubic
        } else {
            Filter::Area
        };
        Ok(resize_image(raw, ow, oh, filter))
    }
}

fn resolution_error(path: &Path, reason: String) -> ReadError {
    ReadError::Resolution {
        path: path.to_path_buf(),
        reason,
    }
}

/// One box of a [`SlideReader::read_region`]: the level rectangle to read and how to resample it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RegionPlan {
    /// Pyramid level read.
    pub(crate) level: usize,
    /// Top-left of the level rectangle (may be negative: padded white).
    pub(crate) x: i64,
    /// Top-left of the level rectangle.
    pub(crate) y: i64,
    /// Level rectangle width (at least 1).
    pub(crate) width: u32,
    /// Level rectangle height (at least 1).
    pub(crate) height: u32,
    /// Output width (the box's width).
    pub(crate) out_w: u32,
    /// Output height.
    pub(crate) out_h: u32,
    /// Resampling filter from the level rectangle to the output.
    pub(crate) filter: Filter,
}

impl RegionPlan {
    /// The output image from the pixels of the level rectangle (`raw` is `width x height`).
    pub(crate) fn finish(&self, raw: RgbImage) -> RgbImage {
        resize_image(raw, self.out_w, self.out_h, self.filter)
    }
}

/// Checks `bounds` and computes the level rectangle behind it, as `read_region` reads it.
pub(crate) fn plan_region<S: SlideReader + ?Sized>(
    slide: &S,
    bounds: [i64; 4],
    res: Resolution,
    interpolation: Interpolation,
) -> Result<RegionPlan, ReadError> {
    let (w, h) = (
        bounds[2].saturating_sub(bounds[0]),
        bounds[3].saturating_sub(bounds[1]),
    );
    if w <= 0 || h <= 0 || (w as u64).saturating_mul(h as u64) > MAX_READ_PIXELS {
        return Err(ReadError::InvalidRequest {
            path: slide.path().to_path_buf(),
            reason: format!("box {bounds:?} is empty or larger than {MAX_READ_PIXELS} pixels"),
        });
    }
    let plan = slide
        .info()
        .level_read_for(bounds, res)
        .map_err(|reason| resolution_error(slide.path(), reason))?;
    let (lw, lh) = (u32::try_from(plan.width), u32::try_from(plan.height));
    let (Ok(lw), Ok(lh)) = (lw, lh) else {
        return Err(ReadError::InvalidRequest {
            path: slide.path().to_path_buf(),
            reason: format!("box {bounds:?} needs an oversized level read"),
        });
    };
    Ok(RegionPlan {
        level: plan.level,
        x: plan.x,
        y: plan.y,
        width: lw,
        height: lh,
        out_w: w as u32,
        out_h: h as u32,
        filter: interpolation.filter((u64::from(lw), u64::from(lh)), (w as u64, h as u64)),
    })
}

fn resize_image(raw: RgbImage, w: u32, h: u32, filter: Filter) -> RgbImage {
    if raw.width() == w && raw.height() == h {
        return raw;
    }
    let (sw, sh) = (raw.width() as usize, raw.height() as usize);
    let data = resize_u8(raw.as_raw(), sw, sh, 3, w as usize, h as usize, filter);
    RgbImage::from_raw(w, h, data).expect("resize_u8 returns w * h * 3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_choice_follows_tiatoolbox() {
        let up = ((100, 100), (200, 200));
        let down = ((200, 200), (100, 100));
        assert_eq!(Interpolation::Optimise.filter(up.0, up.1), Filter::Cubic);
        assert_eq!(Interpolation::Optimise.filter(down.0, down.1), Filter::Area);
        assert_eq!(Interpolation::TiaToolbox.filter(up.0, up.1), Filter::Area);
        assert_eq!(
            Interpolation::TiaToolbox.filter(down.0, down.1),
            Filter::Cubic
        );
    }
}

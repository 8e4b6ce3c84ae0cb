//! Tissue masks: Otsu's threshold on the grey 1.25x thumbnail as TIAToolbox's
//! `WSIReader.tissue_mask` (`OtsuTissueMasker`: `cv2.COLOR_RGB2GRAY`, skimage `threshold_otsu`,
//! tissue = grey < threshold), or a user mask image (grey > 0 is tissue).

use std::path::Path;

use image::RgbImage;

use crate::resolution::Resolution;
use crate::slide_errors::{OpenError, ReadError};
use crate::slide_reader::SlideReader;

/// A binary mask over the whole slide at some low resolution, with a summed-area table so that
/// "is there any tissue in this box" costs four lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TissueMask {
    width: u32,
    height: u32,
    data: Vec<bool>,
    /// (width + 1) x (height + 1) prefix sums of `data`.
    integral: Vec<u64>,
}

/// OpenCV's `COLOR_RGB2GRAY` for 8 bits (fixed point, 14 fractional bits).
pub fn rgb_to_grey(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 4899 + u32::from(g) * 9617 + u32::from(b) * 1868 + 8192) >> 14) as u8
}

/// skimage's `threshold_otsu` on an 8-bit histogram (bins are the integers from the smallest to
/// the largest value present). Tissue is `grey < threshold`.
pub fn otsu_threshold(hist: &[u64; 256]) -> u8 {
    let lo = hist.iter().position(|&c| c > 0).unwrap_or(0);
    let hi = hist.iter().rposition(|&c| c > 0).unwrap_or(0);
    if lo == hi {
        return lo as u8;
    }
    let counts = &hist[lo..=hi];
    let centers: Vec<f64> = (lo..=hi).map(|v| v as f64).collect();
    let n = counts.len();
    let mut w1 = vec![0f64; n];
    let mut m1 = vec![0f64; n];
    let (mut cw, mut cm) = (0f64, 0f64);
    for i in 0..n {
        cw += counts[i] as f64;
        cm += counts[i] as f64 * centers[i];
        w1[i] = cw;
        m1[i] = cm / cw;
    }
    let mut w2 = vec![0f64; n];
    let mut m2 = vec![0f64; n];
    let (mut cw, mut cm) = (0f64, 0f64);
    for i in (0..n).rev() {
        cw += counts[i] as f64;
        cm += counts[i] as f64 * centers[i];
        w2[i] = cw;
        m2[i] = cm / cw;
    }
    let mut best = 0;
    let mut best_v = f64::NEG_INFINITY;
    for i in 0..n - 1 {
        let d = m1[i] - m2[i + 1];
        let v = w1[i] * w2[i + 1] * d * d;
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    centers[best] as u8
}

impl TissueMask {
    /// A mask from a boolean raster (row-major, `width * height`).
    pub fn from_bools(width: u32, height: u32, data: Vec<bool>) -> Option<Self> {
        if data.len() != width as usize * height as usize {
            return None;
        }
        let (w, h) = (width as usize, height as usize);
        let mut integral = vec![0u64; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0u64;
            for x in 0..w {
                row += u64::from(data[y * w + x]);
                integral[(y + 1) * (w + 1) + x + 1] = integral[y * (w + 1) + x + 1] + row;
            }
        }
        Some(Self {
            width,
            height,
            data,
            integral,
        })
    }

    /// Otsu's mask of an RGB thumbnail.
    pub fn otsu_of(thumbnail: &RgbImage) -> Self {
        let grey: Vec<u8> = thumbnail
            .pixels()
            .map(|p| rgb_to_grey(p[0], p[1], p[2]))
            .collect();
        let mut hist = [0u64; 256];
        for &g in &grey {
            hist[g as usize] += 1;
        }
        let t = otsu_threshold(&hist);
        let (w, h) = thumbnail.dimensions();
        Self::from_bools(w, h, grey.iter().map(|&g| g < t).collect()).expect("sizes match")
    }

    /// TIAToolbox's automatic mask: Otsu on the thumbnail at 1.25x objective power, or at 6 mpp
    /// when the slide has no objective power.
    pub fn otsu(reader: &dyn SlideReader) -> Result<Self, ReadError> {
        let res = if reader.info().objective_power.is_some() {
            Resolution::Power(1.25)
        } else {
            Resolution::Mpp(6.0)
        };
        Ok(Self::otsu_of(&reader.thumbnail(res)?))
    }

    /// A user mask image: any pixel whose grey value is above 0 is tissue. It may have any size;
    /// it is scaled to the slide by the ratio of the sizes.
    pub fn from_image_file(path: &Path) -> Result<Self, OpenError> {
        let img = image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| OpenError::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .decode()
            .map_err(|e| OpenError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("mask image: {e}"),
            })?
            .to_rgb8();
        let (w, h) = img.dimensions();
        let data = img
            .pixels()
            .map(|p| rgb_to_grey(p[0], p[1], p[2]) > 0)
            .collect();
        Ok(Self::from_bools(w, h, data).expect("sizes match"))
    }

    /// Width in mask pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in mask pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The raster, row-major.
    pub fn data(&self) -> &[bool] {
        &self.data
    }

    /// Tissue pixels in the mask box `[x0, x1) x [y0, y1)` (clipped to the mask).
    pub fn count_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> u64 {
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let (x0, x1) = (x0.clamp(0, w) as usize, x1.clamp(0, w) as usize);
        let (y0, y1) = (y0.clamp(0, h) as usize, y1.clamp(0, h) as usize);
        if x1 <= x0 || y1 <= y0 {
            return 0;
        }
        let s = self.width as usize + 1;
        self.integral[y1 * s + x1] + self.integral[y0 * s + x0]
            - self.integral[y0 * s + x1]
            - self.integral[y1 * s + x0]
    }

    /// Number of tissue pixels.
    pub fn tissue_pixels(&self) -> u64 {
        self.count_in(0, 0, i64::from(self.width), i64::from(self.height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_matches_opencv() {
        // cv2.cvtColor(np.uint8([[[255,0,0],[0,255,0],[0,0,255],[10,200,30],[255,255,255]]]), cv2.COLOR_RGB2GRAY)
        let got: Vec<u8> = [
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [10, 200, 30],
            [255, 255, 255],
        ]
        .iter()
        .map(|p| rgb_to_grey(p[0], p[1], p[2]))
        .collect();
        assert_eq!(got, vec![76, 150, 29, 124, 255]);
    }

    #[test]
    fn otsu_splits_two_clusters() {
        let mut hist = [0u64; 256];
        hist[50] = 100;
        hist[60] = 100;
        hist[200] = 300;
        hist[210] = 300;
        let t = otsu_threshold(&hist);
        assert!((60..200).contains(&t), "{t}");
        let mut one = [0u64; 256];
        one[7] = 5;
        assert_eq!(otsu_threshold(&one), 7);
    }

    #[test]
    fn counts_use_the_integral_image() {
        let m = TissueMask::from_bools(
            4,
            3,
            vec![
                true, false, false, true, //
                false, true, false, false, //
                false, false, false, true,
            ],
        )
        .unwrap();
        assert_eq!(m.tissue_pixels(), 4);
        assert_eq!(m.count_in(0, 0, 2, 2), 2);
        assert_eq!(m.count_in(-5, -5, 1, 1), 1);
        assert_eq!(m.count_in(2, 0, 10, 10), 2);
        assert_eq!(m.count_in(3, 3, 9, 9), 0);
        assert!(TissueMask::from_bools(2, 2, vec![true]).is_none());
    }
}

//! The training and evaluation data: histolytics' `hgsc_nest.jpg` with its instance and type
//! masks, and the split into the held-out left third and the training right two thirds.

use std::path::Path;

use mtseg_test_models::RasterLabels;

use crate::TrainError;

/// Class names of the type mask (`hgsc_nest_type_mask.npz`), by class id. Checked against the
/// `class_name` column of histolytics' `hgsc_nest.parquet` (the same nuclei as polygons):
/// 1 = connective (373 instances), 2 = inflammatory (633), 3 = neoplastic (288). Not the order
/// of histolytics' model class dictionaries (where 1 is neoplastic).
pub const CLASS_NAMES: [&str; 4] = ["background", "connective", "inflammatory", "neoplastic"];

/// Columns `0..HELD_OUT_COLUMNS` (the left third) are held out for evaluation; training sees
/// only the columns from here on, never a pixel of the held-out third (not even as context).
pub const HELD_OUT_COLUMNS: usize = 500;

/// The resolution to declare for the histolytics images, in microns per pixel: not stated by
/// histolytics; estimated from the nuclei in the masks (median equivalent diameter 16.0 px for
/// inflammatory, 26.9 px for neoplastic nuclei; lymphocyte nuclei are about 7 µm across), i.e.
/// a 20x scan. The model is trained at this native scale.
pub const NATIVE_MPP: f64 = 0.5;

/// An RGB image with its instance and class label maps, all row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotatedImage {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width * 3` bytes, RGB.
    pub rgb: Vec<u8>,
    /// Instance ids (0 = background), `height * width`.
    pub labels: Vec<i32>,
    /// Class ids of [`CLASS_NAMES`] (0 outside nuclei), `height * width`.
    pub types: Vec<u8>,
}

impl AnnotatedImage {
    /// Reads `hgsc_nest.jpg`, `hgsc_nest_inst_mask.npz` and `hgsc_nest_type_mask.npz` (key
    /// `nuc_raster`) from `data_dir` (`scripts/setup` puts them in `data/`). Type ids outside
    /// instances (43 stray pixels in the file) are cleared.
    ///
    /// The masks are read by `mtseg_test_models::RasterLabels::hgsc_nest`.
    ///
    /// # Errors
    /// [`TrainError::Data`] naming the image when it cannot be decoded; [`TrainError::Labels`]
    /// for the masks; [`TrainError::Data`] when the image and masks differ in size or a type id
    /// is outside [`CLASS_NAMES`].
    pub fn load_hgsc_nest(data_dir: &Path) -> Result<Self, TrainError> {
        let jpg = data_dir.join("hgsc_nest.jpg");
        let rgb = image::open(&jpg)
            .map_err(|e| TrainError::Data {
                path: jpg.clone(),
                detail: format!("cannot decode: {e}"),
            })?
            .to_rgb8();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let masks = RasterLabels::hgsc_nest(data_dir)?;
        if (masks.height(), masks.width()) != (h, w) {
            return Err(TrainError::Data {
                path: data_dir.join("hgsc_nest_inst_mask.npz"),
                detail: format!(
                    "masks are {}x{}, the image {h}x{w} (height x width)",
                    masks.height(),
                    masks.width()
                ),
            });
        }
        let type_path = data_dir.join("hgsc_nest_type_mask.npz");
        let types = masks
            .types()
            .iter()
            .zip(masks.labels())
            .map(|(&t, &l)| {
                if usize::from(t) < CLASS_NAMES.len() {
                    Ok(if l > 0 { t } else { 0 })
                } else {
                    Err(TrainError::Data {
                        path: type_path.clone(),
                        detail: format!("type id {t} is not one of 0..{}", CLASS_NAMES.len()),
                    })
                }
            })
            .collect::<Result<Vec<u8>, _>>()?;
        Ok(Self {
            height: h,
            width: w,
            rgb: rgb.into_raw(),
            labels: masks.labels().to_vec(),
            types,
        })
    }

    /// Columns `x0..x1` (all rows). Instances cut by the edges keep their ids.
    ///
    /// # Panics
    /// When `x0 > x1` or `x1 > width`.
    #[must_use]
    pub fn columns(&self, x0: usize, x1: usize) -> Self {
        assert!(
            x0 <= x1 && x1 <= self.width,
            "columns {x0}..{x1} of {}",
            self.width
        );
        let w = x1 - x0;
        let mut out = Self {
            height: self.height,
            width: w,
            rgb: Vec::with_capacity(self.height * w * 3),
            labels: Vec::with_capacity(self.height * w),
            types: Vec::with_capacity(self.height * w),
        };
        for y in 0..self.height {
            let row = y * self.width;
            out.rgb
                .extend_from_slice(&self.rgb[(row + x0) * 3..(row + x1) * 3]);
            out.labels
                .extend_from_slice(&self.labels[row + x0..row + x1]);
            out.types.extend_from_slice(&self.types[row + x0..row + x1]);
        }
        out
    }

    /// Number of distinct instance ids > 0.
    #[must_use]
    pub fn instance_count(&self) -> usize {
        let mut ids: Vec<i32> = self.labels.iter().copied().filter(|&l| l > 0).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

/// The held-out left third (columns `0..HELD_OUT_COLUMNS`) and the training right two thirds.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOutSplit {
    /// Columns `HELD_OUT_COLUMNS..width`.
    pub train: AnnotatedImage,
    /// Columns `0..HELD_OUT_COLUMNS`.
    pub held_out: AnnotatedImage,
}

impl HeldOutSplit {
    /// Splits `image` at [`HELD_OUT_COLUMNS`].
    ///
    /// # Errors
    /// [`TrainError::Data`] when the image is not wider than the held-out part.
    pub fn new(image: &AnnotatedImage) -> Result<Self, TrainError> {
        if image.width <= HELD_OUT_COLUMNS {
            return Err(TrainError::Data {
                path: "hgsc_nest.jpg".into(),
                detail: format!(
                    "image is {} px wide; the split needs more than {HELD_OUT_COLUMNS}",
                    image.width
                ),
            });
        }
        Ok(Self {
            train: image.columns(HELD_OUT_COLUMNS, image.width),
            held_out: image.columns(0, HELD_OUT_COLUMNS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_split() {
        let (h, w) = (2, 600);
        let img = AnnotatedImage {
            height: h,
            width: w,
            rgb: (0..h * w * 3).map(|i| (i % 251) as u8).collect(),
            labels: (0..h * w)
                .map(|i| i32::try_from(i % w / 100).unwrap())
                .collect(),
            types: vec![1; h * w],
        };
        let s = HeldOutSplit::new(&img).unwrap();
        assert_eq!((s.held_out.width, s.train.width), (500, 100));
        assert_eq!(s.train.labels[0], 5);
        assert_eq!(s.train.rgb[..3], img.rgb[1500..1503]);
        assert_eq!(s.held_out.instance_count(), 4);
        assert_eq!(s.train.rgb.len(), 2 * 100 * 3);
    }
}

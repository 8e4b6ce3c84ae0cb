//! [`RasterLabels`]: an in-memory instance raster plus class raster, e.g. the histolytics
//! `hgsc_nest` masks.

use std::collections::HashSet;
use std::path::Path;

use crate::label_source::count_distinct;
use crate::npz_reader::read_npz_array;
use crate::{LabelError, LabelSource};

/// An in-memory label raster: instance ids (`i32`, `> 0`) and class ids (`u8`) per pixel.
///
/// Without a class raster every instance pixel has class 1 and [`LabelSource::num_types`] is 2
/// (background + one class). With one, `num_types` is the largest class id + 1 unless set with
/// [`RasterLabels::with_num_types`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RasterLabels {
    width: usize,
    height: usize,
    labels: Vec<i32>,
    types: Vec<u8>,
    num_types: u32,
    instance_count: u64,
    max_label: i32,
}

/// The array name histolytics uses in its mask files.
pub const HISTOLYTICS_KEY: &str = "nuc_raster";

impl RasterLabels {
    /// A raster of `width x height` instance ids (row-major) with optional class ids.
    ///
    /// # Errors
    /// [`LabelError::Size`] when a buffer does not hold `width * height` values.
    pub fn new(
        width: usize,
        height: usize,
        labels: Vec<i32>,
        types: Option<Vec<u8>>,
    ) -> Result<Self, LabelError> {
        let n = width.saturating_mul(height);
        let size_error = |what: &str, found| LabelError::Size {
            what: what.to_string(),
            found,
            expected: n,
            width,
            height,
        };
        if labels.len() != n {
            return Err(size_error("labels", labels.len()));
        }
        let types = match types {
            Some(t) if t.len() != n => return Err(size_error("types", t.len())),
            Some(t) => t,
            None => labels.iter().map(|&l| u8::from(l > 0)).collect(),
        };
        let mut seen = HashSet::new();
        count_distinct(&labels, &mut seen);
        let max_label = labels.iter().copied().max().unwrap_or(0).max(0);
        let num_types = u32::from(types.iter().copied().max().unwrap_or(0)) + 1;
        Ok(Self {
            width,
            height,
            labels,
            types,
            num_types: num_types.max(2),
            instance_count: seen.len() as u64,
            max_label,
        })
    }

    /// Loads a 2-D instance raster from a numpy `.npz` file (array [`HISTOLYTICS_KEY`], or the
    /// archive's only array), and optionally a class raster of the same shape from another.
    /// Integer dtypes of up to 64 bits are read when their values fit (`i32` labels, `u8` classes).
    ///
    /// # Errors
    /// [`LabelError::Io`] / [`LabelError::Format`] for unreadable files, [`LabelError::Size`] when
    /// the two rasters differ in shape.
    pub fn from_npz(labels: &Path, types: Option<&Path>) -> Result<Self, LabelError> {
        let inst = read_npz_array(labels, HISTOLYTICS_KEY)?;
        let [height, width] = match inst.shape[..] {
            [h, w] => [h, w],
            _ => {
                return Err(LabelError::Format {
                    path: labels.to_path_buf(),
                    detail: format!("expected a 2-D array, got shape {:?}", inst.shape),
                });
            }
        };
        let types = match types {
            None => None,
            Some(p) => {
                let t = read_npz_array(p, HISTOLYTICS_KEY)?;
                if t.shape != inst.shape {
                    return Err(LabelError::Size {
                        what: format!("type raster {}", p.display()),
                        found: t.values.len(),
                        expected: width * height,
                        width,
                        height,
                    });
                }
                let bytes = t
                    .values
                    .iter()
                    .map(|&v| u8::try_from(v))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| LabelError::Format {
                        path: p.to_path_buf(),
                        detail: "class ids must be in 0..=255".into(),
                    })?;
                Some(bytes)
            }
        };
        Self::new(width, height, inst.values, types)
    }

    /// The histolytics `hgsc_nest` masks (`hgsc_nest_inst_mask.npz` and `hgsc_nest_type_mask.npz`
    /// in `data_dir`, as `scripts/setup` puts them in `data/`): 1500 x 1500, 1294 nuclei, classes
    /// 0-3.
    ///
    /// # Errors
    /// As [`RasterLabels::from_npz`]; the message names the missing file when `scripts/setup` has
    /// not been run.
    pub fn hgsc_nest(data_dir: &Path) -> Result<Self, LabelError> {
        Self::from_npz(
            &data_dir.join("hgsc_nest_inst_mask.npz"),
            Some(&data_dir.join("hgsc_nest_type_mask.npz")),
        )
    }

    /// Sets the number of classes (background included), e.g. 6 to pose as a PanNuke model. Values
    /// below the largest class id + 1 are raised to it.
    #[must_use]
    pub fn with_num_types(mut self, num_types: u32) -> Self {
        let needed = u32::from(self.types.iter().copied().max().unwrap_or(0)) + 1;
        self.num_types = num_types.max(needed);
        self
    }

    /// Width in pixels.
    #[must_use]
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    #[must_use]
    pub fn height(&self) -> usize {
        self.height
    }

    /// The instance ids, row-major.
    #[must_use]
    pub fn labels(&self) -> &[i32] {
        &self.labels
    }

    /// The class ids, row-major.
    #[must_use]
    pub fn types(&self) -> &[u8] {
        &self.types
    }
}

impl LabelSource for RasterLabels {
    fn size(&self) -> [u64; 2] {
        [self.width as u64, self.height as u64]
    }

    fn fill(&self, x0: i64, y0: i64, w: usize, h: usize, labels: &mut [i32], types: &mut [u8]) {
        copy_region(
            [self.width, self.height],
            &self.labels,
            &self.types,
            [x0, y0],
            [w, h],
            labels,
            types,
        );
    }

    fn num_types(&self) -> u32 {
        self.num_types
    }

    fn instance_count(&self) -> u64 {
        self.instance_count
    }

    fn max_label(&self) -> i32 {
        self.max_label
    }
}

/// Copies the region at `origin` of `size` from a `raster`-sized pair of buffers, 0 outside.
pub(crate) fn copy_region(
    raster: [usize; 2],
    src_labels: &[i32],
    src_types: &[u8],
    origin: [i64; 2],
    size: [usize; 2],
    labels: &mut [i32],
    types: &mut [u8],
) {
    let [w, h] = size;
    let n = w * h;
    assert!(
        labels.len() >= n && types.len() >= n,
        "fill of {w}x{h} needs {n} values, got {} labels and {} types",
        labels.len(),
        types.len()
    );
    let (labels, types) = (&mut labels[..n], &mut types[..n]);
    let [rw, rh] = [raster[0] as i64, raster[1] as i64];
    let [x0, y0] = origin;
    let (xa, xb) = (x0.max(0), (x0 + w as i64).min(rw));
    let (ya, yb) = (y0.max(0), (y0 + h as i64).min(rh));
    if xa >= xb || ya >= yb {
        labels.fill(0);
        types.fill(0);
        return;
    }
    let (dx, len) = ((xa - x0) as usize, (xb - xa) as usize);
    for row in 0..h {
        let y = y0 + row as i64;
        let dst = row * w..(row + 1) * w;
        let (dl, dt) = (&mut labels[dst.clone()], &mut types[dst]);
        if y < ya || y >= yb {
            dl.fill(0);
            dt.fill(0);
            continue;
        }
        let s = y as usize * raster[0] + xa as usize;
        dl[..dx].fill(0);
        dt[..dx].fill(0);
        dl[dx..dx + len].copy_from_slice(&src_labels[s..s + len]);
        dt[dx..dx + len].copy_from_slice(&src_types[s..s + len]);
        dl[dx + len..].fill(0);
        dt[dx + len..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> RasterLabels {
        // 4 x 3:  1 1 0 2 / 1 0 0 2 / 0 0 5 5
        let labels = vec![1, 1, 0, 2, 1, 0, 0, 2, 0, 0, 5, 5];
        let types = vec![3, 3, 0, 1, 3, 0, 0, 1, 0, 0, 2, 2];
        RasterLabels::new(4, 3, labels, Some(types)).unwrap()
    }

    #[test]
    fn counts_and_classes() {
        let r = small();
        assert_eq!(r.size(), [4, 3]);
        assert_eq!(r.instance_count(), 3);
        assert_eq!(r.max_label(), 5);
        assert_eq!(r.num_types(), 4);
        assert_eq!(r.clone().with_num_types(6).num_types(), 6);
        assert_eq!(r.clone().with_num_types(2).num_types(), 4);
        let no_types = RasterLabels::new(2, 1, vec![0, 7], None).unwrap();
        assert_eq!((no_types.types(), no_types.num_types()), (&[0u8, 1][..], 2));
        let e = RasterLabels::new(2, 2, vec![0; 3], None).unwrap_err();
        assert_eq!(e.to_string(), "labels has 3 values, expected 4 (2 x 2)");
    }

    #[test]
    fn fill_pads_with_zero_outside() {
        let r = small();
        let (mut l, mut t) = (vec![-1; 9], vec![9; 9]);
        r.fill(2, 1, 3, 3, &mut l, &mut t);
        assert_eq!(l, [0, 2, 0, 5, 5, 0, 0, 0, 0]);
        assert_eq!(t, [0, 1, 0, 2, 2, 0, 0, 0, 0]);
        r.fill(-1, -1, 3, 2, &mut l, &mut t);
        assert_eq!(&l[..6], [0, 0, 0, 0, 1, 1]);
        r.fill(10, 0, 3, 2, &mut l, &mut t);
        assert!(l[..6].iter().all(|&v| v == 0));
        // the provided band-wise max_label agrees with the stored one
        struct Plain(RasterLabels);
        impl LabelSource for Plain {
            fn size(&self) -> [u64; 2] {
                self.0.size()
            }
            fn fill(&self, x: i64, y: i64, w: usize, h: usize, l: &mut [i32], t: &mut [u8]) {
                self.0.fill(x, y, w, h, l, t);
            }
            fn num_types(&self) -> u32 {
                self.0.num_types()
            }
            fn instance_count(&self) -> u64 {
                self.0.instance_count()
            }
        }
        assert_eq!(Plain(r).max_label(), 5);
    }
}

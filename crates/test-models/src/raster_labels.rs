//! [`RasterLabels`]: an in-memory instance raster plus class raster (and optionally a tissue-layer
//! raster), e.g. the histolytics `hgsc_nest` masks.

use std::collections::HashSet;
use std::path::Path;

use crate::label_source::count_distinct;
use crate::npy::{self, NpyError};
use crate::{LabelError, LabelSource};

/// An in-memory label raster: instance ids (`i32`, `> 0`) and class ids (`u8`) per pixel.
///
/// Without a class raster every instance pixel has class 1 and [`LabelSource::num_types`] is 2
/// (background + one class). With one, `num_types` is the largest class id + 1 unless set with
/// [`RasterLabels::with_num_types`].
///
/// A tissue-layer raster of the same size can be added with [`RasterLabels::with_layers`] (e.g.
/// [`crate::synthetic_layer_raster`]); it is what [`LabelSource::fill_layers`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RasterLabels {
    width: usize,
    height: usize,
    labels: Vec<i32>,
    types: Vec<u8>,
    num_types: u32,
    instance_count: u64,
    max_label: i32,
    layers: Option<Vec<u8>>,
    num_layers: u32,
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
            layers: None,
            num_layers: 0,
        })
    }

    /// Adds a tissue-layer class raster (`width * height` values, row-major, 0 = background).
    /// [`LabelSource::num_layers`] becomes its largest class id + 1 (at least 2) unless set with
    /// [`RasterLabels::with_num_layers`].
    ///
    /// # Errors
    /// [`LabelError::Size`] when `layers` does not hold `width * height` values.
    pub fn with_layers(mut self, layers: Vec<u8>) -> Result<Self, LabelError> {
        let n = self.width.saturating_mul(self.height);
        if layers.len() != n {
            return Err(LabelError::Size {
                what: "layers".to_string(),
                found: layers.len(),
                expected: n,
                width: self.width,
                height: self.height,
            });
        }
        let needed = u32::from(layers.iter().copied().max().unwrap_or(0)) + 1;
        self.num_layers = needed.max(2);
        self.layers = Some(layers);
        Ok(self)
    }

    /// Sets the number of layer classes (background included), e.g. 5 to pose as
    /// `hovernetplus-oed`. Values below the largest layer id + 1 are raised to it; without a
    /// layer raster it does nothing.
    #[must_use]
    pub fn with_num_layers(mut self, num_layers: u32) -> Self {
        if let Some(l) = &self.layers {
            let needed = u32::from(l.iter().copied().max().unwrap_or(0)) + 1;
            self.num_layers = num_layers.max(needed).max(2);
        }
        self
    }

    /// Loads a 2-D instance raster from a numpy `.npz` file (array [`HISTOLYTICS_KEY`], or the
    /// archive's only array), and optionally a class raster of the same shape from another.
    /// Integer dtypes of up to 64 bits are read when their values fit (`i32` labels, `u8` classes).
    ///
    /// # Errors
    /// [`LabelError::Io`] / [`LabelError::Format`] for unreadable files, [`LabelError::Size`] when
    /// the two rasters differ in shape.
    pub fn from_npz(labels: &Path, types: Option<&Path>) -> Result<Self, LabelError> {
        let inst = read_label_array(labels)?;
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
                let t = read_label_array(p)?;
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

    /// The tissue-layer class ids, row-major, if a layer raster was added.
    #[must_use]
    pub fn layers(&self) -> Option<&[u8]> {
        self.layers.as_deref()
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

    fn num_layers(&self) -> u32 {
        self.num_layers
    }

    fn fill_layers(&self, x0: i64, y0: i64, w: usize, h: usize, layers: &mut [u8]) {
        let n = w * h;
        assert!(
            layers.len() >= n,
            "fill_layers of {w}x{h} needs {n} values, got {}",
            layers.len()
        );
        match &self.layers {
            Some(src) => copy_plane(
                [self.width, self.height],
                src,
                [x0, y0],
                [w, h],
                &mut layers[..n],
            ),
            None => layers[..n].fill(0),
        }
    }
}

/// Copies the region at `origin` of `size` (`[w, h]`) of one `raster`-sized plane into `dst`
/// (exactly `w * h` values), default (0) outside.
pub(crate) fn copy_plane<T: Copy + Default>(
    raster: [usize; 2],
    src: &[T],
    origin: [i64; 2],
    size: [usize; 2],
    dst: &mut [T],
) {
    let [w, h] = size;
    if w == 0 || h == 0 {
        return;
    }
    let [rw, rh] = [raster[0] as i64, raster[1] as i64];
    let [x0, y0] = origin;
    let (xa, xb) = (x0.max(0), (x0 + w as i64).min(rw));
    let (ya, yb) = (y0.max(0), (y0 + h as i64).min(rh));
    if xa >= xb || ya >= yb {
        dst.fill(T::default());
        return;
    }
    let (dx, len) = ((xa - x0) as usize, (xb - xa) as usize);
    for (row, d) in dst.chunks_exact_mut(w).take(h).enumerate() {
        let y = y0 + row as i64;
        if y < ya || y >= yb {
            d.fill(T::default());
            continue;
        }
        let s = y as usize * raster[0] + xa as usize;
        d[..dx].fill(T::default());
        d[dx..dx + len].copy_from_slice(&src[s..s + len]);
        d[dx + len..].fill(T::default());
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
    copy_plane(raster, src_labels, origin, size, &mut labels[..n]);
    copy_plane(raster, src_types, origin, size, &mut types[..n]);
}

/// An integer array read from an `.npz` file, widened to `i32`.
struct IntArray {
    /// Shape, C order.
    shape: Vec<usize>,
    /// Values, row-major.
    values: Vec<i32>,
}

/// Array [`HISTOLYTICS_KEY`] (or the only array) of the `.npz` file `path`, as `i32` labels.
fn read_label_array(path: &Path) -> Result<IntArray, LabelError> {
    let array = npy::read_npz(path, HISTOLYTICS_KEY).map_err(|e| match e {
        NpyError::Io { path, source } => LabelError::Io { path, source },
        NpyError::Format { path, detail } => LabelError::Format { path, detail },
    })?;
    let values = array.to_i32_labels().map_err(|detail| LabelError::Format {
        path: path.to_path_buf(),
        detail,
    })?;
    Ok(IntArray {
        shape: array.shape,
        values,
    })
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

    #[test]
    fn layers_are_read_by_region() {
        let r = small();
        assert_eq!((r.num_layers(), r.layers()), (0, None));
        let mut out = vec![9u8; 4];
        r.fill_layers(0, 0, 2, 2, &mut out);
        assert_eq!(out, [0; 4]);
        let e = r.clone().with_layers(vec![1; 5]).unwrap_err();
        assert_eq!(e.to_string(), "layers has 5 values, expected 12 (4 x 3)");
        // 4 x 3:  1 1 2 2 / 1 3 3 2 / 0 0 3 0
        let layers = vec![1, 1, 2, 2, 1, 3, 3, 2, 0, 0, 3, 0];
        let l = r.with_layers(layers.clone()).unwrap();
        assert_eq!((l.num_layers(), l.layers()), (4, Some(&layers[..])));
        assert_eq!(l.clone().with_num_layers(5).num_layers(), 5);
        assert_eq!(l.clone().with_num_layers(2).num_layers(), 4);
        let mut out = vec![9u8; 9];
        l.fill_layers(2, 1, 3, 3, &mut out);
        assert_eq!(out, [3, 2, 0, 3, 0, 0, 0, 0, 0]);
        l.fill_layers(-1, -1, 2, 2, &mut out);
        assert_eq!(out[..4], [0, 0, 0, 1]);
        l.fill_layers(0, 0, 0, 3, &mut out);
        assert_eq!(out[0], 0, "an empty region writes nothing");
    }
}

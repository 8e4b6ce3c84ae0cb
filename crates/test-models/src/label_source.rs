//! The [`LabelSource`] trait: a known nucleus instance raster (with class ids), and optionally a
//! tissue-layer class raster aligned with it, that can be read by region.

/// A nucleus label raster that can be read by region: the "truth" an oracle model renders and a
/// pipeline's output is compared with.
///
/// Coordinates are pixels at the processing resolution, `x` to the right, `y` down, origin at the
/// raster's top-left. Instance ids are `> 0` (`<= 0` is background) and unique within the source.
/// Class ids are `0..num_types()`, 0 being background.
///
/// A source may also know the tissue layers (HoVer-Net+'s `layer_segmentation`): one layer class
/// per pixel, `0..num_layers()`, 0 being background, aligned with the nuclei. Sources without one
/// keep the provided [`num_layers`](Self::num_layers) (0) and
/// [`fill_layers`](Self::fill_layers) (all background).
pub trait LabelSource: Send + Sync {
    /// `[width, height]` of the raster.
    fn size(&self) -> [u64; 2];

    /// Writes the region `[x0, x0 + w) x [y0, y0 + h)` row-major into `labels` (instance ids) and
    /// `types` (class ids). The region may extend past the raster on any side: pixels outside it
    /// get 0 in both.
    ///
    /// # Panics
    /// When `labels` or `types` holds fewer than `w * h` values (a caller bug).
    fn fill(&self, x0: i64, y0: i64, w: usize, h: usize, labels: &mut [i32], types: &mut [u8]);

    /// Number of classes, background included (the raw channels of a `tp` head): class ids are
    /// `0..num_types()`.
    fn num_types(&self) -> u32;

    /// Number of distinct instances with at least one pixel in the raster.
    fn instance_count(&self) -> u64;

    /// The largest instance id in the raster (0 when there is none).
    ///
    /// The provided implementation reads the raster in bands of rows; sources that know the
    /// value override it.
    fn max_label(&self) -> i32 {
        scan_max_label(self)
    }

    /// Number of tissue-layer classes, background included (the raw channels of an `ls` head);
    /// 0 when the source has no layer raster (the provided implementation).
    fn num_layers(&self) -> u32 {
        0
    }

    /// Writes the layer classes of the region `[x0, x0 + w) x [y0, y0 + h)` row-major into
    /// `layers`, 0 outside the raster. The provided implementation (no layer raster) writes 0
    /// everywhere.
    ///
    /// # Panics
    /// When `layers` holds fewer than `w * h` values (a caller bug).
    fn fill_layers(&self, x0: i64, y0: i64, w: usize, h: usize, layers: &mut [u8]) {
        let _ = (x0, y0);
        let n = w * h;
        assert!(
            layers.len() >= n,
            "fill_layers of {w}x{h} needs {n} values, got {}",
            layers.len()
        );
        layers[..n].fill(0);
    }
}

/// The largest instance id of `source`, read in bands of rows of about 1 Mi pixels.
pub(crate) fn scan_max_label<S: LabelSource + ?Sized>(source: &S) -> i32 {
    let [w, h] = source.size();
    let w = w as usize;
    if w == 0 || h == 0 {
        return 0;
    }
    let band = (1usize << 20).div_ceil(w).max(1);
    let mut labels = vec![0i32; w * band];
    let mut types = vec![0u8; w * band];
    let mut max = 0;
    let mut y = 0u64;
    while y < h {
        let rows = band.min((h - y) as usize);
        source.fill(0, y as i64, w, rows, &mut labels, &mut types);
        max = labels[..w * rows].iter().copied().fold(max, i32::max);
        y += rows as u64;
    }
    max
}

/// Adds the distinct positive ids of `labels` to `seen`.
pub(crate) fn count_distinct(labels: &[i32], seen: &mut std::collections::HashSet<i32>) {
    let mut last = 0;
    for &l in labels {
        if l > 0 && l != last {
            seen.insert(l);
            last = l;
        }
    }
}

/// Distinct positive ids of the region `[0, w) x [0, h)` of `source`, read in bands of rows.
pub(crate) fn distinct_in_region(
    source: &dyn LabelSource,
    w: usize,
    h: usize,
) -> std::collections::HashSet<i32> {
    let mut seen = std::collections::HashSet::new();
    if w == 0 || h == 0 {
        return seen;
    }
    let band = (1usize << 20).div_ceil(w).max(1);
    let mut labels = vec![0i32; w * band];
    let mut types = vec![0u8; w * band];
    let mut y = 0usize;
    while y < h {
        let rows = band.min(h - y);
        source.fill(0, y as i64, w, rows, &mut labels, &mut types);
        count_distinct(&labels[..w * rows], &mut seen);
        y += rows;
    }
    seen
}

//! [`MosaicLabels`]: a label source tiled `nx x ny` times, like `vips arrayjoin` of its image.

use std::sync::Arc;

use crate::label_source::{distinct_in_region, scan_max_label};
use crate::{LabelError, LabelSource};

/// A base [`LabelSource`] repeated `nx` times across and `ny` times down, optionally cropped, with
/// instance ids offset per copy so that every nucleus of the mosaic has its own id.
///
/// Copy `(i, j)` (column `i`, row `j`) is the base placed at `(i * base_width, j * base_height)`,
/// exactly where `vips arrayjoin` puts copy `(i, j)` of the base image, so the mosaic's labels
/// line up with a mosaic of the image. Its ids are `base_id + k * base.max_label()` with
/// `k = j * nx + i`: a base with ids `1..=N` gives ids `1..=N * nx * ny`, contiguous.
///
/// A base layer raster ([`LabelSource::fill_layers`]) is tiled the same way (layer classes are
/// not offset).
///
/// Nothing is allocated per mosaic pixel: [`LabelSource::fill`] reads the base region by region,
/// so a 15k x 15k mosaic of a 1500 x 1500 raster holds only the base.
#[derive(Clone)]
pub struct MosaicLabels {
    base: Arc<dyn LabelSource>,
    base_size: [u64; 2],
    copies: [u64; 2],
    size: [u64; 2],
    id_stride: i32,
    instance_count: u64,
    max_label: i32,
}

impl std::fmt::Debug for MosaicLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MosaicLabels")
            .field("base_size", &self.base_size)
            .field("copies", &self.copies)
            .field("size", &self.size)
            .field("id_stride", &self.id_stride)
            .field("instance_count", &self.instance_count)
            .finish_non_exhaustive()
    }
}

impl MosaicLabels {
    /// `nx x ny` copies of `base`.
    ///
    /// # Errors
    /// [`LabelError::Mosaic`] when a count or the base is empty, or the ids would pass `i32::MAX`.
    pub fn new(base: Arc<dyn LabelSource>, nx: u32, ny: u32) -> Result<Self, LabelError> {
        let base_size = base.size();
        if nx == 0 || ny == 0 || base_size[0] == 0 || base_size[1] == 0 {
            return Err(LabelError::Mosaic {
                detail: format!("{nx} x {ny} copies of a {base_size:?} base is empty"),
            });
        }
        let id_stride = base.max_label().max(0);
        let copies = u64::from(nx) * u64::from(ny);
        let top = u64::try_from(id_stride).unwrap_or(0) * copies;
        if top > i32::MAX as u64 {
            return Err(LabelError::Mosaic {
                detail: format!(
                    "{nx} x {ny} copies of a base with ids up to {id_stride} need ids up to {top}, past i32::MAX"
                ),
            });
        }
        let copies_xy = [u64::from(nx), u64::from(ny)];
        Ok(Self {
            size: [base_size[0] * copies_xy[0], base_size[1] * copies_xy[1]],
            instance_count: base.instance_count() * copies,
            max_label: top as i32,
            base,
            base_size,
            copies: copies_xy,
            id_stride,
        })
    }

    /// Enough copies of `base` to cover `[width, height]`, cropped to it.
    ///
    /// # Errors
    /// As [`MosaicLabels::new`], and for an empty size.
    pub fn covering(base: Arc<dyn LabelSource>, size: [u64; 2]) -> Result<Self, LabelError> {
        let [bw, bh] = base.size();
        if bw == 0 || bh == 0 || size[0] == 0 || size[1] == 0 {
            return Err(LabelError::Mosaic {
                detail: format!("cannot cover {size:?} with a {:?} base", [bw, bh]),
            });
        }
        let count = |s: u64, b: u64| {
            u32::try_from(s.div_ceil(b)).map_err(|_| LabelError::Mosaic {
                detail: format!("{size:?} needs too many copies of a {:?} base", [bw, bh]),
            })
        };
        Self::new(base.clone(), count(size[0], bw)?, count(size[1], bh)?)?.cropped(size)
    }

    /// The top-left `[width, height]` of the mosaic. Instances cut by the crop keep their id;
    /// those wholly outside are gone, so ids are no longer contiguous.
    ///
    /// # Errors
    /// [`LabelError::Mosaic`] when the crop is empty or larger than the mosaic.
    pub fn cropped(mut self, size: [u64; 2]) -> Result<Self, LabelError> {
        let full = [
            self.base_size[0] * self.copies[0],
            self.base_size[1] * self.copies[1],
        ];
        if size[0] == 0 || size[1] == 0 || size[0] > full[0] || size[1] > full[1] {
            return Err(LabelError::Mosaic {
                detail: format!("crop {size:?} must be non-empty and within the mosaic {full:?}"),
            });
        }
        self.size = size;
        // instances: whole copies, plus the distinct ids of the base parts shown at the edges
        let [bw, bh] = self.base_size;
        let (full_x, rest_x) = (size[0] / bw, size[0] % bw);
        let (full_y, rest_y) = (size[1] / bh, size[1] % bh);
        let part = |w: u64, h: u64| distinct_in_region(&*self.base, w as usize, h as usize);
        let mut count = full_x * full_y * self.base.instance_count();
        if rest_x > 0 {
            count += full_y * part(rest_x, bh).len() as u64;
        }
        if rest_y > 0 {
            count += full_x * part(bw, rest_y).len() as u64;
        }
        if rest_x > 0 && rest_y > 0 {
            count += part(rest_x, rest_y).len() as u64;
        }
        self.instance_count = count;
        // the largest id is in the last copy shown, unless its visible part holds no nucleus
        let last_x = (size[0] - 1) / bw;
        let last_y = (size[1] - 1) / bh;
        let shown = part(size[0] - last_x * bw, size[1] - last_y * bh);
        self.max_label = match shown.iter().max() {
            Some(&m) => (last_y * self.copies[0] + last_x) as i32 * self.id_stride + m,
            None => scan_max_label(&self),
        };
        Ok(self)
    }

    /// `[nx, ny]`: copies across and down (before any crop).
    #[must_use]
    pub fn copies(&self) -> [u64; 2] {
        self.copies
    }

    /// The offset added to the base ids per copy (the base's largest id).
    #[must_use]
    pub fn id_stride(&self) -> i32 {
        self.id_stride
    }
}

/// The part of one base copy that a region read touches (see `MosaicLabels::for_each_copy`).
struct CopyPiece {
    /// Copy index `j * nx + i` (its id offset is `copy_index * id_stride`).
    copy_index: i64,
    /// Top-left of the piece in the base's coordinates.
    base_origin: [i64; 2],
    /// `[w, h]` of the piece.
    size: [usize; 2],
    /// Index of the piece's top-left pixel in the region buffer (row-major, region width).
    dst_start: usize,
}

impl MosaicLabels {
    /// Calls `f` once per base copy that the visible part of the region at `origin` of `size`
    /// touches (top to bottom, left to right).
    fn for_each_copy(&self, origin: [i64; 2], size: [usize; 2], mut f: impl FnMut(CopyPiece)) {
        let ([x0, y0], [w, h]) = (origin, size);
        let [sw, sh] = [self.size[0] as i64, self.size[1] as i64];
        let (xa, xb) = (x0.max(0), (x0 + w as i64).min(sw));
        let (ya, yb) = (y0.max(0), (y0 + h as i64).min(sh));
        if xa >= xb || ya >= yb {
            return;
        }
        let [bw, bh] = [self.base_size[0] as i64, self.base_size[1] as i64];
        let mut cy = ya.div_euclid(bh);
        while cy * bh < yb {
            let (ry0, ry1) = ((cy * bh).max(ya), ((cy + 1) * bh).min(yb));
            let mut cx = xa.div_euclid(bw);
            while cx * bw < xb {
                let (rx0, rx1) = ((cx * bw).max(xa), ((cx + 1) * bw).min(xb));
                f(CopyPiece {
                    copy_index: cy * self.copies[0] as i64 + cx,
                    base_origin: [rx0 - cx * bw, ry0 - cy * bh],
                    size: [(rx1 - rx0) as usize, (ry1 - ry0) as usize],
                    dst_start: (ry0 - y0) as usize * w + (rx0 - x0) as usize,
                });
                cx += 1;
            }
            cy += 1;
        }
    }
}

impl LabelSource for MosaicLabels {
    fn size(&self) -> [u64; 2] {
        self.size
    }

    fn fill(&self, x0: i64, y0: i64, w: usize, h: usize, labels: &mut [i32], types: &mut [u8]) {
        let n = w * h;
        assert!(
            labels.len() >= n && types.len() >= n,
            "fill of {w}x{h} needs {n} values, got {} labels and {} types",
            labels.len(),
            types.len()
        );
        let (labels, types) = (&mut labels[..n], &mut types[..n]);
        labels.fill(0);
        types.fill(0);
        let mut tmp_l = Vec::new();
        let mut tmp_t = Vec::new();
        self.for_each_copy([x0, y0], [w, h], |piece| {
            let (rw, rh) = (piece.size[0], piece.size[1]);
            tmp_l.resize(rw * rh, 0);
            tmp_t.resize(rw * rh, 0);
            self.base.fill(
                piece.base_origin[0],
                piece.base_origin[1],
                rw,
                rh,
                &mut tmp_l,
                &mut tmp_t,
            );
            let offset = piece.copy_index as i32 * self.id_stride;
            for r in 0..rh {
                let d = piece.dst_start + r * w;
                let src = r * rw..(r + 1) * rw;
                for (dst, &l) in labels[d..d + rw].iter_mut().zip(&tmp_l[src.clone()]) {
                    *dst = if l > 0 { l + offset } else { 0 };
                }
                types[d..d + rw].copy_from_slice(&tmp_t[src]);
            }
        });
    }

    fn fill_layers(&self, x0: i64, y0: i64, w: usize, h: usize, layers: &mut [u8]) {
        let n = w * h;
        assert!(
            layers.len() >= n,
            "fill_layers of {w}x{h} needs {n} values, got {}",
            layers.len()
        );
        let layers = &mut layers[..n];
        layers.fill(0);
        let mut tmp = Vec::new();
        self.for_each_copy([x0, y0], [w, h], |piece| {
            let (rw, rh) = (piece.size[0], piece.size[1]);
            tmp.resize(rw * rh, 0);
            self.base
                .fill_layers(piece.base_origin[0], piece.base_origin[1], rw, rh, &mut tmp);
            for r in 0..rh {
                let d = piece.dst_start + r * w;
                layers[d..d + rw].copy_from_slice(&tmp[r * rw..(r + 1) * rw]);
            }
        });
    }

    fn num_layers(&self) -> u32 {
        self.base.num_layers()
    }

    fn num_types(&self) -> u32 {
        self.base.num_types()
    }

    fn instance_count(&self) -> u64 {
        self.instance_count
    }

    fn max_label(&self) -> i32 {
        self.max_label
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RasterLabels;
    use std::collections::{HashMap, HashSet};

    /// 5 x 3 with ids 1..=3; id 3 touches the right and bottom borders.
    fn base() -> Arc<dyn LabelSource> {
        #[rustfmt::skip]
        let labels = vec![
            1, 1, 0, 2, 0,
            1, 0, 0, 2, 3,
            0, 0, 0, 3, 3,
        ];
        let types = labels.iter().map(|&l| l as u8).collect();
        Arc::new(RasterLabels::new(5, 3, labels, Some(types)).unwrap())
    }

    fn read_all(s: &dyn LabelSource) -> (Vec<i32>, Vec<u8>) {
        let [w, h] = s.size();
        let n = (w * h) as usize;
        let (mut l, mut t) = (vec![0; n], vec![0; n]);
        s.fill(0, 0, w as usize, h as usize, &mut l, &mut t);
        (l, t)
    }

    #[test]
    fn copies_have_unique_contiguous_ids_and_wrap() {
        let m = MosaicLabels::new(base(), 3, 2).unwrap();
        assert_eq!(m.size(), [15, 6]);
        assert_eq!(m.instance_count(), 18);
        assert_eq!(m.max_label(), 18);
        let (l, t) = read_all(&m);
        let ids: HashSet<i32> = l.iter().copied().filter(|&v| v > 0).collect();
        assert_eq!(ids, (1..=18).collect());
        // every pixel is the base pixel at (x mod 5, y mod 3), id offset by its copy
        let (bl, bt) = read_all(&*base());
        for y in 0..6 {
            for x in 0..15 {
                let b = bl[(y % 3) * 5 + x % 5];
                let k = (y / 3 * 3 + x / 5) as i32;
                let want = if b > 0 { b + 3 * k } else { 0 };
                assert_eq!(l[y * 15 + x], want, "({x}, {y})");
                assert_eq!(t[y * 15 + x], bt[(y % 3) * 5 + x % 5]);
            }
        }
        // each id is one copy's instance: same area as in the base
        let mut area: HashMap<i32, usize> = HashMap::new();
        l.iter()
            .filter(|&&v| v > 0)
            .for_each(|&v| *area.entry(v).or_default() += 1);
        for (id, a) in area {
            let b = (id - 1) % 3 + 1;
            assert_eq!(a, bl.iter().filter(|&&v| v == b).count(), "id {id}");
        }
    }

    #[test]
    fn any_region_matches_the_whole_read() {
        let m = MosaicLabels::new(base(), 3, 2).unwrap();
        let (all, all_t) = read_all(&m);
        for (x0, y0, w, h) in [(-2, -1, 7, 4), (4, 2, 8, 3), (13, 5, 6, 6), (20, 0, 3, 3)] {
            let (mut l, mut t) = (vec![7; w * h], vec![7; w * h]);
            m.fill(x0, y0, w, h, &mut l, &mut t);
            for r in 0..h {
                for c in 0..w {
                    let (x, y) = (x0 + c as i64, y0 + r as i64);
                    let inside = (0..15).contains(&x) && (0..6).contains(&y);
                    let i = (y * 15 + x) as usize;
                    let (wl, wt) = if inside { (all[i], all_t[i]) } else { (0, 0) };
                    assert_eq!((l[r * w + c], t[r * w + c]), (wl, wt), "({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn crop_keeps_ids_and_counts_visible_instances() {
        let full = MosaicLabels::new(base(), 3, 2).unwrap();
        let c = full.clone().cropped([12, 4]).unwrap();
        assert_eq!(c.size(), [12, 4]);
        let (l, _) = read_all(&c);
        let (fl, _) = read_all(&full);
        for y in 0..4 {
            assert_eq!(l[y * 12..(y + 1) * 12], fl[y * 15..y * 15 + 12]);
        }
        let ids: HashSet<i32> = l.iter().copied().filter(|&v| v > 0).collect();
        assert_eq!(c.instance_count(), ids.len() as u64);
        assert_eq!(c.max_label(), *ids.iter().max().unwrap());
        // crop beyond the mosaic is refused; covering crops to the asked size
        assert!(full.clone().cropped([16, 6]).is_err());
        let cov = MosaicLabels::covering(base(), [11, 7]).unwrap();
        assert_eq!((cov.size(), cov.copies()), ([11, 7], [3, 3]));
        let (l, _) = read_all(&cov);
        let ids: HashSet<i32> = l.iter().copied().filter(|&v| v > 0).collect();
        assert_eq!(cov.instance_count(), ids.len() as u64);
    }

    #[test]
    fn nested_mosaics_and_limits() {
        let inner: Arc<dyn LabelSource> = Arc::new(MosaicLabels::new(base(), 2, 1).unwrap());
        let outer = MosaicLabels::new(inner, 2, 2).unwrap();
        assert_eq!(outer.size(), [20, 6]);
        let (l, _) = read_all(&outer);
        let ids: HashSet<i32> = l.iter().copied().filter(|&v| v > 0).collect();
        assert_eq!(ids, (1..=24).collect());
        assert_eq!(outer.instance_count(), 24);
        let e = MosaicLabels::new(base(), 50_000, 50_000).unwrap_err();
        assert!(e.to_string().contains("past i32::MAX"), "{e}");
        assert!(MosaicLabels::new(base(), 0, 1).is_err());
    }

    #[test]
    fn big_mosaic_is_cheap() {
        // 15k x 15k from a 1500 x 1500 base: only the base is held
        let raster = RasterLabels::new(1500, 1500, vec![1; 1500 * 1500], None).unwrap();
        let m = MosaicLabels::covering(Arc::new(raster), [15_000, 15_000]).unwrap();
        assert_eq!(m.instance_count(), 100);
        let (mut l, mut t) = (vec![0; 256 * 256], vec![0; 256 * 256]);
        m.fill(14_900, 14_900, 256, 256, &mut l, &mut t);
        assert_eq!(l[0], 100);
        assert_eq!(l[255], 0);
    }

    #[test]
    fn layers_tile_like_the_labels() {
        let plain = MosaicLabels::new(base(), 2, 2).unwrap();
        assert_eq!(plain.num_layers(), 0);
        // the base's layer class is its column index
        let layered = RasterLabels::new(5, 3, read_all(&*base()).0, None)
            .unwrap()
            .with_layers((0..15).map(|i| (i % 5) as u8).collect())
            .unwrap();
        let m = MosaicLabels::covering(Arc::new(layered), [12, 5]).unwrap();
        assert_eq!(m.num_layers(), 5);
        let (x0, y0, w, h) = (-2i64, 1i64, 16usize, 6usize);
        let mut l = vec![9u8; w * h];
        m.fill_layers(x0, y0, w, h, &mut l);
        for r in 0..h {
            for c in 0..w {
                let (x, y) = (x0 + c as i64, y0 + r as i64);
                let inside = (0..12).contains(&x) && (0..5).contains(&y);
                let want = if inside { (x % 5) as u8 } else { 0 };
                assert_eq!(l[r * w + c], want, "({x}, {y})");
            }
        }
    }
}

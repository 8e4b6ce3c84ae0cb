//! Keeping the patches that see tissue. The engine filters on the *input* boxes (larger than the
//! output boxes); a box is kept when the part of the mask under it holds at least one tissue pixel
//! (TIAToolbox's `filter_coordinates` with `min_mask_ratio = 0`).
//!
//! Two rules map a box to mask pixels ([`MaskRule`]): TIAToolbox's (float32 scale, truncated ends),
//! which leaves out the last mask pixel a box only partly covers and so can drop a patch that does
//! overlap tissue; and ours by default, every mask pixel the box touches (floor of the start, ceil
//! of the end), which never drops such a patch.

use mtseg_slide::TissueMask;
use mtseg_types::Size2;

use crate::patch_grid::PatchGrid;
use crate::tiling_errors::GridError;
use mtseg_types::PatchBox;

/// How a box at the processing resolution is mapped onto mask pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskRule {
    /// Every mask pixel the box overlaps, even partly (default).
    #[default]
    AnyOverlap,
    /// TIAToolbox 2.1.3's float32 scaling with truncated ends (for bit-level parity runs).
    TiaToolbox,
}

/// Scales one coordinate to mask pixels exactly as TIAToolbox does: float32 coordinate times the
/// float64 scale, stored as float32, clipped to `[0, limit]`, truncated.
fn scale_coord(v: i64, scale: f64, limit: u32) -> i64 {
    let scaled = (f64::from(v as f32) * scale) as f32;
    scaled.clamp(0.0, limit as f32) as i64
}

/// The box `[x0, y0, x1, y1]` (pixels at the processing resolution of an image of `image` pixels)
/// in mask pixels, clipped to the mask.
pub fn box_in_mask(b: [i64; 4], mask: &TissueMask, image: Size2, rule: MaskRule) -> [i64; 4] {
    let sx = f64::from(mask.width()) / image.width as f64;
    let sy = f64::from(mask.height()) / image.height as f64;
    if rule == MaskRule::AnyOverlap {
        // Exact integer arithmetic: mask pixel m covers canvas [m * W / Wm, (m + 1) * W / Wm).
        let (mw, mh) = (i128::from(mask.width()), i128::from(mask.height()));
        let (w, h) = (i128::from(image.width), i128::from(image.height));
        let floor = |v: i64, m: i128, n: i128| (i128::from(v) * m).div_euclid(n).clamp(0, m) as i64;
        let ceil =
            |v: i64, m: i128, n: i128| (-(-i128::from(v) * m).div_euclid(n)).clamp(0, m) as i64;
        return [
            floor(b[0], mw, w),
            floor(b[1], mh, h),
            ceil(b[2], mw, w),
            ceil(b[3], mh, h),
        ];
    }
    [
        scale_coord(b[0], sx, mask.width()),
        scale_coord(b[1], sy, mask.height()),
        scale_coord(b[2], sx, mask.width()),
        scale_coord(b[3], sy, mask.height()),
    ]
}

/// Whether the box holds tissue: `(pos == area or pos > area * min_ratio) and pos > 0`, with
/// `pos` the tissue pixels and `area` the mask pixels under the scaled box.
pub fn box_has_tissue(
    b: [i64; 4],
    mask: &TissueMask,
    image: Size2,
    rule: MaskRule,
    min_ratio: f64,
) -> bool {
    let m = box_in_mask(b, mask, image, rule);
    let area = ((m[2] - m[0]).max(0) * (m[3] - m[1]).max(0)) as u64;
    if area == 0 {
        return false;
    }
    let pos = mask.count_in(m[0], m[1], m[2], m[3]);
    pos > 0 && (pos == area || pos as f64 > area as f64 * min_ratio)
}

/// Flags, per box, whether it holds tissue (`min_ratio = 0` as the engine uses).
pub fn filter_by_mask(
    boxes: &[[i64; 4]],
    mask: &TissueMask,
    image: Size2,
    rule: MaskRule,
) -> Vec<bool> {
    boxes
        .iter()
        .map(|&b| box_has_tissue(b, mask, image, rule, 0.0))
        .collect()
}

/// The patches of `grid` to run: all of them without a mask, else those whose input box holds
/// tissue. An error when the mask removes every patch (TIAToolbox: "No patch coordinates remain
/// after filtering.").
pub fn select_patches(
    grid: &PatchGrid,
    mask: Option<&TissueMask>,
    rule: MaskRule,
) -> Result<Vec<(u64, PatchBox)>, GridError> {
    let image = grid.image();
    let out: Vec<_> = grid
        .iter()
        .enumerate()
        .filter(|(_, p)| mask.is_none_or(|m| box_has_tissue(p.input, m, image, rule, 0.0)))
        .map(|(i, p)| (i as u64, p))
        .collect();
    if out.is_empty() {
        return Err(GridError::NoPatchLeft);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiatoolbox_filter_coordinates_example() {
        // tests/test_patch_extraction.py::test_filter_coordinates: a 9 x 6 (h x w) mask with
        // mask[0:4, 3:8] = 1 over a slide of (w, h) = (6, 9). TIAToolbox's test only checks that
        // the flags sum like [1, 1, 0, 0, 0, 0]; the flags it really computes are these.
        let mut data = vec![false; 9 * 6];
        for y in 0..4 {
            for x in 3..6 {
                data[y * 6 + x] = true;
            }
        }
        let mask = TissueMask::from_bools(6, 9, data).unwrap();
        let boxes = [
            [0, 0, 4, 4],
            [0, 4, 4, 8],
            [4, 0, 8, 4],
            [4, 4, 8, 8],
            [8, 0, 12, 4],
            [8, 4, 12, 8],
        ];
        for rule in [MaskRule::TiaToolbox, MaskRule::AnyOverlap] {
            let flags = filter_by_mask(&boxes, &mask, Size2::new(6, 9), rule);
            assert_eq!(flags, vec![true, false, true, false, false, false]);
        }
    }

    #[test]
    fn scaling_truncates_like_numpy() {
        // 139 x 185 mask over a 4431 x 5922 canvas (cmu_small_region at 0.25 mpp, 1.25x mask).
        let mask = TissueMask::from_bools(139, 185, vec![true; 139 * 185]).unwrap();
        let t = MaskRule::TiaToolbox;
        let m = box_in_mask([-46, -46, 210, 210], &mask, Size2::new(4431, 5922), t);
        assert_eq!(m, [0, 0, 6, 6]);
        let m = box_in_mask([4382, 5856, 4638, 6112], &mask, Size2::new(4431, 5922), t);
        assert_eq!(m, [137, 182, 139, 185]);
        // 210 * 139 / 4431 = 6.59: TIAToolbox stops before mask column 6, which the box covers.
        let m = box_in_mask(
            [-46, -46, 210, 210],
            &mask,
            Size2::new(4431, 5922),
            MaskRule::AnyOverlap,
        );
        assert_eq!(m, [0, 0, 7, 7]);
    }

    #[test]
    fn tiatoolbox_rule_can_drop_a_patch_touching_tissue_ours_does_not() {
        // Tissue only in mask column 6 of row 0: the box reaches 6.59 columns into the mask.
        let mut data = vec![false; 139 * 185];
        data[6] = true;
        let mask = TissueMask::from_bools(139, 185, data).unwrap();
        let b = [-46, -46, 210, 210];
        let image = Size2::new(4431, 5922);
        assert!(!box_has_tissue(b, &mask, image, MaskRule::TiaToolbox, 0.0));
        assert!(box_has_tissue(b, &mask, image, MaskRule::AnyOverlap, 0.0));
    }
}

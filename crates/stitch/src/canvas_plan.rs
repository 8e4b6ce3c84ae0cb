//! The canvas plan: which part of the slide is stitched, and in which order patches are merged.
//!
//! TIAToolbox (`get_full_output_locs_inside_mask`, `semantic_segmentor.py`) restricts the canvas
//! to the bounding box of the selected (mask-kept) output boxes **plus every grid patch that
//! touches it** (the test is inclusive: a patch whose edge lies on the bounding box counts). With
//! stride == patch output size this is the tissue bounding box plus one ring of patches. Ring
//! patches were never inferred; their pixels stay 0 with count 0. The canvas is then
//! `[min_x, min(W, max_x)) × [min_y, min(H, max_y))` over the "inside" patches, and
//! `mask_padding = (min_x, min_y, pad_right, pad_bottom)` pads it back to the slide.

use std::collections::BTreeMap;

use mtseg_types::Size2;

use crate::stitch_errors::PlanError;

/// How far the canvas sits from each slide edge, at the processing resolution (TIAToolbox's
/// `mask_padding`, in the order left, top, right, bottom). Pad the canvas with zeros by these
/// amounts to get back the slide-sized map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaskPadding {
    /// Columns left of the canvas (= the canvas origin x in slide coordinates).
    pub left: u64,
    /// Rows above the canvas (= the canvas origin y in slide coordinates).
    pub top: u64,
    /// Columns right of the canvas.
    pub right: u64,
    /// Rows below the canvas.
    pub bottom: u64,
}

/// One grid patch inside the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPatch {
    /// Index in the full grid (the `tiling` crate's output-box list).
    pub grid_index: usize,
    /// Output box `[x0, y0, x1, y1]` (exclusive max) in canvas coordinates; may run past the
    /// canvas on the right and bottom (the excess is clipped).
    pub canvas_box: [i64; 4],
    /// Whether the patch was kept by the mask (will be inferred and pushed).
    pub selected: bool,
    /// The band (index into [`CanvasPlan::bands`]) the patch belongs to.
    pub band: usize,
}

/// One row band: the inside patches that share an output-box top edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBand {
    /// Top canvas row of the band.
    pub y0: i64,
    /// One past the bottom canvas row of the band (may exceed the canvas height).
    pub y1: i64,
    /// The band's patches, as a range of [`CanvasPlan::patches`], left to right.
    pub patches: std::ops::Range<usize>,
    /// How many of them are selected.
    pub selected: usize,
}

/// Which part of the slide is stitched, and the order patches are merged in.
///
/// Built from the full grid of output boxes, the selected indices and the slide size (all at the
/// processing resolution) by [`CanvasPlan::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanvasPlan {
    slide_size: Size2,
    padding: MaskPadding,
    size: [usize; 2],
    patches: Vec<PlannedPatch>,
    bands: Vec<PlannedBand>,
    /// For each grid index: its position in the merge order of selected patches, or `u32::MAX`.
    merge_rank: Vec<u32>,
    /// For each merge rank: its position in `patches`.
    merge_order: Vec<u32>,
}

const NOT_SELECTED: u32 = u32::MAX;

impl CanvasPlan {
    /// Plan the canvas.
    ///
    /// * `output_boxes`: every grid patch's output box `[x0, y0, x1, y1]` (exclusive max),
    ///   in grid order, at the processing resolution; boxes may run past the slide.
    /// * `selected`: the grid indices the mask kept (any order; no duplicates).
    /// * `slide_size`: the slide's size at the processing resolution.
    ///
    /// # Errors
    /// [`PlanError`] for an empty selection, an index out of range or repeated, an empty slide,
    /// a box with negative origin or no area, or a grid with more than `u32::MAX - 1` patches.
    pub fn new(
        output_boxes: &[[i64; 4]],
        selected: &[usize],
        slide_size: Size2,
    ) -> Result<Self, PlanError> {
        let Size2 { width, height } = slide_size;
        if slide_size.is_empty() {
            return Err(PlanError::EmptySlide { slide_size });
        }
        if selected.is_empty() {
            return Err(PlanError::NoPatches);
        }
        if output_boxes.len() >= NOT_SELECTED as usize {
            return Err(PlanError::TooManyPatches {
                count: output_boxes.len(),
            });
        }
        for (index, b) in output_boxes.iter().enumerate() {
            if b[0] < 0 || b[1] < 0 || b[2] <= b[0] || b[3] <= b[1] {
                return Err(PlanError::InvalidBox { index, bbox: *b });
            }
        }
        let mut is_selected = vec![false; output_boxes.len()];
        for &index in selected {
            let slot = is_selected
                .get_mut(index)
                .ok_or(PlanError::SelectedOutOfRange {
                    index,
                    grid_len: output_boxes.len(),
                })?;
            if *slot {
                return Err(PlanError::DuplicateSelected { index });
            }
            *slot = true;
        }

        // Mask bounds: the bounding box of the selected output boxes (TIAToolbox's
        // `self.mask_bounds` from `dataloader.dataset.outputs`).
        let mut bounds = [i64::MAX, i64::MAX, i64::MIN, i64::MIN];
        for &index in selected {
            let b = output_boxes[index];
            bounds = [
                bounds[0].min(b[0]),
                bounds[1].min(b[1]),
                bounds[2].max(b[2]),
                bounds[3].max(b[3]),
            ];
        }
        // "Inside": every grid box not strictly outside the bounds (touching counts).
        let inside: Vec<usize> = (0..output_boxes.len())
            .filter(|&i| {
                let [sx, sy, ex, ey] = output_boxes[i];
                !(ex < bounds[0] || sx > bounds[2] || ey < bounds[1] || sy > bounds[3])
            })
            .collect();
        // Never empty: every selected box is inside.
        let min_x = inside
            .iter()
            .map(|&i| output_boxes[i][0])
            .min()
            .unwrap_or(0);
        let min_y = inside
            .iter()
            .map(|&i| output_boxes[i][1])
            .min()
            .unwrap_or(0);
        let max_x = inside
            .iter()
            .map(|&i| output_boxes[i][2])
            .max()
            .unwrap_or(0);
        let max_y = inside
            .iter()
            .map(|&i| output_boxes[i][3])
            .max()
            .unwrap_or(0);
        let (w, h) = (width as i64, height as i64);
        if min_x >= w || min_y >= h {
            let index = inside
                .iter()
                .copied()
                .find(|&i| output_boxes[i][0] >= w || output_boxes[i][1] >= h)
                .unwrap_or(0);
            return Err(PlanError::BoxOutsideSlide {
                index,
                bbox: output_boxes[index],
                slide_size,
            });
        }
        let pad_right = (w - max_x).max(0);
        let pad_bottom = (h - max_y).max(0);
        let padding = MaskPadding {
            left: min_x as u64,
            top: min_y as u64,
            right: pad_right as u64,
            bottom: pad_bottom as u64,
        };
        let size = [
            (w - min_x - pad_right) as usize,
            (h - min_y - pad_bottom) as usize,
        ];

        // Merge order: rows by top edge, then left to right, then grid index (row-major grids
        // give exactly the dataloader order TIAToolbox merges in).
        let mut order = inside;
        order.sort_by_key(|&i| (output_boxes[i][1], output_boxes[i][0], i));
        let patches: Vec<PlannedPatch> = order
            .iter()
            .map(|&i| {
                let b = output_boxes[i];
                PlannedPatch {
                    grid_index: i,
                    canvas_box: [b[0] - min_x, b[1] - min_y, b[2] - min_x, b[3] - min_y],
                    selected: is_selected[i],
                    band: 0,
                }
            })
            .collect();

        let mut patches = patches;
        let mut by_row: BTreeMap<i64, (std::ops::Range<usize>, i64, usize)> = BTreeMap::new();
        for (pos, p) in patches.iter().enumerate() {
            let entry = by_row
                .entry(p.canvas_box[1])
                .or_insert((pos..pos, p.canvas_box[3], 0));
            entry.0.end = pos + 1;
            entry.1 = entry.1.max(p.canvas_box[3]);
            entry.2 += usize::from(p.selected);
        }
        let bands: Vec<PlannedBand> = by_row
            .into_iter()
            .map(|(y0, (patches, y1, selected))| PlannedBand {
                y0,
                y1,
                patches,
                selected,
            })
            .collect();
        for (band_index, band) in bands.iter().enumerate() {
            for p in &mut patches[band.patches.clone()] {
                p.band = band_index;
            }
        }

        let mut merge_rank = vec![NOT_SELECTED; output_boxes.len()];
        let mut merge_order = Vec::with_capacity(selected.len());
        for (pos, p) in patches.iter().enumerate() {
            if p.selected {
                merge_rank[p.grid_index] = merge_order.len() as u32;
                merge_order.push(pos as u32);
            }
        }

        Ok(Self {
            slide_size,
            padding,
            size,
            patches,
            bands,
            merge_rank,
            merge_order,
        })
    }

    /// A plan with no mask: every grid patch selected.
    ///
    /// # Errors
    /// As [`CanvasPlan::new`].
    pub fn without_mask(output_boxes: &[[i64; 4]], slide_size: Size2) -> Result<Self, PlanError> {
        let all: Vec<usize> = (0..output_boxes.len()).collect();
        Self::new(output_boxes, &all, slide_size)
    }

    /// The slide's size at the processing resolution.
    #[must_use]
    pub fn slide_size(&self) -> Size2 {
        self.slide_size
    }

    /// `[width, height]` of the canvas.
    #[must_use]
    pub fn canvas_size(&self) -> [usize; 2] {
        self.size
    }

    /// Canvas width in pixels.
    #[must_use]
    pub fn width(&self) -> usize {
        self.size[0]
    }

    /// Canvas height in pixels.
    #[must_use]
    pub fn height(&self) -> usize {
        self.size[1]
    }

    /// The canvas position in the slide, `[x, y]` = `[mask_padding.left, mask_padding.top]`.
    #[must_use]
    pub fn origin(&self) -> [u64; 2] {
        [self.padding.left, self.padding.top]
    }

    /// TIAToolbox's `mask_padding`.
    #[must_use]
    pub fn mask_padding(&self) -> MaskPadding {
        self.padding
    }

    /// The inside patches in merge order.
    #[must_use]
    pub fn patches(&self) -> &[PlannedPatch] {
        &self.patches
    }

    /// The row bands, top to bottom.
    #[must_use]
    pub fn bands(&self) -> &[PlannedBand] {
        &self.bands
    }

    /// Number of selected patches (the patches the stitcher expects).
    #[must_use]
    pub fn selected_count(&self) -> usize {
        self.merge_order.len()
    }

    /// Number of patches in the full grid.
    #[must_use]
    pub fn grid_len(&self) -> usize {
        self.merge_rank.len()
    }

    /// The merge rank (0-based position among selected patches in merge order) of a grid
    /// index, or `None` when it is out of range or not selected.
    #[must_use]
    pub fn merge_rank(&self, grid_index: usize) -> Option<usize> {
        match self.merge_rank.get(grid_index) {
            Some(&r) if r != NOT_SELECTED => Some(r as usize),
            _ => None,
        }
    }

    /// The planned patch of a merge rank.
    #[must_use]
    pub fn patch_at_rank(&self, rank: usize) -> Option<&PlannedPatch> {
        self.merge_order
            .get(rank)
            .map(|&pos| &self.patches[pos as usize])
    }

    /// The most rows a band shares with bands above it (rows it must sum apart).
    #[must_use]
    pub fn max_band_overlap(&self) -> usize {
        let mut lowest_bottom = i64::MIN;
        let mut most = 0;
        for band in &self.bands {
            most = most.max((lowest_bottom - band.y0).clamp(0, band.y1 - band.y0) as usize);
            lowest_bottom = lowest_bottom.max(band.y1);
        }
        most
    }

    /// The smallest distance between the tops of consecutive bands (the grid's vertical stride;
    /// the band height when there is one band): the stitcher emits rows this many at a time.
    #[must_use]
    pub fn row_step(&self) -> usize {
        self.bands
            .windows(2)
            .map(|w| (w[1].y0 - w[0].y0) as usize)
            .min()
            .unwrap_or_else(|| self.max_band_height())
            .max(1)
    }

    /// The most bands covering one row.
    #[must_use]
    pub fn max_bands_per_row(&self) -> usize {
        (0..self.bands.len())
            .map(|b| {
                let top = self.bands[b].y0;
                self.bands[..=b].iter().filter(|o| o.y1 > top).count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Check that stitching can start at canvas row `first_row` (see
    /// [`crate::StitchParams::first_row`]): any row from 0 to the canvas height (the height
    /// itself: nothing is left to stitch).
    ///
    /// # Errors
    /// [`PlanError::FirstRowPastCanvas`] when `first_row` is past the canvas height.
    pub fn check_first_row(&self, first_row: usize) -> Result<(), PlanError> {
        if first_row > self.height() {
            return Err(PlanError::FirstRowPastCanvas {
                first_row,
                height: self.height(),
            });
        }
        Ok(())
    }

    /// The first band a stitch started at canvas row `first_row` merges: the first band whose
    /// bottom is below `first_row` (`y1 > first_row`), or [`CanvasPlan::bands`]`.len()` when
    /// `first_row` is the canvas height (no row is left). Every band before it ends at or above
    /// `first_row`.
    ///
    /// # Errors
    /// As [`CanvasPlan::check_first_row`].
    pub fn first_band_reaching(&self, first_row: usize) -> Result<usize, PlanError> {
        self.check_first_row(first_row)?;
        if first_row == self.height() {
            return Ok(self.bands.len());
        }
        let y = first_row as i64;
        Ok(self
            .bands
            .iter()
            .position(|band| band.y1 > y)
            .unwrap_or(self.bands.len()))
    }

    /// The merge rank of the first patch a stitch started at canvas row `first_row` needs: the
    /// stitcher needs every selected patch from this rank on ([`CanvasPlan::patch_at_rank`]),
    /// and ignores those before it. With every output box the same height (as
    /// [`crate::StitchParams::new`] requires), these are exactly the selected patches whose
    /// output box's bottom is below `first_row` (canvas `y1 > first_row`; slide
    /// `y1 > first_row + origin y`), or none when `first_row` is the canvas height.
    /// [`CanvasPlan::selected_count`] when none is needed; 0 for `first_row` 0.
    ///
    /// # Errors
    /// As [`CanvasPlan::check_first_row`].
    pub fn first_rank_reaching(&self, first_row: usize) -> Result<usize, PlanError> {
        let band = self.first_band_reaching(first_row)?;
        Ok(self.bands[..band].iter().map(|b| b.selected).sum())
    }

    /// The grid indices of the selected patches a stitch started at canvas row `first_row`
    /// needs, in merge order (the order to push them in; the grid's row-major order for a
    /// row-major grid): the patches of ranks from [`CanvasPlan::first_rank_reaching`] on.
    ///
    /// # Errors
    /// As [`CanvasPlan::check_first_row`].
    pub fn selected_reaching(&self, first_row: usize) -> Result<Vec<usize>, PlanError> {
        let first = self.first_rank_reaching(first_row)?;
        Ok(self.merge_order[first..]
            .iter()
            .map(|&pos| self.patches[pos as usize].grid_index)
            .collect())
    }

    /// The tallest band (rows a band buffer must hold).
    #[must_use]
    pub fn max_band_height(&self) -> usize {
        self.bands
            .iter()
            .map(|b| (b.y1 - b.y0) as usize)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// TIAToolbox's `get_coordinates` output boxes (row-major); shared with the stitcher's tests.
    pub(crate) fn grid(width: i64, height: i64, out: i64, stride: i64) -> Vec<[i64; 4]> {
        let xs: Vec<i64> = (0..(width + stride - 1) / stride)
            .map(|i| i * stride)
            .collect();
        let ys: Vec<i64> = (0..(height + stride - 1) / stride)
            .map(|i| i * stride)
            .collect();
        ys.iter()
            .flat_map(|&y| xs.iter().map(move |&x| [x, y, x + out, y + out]))
            .collect()
    }

    #[test]
    fn no_mask_covers_the_slide() {
        let boxes = grid(504, 504, 164, 164);
        assert_eq!(boxes.len(), 16);
        let plan = CanvasPlan::without_mask(&boxes, Size2::new(504, 504)).unwrap();
        assert_eq!(plan.canvas_size(), [504, 504]);
        assert_eq!(
            plan.mask_padding(),
            MaskPadding {
                left: 0,
                top: 0,
                right: 0,
                bottom: 0
            }
        );
        assert_eq!(plan.bands().len(), 4);
        assert_eq!(plan.bands()[3].y0, 492);
        assert_eq!(plan.bands()[3].y1, 656);
        assert_eq!(plan.selected_count(), 16);
        assert_eq!(plan.max_band_height(), 164);
        assert_eq!(plan.max_band_overlap(), 0);
        assert_eq!(plan.max_bands_per_row(), 1);
        assert_eq!(plan.row_step(), 164);
    }

    #[test]
    fn mask_bbox_plus_one_ring_of_touching_patches() {
        // 10x10 grid of 10 px patches on a 100x100 slide; the mask keeps patches (4,4) and (5,5).
        let boxes = grid(100, 100, 10, 10);
        let sel = [4 * 10 + 4, 5 * 10 + 5];
        let plan = CanvasPlan::new(&boxes, &sel, Size2::new(100, 100)).unwrap();
        // bbox [40, 40, 60, 60]; touching patches start at 30 and end at 70.
        assert_eq!(
            plan.mask_padding(),
            MaskPadding {
                left: 30,
                top: 30,
                right: 30,
                bottom: 30
            }
        );
        assert_eq!(plan.canvas_size(), [40, 40]);
        assert_eq!(plan.origin(), [30, 30]);
        assert_eq!(plan.patches().len(), 16);
        assert_eq!(plan.bands().len(), 4);
        assert!(plan.bands().iter().all(|b| b.patches.len() == 4));
        assert_eq!(plan.bands()[1].selected, 1);
        assert_eq!(plan.bands()[0].selected, 0);
        assert_eq!(plan.merge_rank(44), Some(0));
        assert_eq!(plan.merge_rank(55), Some(1));
        assert_eq!(plan.merge_rank(45), None);
        assert_eq!(plan.merge_rank(1000), None);
        assert_eq!(plan.patch_at_rank(1).unwrap().canvas_box, [20, 20, 30, 30]);
    }

    #[test]
    fn overlapping_grid_ring_is_wider() {
        // out 20, stride 10: boxes overlap; every box touching [40,40,60,60] is inside,
        // i.e. x0 in 20..=60.
        let boxes = grid(100, 100, 20, 10);
        let sel = [4 * 10 + 4];
        let plan = CanvasPlan::new(&boxes, &sel, Size2::new(100, 100)).unwrap();
        assert_eq!(plan.origin(), [20, 20]);
        // max_x = 60 + 20 = 80.
        assert_eq!(plan.canvas_size(), [60, 60]);
        assert_eq!(plan.mask_padding().right, 20);
        assert_eq!(plan.bands().len(), 5);
        assert_eq!(plan.max_band_overlap(), 10);
        assert_eq!(plan.max_bands_per_row(), 2);
    }

    #[test]
    fn patches_needed_from_a_first_row() {
        // As above: canvas rows 0..40, bands at 0, 10, 20, 30 (10 rows each); the selected
        // patches 44 and 55 are in bands 1 and 2.
        let boxes = grid(100, 100, 10, 10);
        let plan = CanvasPlan::new(&boxes, &[55, 44], Size2::new(100, 100)).unwrap();
        for (row, band, rank, needed) in [
            (0, 0, 0, &[44, 55][..]),
            (9, 0, 0, &[44, 55]),
            (10, 1, 0, &[44, 55]),
            (19, 1, 0, &[44, 55]),
            (20, 2, 1, &[55]),
            (30, 3, 2, &[]),
            (39, 3, 2, &[]),
            (40, 4, 2, &[]),
        ] {
            assert_eq!(plan.first_band_reaching(row).unwrap(), band, "row {row}");
            assert_eq!(plan.first_rank_reaching(row).unwrap(), rank, "row {row}");
            assert_eq!(plan.selected_reaching(row).unwrap(), needed, "row {row}");
        }
        let err = plan.first_rank_reaching(41).unwrap_err();
        assert!(
            matches!(
                err,
                PlanError::FirstRowPastCanvas {
                    first_row: 41,
                    height: 40
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("row 41"), "{err}");

        // Overlapping bands (out 20, stride 10): a band that starts above row y is still
        // needed while its bottom is below y.
        let boxes = grid(100, 100, 20, 10);
        let plan = CanvasPlan::new(&boxes, &[44], Size2::new(100, 100)).unwrap();
        // Canvas rows 0..60, bands at 0, 10, .., 40; patch 44 (slide row 40) in band 2.
        assert_eq!(plan.first_band_reaching(25).unwrap(), 1);
        assert_eq!(plan.first_rank_reaching(39).unwrap(), 0);
        assert_eq!(plan.selected_reaching(39).unwrap(), [44]);
        assert!(plan.selected_reaching(40).unwrap().is_empty());
    }

    #[test]
    fn canvas_is_clipped_to_the_slide() {
        // 105 px slide: the last patch row runs to 110; the canvas stops at 105.
        let boxes = grid(105, 95, 10, 10);
        let last = boxes.len() - 1;
        let plan = CanvasPlan::new(&boxes, &[last], Size2::new(105, 95)).unwrap();
        assert_eq!(plan.origin(), [90, 80]);
        assert_eq!(plan.canvas_size(), [15, 15]);
        assert_eq!(
            plan.mask_padding(),
            MaskPadding {
                left: 90,
                top: 80,
                right: 0,
                bottom: 0
            }
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let boxes = grid(50, 50, 10, 10);
        assert!(matches!(
            CanvasPlan::new(&boxes, &[], Size2::new(50, 50)),
            Err(PlanError::NoPatches)
        ));
        assert!(matches!(
            CanvasPlan::new(&boxes, &[25], Size2::new(50, 50)),
            Err(PlanError::SelectedOutOfRange {
                index: 25,
                grid_len: 25
            })
        ));
        assert!(matches!(
            CanvasPlan::new(&boxes, &[3, 3], Size2::new(50, 50)),
            Err(PlanError::DuplicateSelected { index: 3 })
        ));
        assert!(matches!(
            CanvasPlan::new(&boxes, &[3], Size2::new(0, 50)),
            Err(PlanError::EmptySlide { .. })
        ));
        let mut bad = boxes.clone();
        bad[2] = [-1, 0, 9, 10];
        let err = CanvasPlan::new(&bad, &[3], Size2::new(50, 50)).unwrap_err();
        assert!(err.to_string().contains("[-1, 0, 9, 10]"), "{err}");
        let err = CanvasPlan::new(&boxes, &[3], Size2::new(5, 5)).unwrap_err();
        assert!(matches!(err, PlanError::BoxOutsideSlide { .. }), "{err}");
    }
}

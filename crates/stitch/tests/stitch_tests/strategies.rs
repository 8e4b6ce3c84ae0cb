//! Shared proptest strategies: random slides, patch shapes, strides and masks.

use mtseg_stitch::{CanvasPlan, Size2};
use proptest::prelude::*;

use super::synthetic::{Grid, grid, hash};

/// One random stitching problem. Shapes are `[width, height]`.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) slide: [usize; 2],
    pub(crate) output: [usize; 2],
    pub(crate) input: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) channels: Vec<usize>,
    pub(crate) mask: MaskKind,
    pub(crate) seed: u64,
}

/// How patches are selected.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MaskKind {
    /// No mask: every patch.
    None,
    /// A random rectangle of "tissue"; patches whose *input* box touches it (TIAToolbox's
    /// `filter_coordinates` with `min_mask_ratio=0`).
    Rectangle,
    /// A random subset of patches.
    Scattered,
    /// One patch.
    Single,
}

impl Case {
    pub(crate) fn grid(&self) -> Grid {
        grid(self.slide, self.input, self.output, self.stride)
    }

    /// The canvas plan of `selected` patches of `grid` over this case's slide.
    pub(crate) fn plan(&self, grid: &Grid, selected: &[usize]) -> CanvasPlan {
        CanvasPlan::new(
            &grid.output_boxes,
            selected,
            Size2::new(self.slide[0] as u64, self.slide[1] as u64),
        )
        .expect("valid plan")
    }

    /// The selected grid indices (never empty).
    pub(crate) fn selected(&self, grid: &Grid) -> Vec<usize> {
        let n = grid.output_boxes.len();
        let pick = |k: u64| (hash(self.seed, 77, k) % n as u64) as usize;
        let mut sel: Vec<usize> = match self.mask {
            MaskKind::None => (0..n).collect(),
            MaskKind::Single => vec![pick(0)],
            MaskKind::Scattered => (0..n)
                .filter(|&i| !hash(self.seed, 5, i as u64).is_multiple_of(3))
                .collect(),
            MaskKind::Rectangle => {
                let [w, h] = self.slide.map(|v| v as u64);
                let x0 = hash(self.seed, 1, 0) % w;
                let y0 = hash(self.seed, 2, 0) % h;
                let x1 = x0 + 1 + hash(self.seed, 3, 0) % (w - x0);
                let y1 = y0 + 1 + hash(self.seed, 4, 0) % (h - y0);
                let tissue = [x0 as i64, y0 as i64, x1 as i64, y1 as i64];
                (0..n)
                    .filter(|&i| {
                        // Input box clipped to the slide, as filter_coordinates does.
                        let b = grid.input_boxes[i];
                        let cx0 = b[0].clamp(0, w as i64);
                        let cy0 = b[1].clamp(0, h as i64);
                        let cx1 = b[2].clamp(0, w as i64);
                        let cy1 = b[3].clamp(0, h as i64);
                        cx0 < tissue[2] && tissue[0] < cx1 && cy0 < tissue[3] && tissue[1] < cy1
                    })
                    .collect()
            }
        };
        if sel.is_empty() {
            sel.push(pick(1));
        }
        sel
    }
}

fn mask_kind() -> impl Strategy<Value = MaskKind> {
    prop_oneof![
        Just(MaskKind::None),
        Just(MaskKind::Rectangle),
        Just(MaskKind::Scattered),
        Just(MaskKind::Single),
    ]
}

/// A random case; `tiatoolbox_strides` keeps strides in `[ceil(out/2), out]`, the range where
/// TIAToolbox's own vertical merge works.
pub(crate) fn case(
    max_slide: usize,
    max_output: usize,
    tiatoolbox_strides: bool,
) -> impl Strategy<Value = Case> {
    (
        1..=max_slide,
        1..=max_slide,
        1..=max_output,
        1..=max_output,
        0usize..=7,
        0usize..=7,
        proptest::collection::vec(1usize..=3, 1..=3),
        mask_kind(),
        any::<u64>(),
    )
        .prop_flat_map(move |(sw, sh, ow, oh, ew, eh, channels, mask, seed)| {
            let low = |o: usize| if tiatoolbox_strides { o.div_ceil(2) } else { 1 };
            (low(ow)..=ow, low(oh)..=oh).prop_map(move |(sx, sy)| Case {
                slide: [sw, sh],
                output: [ow, oh],
                input: [ow + ew, oh + eh],
                stride: [sx, sy],
                channels: channels.clone(),
                mask,
                seed,
            })
        })
}

/// An arrival order: a permutation of `0..n`, fully shuffled or only locally (within windows of
/// `window` patches, as parallel workers reorder).
pub(crate) fn arrival_order(n: usize, seed: u64, window: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let window = window.max(1);
    for start in (0..n).step_by(window) {
        let end = (start + window).min(n);
        for i in (start + 1..end).rev() {
            let j = start + (hash(seed, 9, i as u64) % (i - start + 1) as u64) as usize;
            order.swap(i, j);
        }
    }
    order
}

/// Proptest settings: `default_cases` cases unless `PROPTEST_CASES` says otherwise; no failure
/// persistence files (the test binary has no `lib.rs` beside it).
pub(crate) fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

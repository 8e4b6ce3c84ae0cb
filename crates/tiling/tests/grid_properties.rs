//! Invariants of the patch grid and the mask filter, over random sizes (proptest).

use mtseg_slide::TissueMask;
use mtseg_tiling::{MaskRule, PatchGridBuilder, Size2, box_has_tissue, tile_layout};
use proptest::prelude::*;

/// (width, height, input, output, stride) with output <= input and 1 <= stride <= output.
fn grid_params() -> impl Strategy<Value = (u64, u64, u64, u64, u64)> {
    (1u64..300, 1u64..300, 1u64..80).prop_flat_map(|(w, h, input)| {
        (Just(w), Just(h), Just(input), 1..=input).prop_flat_map(|(w, h, input, output)| {
            (Just(w), Just(h), Just(input), Just(output), 1..=output)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn output_boxes_cover_the_canvas_without_gaps((w, h, input, output, stride) in grid_params()) {
        let g = PatchGridBuilder::new(Size2::new(w, h), Size2::new(input, input))
            .patch_output(Size2::new(output, output))
            .stride(Size2::new(stride, stride))
            .build()
            .unwrap();
        let mut covered = vec![false; (w * h) as usize];
        for p in g.iter() {
            let o = p.output;
            for y in o[1].max(0)..o[3].min(h as i64) {
                for x in o[0].max(0)..o[2].min(w as i64) {
                    covered[(y as u64 * w + x as u64) as usize] = true;
                }
            }
        }
        prop_assert!(covered.iter().all(|&c| c), "a pixel is in no output box");
        // Row-major order and the last row/column start inside the image.
        let outs: Vec<[i64; 4]> = g.iter().map(|p| p.output).collect();
        prop_assert!(outs.windows(2).all(|p| (p[0][1], p[0][0]) < (p[1][1], p[1][0])));
        prop_assert!(outs.iter().all(|o| o[0] < w as i64 && o[1] < h as i64));
    }

    #[test]
    fn input_boxes_are_centred_on_output_boxes((w, h, input, output, stride) in grid_params()) {
        let g = PatchGridBuilder::new(Size2::new(w, h), Size2::new(input, input))
            .patch_output(Size2::new(output, output))
            .stride(Size2::new(stride, stride))
            .build()
            .unwrap();
        let before = ((input - output) / 2) as i64;
        let after = (input - output) as i64 - before;
        for p in g.iter() {
            for axis in 0..2 {
                prop_assert_eq!(p.output[axis] - p.input[axis], before);
                prop_assert_eq!(p.input[axis + 2] - p.output[axis + 2], after);
            }
        }
    }

    #[test]
    fn mask_filter_never_drops_a_patch_that_overlaps_tissue(
        (w, h, input, output, stride) in grid_params(),
        mw in 1u32..40,
        mh in 1u32..40,
        seed in any::<u64>(),
        density in 0.0f64..0.2,
    ) {
        // A random sparse mask of mw x mh pixels over the w x h canvas.
        let mut state = seed | 1;
        let data: Vec<bool> = (0..mw * mh)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 10_000) as f64 / 10_000.0 < density
            })
            .collect();
        let mask = TissueMask::from_bools(mw, mh, data.clone()).unwrap();
        let g = PatchGridBuilder::new(Size2::new(w, h), Size2::new(input, input))
            .patch_output(Size2::new(output, output))
            .stride(Size2::new(stride, stride))
            .build()
            .unwrap();
        let (mw64, mh64, w64, h64) = (i64::from(mw), i64::from(mh), w as i64, h as i64);
        for p in g.iter() {
            let b = p.input;
            // Does the box overlap some tissue pixel's area [mx * w / mw, (mx + 1) * w / mw) x ...?
            // (Exact: cross-multiplied integers.)
            let overlaps = (0..mh64).any(|my| {
                (0..mw64).any(|mx| {
                    data[(my * mw64 + mx) as usize]
                        && b[0] * mw64 < (mx + 1) * w64
                        && b[2] * mw64 > mx * w64
                        && b[1] * mh64 < (my + 1) * h64
                        && b[3] * mh64 > my * h64
                })
            });
            let kept = box_has_tissue(b, &mask, Size2::new(w, h), MaskRule::AnyOverlap, 0.0);
            prop_assert!(!overlaps || kept, "patch {:?} overlaps tissue but was dropped", b);
            // And the TIAToolbox rule never keeps more than ours.
            if box_has_tissue(b, &mask, Size2::new(w, h), MaskRule::TiaToolbox, 0.0) {
                prop_assert!(kept);
            }
        }
    }

    #[test]
    fn full_tiles_cover_the_canvas_and_strips_sit_on_seams(w in 1u64..400, h in 1u64..400, t in 8u64..100, m in 1u64..4) {
        let tiles = tile_layout(Size2::new(w, h), t, m, |_| true).unwrap();
        let full: Vec<_> = tiles.iter().filter(|x| x.set == mtseg_tiling::TileSet::Full).collect();
        prop_assert_eq!(full.len() as u64, w.div_ceil(t) * h.div_ceil(t));
        for x in &tiles {
            let b = x.bounds;
            match x.set {
                mtseg_tiling::TileSet::VerticalStrip => prop_assert!((b[0] + b[2]) / 2 % t as i64 == 0 && b[2] - b[0] == 2 * m as i64),
                mtseg_tiling::TileSet::HorizontalStrip => prop_assert!((b[1] + b[3]) / 2 % t as i64 == 0 && b[3] - b[1] == 2 * m as i64),
                mtseg_tiling::TileSet::Cross => prop_assert!(b[2] - b[0] == 4 * m as i64 && b[3] - b[1] == 4 * m as i64),
                mtseg_tiling::TileSet::Full => prop_assert!(b[2] - b[0] == t as i64),
            }
            // A side flagged as facing a neighbour is never on the canvas border (crosses always
            // carry all four flags, as TIAToolbox's).
            if x.set == mtseg_tiling::TileSet::Cross { continue; }
            if x.flags.top { prop_assert!(b[1] > 0); }
            if x.flags.left { prop_assert!(b[0] > 0); }
            if x.flags.right { prop_assert!(b[2] < w as i64); }
            if x.flags.bottom { prop_assert!(b[3] < h as i64); }
        }
    }
}

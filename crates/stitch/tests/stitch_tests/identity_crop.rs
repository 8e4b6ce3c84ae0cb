//! The identity-crop property: with a model whose output is the centre crop of its input, the
//! stitched canvas is the slide itself (read at the output resolution) wherever a selected
//! patch covers it, and 0 elsewhere, for random slide sizes, patch sizes, strides and masks.

use proptest::prelude::*;

use mtseg_stitch::MemoryBudget;

use super::strategies::case;
use super::synthetic::{SyntheticSlide, identity_crop, params, stitch_all};

fn check_identity(c: &super::strategies::Case) -> Result<(), TestCaseError> {
    let slide = SyntheticSlide::new(c.slide[0], c.slide[1], 3, c.seed);
    let grid = c.grid();
    let selected = c.selected(&grid);
    let plan = c.plan(&grid, &selected);
    let patches = selected
        .iter()
        .map(|&i| identity_crop(&slide, &grid, i, c.input, c.output, &c.channels))
        .collect();
    let canvas = stitch_all(
        params(
            plan.clone(),
            c.output,
            &c.channels,
            MemoryBudget::unlimited(),
        ),
        patches,
    );

    let [w, h] = plan.canvas_size();
    let [ox, oy] = plan.origin().map(|v| v as usize);
    prop_assert!(ox + w <= c.slide[0] && oy + h <= c.slide[1]);
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = ((x + ox) as i64, (y + oy) as i64);
            let covered = selected.iter().any(|&i| {
                let b = grid.output_boxes[i];
                b[0] <= sx && sx < b[2] && b[1] <= sy && sy < b[3]
            });
            for (head, &hc) in c.channels.iter().enumerate() {
                for ch in 0..hc {
                    let expected = if covered {
                        slide.get(sx as usize, sy as usize, ch % 3)
                    } else {
                        0.0
                    };
                    let got = canvas.heads[head][(y * w + x) * hc + ch];
                    prop_assert_eq!(
                        got.to_bits(),
                        expected.to_bits(),
                        "pixel ({}, {}) head {} channel {}",
                        x,
                        y,
                        head,
                        ch
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(super::strategies::config(48))]

    #[test]
    fn stitched_canvas_equals_the_slide(c in case(40, 10, false)) {
        check_identity(&c)?;
    }
}

#[test]
fn identity_on_a_hovernet_like_grid() {
    // HoVer-Net fast: 256 -> 164, stride 164, on a 500 x 330 slide with a rectangle of tissue.
    let c = super::strategies::Case {
        slide: [500, 330],
        output: [164, 164],
        input: [256, 256],
        stride: [164, 164],
        channels: vec![1, 2, 1],
        mask: super::strategies::MaskKind::Rectangle,
        seed: 7,
    };
    check_identity(&c).unwrap();
}

#[test]
fn identity_with_stride_larger_than_the_output() {
    // TIAToolbox misaligns rows here; the gaps between patches must read 0.
    for mask in [
        super::strategies::MaskKind::None,
        super::strategies::MaskKind::Scattered,
    ] {
        let c = super::strategies::Case {
            slide: [37, 29],
            output: [4, 5],
            input: [8, 7],
            stride: [6, 7],
            channels: vec![2],
            mask,
            seed: 3,
        };
        check_identity(&c).unwrap();
    }
}

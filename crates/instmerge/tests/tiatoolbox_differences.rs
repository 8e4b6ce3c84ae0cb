//! Pins the three places where our tile mode differs from TIAToolbox's on purpose (README
//! "Differences from TIAToolbox"), each against `TiaToolboxCompat`, which reproduces it.

#[allow(unreachable_pub)]
#[path = "support/canvases.rs"]
mod canvases;

use anyhow::Result;
use mtseg_instmerge::{
    CanvasMaps, MergeItem, TiaToolboxCompat, TileMerger, TileModeParams, tile_mode,
};
use mtseg_postproc::render_hovernet_targets;
use mtseg_tiling::{Size2, TileSet, tile_layout};

#[derive(Debug, Clone, PartialEq)]
struct Item([i32; 4]);

impl MergeItem for Item {
    fn merge_box(&self) -> [i32; 4] {
        self.0
    }
    fn position(&self) -> [f64; 2] {
        [f64::from(self.0[0]), f64::from(self.0[1])]
    }
}

/// Merges one nucleus seen (cut or whole) by the tiles that contain it.
fn survivors(compat: TiaToolboxCompat, nucleus: [i32; 4]) -> usize {
    let tiles = tile_layout(Size2::new(200, 200), 100, 10, |_| true).unwrap();
    let mut m = TileMerger::new(tiles.clone(), 10, compat).unwrap();
    for (i, t) in tiles.iter().enumerate() {
        let b = t.bounds.map(|v| v as i32);
        let cut = [
            nucleus[0].max(b[0]),
            nucleus[1].max(b[1]),
            nucleus[2].min(b[2]).min(200),
            nucleus[3].min(b[3]).min(200),
        ];
        let seen = cut[2] > cut[0] && cut[3] > cut[1];
        m.push(i, if seen { vec![Item(cut)] } else { vec![] })
            .unwrap();
    }
    m.finish().unwrap().len()
}

#[test]
fn nuclei_on_the_image_border_inside_a_strip_are_kept() {
    // touches the image top inside the first row's vertical strip [90, 110): TIAToolbox drops
    // it in the full tiles (margins) and in the strip (boundary line on the border side)
    let tia = TiaToolboxCompat::exact(Size2::new(200, 200));
    assert_eq!(survivors(tia, [95, 0, 105, 6]), 0);
    assert_eq!(survivors(TiaToolboxCompat::OFF, [95, 0, 105, 6]), 1);
    let edge_only = TiaToolboxCompat {
        edge_boundary_lines: false,
        ..tia
    };
    assert_eq!(survivors(edge_only, [95, 0, 105, 6]), 1);
    // same on the left border, inside the first column's horizontal strip
    assert_eq!(survivors(tia, [0, 95, 6, 105]), 0);
    assert_eq!(survivors(TiaToolboxCompat::OFF, [0, 95, 6, 105]), 1);
}

#[test]
fn nuclei_on_a_margin_edge_have_one_owner() {
    let tia = TiaToolboxCompat::exact(Size2::new(200, 200));
    // starts on column 90 (full tile margin edge = strip cut line), or at 91 (TIAToolbox's
    // closed line reaches it), or ends on 109 / 108: TIAToolbox loses each, we keep each once
    for n in [
        [90, 40, 96, 48],
        [91, 40, 96, 48],
        [104, 40, 110, 48],
        [103, 40, 109, 48],
        [40, 90, 48, 96],
    ] {
        assert_eq!(survivors(tia, n), 0, "{n:?}");
        assert_eq!(survivors(TiaToolboxCompat::OFF, n), 1, "{n:?}");
    }
    // in between, both keep it once
    for n in [[92, 40, 98, 48], [80, 40, 86, 48], [94, 94, 104, 104]] {
        assert_eq!(survivors(tia, n), 1, "{n:?}");
        assert_eq!(survivors(TiaToolboxCompat::OFF, n), 1, "{n:?}");
    }
    // first row 110, just below the strip's top margin (rows 100..110 of the strip below the
    // corner): the strip meets it with its closed box, the cross has it in its own margin
    assert_eq!(survivors(tia, [96, 110, 104, 118]), 0);
    assert_eq!(survivors(TiaToolboxCompat::OFF, [96, 110, 104, 118]), 1);
}

#[test]
fn the_tile_grid_covers_the_whole_canvas() -> Result<()> {
    // a 600 x 600 corner of hgsc_nest; TIAToolbox with a 500 x 500 selected-output box and
    // 256 px tiles covers [0, 512)^2 only
    let (_, labels) = canvases::hgsc_nest()?;
    let (h, w) = (600, 600);
    let crop = canvases::crop_labels(&labels, 1500, [0, 0, w, h]);
    let t = render_hovernet_targets(&crop, None, h, w, 1.0)?;
    let canvas = CanvasMaps {
        height: h,
        width: w,
        np: &t.np,
        hv: &t.hv,
        tp: Some(&t.tp),
        ls: None,
    };
    let ours = tile_mode(&canvas, &TileModeParams::new(256, 32))?;
    let tia = tile_mode(
        &canvas,
        &TileModeParams {
            compat: TiaToolboxCompat::exact(Size2::new(500, 500)),
            ..TileModeParams::new(256, 32)
        },
    )?;
    let beyond = |v: &[mtseg_instmerge::MergedItem<mtseg_postproc::NucleusInstance>]| {
        v.iter()
            .filter(|n| n.item.bbox[0] >= 512 || n.item.bbox[1] >= 512)
            .count()
    };
    println!(
        "600 x 600, tiles 256/32: ours {} nuclei ({} beyond 512), TIAToolbox grid {} ({} beyond)",
        ours.nuclei.len(),
        beyond(&ours.nuclei),
        tia.nuclei.len(),
        beyond(&tia.nuclei)
    );
    assert_eq!(beyond(&tia.nuclei), 0);
    assert!(beyond(&ours.nuclei) > 20);
    assert!(
        ours.tiles
            .iter()
            .any(|t| t.set == TileSet::Full && t.bounds[2] >= 600)
    );
    Ok(())
}

#[test]
fn fixes_recover_nuclei_on_hgsc_nest() -> Result<()> {
    let (t, _) = canvases::hgsc_nest()?;
    let canvas = CanvasMaps {
        height: t.height,
        width: t.width,
        np: &t.np,
        hv: &t.hv,
        tp: Some(&t.tp),
        ls: None,
    };
    let tia = TiaToolboxCompat::exact(Size2::new(1500, 1500));
    let count = |compat| -> Result<usize> {
        Ok(tile_mode(
            &canvas,
            &TileModeParams {
                compat,
                ..TileModeParams::new(500, 64)
            },
        )?
        .nuclei
        .len())
    };
    let exact = count(tia)?;
    let edge = count(TiaToolboxCompat {
        edge_boundary_lines: false,
        ..tia
    })?;
    let windows = count(TiaToolboxCompat {
        closed_margin_boxes: false,
        ..tia
    })?;
    let ours = count(TiaToolboxCompat::OFF)?;
    println!(
        "hgsc_nest 500/64: TIAToolbox {exact}, + edge fix {edge}, + margin-edge fix {windows}, ours {ours}"
    );
    assert!(edge > exact && windows > exact && ours > edge && ours > windows);
    Ok(())
}

//! Tile mode vs full-canvas mode on the same canvas: the `hgsc_nest` mask (1500 x 1500, 1294
//! nuclei) rendered as HoVer-Net outputs, tiles of 500 px with a 64 px margin.

#[allow(unreachable_pub)]
#[path = "support/canvases.rs"]
mod canvases;

use anyhow::Result;
use mtseg_instmerge::{CanvasMaps, TiaToolboxCompat, TileModeParams, full_canvas_mode, tile_mode};
use mtseg_tiling::Size2;

#[test]
fn tile_mode_matches_full_canvas_mode_on_hgsc_nest() -> Result<()> {
    let (t, _) = canvases::hgsc_nest()?;
    let canvas = CanvasMaps {
        height: t.height,
        width: t.width,
        np: &t.np,
        hv: &t.hv,
        tp: Some(&t.tp),
        ls: None,
    };
    let params = TileModeParams::new(500, 64);
    let full = full_canvas_mode(&canvas, &params.np_hv)?;
    let ours = tile_mode(&canvas, &params)?;
    let tia = tile_mode(
        &canvas,
        &TileModeParams {
            compat: TiaToolboxCompat::exact(Size2::new(1500, 1500)),
            ..params
        },
    )?;
    let (m, f1) = canvases::match_f1(&ours.nuclei, &full.nuclei);
    let (mt, f1t) = canvases::match_f1(&tia.nuclei, &full.nuclei);
    println!(
        "hgsc_nest 500/64: full {} nuclei; tile mode {} (matched {m}, F1 {f1:.4}); \
         TIAToolbox-compat {} (matched {mt}, F1 {f1t:.4}); stats {:?}",
        full.nuclei.len(),
        ours.nuclei.len(),
        tia.nuclei.len(),
        ours.nuclei_stats
    );
    assert!(f1 >= 0.99, "F1 {f1}");
    // ids are 1..=N in row-major order
    assert!(
        ours.nuclei
            .iter()
            .enumerate()
            .all(|(i, n)| n.id == i as u64 + 1)
    );
    Ok(())
}

//! HoVer-Net targets rendered from the histolytics `hgsc_nest` instance mask (1294 nuclei,
//! 1500 x 1500) must be turned back into those nuclei: F1 >= 0.95 at IoU 0.5.

#[allow(unreachable_pub)]
#[path = "support/metrics.rs"]
mod metrics;

use anyhow::Result;
use mtseg_postproc::{CanvasView, NpHvParams, postprocess_nuclei, render_hovernet_targets};
use mtseg_test_models::npy;

/// This crate's `tests/fixtures` folder.
fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn recovers_the_1294_hgsc_nest_nuclei() -> Result<()> {
    let mask = npy::read(&fixtures_dir().join("hgsc_nest_inst_mask_u16.npy.gz"))?;
    let (h, w) = (mask.shape[0], mask.shape[1]);
    let labels: Vec<i32> = mask.to_i64().into_iter().map(|v| v as i32).collect();
    let types: Vec<u8> = npy::read(&fixtures_dir().join("hgsc_nest_type_mask_u8.npy.gz"))?
        .to_i64()
        .into_iter()
        .map(|v| v as u8)
        .collect();
    let t = render_hovernet_targets(&labels, Some(&types), h, w, 1.0)?;
    let view = CanvasView::new(h, w, &t.np, &t.hv)?.with_types(&t.tp)?;
    let out = postprocess_nuclei(&view, &NpHvParams::hovernet(), [0, 0])?;
    let a = metrics::compare(&out.labels, &labels);
    println!(
        "hgsc_nest: {} reference nuclei, {} found, {} matched at IoU 0.5, F1 {:.4}, pixel agreement {:.4}",
        a.n_ref, a.n_pred, a.matched, a.f1, a.pixel_agreement
    );
    assert_eq!(a.n_ref, 1294);
    assert!(a.f1 >= 0.95, "{a:?}");
    // types: the majority class of each found nucleus is the mask's class of its match
    let typed = out
        .instances
        .iter()
        .filter(|n| n.type_id.is_some_and(|t| t > 0))
        .count();
    assert!(
        typed * 100 >= out.instances.len() * 99,
        "{typed} of {} typed",
        out.instances.len()
    );
    Ok(())
}

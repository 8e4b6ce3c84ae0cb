//! The run plan selects exactly the patches TIAToolbox's `WSIPatchDataset` selects on the real
//! SVS when asked to use its mask rule, and a superset with ours. TIAToolbox 2.1.3's counts
//! (`PatchExtractor.get_coordinates` + `filter_coordinates` with `tissue_mask(1.25, "power")`,
//! 256 -> 164, stride 164): 495 of 1036 patches at 0.25 mpp, 162 of 266 at 0.5 mpp. Its selected
//! input boxes at 0.25 mpp are in `tests/fixtures/e2e/runs.json` (`cheap_cmu_0.25mpp.mask.
//! selected_input_boxes`, written by `tools/fixtures/tiatoolbox_e2e.py`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mtseg_io_config::RunConfig;
use mtseg_pipeline::{plan_slide, stage_params, tissue_mask};
use mtseg_slide::open_slide;
use mtseg_tiling::{Size2, select_patches};

fn slide() -> PathBuf {
    let slide = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/cmu_small_region.svs");
    assert!(slide.exists(), "run scripts/setup first");
    slide
}

fn config(mpp: f64, rule: &str) -> RunConfig {
    let toml = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nresolution = {{ mpp = {mpp} }}\n[input]\nslides = [\"{}\"]\nmask_rule = \"{rule}\"\n",
        slide().display()
    );
    RunConfig::from_toml(&toml, Path::new("t.toml")).unwrap()
}

/// (patches in the grid, patches selected) as the run plan counts them.
fn plan(mpp: f64, rule: &str) -> (u64, u64) {
    let cfg = config(mpp, rule);
    let p = plan_slide(&cfg, &cfg.input.slides[0]).unwrap();
    (p.patches_total, p.patches_selected)
}

/// The input boxes of the selected patches, built from the same stage parameters as
/// `plan_slide` (which reports counts only); checked against its count.
fn selected_boxes(mpp: f64, rule: &str) -> BTreeSet<[i64; 4]> {
    let cfg = config(mpp, rule);
    let input = &cfg.input.slides[0];
    let slide = open_slide(&input.path, stage_params::slide_open_options(&cfg, input)).unwrap();
    let (w, h) = slide.dimensions_at(stage_params::resolution(&cfg)).unwrap();
    let grid = stage_params::patch_grid(&cfg, Size2::new(w, h))
        .build()
        .unwrap();
    let mask = tissue_mask(&cfg, input, slide.as_ref()).unwrap();
    let selected = select_patches(&grid, mask.as_ref(), stage_params::mask_rule(&cfg)).unwrap();
    let boxes: BTreeSet<[i64; 4]> = selected.iter().map(|(_, p)| p.input).collect();
    assert_eq!(boxes.len(), selected.len(), "duplicate input boxes");
    assert_eq!(
        (grid.len(), boxes.len() as u64),
        plan(mpp, rule),
        "the selection rebuilt here differs from the run plan's"
    );
    boxes
}

/// TIAToolbox's selected input boxes at 0.25 mpp, from the e2e fixture.
fn tiatoolbox_boxes_025() -> BTreeSet<[i64; 4]> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/e2e/runs.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let runs: serde_json::Value = serde_json::from_str(&text).unwrap();
    let run = &runs["cheap_cmu_0.25mpp"];
    assert_eq!(
        run["config"]["input_resolution"]["resolution"].as_f64(),
        Some(0.25)
    );
    let boxes: Vec<[i64; 4]> =
        serde_json::from_value(run["mask"]["selected_input_boxes"].clone()).unwrap();
    assert_eq!(boxes.len(), 495, "TIAToolbox selected 495 patches");
    boxes.into_iter().collect()
}

#[test]
fn tiatoolbox_rule_selects_tiatoolbox_patches() {
    assert_eq!(plan(0.25, "tiatoolbox"), (1036, 495));
    assert_eq!(plan(0.5, "tiatoolbox"), (266, 162));
    // not only as many: the very boxes TIAToolbox selected
    assert_eq!(selected_boxes(0.25, "tiatoolbox"), tiatoolbox_boxes_025());
}

#[test]
fn overlap_rule_selects_a_superset() {
    // 0.25 mpp: against TIAToolbox's own selection (the fixture).
    let tia = tiatoolbox_boxes_025();
    let ours = selected_boxes(0.25, "overlap");
    let missing: Vec<_> = tia.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "TIAToolbox selects, ours does not: {missing:?}"
    );
    assert_eq!(ours.len(), 517);
    // 0.5 mpp: the fixture has TIAToolbox's count only (162), so the superset is checked against
    // the `tiatoolbox` rule's selection, which reproduces TIAToolbox's boxes exactly at 0.25 mpp
    // (`tiatoolbox_rule_selects_tiatoolbox_patches`) and its count at 0.5 mpp.
    let compat = selected_boxes(0.5, "tiatoolbox");
    let ours = selected_boxes(0.5, "overlap");
    let missing: Vec<_> = compat.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "the tiatoolbox rule selects, ours does not: {missing:?}"
    );
    assert_eq!((compat.len(), ours.len()), (162, 165));
}

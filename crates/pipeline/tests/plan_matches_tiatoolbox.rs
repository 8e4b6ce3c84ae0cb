//! The run plan selects exactly the patches TIAToolbox's `WSIPatchDataset` selects on the real
//! SVS when asked to use its mask rule, and a superset with ours. TIAToolbox 2.1.3's counts
//! (`PatchExtractor.get_coordinates` + `filter_coordinates` with `tissue_mask(1.25, "power")`,
//! 256 -> 164, stride 164): 495 of 1036 patches at 0.25 mpp, 162 of 266 at 0.5 mpp.

use std::path::{Path, PathBuf};

use mtseg_io_config::RunConfig;
use mtseg_pipeline::plan_slide;

fn plan(mpp: f64, rule: &str) -> (u64, u64) {
    let slide = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/cmu_small_region.svs");
    assert!(slide.exists(), "run scripts/setup first");
    let toml = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[io]\nresolution = {{ mpp = {mpp} }}\n[input]\nslides = [\"{}\"]\nmask_rule = \"{rule}\"\n",
        slide.display()
    );
    let cfg = RunConfig::from_toml(&toml, Path::new("t.toml")).unwrap();
    let p = plan_slide(&cfg, &slide).unwrap();
    (p.patches_total, p.patches_selected)
}

#[test]
fn tiatoolbox_rule_selects_tiatoolbox_patches() {
    assert_eq!(plan(0.25, "tiatoolbox"), (1036, 495));
    assert_eq!(plan(0.5, "tiatoolbox"), (266, 162));
}

#[test]
fn overlap_rule_selects_a_superset() {
    assert_eq!(plan(0.25, "overlap"), (1036, 517));
    assert_eq!(plan(0.5, "overlap"), (266, 165));
}

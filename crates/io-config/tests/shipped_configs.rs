//! The configs in `configs/` parse (run from the repository root, where their relative paths point;
//! `scripts/setup` must have put the test slides in `data/`).

use mtseg_io_config::{Architecture, RunConfig};

#[test]
fn shipped_configs_parse_from_the_repository_root() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::set_current_dir(&root).unwrap();
    assert!(
        root.join("data/cmu_small_region.svs").exists(),
        "test data missing: run scripts/setup first"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = RunConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.input.slides.is_empty());
            seen += 1;
        }
    }
    assert!(seen >= 2);
    let cfg = RunConfig::from_file("configs/hovernet.toml").unwrap();
    assert_eq!(
        cfg.model.architecture,
        Architecture::HoVerNetFast { num_types: Some(6) }
    );
}

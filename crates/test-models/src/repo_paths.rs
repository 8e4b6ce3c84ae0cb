//! Where the tests' shared files are: the repository root, and the cheap TorchScript test model
//! that `scripts/setup` makes.

use std::path::PathBuf;

/// The repository root (the workspace directory).
///
/// # Panics
/// When the directory cannot be resolved (a broken checkout).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root above crates/test-models")
}

/// The cheap image-derived TorchScript test model (HoVer-Net's heads, ~5 ms per patch), made by
/// `scripts/setup` (`tools/fixtures/make_cheap_model.py`).
///
/// # Panics
/// When it is missing, saying to run `scripts/setup`.
pub fn cheap_model() -> PathBuf {
    let p = repo_root().join("target/test-models/cheap_hovernet.pt");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup first",
        p.display()
    );
    p
}

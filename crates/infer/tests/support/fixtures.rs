//! Paths of the generated test weights and the committed reference tensors, shared by the
//! integration tests (included with `#[path]`).
//!
//! The weights are made by (from the repository root, project venv):
//!     .venv/bin/python tools/fixtures/make_test_weights.py
//! which writes target/test-weights/ (or $MTSEG_TEST_WEIGHTS). Tests fail, never skip, without them.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// The command that makes the weights.
pub const SETUP: &str =
    ".venv/bin/python tools/fixtures/make_test_weights.py   (from the repository root)";

/// Directory of the generated weights.
pub fn weights_dir() -> PathBuf {
    std::env::var_os("MTSEG_TEST_WEIGHTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-weights"),
        PathBuf::from,
    )
}

/// A generated weights file; panics with the setup command when it is missing.
pub fn weights(name: &str) -> PathBuf {
    let p = weights_dir().join(name);
    assert!(
        p.is_file(),
        "test weights {} are missing: run `{SETUP}` first (the test setup does this)",
        p.display()
    );
    p
}

/// A committed reference file under tests/fixtures/.
pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(p.is_file(), "committed fixture {} is missing", p.display());
    p
}

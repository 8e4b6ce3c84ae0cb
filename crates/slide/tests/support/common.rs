//! Shared helpers of the slide integration tests: paths to the test data and image comparisons.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use image::RgbImage;

/// A file in the repository's `data/` (made by `scripts/setup`).
pub fn data(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup first",
        p.display()
    );
    p
}

/// A committed fixture of this crate.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Mean and max absolute difference over all channels.
pub fn diff(a: &RgbImage, b: &RgbImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions(), "images differ in size");
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.as_raw().len() as f64, max)
}

/// Loads a PNG as RGB.
pub fn load_png(path: &std::path::Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

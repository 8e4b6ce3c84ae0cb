//! The OpenSlide and pure-Rust TIFF backends read the same pixels: on the real Aperio SVS at
//! baseline, and on every level of the 5-level libvips pyramid made by `scripts/setup`.
//! Tolerance: mean |diff| < 1 grey level per region (JPEG decoders differ in IDCT rounding).

#[path = "support/common.rs"]
mod common;

use common::{data, diff};
use mtseg_slide::{Backend, OpenOptions, SlideReader, open_slide, reader_suite::check_reader};

fn open(name: &str, backend: Backend) -> Box<dyn SlideReader> {
    open_slide(
        &data(name),
        OpenOptions {
            backend,
            fallback_mpp: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn svs_baseline_regions_agree() {
    let os = open("cmu_small_region.svs", Backend::OpenSlide);
    let tf = open("cmu_small_region.svs", Backend::Tiff);
    assert_eq!(os.info().levels, tf.info().levels);
    assert_eq!(os.info().mpp, Some([0.499, 0.499]));
    assert_eq!(tf.info().mpp, Some([0.499, 0.499]));
    assert_eq!(os.info().objective_power, Some(20.0));
    assert_eq!(tf.info().objective_power, Some(20.0));
    for (x, y, w, h) in [
        (0, 0, 512, 512),
        (700, 1100, 600, 400),
        (1900, 2700, 320, 267),
        (235, 17, 13, 500),
    ] {
        let a = os.read_level(0, x, y, w, h).unwrap();
        let b = tf.read_level(0, x, y, w, h).unwrap();
        let (mean, max) = diff(&a, &b);
        println!("svs region ({x},{y}) {w}x{h}: mean |diff| {mean:.4}, max {max}");
        assert!(mean < 1.0, "region ({x},{y}): mean |diff| {mean}");
    }
}

#[test]
fn pyramid_levels_agree() {
    let os = open("cmu_pyramid.tif", Backend::OpenSlide);
    let tf = open("cmu_pyramid.tif", Backend::Tiff);
    assert_eq!(os.info().levels.len(), 5, "{:?}", os.info().levels);
    assert_eq!(tf.info().levels.len(), 5, "{:?}", tf.info().levels);
    for (a, b) in os.info().levels.iter().zip(&tf.info().levels) {
        assert_eq!((a.width, a.height), (b.width, b.height));
        assert!((a.downsample - b.downsample).abs() < 1e-9);
    }
    let (ma, mb) = (os.info().mpp.unwrap(), tf.info().mpp.unwrap());
    assert!(
        (ma[0] - 0.499).abs() < 1e-3 && (mb[0] - ma[0]).abs() < 1e-9,
        "{ma:?} {mb:?}"
    );
    for level in 0..5 {
        let lv = os.info().levels[level];
        // From the level's origin: OpenSlide addresses levels in level-0 pixels, so elsewhere a
        // non-integral downsample (2.0003 here) puts its read a fraction of a pixel off, which it
        // interpolates; at the origin both backends read the same pixels.
        let (w, h) = (lv.width.min(400) as u32, lv.height.min(300) as u32);
        let (x, y) = (0, 0);
        let a = os.read_level(level, x, y, w, h).unwrap();
        let b = tf.read_level(level, x, y, w, h).unwrap();
        let (mean, max) = diff(&a, &b);
        println!(
            "pyramid level {level} ({}x{}): mean |diff| {mean:.4}, max {max}",
            lv.width, lv.height
        );
        assert!(mean < 1.0, "level {level}: mean |diff| {mean}");
        // The whole level too, padding included.
        let a = os
            .read_level(level, -3, -3, lv.width as u32 + 6, lv.height as u32 + 6)
            .unwrap();
        let b = tf
            .read_level(level, -3, -3, lv.width as u32 + 6, lv.height as u32 + 6)
            .unwrap();
        assert!(diff(&a, &b).0 < 1.0);
    }
}

#[test]
fn every_backend_passes_the_reader_suite() {
    for (name, backend) in [
        ("cmu_small_region.svs", Backend::OpenSlide),
        ("cmu_small_region.svs", Backend::Tiff),
        ("cmu_pyramid.tif", Backend::OpenSlide),
        ("cmu_pyramid.tif", Backend::Tiff),
        ("hgsc_nest.jpg", Backend::Image),
        ("target_image.png", Backend::Image),
    ] {
        check_reader(open(name, backend).as_ref());
    }
}

#[test]
fn auto_backend_choice() {
    let svs = open("cmu_small_region.svs", Backend::Auto);
    assert!(
        svs.info().format.starts_with("openslide"),
        "{}",
        svs.info().format
    );
    let jpg = open("hgsc_nest.jpg", Backend::Auto);
    assert_eq!(jpg.info().format, "image");
    assert_eq!(jpg.info().dimensions(), (1500, 1500));
    let with_mpp = open_slide(
        &data("hgsc_nest.jpg"),
        OpenOptions {
            backend: Backend::Auto,
            fallback_mpp: Some(0.5),
        },
    )
    .unwrap();
    assert_eq!(with_mpp.info().mpp, Some([0.5, 0.5]));
    assert_eq!(with_mpp.info().objective_power, None);
}

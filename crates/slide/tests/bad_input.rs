//! Bad slides give errors that name the file, never a panic or a huge allocation.

#[path = "support/common.rs"]
mod common;

use std::path::Path;

use common::data;
use mtseg_slide::{Backend, OpenError, OpenOptions, Resolution, SlideReader, open_slide};

fn open_err(path: &Path, backend: Backend) -> OpenError {
    match open_slide(
        path,
        OpenOptions {
            backend,
            fallback_mpp: None,
        },
    ) {
        Ok(_) => panic!("{} should not open with {backend:?}", path.display()),
        Err(e) => e,
    }
}

fn assert_names(e: &dyn std::fmt::Display, path: &Path) {
    let text = e.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "message does not name the file: {text}"
    );
}

#[test]
fn missing_file() {
    let p = Path::new("/nonexistent/slide.svs");
    for backend in [
        Backend::Auto,
        Backend::OpenSlide,
        Backend::Tiff,
        Backend::Image,
    ] {
        let e = open_err(p, backend);
        assert!(matches!(e, OpenError::Io { .. }), "{e}");
        assert_names(&e, p);
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}

#[test]
fn text_file_named_svs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.svs");
    std::fs::write(&p, "this is a text file, not a slide\n".repeat(20)).unwrap();
    let e = open_err(&p, Backend::Auto);
    assert!(matches!(e, OpenError::Unsupported { .. }), "{e}");
    assert_names(&e, &p);
    assert!(e.to_string().contains("not a format mtseg can read"), "{e}");
    for backend in [Backend::OpenSlide, Backend::Tiff, Backend::Image] {
        assert_names(&open_err(&p, backend), &p);
    }
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.svs");
    std::fs::write(&p, b"").unwrap();
    let e = open_err(&p, Backend::Auto);
    assert!(matches!(e, OpenError::Empty { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("slide {} is an empty file", p.display())
    );
}

#[test]
fn directory_instead_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_err(dir.path(), Backend::Auto);
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

/// Reads every pixel of level 0 in 1024-px blocks; returns the first error.
fn read_all(s: &dyn SlideReader) -> Result<(), mtseg_slide::ReadError> {
    let (w, h) = s.info().dimensions();
    for y in (0..h).step_by(1024) {
        for x in (0..w).step_by(1024) {
            s.read_level(0, x as i64, y as i64, 1024, 1024)?;
        }
    }
    Ok(())
}

#[test]
fn truncated_svs() {
    let full = std::fs::read(data("cmu_small_region.svs")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Level 0's tiles span bytes 16..1_275_950 of the 1_938_955-byte file: each cut loses some.
    for (i, keep) in [full.len() / 2, 1_200_000, 300].into_iter().enumerate() {
        let p = dir.path().join(format!("truncated{i}.svs"));
        std::fs::write(&p, &full[..keep]).unwrap();
        for backend in [Backend::Auto, Backend::OpenSlide, Backend::Tiff] {
            match open_slide(
                &p,
                OpenOptions {
                    backend,
                    fallback_mpp: None,
                },
            ) {
                Err(e) => {
                    assert_names(&e, &p);
                    println!("{backend:?} keep {keep}: {e}");
                }
                Ok(s) => {
                    let e = read_all(s.as_ref()).expect_err("reading a truncated slide must fail");
                    assert_names(&e, &p);
                    println!("{backend:?} keep {keep}: {e}");
                }
            }
        }
    }
}

/// A little-endian classic TIFF with one IFD of the given (tag, type, count, value) entries.
fn tiff_with(entries: &[(u16, u16, u32, u32)]) -> Vec<u8> {
    let mut b = b"II*\0".to_vec();
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for &(tag, ty, count, value) in entries {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&value.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&[0u8; 64]);
    b
}

const SHORT: u16 = 3;
const LONG: u16 = 4;

#[test]
fn tiff_claiming_absurd_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    // 4e9 x 4e9 pixels, tiled 256 x 256, one tile offset: no allocation may follow the claim.
    let absurd = tiff_with(&[
        (256, LONG, 1, 4_000_000_000),
        (257, LONG, 1, 4_000_000_000),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 2),
        (277, SHORT, 1, 1),
        (322, SHORT, 1, 256),
        (323, SHORT, 1, 256),
        (324, LONG, 1, 200),
        (325, LONG, 1, 10),
    ]);
    let p = dir.path().join("absurd.tif");
    std::fs::write(&p, &absurd).unwrap();
    for backend in [Backend::Auto, Backend::Tiff, Backend::Image] {
        let e = open_err(&p, backend);
        assert_names(&e, &p);
        println!("{backend:?}: {e}");
    }
    let e = open_err(&p, Backend::Tiff);
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e}");

    // Plausible size but a tile table that does not cover it.
    let short_table = tiff_with(&[
        (256, LONG, 1, 100_000),
        (257, LONG, 1, 100_000),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (277, SHORT, 1, 1),
        (322, SHORT, 1, 256),
        (323, SHORT, 1, 256),
        (324, LONG, 1, 200),
        (325, LONG, 1, 10),
    ]);
    let p = dir.path().join("short_table.tif");
    std::fs::write(&p, &short_table).unwrap();
    let e = open_err(&p, Backend::Tiff);
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e}");
    assert_names(&e, &p);
}

#[test]
fn resolution_without_metadata_is_an_error_naming_the_file() {
    let s = open_slide(&data("hgsc_nest.jpg"), OpenOptions::default()).unwrap();
    let e = s.dimensions_at(Resolution::Mpp(0.5)).unwrap_err();
    assert_names(&e, &data("hgsc_nest.jpg"));
    assert!(e.to_string().contains("[input] mpp"), "{e}");
    // With a baseline resolution no metadata is needed.
    assert_eq!(
        s.dimensions_at(Resolution::Baseline(0.5)).unwrap(),
        (750, 750)
    );
}

#[test]
fn slide_truncated_after_opening_fails_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shrinking.svs");
    std::fs::copy(data("cmu_small_region.svs"), &p).unwrap();
    let s = open_slide(
        &p,
        OpenOptions {
            backend: Backend::Tiff,
            fallback_mpp: None,
        },
    )
    .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(600_000)
        .unwrap();
    let e = read_all(s.as_ref()).expect_err("tiles past the end must fail");
    assert_names(&e, &p);
    assert!(e.to_string().contains("truncated"), "{e}");
    println!("{e}");
}

//! Conformance checks every [`SlideReader`] backend must pass (feature `test-utils`), in the
//! manner of zarrs' `store_test`: a backend's test calls [`check_reader`] on a slide and the
//! checks assert what all readers agree on.

use crate::resolution::Resolution;
use crate::slide_reader::{Interpolation, SlideReader};

/// Runs the conformance checks on `reader`; panics with a message naming the check that failed.
pub fn check_reader(reader: &dyn SlideReader) {
    let info = reader.info();
    assert!(
        !info.levels.is_empty(),
        "{}: no levels",
        reader.path().display()
    );
    let (w, h) = info.dimensions();
    assert!(w > 0 && h > 0, "empty level 0");
    for pair in info.levels.windows(2) {
        assert!(
            pair[1].width <= pair[0].width && pair[1].downsample > pair[0].downsample,
            "levels must shrink"
        );
    }
    // Reads outside the slide are white, partial reads are padded.
    let outside = reader
        .read_level(0, -300, -300, 50, 40)
        .expect("read outside");
    assert_eq!(outside.dimensions(), (50, 40));
    assert!(
        outside.pixels().all(|p| p.0 == [255, 255, 255]),
        "outside pixels must be 255"
    );
    let edge = reader
        .read_level(0, w as i64 - 10, h as i64 - 10, 30, 30)
        .expect("read across the corner");
    assert_eq!(edge.get_pixel(29, 29).0, [255, 255, 255]);
    let inside = reader
        .read_level(0, w as i64 - 10, h as i64 - 10, 10, 10)
        .expect("read inside");
    assert_eq!(
        inside.get_pixel(0, 0),
        edge.get_pixel(0, 0),
        "padding must not shift pixels"
    );
    // A read at baseline resolution is the level-0 read.
    let base = reader
        .read_region(
            [0, 0, 64, 48],
            Resolution::Baseline(1.0),
            Interpolation::Optimise,
        )
        .expect("baseline read");
    assert_eq!(base, reader.read_level(0, 0, 0, 64, 48).unwrap());
    // Bad requests are errors, not panics.
    assert!(
        reader.read_level(info.levels.len(), 0, 0, 4, 4).is_err(),
        "missing level must be an error"
    );
    assert!(
        reader.read_level(0, 0, 0, 0, 4).is_err(),
        "empty read must be an error"
    );
    assert!(
        reader
            .read_region(
                [5, 5, 5, 9],
                Resolution::Baseline(1.0),
                Interpolation::Optimise
            )
            .is_err()
    );
    assert!(
        reader.read_level(0, 0, 0, 1 << 20, 1 << 20).is_err(),
        "oversized read must be refused"
    );
}

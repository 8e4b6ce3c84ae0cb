//! `read_regions` returns, box for box, exactly what `read_region` returns: on the Aperio SVS
//! through OpenSlide, on the 5-level libvips pyramid through the TIFF backend and OpenSlide, and
//! on a plain image; at the native resolution, enlarged (0.499 -> 0.25 mpp, cubic), shrunk within
//! level 0 (area) and at lower pyramid levels; with boxes partly or wholly outside the slide.
//! Box sets are rows of overlapping patches (as the patch grid makes them), with jitter, jumps
//! to other rows and far-away boxes, so both merged and separate reads are exercised. A
//! counting reader checks that merging really reads less.

#[path = "support/common.rs"]
mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use common::data;
use mtseg_slide::{
    Backend, Interpolation, OpenOptions, ReadError, Resolution, RgbImage, SlideInfo, SlideReader,
    open_slide,
};
use proptest::prelude::*;

fn open(name: &str, backend: Backend, mpp: Option<f64>) -> Box<dyn SlideReader> {
    open_slide(
        &data(name),
        OpenOptions {
            backend,
            fallback_mpp: mpp,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The test slides, opened once (their tile caches warm up across cases, which reads must not
/// depend on).
fn slides() -> &'static [(&'static str, Box<dyn SlideReader>)] {
    static SLIDES: OnceLock<Vec<(&'static str, Box<dyn SlideReader>)>> = OnceLock::new();
    SLIDES.get_or_init(|| {
        vec![
            (
                "svs/openslide",
                open("cmu_small_region.svs", Backend::OpenSlide, None),
            ),
            ("pyramid/tiff", open("cmu_pyramid.tif", Backend::Tiff, None)),
            (
                "pyramid/openslide",
                open("cmu_pyramid.tif", Backend::OpenSlide, None),
            ),
            (
                "image",
                open("hgsc_stromal_he.jpg", Backend::Image, Some(0.499)),
            ),
        ]
    })
}

const RESOLUTIONS: [Resolution; 6] = [
    Resolution::Baseline(1.0), // native level 0
    Resolution::Mpp(0.25),     // enlarged, cubic
    Resolution::Mpp(0.7),      // shrunk from level 0, area
    Resolution::Mpp(1.0),      // level 1 of the pyramid (scale 0.998)
    Resolution::Mpp(2.0),      // level 2 of the pyramid
    Resolution::Power(1.25),   // level 3 of the pyramid
];

const INTERPOLATIONS: [Interpolation; 4] = [
    Interpolation::Optimise,
    Interpolation::TiaToolbox,
    Interpolation::Area,
    Interpolation::Cubic,
];

/// A set of boxes at some resolution: rows of overlapping patches from a start near (or past)
/// the slide, some jittered, and some boxes anywhere.
#[derive(Debug, Clone)]
struct Boxes {
    slide: usize,
    res: usize,
    interp: usize,
    boxes: Vec<[i64; 4]>,
}

fn boxes_strategy() -> impl Strategy<Value = Boxes> {
    let row = (
        -300i64..2500,
        -300i64..3200,
        1i64..300,
        1i64..300,
        1i64..300,
        1usize..10,
    );
    let one = prop_oneof![
        // A row of patches every `stride` px.
        3 => row.prop_map(|(x, y, w, h, stride, n)| {
            (0..n as i64)
                .map(|k| [x + k * stride, y, x + k * stride + w, y + h])
                .collect::<Vec<_>>()
        }),
        // One box anywhere, possibly far outside.
        1 => (-5000i64..8000, -5000i64..8000, 1i64..400, 1i64..400)
            .prop_map(|(x, y, w, h)| vec![[x, y, x + w, y + h]]),
    ];
    (
        0..4usize,
        0..RESOLUTIONS.len(),
        0..INTERPOLATIONS.len(),
        prop::collection::vec(one, 1..4),
        prop::collection::vec(-3i64..=3, 0..30),
    )
        .prop_map(|(slide, res, interp, parts, jitter)| {
            let mut boxes: Vec<[i64; 4]> = parts.into_iter().flatten().collect();
            for (b, j) in boxes.iter_mut().zip(jitter) {
                b[0] += j;
                b[2] += j.abs();
            }
            Boxes {
                slide,
                res,
                interp,
                boxes,
            }
        })
}

fn check_identical(reader: &dyn SlideReader, case: &Boxes) -> Result<(), TestCaseError> {
    let (res, interp) = (RESOLUTIONS[case.res], INTERPOLATIONS[case.interp]);
    let Ok(many) = reader.read_regions(&case.boxes, res, interp) else {
        // A resolution the slide lacks metadata for fails alike one box at a time.
        let first = reader.read_region(case.boxes[0], res, interp);
        prop_assert!(first.is_err(), "read_regions failed, read_region did not");
        return Ok(());
    };
    prop_assert_eq!(many.len(), case.boxes.len());
    for (b, img) in case.boxes.iter().zip(&many) {
        let one = reader.read_region(*b, res, interp).unwrap();
        prop_assert_eq!(img.dimensions(), one.dimensions(), "box {:?}", b);
        prop_assert!(img == &one, "box {:?}: pixels differ", b);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn read_regions_equals_read_region_box_for_box(case in boxes_strategy()) {
        let (_, reader) = &slides()[case.slide];
        check_identical(reader.as_ref(), &case)?;
    }
}

/// A reader that counts the level pixels its inner reader decodes.
struct Counting {
    inner: Box<dyn SlideReader>,
    pixels: AtomicU64,
    reads: AtomicU64,
}

impl SlideReader for Counting {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn info(&self) -> &SlideInfo {
        self.inner.info()
    }

    fn read_level_inside(
        &self,
        level: usize,
        x: u64,
        y: u64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, ReadError> {
        self.pixels
            .fetch_add(u64::from(width) * u64::from(height), Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_level_inside(level, x, y, width, height)
    }

    fn read_crops_exactly(&self, level: usize) -> bool {
        self.inner.read_crops_exactly(level)
    }

    fn tile_size(&self, level: usize) -> Option<(u64, u64)> {
        self.inner.tile_size(level)
    }
}

fn counting(name: &str, backend: Backend) -> Counting {
    Counting {
        inner: open(name, backend, None),
        pixels: AtomicU64::new(0),
        reads: AtomicU64::new(0),
    }
}

/// Eight 256 px patches every 164 px at (`x`, `y`), then one far below and right of them (as
/// a batch that wraps to the next grid row jumps back to its start).
fn batch(x: i64, y: i64) -> Vec<[i64; 4]> {
    let mut b: Vec<_> = (0..8)
        .map(|k| [x + 164 * k, y, x + 164 * k + 256, y + 256])
        .collect();
    b.push([x + 1800, y + 1000, x + 2056, y + 1256]);
    b
}

#[test]
fn a_row_of_patches_is_read_once_in_tile_column_pieces() {
    for (name, backend) in [
        ("cmu_small_region.svs", Backend::OpenSlide),
        ("cmu_pyramid.tif", Backend::Tiff),
    ] {
        let slide = counting(name, backend);
        let boxes = batch(100, 500);
        let res = Resolution::Baseline(1.0);
        let many = slide
            .read_regions(&boxes, res, Interpolation::Optimise)
            .unwrap();
        let (px, reads) = (
            slide.pixels.load(Ordering::Relaxed),
            slide.reads.load(Ordering::Relaxed),
        );
        // The row's union (1404 x 256) and the far patch, not 9 x 256 x 256.
        assert_eq!(px, 1404 * 256 + 256 * 256, "{name}");
        // Tiles of 240 (svs) or 256 (libvips) px: pieces of whole tiles, at least 256 px wide.
        let tile = slide.tile_size(0).expect("tiled").0;
        let step = 256u64.div_ceil(tile) * tile;
        let pieces = (100 + 1404 - 1) / step - 100 / step + 1;
        assert_eq!(reads, pieces + 1, "{name}: {tile} px tiles");
        for (b, img) in boxes.iter().zip(&many) {
            let one = slide.read_region(*b, res, Interpolation::Optimise).unwrap();
            assert!(img == &one, "{name}: box {b:?} differs");
        }
    }
}

#[test]
fn enlarged_reads_merge_their_level_rectangles() {
    let slide = counting("cmu_small_region.svs", Backend::OpenSlide);
    // At 0.25 mpp a 256 px patch is a 129 px level-0 read; a row of 8 every 164 px spans
    // level-0 x from ceil(-46 / 1.996) = -23 to about (-46 + 7 * 164 + 256) / 1.996.
    let boxes: Vec<_> = batch(-46, -46).into_iter().take(8).collect();
    let res = Resolution::Mpp(0.25);
    let many = slide
        .read_regions(&boxes, res, Interpolation::Optimise)
        .unwrap();
    let px = slide.pixels.load(Ordering::Relaxed);
    // Inside the slide only (x, y >= 0): at most 700 x 106 level pixels, far below 8 x 129^2.
    assert!(px <= 700 * 106, "{px} level pixels read");
    for (b, img) in boxes.iter().zip(&many) {
        assert_eq!(img.dimensions(), (256, 256));
        let one = slide.read_region(*b, res, Interpolation::Optimise).unwrap();
        assert!(img == &one, "box {b:?} differs");
    }
}

#[test]
fn openslide_levels_at_fractional_downsamples_are_read_box_by_box() {
    let os = open("cmu_pyramid.tif", Backend::OpenSlide, None);
    // libvips halves 2967 rows to 1483: level 1's downsample is 2.00034.., not a whole number.
    assert!(os.read_crops_exactly(0));
    assert!(os.info().levels[1].downsample.fract() != 0.0);
    assert!(!os.read_crops_exactly(1));
    assert!(!os.read_crops_exactly(9));
    let tf = open("cmu_pyramid.tif", Backend::Tiff, None);
    assert!(tf.read_crops_exactly(1));
    assert_eq!(tf.tile_size(1), Some((256, 256)));
    assert_eq!(os.tile_size(1), Some((256, 256)));
}

#[test]
fn the_first_invalid_box_gives_read_regions_error() {
    let slide = open("cmu_small_region.svs", Backend::OpenSlide, None);
    let mut boxes = batch(0, 0);
    boxes[3] = [40, 40, 40, 90];
    boxes[6] = [0, 0, -5, 5];
    let res = Resolution::Baseline(1.0);
    let e = slide
        .read_regions(&boxes, res, Interpolation::Optimise)
        .unwrap_err();
    let direct = slide
        .read_region(boxes[3], res, Interpolation::Optimise)
        .unwrap_err();
    assert!(matches!(e, ReadError::InvalidRequest { .. }), "{e}");
    assert_eq!(e.to_string(), direct.to_string());
    assert!(e.to_string().contains("cmu_small_region.svs"), "{e}");
    let image = open("hgsc_stromal_he.jpg", Backend::Image, None);
    let e = image
        .read_regions(&batch(0, 0), Resolution::Mpp(0.5), Interpolation::Optimise)
        .unwrap_err();
    assert!(e.to_string().contains("microns-per-pixel"), "{e}");
    assert!(
        slide
            .read_regions(&[], res, Interpolation::Optimise)
            .unwrap()
            .is_empty()
    );
}

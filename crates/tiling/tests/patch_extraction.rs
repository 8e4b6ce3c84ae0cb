//! Patch reads on the real SVS: batches equal direct reads and keep grid order, and the mask
//! keeps tissue patches.

use std::path::PathBuf;

use mtseg_slide::{Interpolation, OpenOptions, Resolution, SlideReader, TissueMask, open_slide};
use mtseg_tiling::{ExtractParams, MaskRule, PatchGridBuilder, Size2, read_batch, select_patches};

fn svs() -> Box<dyn SlideReader> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/cmu_small_region.svs");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup first",
        p.display()
    );
    open_slide(&p, OpenOptions::default()).unwrap()
}

fn params() -> ExtractParams {
    ExtractParams {
        resolution: Resolution::Mpp(0.5),
        interpolation: Interpolation::Optimise,
        batch_size: 7,
    }
}

#[test]
fn masked_patches_are_read_in_order_and_equal_direct_reads() {
    let slide = svs();
    let (w, h) = slide.dimensions_at(Resolution::Mpp(0.5)).unwrap();
    let grid = PatchGridBuilder::new(Size2::new(w, h), Size2::new(256, 256))
        .patch_output(Size2::new(164, 164))
        .build()
        .unwrap();
    let mask = TissueMask::otsu(slide.as_ref()).unwrap();
    let selected = select_patches(&grid, Some(&mask), MaskRule::TiaToolbox).unwrap();
    let ours = select_patches(&grid, Some(&mask), MaskRule::AnyOverlap).unwrap();
    println!(
        "grid {} patches, {} with tissue (TIAToolbox rule), {} (any overlap)",
        grid.len(),
        selected.len(),
        ours.len()
    );
    assert!(selected.len() < grid.len() as usize && selected.len() > grid.len() as usize / 4);
    assert!(ours.len() >= selected.len());
    let few: Vec<_> = selected.iter().copied().take(20).collect();
    let mut seen = Vec::new();
    let mut batches = 0;
    for chunk in few.chunks(params().batch_size) {
        let batch = read_batch(slide.as_ref(), chunk, params()).unwrap();
        assert!(batch.len() <= 7);
        assert_eq!(batch.patch, Size2::new(256, 256));
        for (k, idx) in batch.indices.iter().enumerate() {
            let b = batch.boxes[k];
            assert_eq!(b, chunk[k].1);
            let direct = slide
                .read_region(b.input, Resolution::Mpp(0.5), Interpolation::Optimise)
                .unwrap();
            assert_eq!(batch.patch_pixels(k), direct.as_raw().as_slice());
            seen.push(*idx);
        }
        batches += 1;
    }
    assert_eq!(seen, few.iter().map(|(i, _)| *i).collect::<Vec<_>>());
    assert_eq!((seen.len(), batches), (20, 3));
    assert!(
        read_batch(slide.as_ref(), &[], params())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn batches_over_grid_rows_equal_direct_reads_native_and_enlarged() {
    // Batches of 8 of the first and last grid rows (padded past the slide's edges) and the
    // batches that wrap from one row to the next; at 0.25 mpp every patch is enlarged (cubic)
    // from a 129 px level read, at baseline it is a crop.
    let slide = svs();
    for res in [Resolution::Mpp(0.25), Resolution::Baseline(1.0)] {
        let (w, h) = slide.dimensions_at(res).unwrap();
        let grid = PatchGridBuilder::new(Size2::new(w, h), Size2::new(256, 256))
            .patch_output(Size2::new(164, 164))
            .build()
            .unwrap();
        let per_row = grid.len() / grid.rows();
        let last = grid.rows() - 1;
        let rows = (0..2 * per_row).chain((last - 1) * per_row..grid.len());
        let chunk: Vec<_> = rows.map(|i| (i, grid.get(i).unwrap())).collect();
        let p = ExtractParams {
            resolution: res,
            batch_size: 8,
            ..params()
        };
        for batch_chunk in chunk.chunks(8) {
            let batch = read_batch(slide.as_ref(), batch_chunk, p).unwrap();
            assert_eq!(batch.indices.len(), batch_chunk.len());
            for (k, (_, b)) in batch_chunk.iter().enumerate() {
                let direct = slide
                    .read_region(b.input, res, Interpolation::Optimise)
                    .unwrap();
                assert!(
                    batch.patch_pixels(k) == direct.as_raw().as_slice(),
                    "{res:?}: patch {:?} differs",
                    b.input
                );
            }
        }
    }
}

#[test]
fn an_empty_mask_leaves_no_patch() {
    let grid = PatchGridBuilder::new(Size2::new(100, 100), Size2::new(10, 10))
        .build()
        .unwrap();
    let mask = TissueMask::from_bools(10, 10, vec![false; 100]).unwrap();
    let e = select_patches(&grid, Some(&mask), MaskRule::AnyOverlap).unwrap_err();
    assert!(e.to_string().contains("no patch remains"), "{e}");
}

//! The extraction stage on the real SVS: patches equal direct reads, batches arrive in grid order,
//! the mask keeps tissue patches, and a dropped consumer stops the stage.

use std::path::PathBuf;
use std::sync::Arc;

use mtseg_slide::{Interpolation, OpenOptions, Resolution, SlideReader, TissueMask, open_slide};
use mtseg_tiling::{
    ExtractError, ExtractParams, MaskRule, PatchGridBuilder, Size2, extract_patches, select_patches,
};

fn svs() -> Arc<dyn SlideReader> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/cmu_small_region.svs");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup first",
        p.display()
    );
    Arc::from(open_slide(&p, OpenOptions::default()).unwrap())
}

fn params() -> ExtractParams {
    ExtractParams {
        resolution: Resolution::Mpp(0.5),
        interpolation: Interpolation::Optimise,
        batch_size: 7,
    }
}

#[test]
fn masked_patches_arrive_in_order_and_equal_direct_reads() {
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
    let (tx, rx) = crossbeam_channel::bounded(2);
    let stats = std::thread::scope(|s| {
        let h = s.spawn(|| extract_patches(&slide, &few, params(), &tx));
        let mut seen = Vec::new();
        drop(tx.clone());
        for batch in rx.iter().take(3) {
            assert!(batch.len() <= 7);
            for (k, idx) in batch.indices.iter().enumerate() {
                let b = batch.boxes[k];
                let direct = slide
                    .read_region(b.input, Resolution::Mpp(0.5), Interpolation::Optimise)
                    .unwrap();
                assert_eq!(batch.patch_pixels(k), direct.as_raw().as_slice());
                seen.push(*idx);
            }
        }
        let stats = h.join().unwrap().unwrap();
        assert_eq!(seen, few.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        stats
    });
    assert_eq!((stats.patches, stats.batches), (20, 3));
}

#[test]
fn dropped_receiver_stops_extraction() {
    let slide = svs();
    let grid = PatchGridBuilder::new(Size2::new(1108, 1481), Size2::new(64, 64))
        .build()
        .unwrap();
    let all = select_patches(&grid, None, MaskRule::AnyOverlap).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    drop(rx);
    let e = extract_patches(&slide, &all, params(), &tx).unwrap_err();
    assert!(matches!(e, ExtractError::Disconnected));
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

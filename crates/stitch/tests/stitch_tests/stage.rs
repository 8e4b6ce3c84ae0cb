//! The threaded stage: back-pressure, errors and cancellation, cleanup after errors.

use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, bounded};

use mtseg_stitch::{
    CanvasPlan, MemoryBudget, PredictionBatch, ProbabilityStore, SpillConfig, StitchError,
    Stitcher, ZarrLayout, run_full_canvas_stage, spawn_rows_stage,
};

use super::synthetic::{grid, noisy_model, params};

fn setup() -> (super::synthetic::Grid, CanvasPlan) {
    let g = grid([40, 30], [8, 8], [6, 6], [5, 5]);
    let plan = CanvasPlan::without_mask(&g.output_boxes, [40, 30]).unwrap();
    (g, plan)
}

#[test]
fn a_stalled_consumer_blocks_the_producer() {
    let (g, plan) = setup();
    let n = g.output_boxes.len();
    let (in_tx, in_rx) = bounded::<PredictionBatch>(1);
    let (out_tx, out_rx) = bounded(1);
    let stage = spawn_rows_stage(
        Stitcher::new(params(plan, [6, 6], &[2], MemoryBudget::unlimited())).unwrap(),
        in_rx,
        out_tx,
        None,
    )
    .unwrap();
    // Nobody reads the output: the stage fills it, blocks, and stops reading its input.
    let mut blocked = false;
    for i in 0..n {
        let batch: PredictionBatch = vec![noisy_model(&g, i, [6, 6], &[2], 1)].into();
        match in_tx.send_timeout(batch, Duration::from_millis(200)) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => {
                blocked = true;
                break;
            }
            Err(SendTimeoutError::Disconnected(_)) => panic!("stage ended early"),
        }
    }
    assert!(blocked, "back-pressure reaches the producer");
    // The consumer hangs up: the stage fails with OutputClosed and releases its input.
    drop(out_rx);
    let err = stage.join().unwrap_err();
    assert!(matches!(err, StitchError::OutputClosed), "{err}");
    assert!(in_tx.send(PredictionBatch::default()).is_err());
}

#[test]
fn a_bad_patch_ends_the_stage_and_closes_its_output() {
    let (g, plan) = setup();
    let (in_tx, in_rx) = bounded::<PredictionBatch>(4);
    let (out_tx, out_rx) = bounded(64);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("probs.zarr");
    let store = ProbabilityStore::create(
        &out_path,
        &plan,
        &[mtseg_stitch::HeadSpec::new("a", 2)],
        serde_json::Map::new(),
        ZarrLayout::default(),
        &MemoryBudget::unlimited(),
    )
    .unwrap();
    let stage = spawn_rows_stage(
        Stitcher::new(params(plan, [6, 6], &[2], MemoryBudget::unlimited())).unwrap(),
        in_rx,
        out_tx,
        Some(store),
    )
    .unwrap();
    let mut bad = noisy_model(&g, 1, [6, 6], &[2], 1);
    bad.heads[0].data.truncate(5);
    in_tx
        .send(vec![noisy_model(&g, 0, [6, 6], &[2], 1), bad].into())
        .unwrap();
    let err = stage.join().unwrap_err();
    assert!(
        matches!(err, StitchError::BlockShape { index: 1, .. }),
        "{err}"
    );
    // Whatever was sent can be drained, then the channel reports it is closed.
    while out_rx.recv().is_ok() {}
    assert!(in_tx.send(PredictionBatch::default()).is_err());
    // The unfinished probability store left nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn spill_data_is_removed_after_an_error() {
    let (g, plan) = setup();
    let spill_dir = tempfile::tempdir().unwrap();
    let budget = MemoryBudget::unlimited();
    let p = params(plan, [6, 6], &[2], budget.clone());
    let tight = MemoryBudget::with_bytes(p.window_bytes() + 2 * 4 * 40 * 2 * 4);
    let p = params(p.plan, [6, 6], &[2], tight.clone());
    let (tx, rx) = bounded::<PredictionBatch>(64);
    // Every patch but the last: the canvas spills, then the input ends too early.
    for i in 0..g.output_boxes.len() - 1 {
        tx.send(vec![noisy_model(&g, i, [6, 6], &[2], 3)].into())
            .unwrap();
    }
    drop(tx);
    let spill = SpillConfig {
        dir: spill_dir.path().to_path_buf(),
        layout: ZarrLayout {
            chunk: [2, 8],
            shard_chunks_x: 2,
            zstd_level: 1,
        },
    };
    let err = run_full_canvas_stage(Stitcher::new(p).unwrap(), &rx, spill, None).unwrap_err();
    assert!(
        matches!(err, StitchError::MissingPatches { missing: 1, .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(spill_dir.path()).unwrap().count(), 0);
    assert_eq!(tight.used(), 0);
}

#[test]
fn a_refused_window_names_the_config_key() {
    let (_, plan) = setup();
    let err =
        Stitcher::new(params(plan, [6, 6], &[2], MemoryBudget::with_bytes(1000))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("[pipeline] memory_limit") && msg.contains("stitch window"),
        "{msg}"
    );
}

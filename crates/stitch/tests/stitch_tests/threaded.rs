//! The threaded stage: back-pressure, errors and cancellation, cleanup after errors.

use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, bounded};

use mtseg_stitch::{
    CanvasPlan, MemoryBudget, PredictionBatch, ProbabilityStore, Size2, SpillConfig, StitchError,
    Stitcher, ZarrLayout, run_full_canvas_stage, spawn_rows_stage,
};

use super::synthetic::{grid, noisy_model, params};

fn setup() -> (super::synthetic::Grid, CanvasPlan) {
    let g = grid([40, 30], [8, 8], [6, 6], [5, 5]);
    let plan = CanvasPlan::without_mask(&g.output_boxes, Size2::new(40, 30)).unwrap();
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

/// Patches of the 40 x 30 setup, in grid order.
fn all_patches(g: &super::synthetic::Grid) -> Vec<mtseg_stitch::PatchPrediction> {
    (0..g.output_boxes.len())
        .map(|i| noisy_model(g, i, [6, 6], &[2], 7))
        .collect()
}

/// The rows stage on its thread; `consume` gets each item. Returns the rows (copied) and the
/// report.
fn run_rows(
    params: mtseg_stitch::StitchParams,
    patches: Vec<mtseg_stitch::PatchPrediction>,
    mut consume: impl FnMut(&mtseg_stitch::CanvasRows),
) -> Result<(Vec<mtseg_stitch::CanvasRows>, mtseg_stitch::StitchReport), StitchError> {
    let (in_tx, in_rx) = bounded::<PredictionBatch>(2);
    let (out_tx, out_rx) = bounded(1);
    let stage = spawn_rows_stage(Stitcher::new(params)?, in_rx, out_tx, None)?;
    let producer = std::thread::spawn(move || {
        for chunk in patches.chunks(3) {
            if in_tx.send(chunk.to_vec().into()).is_err() {
                return;
            }
        }
    });
    let mut rows = Vec::new();
    for item in out_rx {
        consume(&item);
        rows.push(item.clone());
    }
    producer.join().unwrap();
    let report = stage.join()?;
    Ok((rows, report))
}

#[test]
fn rows_hold_their_budget_bytes_and_the_stage_waits_for_a_slow_consumer() {
    let (g, plan) = setup();
    let probe = params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited());
    let (baseline, _) = run_rows(probe.clone(), all_patches(&g), |_| {}).unwrap();
    // Room for the window and exactly one item of rows (5 rows x 40 px x 2 channels).
    let chunk = probe.chunk_bytes();
    assert_eq!(chunk, 5 * 40 * 2 * 4);
    let tight = MemoryBudget::with_bytes(probe.window_bytes() + chunk);
    let p = params(plan, [6, 6], &[2], tight.clone());
    let budget = tight.clone();
    let (rows, report) = run_rows(p, all_patches(&g), |item| {
        // Each item holds its bytes; the next one cannot be reserved before this one is dropped.
        assert_eq!(item.memory.bytes(), item.byte_size());
        assert!(budget.used() <= budget.limit());
        std::thread::sleep(Duration::from_millis(5));
    })
    .unwrap();
    assert_eq!(rows, baseline);
    assert!(tight.peak() <= tight.limit());
    assert_eq!(tight.used(), 0);
    assert!(report.metrics.waiting > Duration::ZERO);
}

#[test]
fn a_consumer_that_keeps_every_row_gets_an_error_not_a_hang() {
    let (g, plan) = setup();
    let probe = params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited());
    let tight = MemoryBudget::with_bytes(probe.window_bytes() + 2 * probe.chunk_bytes());
    let p = params(plan, [6, 6], &[2], tight.clone()).with_memory_wait(Duration::from_millis(100));
    let (in_tx, in_rx) = bounded::<PredictionBatch>(64);
    for p in all_patches(&g) {
        in_tx.send(vec![p].into()).unwrap();
    }
    drop(in_tx);
    let (out_tx, out_rx) = bounded(8);
    let stage = spawn_rows_stage(Stitcher::new(p).unwrap(), in_rx, out_tx, None).unwrap();
    // Keep everything (as a consumer that needs more rows than the budget holds would).
    let mut kept = Vec::new();
    while let Ok(rows) = out_rx.recv_timeout(Duration::from_secs(20)) {
        kept.push(rows);
    }
    let err = stage.join().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StitchError::Memory(_)), "{msg}");
    assert!(
        msg.contains("[pipeline] memory_limit") && msg.contains("waited"),
        "{msg}"
    );
    assert_eq!(kept.len(), 2);
    drop(kept);
    assert_eq!(tight.used(), 0);
}

#[test]
fn rows_per_chunk_and_a_tight_budget_cut_items_smaller() {
    let (g, plan) = setup();
    let probe = params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited());
    let (baseline, _) = run_rows(probe.clone(), all_patches(&g), |_| {}).unwrap();
    assert!(baseline.iter().all(|r| r.rows <= 6));
    // Configured: at most 2 rows per item.
    let p = probe.clone().with_rows_per_chunk(2);
    assert_eq!(p.max_chunk_rows(), 2);
    let (rows, report) = run_rows(p, all_patches(&g), |_| {}).unwrap();
    assert!(rows.iter().all(|r| r.rows <= 2));
    assert_eq!(report.metrics.row_chunks_out, rows.len() as u64);
    let joined = |rows: &[mtseg_stitch::CanvasRows]| -> Vec<u32> {
        rows.iter()
            .flat_map(|r| r.heads[0].iter().map(|v| v.to_bits()))
            .collect()
    };
    assert_eq!(joined(&rows), joined(&baseline));
    // A budget with room for 3 rows next to the window: items of at most 3 rows.
    let row = probe.row_bytes();
    let tight = MemoryBudget::with_bytes(probe.window_bytes() + 3 * row + row / 2);
    let p = params(plan, [6, 6], &[2], tight.clone());
    let (rows, _) = run_rows(p, all_patches(&g), |_| {}).unwrap();
    assert!(rows.iter().all(|r| r.rows <= 3));
    assert_eq!(joined(&rows), joined(&baseline));
    assert!(tight.peak() <= tight.limit());
}

#[test]
fn no_room_for_one_row_is_an_error_at_once() {
    let (g, plan) = setup();
    let probe = params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited());
    let tight = MemoryBudget::with_bytes(probe.window_bytes() + probe.row_bytes() - 1);
    let p = params(plan, [6, 6], &[2], tight);
    let started = std::time::Instant::now();
    let err = run_rows(p, all_patches(&g), |_| {}).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    let msg = err.to_string();
    assert!(
        msg.contains("[pipeline] memory_limit") && msg.contains("canvas rows"),
        "{msg}"
    );
}

#[test]
fn a_failed_spill_write_is_reported_and_cleaned_up() {
    use mtseg_stitch::FullCanvasBuilder;

    let (g, plan) = setup();
    let (rows, _) = run_rows(
        params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited()),
        all_patches(&g),
        |_| {},
    )
    .unwrap();
    let spill_dir = tempfile::tempdir().unwrap();
    let spill = SpillConfig {
        dir: spill_dir.path().to_path_buf(),
        layout: ZarrLayout {
            chunk: [2, 8],
            shard_chunks_x: 2,
            zstd_level: 1,
        },
    };
    // Room for the spill buffer, not for the 40 x 30 x 2 canvas: it spills.
    let budget = MemoryBudget::with_bytes(4000);
    let mut canvas = FullCanvasBuilder::new(&plan, &[2], &budget, &spill).unwrap();
    assert!(canvas.is_spilled());
    // A file where the writer thread must make the chunk directories of array 0.
    let store = std::fs::read_dir(spill_dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("canvas.zarr/0/c");
    std::fs::write(&store, b"in the way").unwrap();
    let mut result = Ok(());
    for r in rows {
        result = canvas.push(r);
        if result.is_err() {
            break;
        }
    }
    let err = match result {
        Err(err) => {
            drop(canvas);
            err
        }
        Ok(()) => canvas.finish().map(|_| ()).unwrap_err(),
    };
    assert!(
        matches!(err, StitchError::Zarr { .. }),
        "the writer thread's error comes back: {err}"
    );
    assert_eq!(budget.used(), 0);
    assert_eq!(std::fs::read_dir(spill_dir.path()).unwrap().count(), 0);
}

//! The stitcher on a thread, driven as the pipeline drives it ([`super::synthetic::spawn_rows`]):
//! back-pressure, rows holding their budget bytes, errors, cleanup after errors.

use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, bounded};

use mtseg_stitch::{
    CanvasPlan, CanvasRows, MemoryBudget, PatchPrediction, ProbabilityStore, Size2, StitchError,
    StitchMetrics, StitchParams, Stitcher, ZarrLayout,
};

use super::synthetic::{grid, noisy_model, params, spawn_rows};

fn setup() -> (super::synthetic::Grid, CanvasPlan) {
    let g = grid([40, 30], [8, 8], [6, 6], [5, 5]);
    let plan = CanvasPlan::without_mask(&g.output_boxes, Size2::new(40, 30)).unwrap();
    (g, plan)
}

#[test]
fn a_stalled_consumer_blocks_the_producer() {
    let (g, plan) = setup();
    let n = g.output_boxes.len();
    let (in_tx, in_rx) = bounded::<Vec<PatchPrediction>>(1);
    let (out_tx, out_rx) = bounded(1);
    let stage = spawn_rows(
        Stitcher::new(params(plan, [6, 6], &[2], MemoryBudget::unlimited())).unwrap(),
        in_rx,
        out_tx,
        None,
    );
    // Nobody reads the output: the stitcher fills it, blocks, and stops reading its input.
    let mut blocked = false;
    for i in 0..n {
        let batch = vec![noisy_model(&g, i, [6, 6], &[2], 1)];
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
    // The consumer hangs up: the stitcher fails with OutputClosed and releases its input.
    drop(out_rx);
    let err = stage.join().unwrap().unwrap_err();
    assert!(matches!(err, StitchError::OutputClosed), "{err}");
    assert!(in_tx.send(Vec::new()).is_err());
}

#[test]
fn a_bad_patch_ends_the_stitcher_and_closes_its_channels() {
    let (g, plan) = setup();
    let (in_tx, in_rx) = bounded::<Vec<PatchPrediction>>(4);
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
    let stage = spawn_rows(
        Stitcher::new(params(plan, [6, 6], &[2], MemoryBudget::unlimited())).unwrap(),
        in_rx,
        out_tx,
        Some(store),
    );
    let mut bad = noisy_model(&g, 1, [6, 6], &[2], 1);
    bad.heads[0].data.truncate(5);
    in_tx
        .send(vec![noisy_model(&g, 0, [6, 6], &[2], 1), bad])
        .unwrap();
    let err = stage.join().unwrap().unwrap_err();
    assert!(
        matches!(err, StitchError::BlockShape { index: 1, .. }),
        "{err}"
    );
    // Whatever was sent can be drained, then the channel reports it is closed.
    while out_rx.recv().is_ok() {}
    assert!(in_tx.send(Vec::new()).is_err());
    // The unfinished probability store left nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
fn all_patches(g: &super::synthetic::Grid) -> Vec<PatchPrediction> {
    (0..g.output_boxes.len())
        .map(|i| noisy_model(g, i, [6, 6], &[2], 7))
        .collect()
}

/// The stitcher on its thread; `consume` gets each item. Returns the rows (copied) and the
/// counters.
fn run_rows(
    params: StitchParams,
    patches: Vec<PatchPrediction>,
    mut consume: impl FnMut(&CanvasRows),
) -> Result<(Vec<CanvasRows>, StitchMetrics), StitchError> {
    let (in_tx, in_rx) = bounded::<Vec<PatchPrediction>>(2);
    let (out_tx, out_rx) = bounded(1);
    let stage = spawn_rows(Stitcher::new(params)?, in_rx, out_tx, None);
    let producer = std::thread::spawn(move || {
        for chunk in patches.chunks(3) {
            if in_tx.send(chunk.to_vec()).is_err() {
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
    let (metrics, _) = stage.join().unwrap()?;
    Ok((rows, metrics))
}

#[test]
fn rows_hold_their_budget_bytes_and_the_stitcher_waits_for_a_slow_consumer() {
    let (g, plan) = setup();
    let probe = params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited());
    let (baseline, _) = run_rows(probe.clone(), all_patches(&g), |_| {}).unwrap();
    // Room for the window and exactly one item of rows (5 rows x 40 px x 2 channels).
    let chunk = probe.chunk_bytes();
    assert_eq!(chunk, 5 * 40 * 2 * 4);
    let tight = MemoryBudget::with_bytes(probe.window_bytes() + chunk);
    let p = params(plan, [6, 6], &[2], tight.clone());
    let budget = tight.clone();
    let (rows, metrics) = run_rows(p, all_patches(&g), |item| {
        // Each item holds its bytes; the next one cannot be reserved before this one is dropped.
        assert_eq!(item.memory.bytes(), item.byte_size());
        assert!(budget.used() <= budget.limit());
        std::thread::sleep(Duration::from_millis(5));
    })
    .unwrap();
    assert_eq!(rows, baseline);
    assert!(tight.peak() <= tight.limit());
    assert_eq!(tight.used(), 0);
    assert!(metrics.waiting > Duration::ZERO);
}

#[test]
fn a_consumer_that_keeps_every_row_gets_an_error_not_a_hang() {
    let (g, plan) = setup();
    let probe = params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited());
    let tight = MemoryBudget::with_bytes(probe.window_bytes() + 2 * probe.chunk_bytes());
    let p = params(plan, [6, 6], &[2], tight.clone()).with_memory_wait(Duration::from_millis(100));
    let (in_tx, in_rx) = bounded::<Vec<PatchPrediction>>(64);
    for p in all_patches(&g) {
        in_tx.send(vec![p]).unwrap();
    }
    drop(in_tx);
    let (out_tx, out_rx) = bounded(8);
    let stage = spawn_rows(Stitcher::new(p).unwrap(), in_rx, out_tx, None);
    // Keep everything (as a consumer that needs more rows than the budget holds would).
    let mut kept = Vec::new();
    while let Ok(rows) = out_rx.recv_timeout(Duration::from_secs(20)) {
        kept.push(rows);
    }
    let err = stage.join().unwrap().unwrap_err();
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
    let (rows, metrics) = run_rows(p, all_patches(&g), |_| {}).unwrap();
    assert!(rows.iter().all(|r| r.rows <= 2));
    assert_eq!(metrics.row_chunks_out, rows.len() as u64);
    let joined = |rows: &[CanvasRows]| -> Vec<u32> {
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
fn a_failed_store_write_is_reported_and_cleaned_up() {
    let (g, plan) = setup();
    let (rows, _) = run_rows(
        params(plan.clone(), [6, 6], &[2], MemoryBudget::unlimited()),
        all_patches(&g),
        |_| {},
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let budget = MemoryBudget::with_bytes(4000);
    let mut store = ProbabilityStore::create(
        &dir.path().join("probs.zarr"),
        &plan,
        &[mtseg_stitch::HeadSpec::new("a", 2)],
        serde_json::Map::new(),
        ZarrLayout {
            chunk: [2, 8],
            shard_chunks_x: 2,
            zstd_level: 1,
        },
        &budget,
    )
    .unwrap();
    // The store holds its shard-row buffer (2 rows x 40 px x 2 channels).
    assert_eq!(budget.used(), 2 * 40 * 2 * 4);
    // A file where the writer thread must make the chunk directories of array 0.
    std::fs::write(
        dir.path().join("probs.zarr.part/probabilities/0/c"),
        b"in the way",
    )
    .unwrap();
    let mut result = Ok(());
    for r in &rows {
        result = store.write_rows(r);
        if result.is_err() {
            break;
        }
    }
    let err = match result {
        Err(err) => {
            drop(store);
            err
        }
        Ok(()) => store.finish().map(|_| ()).unwrap_err(),
    };
    assert!(
        matches!(err, StitchError::Zarr { .. }),
        "the writer thread's error comes back: {err}"
    );
    assert_eq!(budget.used(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

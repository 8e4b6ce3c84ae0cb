//! Results are bytewise identical for any arrival order, batch size, channel capacity and with
//! or without spill; and identical to the whole-canvas and TIAToolbox references.

use std::collections::HashMap;

use crossbeam_channel::bounded;
use proptest::prelude::*;

use mtseg_stitch::{
    CanvasPlan, MemoryBudget, PatchPrediction, PredictionBatch, Size2, SpillConfig, StitchParams,
    Stitcher, ZarrLayout, run_full_canvas_stage, spawn_rows_stage,
};

use super::reference::{Canvas, tiatoolbox_stitch, whole_canvas_stitch};
use super::strategies::{Case, arrival_order, case};
use super::synthetic::{assemble, noisy_model, params, stitch_all};

struct Problem {
    grid: super::synthetic::Grid,
    selected: Vec<usize>,
    plan: CanvasPlan,
    patches: HashMap<usize, PatchPrediction>,
}

fn problem(c: &Case) -> Problem {
    let grid = c.grid();
    let selected = c.selected(&grid);
    let plan = CanvasPlan::new(
        &grid.output_boxes,
        &selected,
        Size2::new(c.slide[0] as u64, c.slide[1] as u64),
    )
    .expect("valid plan");
    let patches = selected
        .iter()
        .map(|&i| (i, noisy_model(&grid, i, c.output, &c.channels, c.seed)))
        .collect();
    Problem {
        grid,
        selected,
        plan,
        patches,
    }
}

/// The selected patches in grid order, then reordered by `order`.
fn in_order(p: &Problem, order: &[usize]) -> Vec<PatchPrediction> {
    let mut sorted = p.selected.clone();
    sorted.sort_unstable();
    order
        .iter()
        .map(|&k| p.patches[&sorted[k]].clone())
        .collect()
}

/// Run the rows stage on its thread with bounded channels; feed `patches` in batches.
fn run_rows_threaded(
    params: StitchParams,
    patches: Vec<PatchPrediction>,
    capacity: usize,
    batch: usize,
) -> Canvas {
    let plan = params.plan.clone();
    let (in_tx, in_rx) = bounded::<PredictionBatch>(capacity);
    let (out_tx, out_rx) = bounded(capacity);
    let stage = spawn_rows_stage(Stitcher::new(params).unwrap(), in_rx, out_tx, None).unwrap();
    let producer = std::thread::spawn(move || {
        for chunk in patches.chunks(batch) {
            in_tx.send(chunk.to_vec().into()).unwrap();
        }
    });
    let rows: Vec<_> = out_rx.iter().collect();
    producer.join().unwrap();
    stage.join().unwrap();
    assemble(&plan, &rows)
}

/// Full-canvas mode under `budget`; spill store under `spill_dir`.
fn run_full_canvas(
    params: StitchParams,
    patches: Vec<PatchPrediction>,
    spill_dir: &std::path::Path,
) -> (Canvas, bool) {
    let [w, h] = params.plan.canvas_size();
    let (tx, rx) = bounded::<PredictionBatch>(2);
    let feeder = std::thread::spawn(move || {
        for chunk in patches.chunks(3) {
            tx.send(chunk.to_vec().into()).unwrap();
        }
    });
    let spill = SpillConfig {
        dir: spill_dir.to_path_buf(),
        layout: ZarrLayout {
            chunk: [4, 3],
            shard_chunks_x: 2,
            zstd_level: 1,
        },
    };
    let (canvas, report) =
        run_full_canvas_stage(Stitcher::new(params).unwrap(), &rx, spill, None).unwrap();
    feeder.join().unwrap();
    let region = canvas.read_region([0, 0, w, h]).unwrap();
    let spilled = canvas.is_spilled();
    assert_eq!(spilled, report.spilled_bytes > 0);
    let result = Canvas {
        size: [w, h],
        origin: canvas.origin(),
        heads: region.heads,
    };
    (result, spilled)
}

proptest! {
    #![proptest_config(super::strategies::config(24))]

    #[test]
    fn identical_for_any_order_capacity_and_spill(
        c in case(28, 7, false),
        capacity in 1usize..=4,
        batch in 1usize..=5,
        shuffle_window in 1usize..=6,
        rows_per_chunk in 0usize..=3,
    ) {
        let p = problem(&c);
        let n = p.selected.len();
        let unlimited = || params(p.plan.clone(), c.output, &c.channels, MemoryBudget::unlimited());

        let baseline = stitch_all(unlimited(), in_order(&p, &(0..n).collect::<Vec<_>>()));
        let reference = whole_canvas_stitch(&p.grid.output_boxes, &p.selected, c.slide, c.output, &c.channels, &p.patches);
        prop_assert_eq!(baseline.size, reference.size);
        prop_assert_eq!(baseline.origin, reference.origin);
        prop_assert!(baseline.bits() == reference.bits(), "streamed != whole-canvas reference");

        let shuffled = stitch_all(unlimited(), in_order(&p, &arrival_order(n, c.seed, n)));
        prop_assert!(shuffled.bits() == baseline.bits(), "full shuffle");

        let threaded = run_rows_threaded(unlimited().with_rows_per_chunk(rows_per_chunk), in_order(&p, &arrival_order(n, c.seed ^ 1, shuffle_window)), capacity, batch);
        prop_assert!(threaded.bits() == baseline.bits(), "threaded stage");

        // Full canvas under a budget that holds the window, the spill buffer and the waiting
        // patches, but not the canvas: it spills.
        let spill_dir = tempfile::tempdir().unwrap();
        let probe = unlimited();
        let layout = ZarrLayout { chunk: [4, 3], shard_chunks_x: 2, zstd_level: 1 };
        let spill_buffer = SpillConfig { dir: spill_dir.path().into(), layout }.buffer_bytes(p.plan.canvas_size(), &c.channels, p.plan.row_step());
        let allowance = shuffle_window as u64 * probe.patch_bytes();
        let leftover = spill_buffer;
        let budget = MemoryBudget::with_bytes(probe.window_bytes() + allowance + leftover);
        let tight = params(p.plan.clone(), c.output, &c.channels, budget.clone()).with_reorder_allowance(shuffle_window);
        let (spilled_canvas, spilled) = run_full_canvas(tight, in_order(&p, &arrival_order(n, c.seed ^ 2, shuffle_window)), spill_dir.path());
        let [w, h] = p.plan.canvas_size();
        let canvas_bytes = (w * h * c.channels.iter().sum::<usize>() * 4) as u64;
        prop_assert_eq!(spilled, canvas_bytes > leftover, "a canvas larger than the budget spills");
        prop_assert!(spilled_canvas.bits() == baseline.bits(), "spilled full canvas");
        prop_assert_eq!(budget.used(), 0, "every reservation is returned");
        prop_assert_eq!(std::fs::read_dir(spill_dir.path()).unwrap().count(), 0, "spill data is removed");

        // Room for two spill buffers (stitching and writing overlap): the same bytes.
        let budget = MemoryBudget::with_bytes(probe.window_bytes() + allowance + 2 * spill_buffer);
        let roomy = params(p.plan.clone(), c.output, &c.channels, budget.clone()).with_reorder_allowance(shuffle_window);
        let (spilled_canvas, _) = run_full_canvas(roomy, in_order(&p, &arrival_order(n, c.seed ^ 3, shuffle_window)), spill_dir.path());
        prop_assert!(spilled_canvas.bits() == baseline.bits(), "spilled full canvas, two buffers");
        prop_assert_eq!(budget.used(), 0, "every reservation is returned");

        let (ram_canvas, spilled) = run_full_canvas(unlimited(), in_order(&p, &(0..n).collect::<Vec<_>>()), spill_dir.path());
        prop_assert!(!spilled);
        prop_assert!(ram_canvas.bits() == baseline.bits(), "in-RAM full canvas");
    }

    #[test]
    fn identical_to_tiatoolbox_stitching(c in case(40, 10, true)) {
        let p = problem(&c);
        let n = p.selected.len();
        let ours = stitch_all(
            params(p.plan.clone(), c.output, &c.channels, MemoryBudget::unlimited()),
            in_order(&p, &arrival_order(n, c.seed, 4)),
        );
        let theirs = tiatoolbox_stitch(&p.grid.output_boxes, &p.selected, c.slide, c.output, &c.channels, &p.patches);
        prop_assert_eq!(ours.size, theirs.size);
        prop_assert_eq!(ours.origin, theirs.origin);
        prop_assert!(ours.bits() == theirs.bits(), "streamed != TIAToolbox port");
    }
}

#[test]
fn zero_block_quirk_is_reproduced() {
    // Two overlapping patches in one row (out 4, stride 2); the second is all zero for head 0:
    // the overlap keeps the first patch's values (the mean skips the zero block), while head 1,
    // which is not zero, averages.
    let boxes = [[0, 0, 4, 4], [2, 0, 6, 4]];
    let plan = CanvasPlan::without_mask(&boxes, Size2::new(6, 4)).unwrap();
    let mut stitcher = Stitcher::new(params(
        plan.clone(),
        [4, 4],
        &[1, 1],
        MemoryBudget::unlimited(),
    ))
    .unwrap();
    let patch = |index: usize, a: f32, b: f32| PatchPrediction {
        index,
        output_box: boxes[index],
        heads: vec![
            mtseg_stitch::HeadBlock::new(1, vec![a; 16]),
            mtseg_stitch::HeadBlock::new(1, vec![b; 16]),
        ],
    };
    let mut rows = stitcher.push(patch(0, 6.0, 6.0)).unwrap();
    rows.extend(stitcher.push(patch(1, 0.0, 2.0)).unwrap());
    let (rest, metrics) = stitcher.finish().unwrap();
    rows.extend(rest);
    assert_eq!(metrics.zero_blocks, 1);
    let canvas = assemble(&plan, &rows);
    assert_eq!(&canvas.heads[0][..6], &[6.0, 6.0, 6.0, 6.0, 0.0, 0.0]);
    assert_eq!(&canvas.heads[1][..6], &[6.0, 6.0, 4.0, 4.0, 2.0, 2.0]);
}

//! Results are bytewise identical for any arrival order, batch size, channel capacity and rows
//! per item; and identical to the whole-canvas and TIAToolbox references.

use std::collections::HashMap;

use proptest::prelude::*;

use mtseg_stitch::{CanvasPlan, MemoryBudget, PatchPrediction, Size2, StitchParams, Stitcher};

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
    let plan = c.plan(&grid, &selected);
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

/// Run the stitcher on its thread with bounded channels; feed `patches` in batches
/// ([`super::first_row::stitch_rows_threaded`]) and assemble the rows.
fn run_rows_threaded(
    params: StitchParams,
    patches: Vec<PatchPrediction>,
    capacity: usize,
    batch: usize,
) -> Canvas {
    let plan = params.plan.clone();
    let (rows, _) = super::first_row::stitch_rows_threaded(params, patches, capacity, batch);
    assemble(&plan, &rows)
}

proptest! {
    #![proptest_config(super::strategies::config(24))]

    #[test]
    fn identical_for_any_order_capacity_and_rows_per_chunk(
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
        prop_assert!(threaded.bits() == baseline.bits(), "threaded stitcher");

        // A budget that holds the window, the waiting patches and the rows in flight (the
        // channel's, one being made, one in the consumer's hands), no more: the same bytes.
        let probe = unlimited().with_rows_per_chunk(rows_per_chunk);
        let allowance = shuffle_window as u64 * probe.patch_bytes();
        let in_flight = (capacity as u64 + 2) * probe.chunk_bytes();
        let budget = MemoryBudget::with_bytes(probe.window_bytes() + allowance + in_flight);
        let tight = params(p.plan.clone(), c.output, &c.channels, budget.clone())
            .with_rows_per_chunk(rows_per_chunk)
            .with_reorder_allowance(shuffle_window);
        let threaded = run_rows_threaded(tight, in_order(&p, &arrival_order(n, c.seed ^ 2, shuffle_window)), capacity, batch);
        prop_assert!(threaded.bits() == baseline.bits(), "threaded stitcher, tight budget");
        prop_assert!(budget.peak() <= budget.limit());
        prop_assert_eq!(budget.used(), 0, "every reservation is returned");
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

//! A stitcher started at a canvas row (a slide resumed after a killed run): the rows from the
//! first row on are those of an uninterrupted stitcher, bit for bit, for random grids, strides
//! (overlapping, abutting, with gaps), masks, rows per item, arrival orders and budgets; no row
//! above the first row is handed out, and patches above it may be pushed again and are ignored.

use std::collections::HashMap;

use crossbeam_channel::bounded;
use proptest::prelude::*;
use proptest::sample::Index;

use mtseg_stitch::{
    CanvasPlan, CanvasRows, MemoryBudget, PatchPrediction, PlanError, Size2, StitchError,
    StitchMetrics, StitchParams, Stitcher,
};

use super::strategies::{Case, arrival_order, case};
use super::synthetic::{grid, noisy_model, params, spawn_rows, stitch_all};

/// The bits of rows `first_row ..` of each of the `heads`, checking that `rows` start at
/// `first_row`, follow each other without gaps and end at the canvas bottom.
fn rows_from(
    plan: &CanvasPlan,
    heads: usize,
    first_row: usize,
    rows: &[CanvasRows],
) -> Vec<Vec<u32>> {
    let mut heads: Vec<Vec<u32>> = vec![Vec::new(); heads];
    let mut next = first_row;
    for r in rows {
        assert_eq!(
            r.y0, next,
            "rows from the first row on, top to bottom, no gaps"
        );
        assert_eq!(r.width, plan.width());
        assert_eq!(r.origin, plan.origin());
        assert_eq!(r.heads.len(), heads.len());
        for (acc, head) in heads.iter_mut().zip(&r.heads) {
            acc.extend(head.iter().map(|v| v.to_bits()));
        }
        next = r.y1();
    }
    assert_eq!(
        next,
        plan.height(),
        "every row from the first row is handed out"
    );
    heads
}

/// Push `patches` in order into a stitcher, then finish it; every item of rows, and the counters.
fn stitch_rows(
    params: StitchParams,
    patches: Vec<PatchPrediction>,
) -> Result<(Vec<CanvasRows>, StitchMetrics), StitchError> {
    let mut stitcher = Stitcher::new(params)?;
    let mut rows = Vec::new();
    for p in patches {
        rows.extend(stitcher.push(p)?);
    }
    let (rest, metrics) = stitcher.finish()?;
    rows.extend(rest);
    Ok((rows, metrics))
}

/// The stitcher on its thread with bounded channels, patches fed in batches; each item gives
/// its budget bytes back as it arrives (its values are kept).
pub(crate) fn stitch_rows_threaded(
    params: StitchParams,
    patches: Vec<PatchPrediction>,
    capacity: usize,
    batch: usize,
) -> (Vec<CanvasRows>, StitchMetrics) {
    let (in_tx, in_rx) = bounded::<Vec<PatchPrediction>>(capacity);
    let (out_tx, out_rx) = bounded(capacity);
    let stage = spawn_rows(Stitcher::new(params).unwrap(), in_rx, out_tx, None);
    let producer = std::thread::spawn(move || {
        for chunk in patches.chunks(batch) {
            in_tx.send(chunk.to_vec()).unwrap();
        }
    });
    let rows: Vec<_> = out_rx
        .iter()
        .map(|mut rows| {
            drop(rows.memory.take());
            rows
        })
        .collect();
    producer.join().unwrap();
    let (metrics, _) = stage.join().unwrap().unwrap();
    (rows, metrics)
}

/// The selected grid indices in merge order.
fn merge_order(plan: &CanvasPlan) -> Vec<usize> {
    (0..plan.selected_count())
        .map(|rank| plan.patch_at_rank(rank).unwrap().grid_index)
        .collect()
}

proptest! {
    #![proptest_config(super::strategies::config(32))]

    #[test]
    fn rows_from_the_first_row_equal_the_uninterrupted_run(
        c in case(28, 7, false),
        gap in 0usize..=2,
        row in any::<Index>(),
        rows_per_chunk in 0usize..=3,
        shuffle_window in 1usize..=6,
        capacity in 1usize..=4,
        batch in 1usize..=5,
        push_above in any::<bool>(),
    ) {
        // gap > 0: strides larger than the patch output, rows between bands no patch covers.
        let c = Case { stride: if gap > 0 { c.output.map(|o| o + gap) } else { c.stride }, ..c };
        let g = c.grid();
        let selected = c.selected(&g);
        let plan = c.plan(&g, &selected);
        let patches: HashMap<usize, PatchPrediction> = selected
            .iter()
            .map(|&i| (i, noisy_model(&g, i, c.output, &c.channels, c.seed)))
            .collect();
        let unlimited = || params(plan.clone(), c.output, &c.channels, MemoryBudget::unlimited());
        let all = merge_order(&plan);
        let baseline = stitch_all(unlimited(), all.iter().map(|i| patches[i].clone()).collect());
        let [w, h] = plan.canvas_size();
        let first_row = row.index(h + 1);
        let expected: Vec<Vec<u32>> = baseline
            .bits()
            .iter()
            .zip(&c.channels)
            .map(|(head, &ch)| head[first_row * w * ch..].to_vec())
            .collect();

        // The patches to push: those whose output box ends below the first row (none at the
        // canvas bottom), in merge order.
        let needed = plan.selected_reaching(first_row).unwrap();
        let origin_y = plan.origin()[1] as i64;
        let reaching: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| first_row < h && g.output_boxes[i][3] - origin_y > first_row as i64)
            .collect();
        prop_assert_eq!(&needed, &reaching);
        prop_assert_eq!(plan.first_rank_reaching(first_row).unwrap(), all.len() - needed.len());

        // Pushed again after a restart: whole batches, patches above the first row included.
        let pushed = if push_above { all.clone() } else { needed.clone() };
        let order = arrival_order(pushed.len(), c.seed, shuffle_window);
        let arriving = || -> Vec<PatchPrediction> {
            order.iter().map(|&k| patches[&pushed[k]].clone()).collect()
        };
        let skipped = (pushed.len() - needed.len()) as u64;

        let (rows, metrics) = stitch_rows(
            unlimited().with_first_row(first_row).with_rows_per_chunk(rows_per_chunk),
            arriving(),
        )
        .unwrap();
        prop_assert!(rows_from(&plan, c.channels.len(), first_row, &rows) == expected, "resumed != uninterrupted");
        prop_assert_eq!(metrics.rows_out, (h - first_row) as u64);
        prop_assert_eq!(metrics.row_chunks_out, rows.len() as u64);
        prop_assert_eq!(metrics.patches_in, needed.len() as u64);
        prop_assert_eq!(metrics.patches_skipped, skipped);

        // On a thread under a budget that holds the window, the waiting patches and the rows
        // in flight, no more (as in the order tests).
        let probe = unlimited().with_rows_per_chunk(rows_per_chunk);
        let allowance = shuffle_window as u64 * probe.patch_bytes();
        let in_flight = (capacity as u64 + 2) * probe.chunk_bytes();
        let budget = MemoryBudget::with_bytes(probe.window_bytes() + allowance + in_flight);
        let tight = params(plan.clone(), c.output, &c.channels, budget.clone())
            .with_rows_per_chunk(rows_per_chunk)
            .with_reorder_allowance(shuffle_window)
            .with_first_row(first_row);
        let (rows, metrics) = stitch_rows_threaded(tight, arriving(), capacity, batch);
        prop_assert!(rows_from(&plan, c.channels.len(), first_row, &rows) == expected, "threaded, tight budget");
        prop_assert_eq!(metrics.patches_skipped, skipped);
        prop_assert!(budget.peak() <= budget.limit());
        prop_assert_eq!(budget.used(), 0, "every reservation is returned");
    }
}

/// 6 x 6 slide, output 2, stride 1 (overlapping bands at rows 0..=5), one head of 1 channel.
fn overlapping() -> (super::synthetic::Grid, CanvasPlan) {
    let g = grid([6, 6], [2, 2], [2, 2], [1, 1]);
    let plan = CanvasPlan::without_mask(&g.output_boxes, Size2::new(6, 6)).unwrap();
    (g, plan)
}

#[test]
fn a_first_row_past_the_canvas_is_an_error_naming_the_row() {
    let (_, plan) = overlapping();
    assert_eq!(plan.height(), 6);
    let err = Stitcher::new(
        params(plan.clone(), [2, 2], &[1], MemoryBudget::unlimited()).with_first_row(7),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            StitchError::Plan(PlanError::FirstRowPastCanvas {
                first_row: 7,
                height: 6
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("canvas row 7"), "{err}");
    for query in [
        plan.first_rank_reaching(7).map(|_| ()),
        plan.selected_reaching(7).map(|_| ()),
        plan.first_band_reaching(7).map(|_| ()),
        plan.check_first_row(7),
    ] {
        assert!(
            matches!(
                query,
                Err(PlanError::FirstRowPastCanvas {
                    first_row: 7,
                    height: 6
                })
            ),
            "{query:?}"
        );
    }
}

#[test]
fn a_first_row_at_the_canvas_bottom_needs_no_patch_and_hands_out_nothing() {
    let (g, plan) = overlapping();
    assert_eq!(plan.first_rank_reaching(6).unwrap(), plan.selected_count());
    assert!(plan.selected_reaching(6).unwrap().is_empty());
    let budget = MemoryBudget::unlimited();
    let p = params(plan.clone(), [2, 2], &[1], budget.clone()).with_first_row(6);
    let window = p.window_bytes();
    // Nothing pushed.
    let (rows, metrics) = stitch_rows(p.clone(), Vec::new()).unwrap();
    assert!(rows.is_empty());
    assert_eq!(metrics.rows_out, 0);
    // Everything pushed: all ignored.
    let all: Vec<_> = (0..g.output_boxes.len())
        .map(|i| noisy_model(&g, i, [2, 2], &[1], 3))
        .collect();
    let (rows, metrics) = stitch_rows(p, all.clone()).unwrap();
    assert!(rows.is_empty());
    assert_eq!(metrics.patches_skipped, all.len() as u64);
    assert_eq!(metrics.patches_in, 0);
    // Only the window was ever reserved: no rows, no waiting patches.
    assert_eq!(budget.peak(), window);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_resumed_stitcher_still_rejects_bad_and_missing_patches() {
    let (g, plan) = overlapping();
    // First row 3: bands from row 2 on (bottom 4 > 3) are needed, i.e. grid rows 2..6.
    let first = plan.first_rank_reaching(3).unwrap();
    assert_eq!(first, 2 * 6);
    let p = params(plan, [2, 2], &[1], MemoryBudget::unlimited()).with_first_row(3);
    let patch = |i: usize| noisy_model(&g, i, [2, 2], &[1], 5);
    let mut s = Stitcher::new(p.clone()).unwrap();
    // A patch above the first row, twice: ignored both times.
    assert!(s.push(patch(0)).unwrap().is_empty());
    assert!(s.push(patch(0)).unwrap().is_empty());
    // A needed patch twice: the second is a duplicate.
    s.push(patch(first)).unwrap();
    assert!(matches!(
        s.push(patch(first)),
        Err(StitchError::DuplicatePatch { index }) if index == first
    ));
    // A needed patch with another box is refused as before.
    let mut bad = patch(first + 1);
    bad.output_box = [0, 0, 3, 3];
    assert!(matches!(s.push(bad), Err(StitchError::BoxMismatch { .. })));
    // An index that is not in the grid is refused, above the first row or not.
    let mut unknown = patch(0);
    unknown.index = 99;
    assert!(matches!(
        s.push(unknown),
        Err(StitchError::UnknownPatch { index: 99, .. })
    ));
    assert_eq!(s.metrics().patches_skipped, 2);
    assert_eq!(s.metrics().patches_in, 1);
    // The input ends with needed patches missing: the first missing one is named.
    let err = s.finish().unwrap_err();
    assert!(
        matches!(
            err,
            StitchError::MissingPatches { missing, first_missing, .. }
                if missing == 36 - first - 1 && first_missing == first + 1
        ),
        "{err}"
    );
}

#[test]
fn a_first_row_in_a_gap_between_bands_hands_out_the_gap_first() {
    // Output 2, stride 3 on a 6 x 6 slide: bands at rows 0 and 3 (2 rows each), rows 2 and 5
    // covered by no patch; the canvas ends at row 5.
    let g = grid([6, 6], [2, 2], [2, 2], [3, 3]);
    let plan = CanvasPlan::without_mask(&g.output_boxes, Size2::new(6, 6)).unwrap();
    assert_eq!(plan.height(), 5);
    let all: Vec<_> = (0..g.output_boxes.len())
        .map(|i| noisy_model(&g, i, [2, 2], &[2], 11))
        .collect();
    let p = params(plan.clone(), [2, 2], &[2], MemoryBudget::unlimited());
    let baseline = stitch_all(p.clone(), all.clone());
    // Row 2 is in the gap: only the second band's patches are needed.
    assert_eq!(plan.selected_reaching(2).unwrap(), [2, 3]);
    let mut s = Stitcher::new(p.with_first_row(2)).unwrap();
    let first = s.push(all[2].clone()).unwrap();
    // The gap row is final before the band below it is done.
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].y0, first[0].rows), (2, 1));
    assert!(first[0].heads[0].iter().all(|v| v.to_bits() == 0));
    let mut rows = first;
    rows.extend(s.push(all[3].clone()).unwrap());
    let (rest, _) = s.finish().unwrap();
    rows.extend(rest);
    let bits = rows_from(&plan, 1, 2, &rows);
    assert_eq!(bits[0], baseline.bits()[0][2 * 5 * 2..]);
}

//! A probability store left by a killed run (no destructor ran: simulated with `mem::forget`),
//! continued by a later run from a row up to its durable rows, with a stitcher started at the
//! same row: the finished store equals that of an uninterrupted run, bit for bit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mtseg_stitch::{
    CanvasPlan, CanvasRows, HeadSpec, MemoryBudget, PatchPrediction, PlanError, ProbabilityStore,
    Size2, StitchError, Stitcher, ZarrLayout,
};

use super::probability_store::assert_arrays_hold_canvas;
use super::synthetic::{Grid, grid, noisy_model, params};

const SLIDE: [usize; 2] = [53, 41];
const OUTPUT: [usize; 2] = [6, 6];
const CHANNELS: [usize; 2] = [1, 2];
/// Shards of 8 rows x 16 columns (inner chunks 8 x 8).
const LAYOUT: ZarrLayout = ZarrLayout {
    chunk: [8, 8],
    shard_chunks_x: 2,
    zstd_level: 1,
};

/// Output 6, stride 5 (bands overlap by a row), tissue in the middle: the canvas starts at
/// (5, 5), so neither its top nor its left edge is on a shard edge.
fn setup() -> (Grid, CanvasPlan, Vec<HeadSpec>) {
    let g = grid(SLIDE, [10, 10], OUTPUT, [5, 5]);
    let selected: Vec<usize> = (0..g.output_boxes.len())
        .filter(|&i| {
            let b = g.output_boxes[i];
            (10..35).contains(&b[0]) && (10..25).contains(&b[1])
        })
        .collect();
    let plan = CanvasPlan::new(
        &g.output_boxes,
        &selected,
        Size2::new(SLIDE[0] as u64, SLIDE[1] as u64),
    )
    .unwrap();
    assert_eq!(plan.origin(), [5, 5]);
    let heads = vec![HeadSpec::new("np", 1), HeadSpec::new("hv", 2)];
    (g, plan, heads)
}

/// The selected patches in merge order from `first_row` on.
fn patches(g: &Grid, plan: &CanvasPlan, first_row: usize) -> Vec<PatchPrediction> {
    plan.selected_reaching(first_row)
        .unwrap()
        .into_iter()
        .map(|i| noisy_model(g, i, OUTPUT, &CHANNELS, 13))
        .collect()
}

/// Every item of rows a stitcher started at `first_row` hands out.
fn stitch(g: &Grid, plan: &CanvasPlan, first_row: usize) -> Vec<CanvasRows> {
    let p = params(plan.clone(), OUTPUT, &CHANNELS, MemoryBudget::unlimited())
        .with_first_row(first_row)
        .with_rows_per_chunk(3);
    let mut stitcher = Stitcher::new(p).unwrap();
    let mut rows = Vec::new();
    for patch in patches(g, plan, first_row) {
        rows.extend(stitcher.push(patch).unwrap());
    }
    rows.extend(stitcher.finish().unwrap().0);
    rows
}

/// The stored maps of the whole canvas, per head, from an uninterrupted stitch.
fn canvas(rows: &[CanvasRows]) -> Vec<Vec<f32>> {
    let mut heads = vec![Vec::new(); CHANNELS.len()];
    for r in rows {
        for (acc, head) in heads.iter_mut().zip(&r.heads) {
            acc.extend_from_slice(head);
        }
    }
    heads
}

/// A store made as the pipeline makes one: standalone or as a group inside another store.
#[derive(Debug, Clone, Copy)]
enum Flavour {
    Store,
    Group,
}

impl Flavour {
    fn create(self, path: &Path, plan: &CanvasPlan, heads: &[HeadSpec]) -> ProbabilityStore {
        let (attrs, budget) = (serde_json::Map::new(), MemoryBudget::unlimited());
        match self {
            Self::Store => ProbabilityStore::create(path, plan, heads, attrs, LAYOUT, &budget),
            Self::Group => {
                ProbabilityStore::create_group(path, plan, heads, attrs, LAYOUT, &budget)
            }
        }
        .unwrap()
    }

    fn reopen(
        self,
        path: &Path,
        plan: &CanvasPlan,
        heads: &[HeadSpec],
        budget: &MemoryBudget,
        first_row: usize,
    ) -> Result<ProbabilityStore, StitchError> {
        match self {
            Self::Store => ProbabilityStore::reopen(path, plan, heads, budget, first_row),
            Self::Group => ProbabilityStore::reopen_group(path, plan, heads, budget, first_row),
        }
    }

    /// Where the arrays of head `h` live inside the store: `<prefix><h>`.
    fn prefix(self) -> &'static str {
        match self {
            Self::Store => "/probabilities/",
            Self::Group => "/",
        }
    }
}

fn part(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", path.display()))
}

/// A run that writes the items of `rows` that start above `kill_at` and is then killed: its
/// store is never finished nor dropped. Returns the rows it handed to the store.
fn killed_run(
    flavour: Flavour,
    path: &Path,
    (plan, heads): (&CanvasPlan, &[HeadSpec]),
    rows: &[CanvasRows],
    kill_at: usize,
) -> usize {
    let mut store = flavour.create(path, plan, heads);
    let mut written = 0;
    for r in rows.iter().take_while(|r| r.y0 < kill_at) {
        store.write_rows(r).unwrap();
        written = r.y1();
    }
    std::mem::forget(store);
    written
}

/// Wait (up to a minute) for the killed run's writer thread to record `rows`, and check it
/// records exactly that.
fn wait_for_durable_rows(path: &Path, rows: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ProbabilityStore::durable_rows(path).unwrap() != Some(rows) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(ProbabilityStore::durable_rows(path).unwrap(), Some(rows));
}

/// The canvas rows on disk once `written` rows were handed to the store: those of the whole
/// shard rows among them (shard rows are 8 slide rows; the canvas starts at slide row 5).
fn complete_shard_rows(plan: &CanvasPlan, written: usize) -> usize {
    let oy = plan.origin()[1] as usize;
    let boundaries = (1..).map(|k| k * 8 - oy).take_while(|&b| b < plan.height());
    boundaries
        .chain([plan.height()])
        .filter(|&b| b <= written)
        .max()
        .unwrap_or(0)
}

#[test]
fn a_store_left_by_a_killed_run_is_continued_to_the_uninterrupted_store() {
    let (g, plan, heads) = setup();
    let h = plan.height();
    assert_eq!(h, 26);
    let full = stitch(&g, &plan, 0);
    let expected = canvas(&full);
    for flavour in [Flavour::Store, Flavour::Group] {
        for kill_at in [0, 10, 20, 24, h] {
            // The rows the killed run hands over: every item that starts above `kill_at`.
            let written = full
                .iter()
                .take_while(|r| r.y0 < kill_at)
                .last()
                .map_or(0, CanvasRows::y1);
            let on_disk = complete_shard_rows(&plan, written);
            let mut starts = vec![on_disk, on_disk.saturating_sub(4), 0];
            starts.dedup();
            for first_row in starts {
                let label = format!("{flavour:?}, killed at {kill_at}, resumed at {first_row}");
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("p.zarr");
                assert_eq!(ProbabilityStore::durable_rows(&path).unwrap(), None);
                assert_eq!(
                    killed_run(flavour, &path, (&plan, &heads), &full, kill_at),
                    written
                );
                wait_for_durable_rows(&path, on_disk);
                if on_disk < h {
                    // What a write cut short leaves: a torn shard in the next shard row (its
                    // left shard is only partly on the canvas, so it would be read and merged),
                    // and a torn temporary progress record.
                    let iy = (5 + on_disk) / 8;
                    let shard = part(&path).join(format!("{}0/c/{iy}/0/0", &flavour.prefix()[1..]));
                    std::fs::create_dir_all(shard.parent().unwrap()).unwrap();
                    std::fs::write(&shard, b"torn shard").unwrap();
                    std::fs::write(
                        part(&path).join("mtseg_stitch_progress.json.tmp"),
                        b"{\"dur",
                    )
                    .unwrap();
                }

                let budget = MemoryBudget::unlimited();
                let mut store = flavour
                    .reopen(&path, &plan, &heads, &budget, first_row)
                    .unwrap();
                let rows = stitch(&g, &plan, first_row);
                assert!(rows.first().is_none_or(|r| r.y0 == first_row), "{label}");
                for r in &rows {
                    store.write_rows(r).unwrap();
                }
                assert_eq!(store.finish().unwrap(), path);
                assert_eq!(budget.used(), 0, "{label}");

                assert_arrays_hold_canvas(
                    &path,
                    flavour.prefix(),
                    &plan,
                    &CHANNELS,
                    &expected,
                    SLIDE,
                );
                let leftovers: Vec<_> = std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("mtseg_stitch_progress"))
                    .collect();
                assert!(leftovers.is_empty(), "{label}: {leftovers:?}");
                assert!(!part(&path).exists(), "{label}");
                assert_eq!(
                    ProbabilityStore::durable_rows(&path).unwrap(),
                    None,
                    "{label}"
                );
            }
        }
    }
}

#[test]
fn a_store_that_cannot_be_continued_is_an_error_naming_why() {
    let (g, plan, heads) = setup();
    let full = stitch(&g, &plan, 0);
    let budget = MemoryBudget::unlimited();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.zarr");

    // No partial store.
    let err = ProbabilityStore::reopen(&path, &plan, &heads, &budget, 0).unwrap_err();
    assert!(
        matches!(&err, StitchError::Io { path: p, .. } if p.ends_with("p.zarr.part/mtseg_stitch_progress.json")),
        "{err}"
    );

    // A new store has no rows on disk yet.
    let store = Flavour::Store.create(&path, &plan, &heads);
    assert_eq!(ProbabilityStore::durable_rows(&path).unwrap(), Some(0));
    std::mem::forget(store);
    // A killed run that wrote rows up to 20: rows up to 19 are on disk.
    std::fs::remove_dir_all(part(&path)).unwrap();
    let written = killed_run(Flavour::Store, &path, (&plan, &heads), &full, 20);
    assert!(written >= 20);
    wait_for_durable_rows(&path, 19);

    let err = ProbabilityStore::reopen(&path, &plan, &heads, &budget, 20).unwrap_err();
    assert!(
        matches!(
            err,
            StitchError::StoreBehind {
                first_row: 20,
                durable_rows: 19,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("canvas row 20"), "{err}");

    let err = ProbabilityStore::reopen(&path, &plan, &heads, &budget, 27).unwrap_err();
    assert!(
        matches!(
            err,
            StitchError::Plan(PlanError::FirstRowPastCanvas {
                first_row: 27,
                height: 26
            })
        ),
        "{err}"
    );

    let other_heads = [HeadSpec::new("np", 1), HeadSpec::new("tp", 2)];
    let err = ProbabilityStore::reopen(&path, &plan, &other_heads, &budget, 0).unwrap_err();
    assert!(
        matches!(&err, StitchError::StoreMismatch { key, .. } if key == "mtseg_stitch.heads"),
        "{err}"
    );
    assert!(err.to_string().contains("tp"), "{err}");

    // Another canvas over the same slide (another mask).
    let other = CanvasPlan::without_mask(&g.output_boxes, plan.slide_size()).unwrap();
    let err = ProbabilityStore::reopen(&path, &other, &heads, &budget, 0).unwrap_err();
    assert!(
        matches!(&err, StitchError::StoreMismatch { key, .. } if key == "mtseg_stitch.canvas_origin"),
        "{err}"
    );

    // A malformed progress record.
    let record = part(&path).join("mtseg_stitch_progress.json");
    std::fs::write(&record, b"{\"rows\": 3}").unwrap();
    let err = ProbabilityStore::durable_rows(&path).unwrap_err();
    assert!(
        matches!(&err, StitchError::Io { path: p, .. } if *p == record),
        "{err}"
    );
    assert!(err.to_string().contains("durable_rows"), "{err}");
    std::fs::write(&record, b"{\"durable_rows\": 32}").unwrap();
    let err = ProbabilityStore::reopen(&path, &plan, &heads, &budget, 0).unwrap_err();
    assert!(
        matches!(&err, StitchError::StoreMismatch { key, .. } if key == "durable_rows"),
        "{err}"
    );

    // A finished store is not reopened.
    let done = dir.path().join("done.zarr");
    let mut store = Flavour::Store.create(&done, &plan, &heads);
    for r in &full {
        store.write_rows(r).unwrap();
    }
    store.finish().unwrap();
    let err = ProbabilityStore::reopen(&done, &plan, &heads, &budget, 0).unwrap_err();
    assert!(matches!(err, StitchError::OutputExists { .. }), "{err}");
    assert_eq!(budget.used(), 0);
}

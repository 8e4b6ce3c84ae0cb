//! A checkpoint of the streaming driver, written as JSON and read back, resumes it exactly:
//! what the driver handed out before the checkpoint plus what the resumed driver hands out is
//! what the uninterrupted driver hands out (ids, geometry, order), for any canvas, layout,
//! margin, maps, compat, row chunking and checkpoint point. A checkpoint of another run is
//! refused naming what differs, a damaged one is refused, and a checkpoint holds instances,
//! never map rows.

#[allow(unreachable_pub)]
#[path = "support/canvases.rs"]
mod canvases;

use anyhow::Result;
use mtseg_instmerge::{
    MergeCheckpoint, MergeError, MergeStats, MergedItem, RowChunk, StreamedInstances,
    StreamingTileMode, TiaToolboxCompat,
};
use mtseg_postproc::{LayerRegion, NpHvParams, NucleusInstance, render_hovernet_targets};
use mtseg_tiling::{PostprocTile, Size2, TileSet, tile_layout};
use proptest::prelude::*;

/// A stitched canvas: np, hv, and optionally tp and ls.
struct Canvas {
    h: usize,
    w: usize,
    np: Vec<f32>,
    hv: Vec<f32>,
    tp: Option<Vec<f32>>,
    ls: Option<Vec<f32>>,
}

impl Canvas {
    /// `nuclei` random square nuclei (with a tp map if `tp`), and a random layer map if `ls`.
    fn new(h: usize, w: usize, nuclei: i32, seed: u64, tp: bool, ls: bool) -> Result<Self> {
        let labels = canvases::random_blob_labels(h, w, nuclei, 10..21, seed);
        let t = render_hovernet_targets(&labels, None, h, w, 1.0)?;
        Ok(Self {
            h,
            w,
            np: t.np,
            hv: t.hv,
            tp: tp.then_some(t.tp),
            ls: ls.then(|| canvases::random_layer_ids(h, w, seed ^ 0x5eed)),
        })
    }

    fn size(&self) -> Size2 {
        Size2::new(self.w as u64, self.h as u64)
    }

    fn maps(&self) -> [bool; 2] {
        [self.tp.is_some(), self.ls.is_some()]
    }

    fn chunk(&self, y0: usize, rows: usize) -> RowChunk<'_> {
        let (a, b) = (y0 * self.w, (y0 + rows) * self.w);
        RowChunk {
            y0,
            rows,
            np: &self.np[a..b],
            hv: &self.hv[2 * a..2 * b],
            tp: self.tp.as_ref().map(|m| &m[a..b]),
            ls: self.ls.as_ref().map(|m| &m[a..b]),
        }
    }
}

/// The arguments of a driver besides the canvas.
#[derive(Debug, Clone)]
struct Run {
    tile: u64,
    margin: u64,
    compat: TiaToolboxCompat,
    np_hv: NpHvParams,
}

impl Run {
    fn new(tile: u64, margin: u64) -> Self {
        Self {
            tile,
            margin,
            compat: TiaToolboxCompat::OFF,
            np_hv: NpHvParams::hovernet(),
        }
    }

    fn tiles(&self, c: &Canvas) -> Vec<PostprocTile> {
        tile_layout(c.size(), self.tile, self.margin, |_| true).unwrap()
    }

    fn driver(&self, c: &Canvas) -> StreamingTileMode {
        let (tiles, m) = (self.tiles(c), self.margin);
        StreamingTileMode::new(c.size(), tiles, m, self.np_hv, self.compat, c.maps()).unwrap()
    }

    fn resume(&self, c: &Canvas, ckpt: MergeCheckpoint) -> Result<StreamingTileMode, MergeError> {
        let (tiles, m) = (self.tiles(c), self.margin);
        StreamingTileMode::resume(c.size(), tiles, m, self.np_hv, self.compat, c.maps(), ckpt)
    }
}

/// What one `push_rows` / `finish` call handed out.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    nuclei: Vec<MergedItem<NucleusInstance>>,
    layers: Vec<MergedItem<LayerRegion>>,
    first_open_row: usize,
    tiles_done: usize,
}

impl From<StreamedInstances> for Out {
    fn from(s: StreamedInstances) -> Self {
        Self {
            nuclei: s.nuclei,
            layers: s.layers,
            first_open_row: s.first_open_row,
            tiles_done: s.tiles_done,
        }
    }
}

/// Row chunks `[y0, rows)` from `from` to the canvas end, sizes cycled from `sizes`.
fn chunks(from: usize, h: usize, sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut y = from;
    while y < h {
        let rows = sizes[out.len() % sizes.len()].min(h - y);
        out.push((y, rows));
        y += rows;
    }
    out
}

/// A checkpoint taken after `calls` push_rows calls, as JSON.
struct Taken {
    calls: usize,
    rows_fed: usize,
    json: String,
    checkpoint: MergeCheckpoint,
}

/// The uninterrupted run: every call's output (the last one `finish`'s), the stats before
/// `finish`, and the checkpoints taken after the calls listed in `points` (0: before any).
struct Uninterrupted {
    outs: Vec<Out>,
    stats: (MergeStats, Option<MergeStats>),
    peak_window_rows: usize,
    taken: Vec<Taken>,
}

fn uninterrupted(
    c: &Canvas,
    run: &Run,
    plan: &[(usize, usize)],
    points: &[usize],
) -> Uninterrupted {
    let mut d = run.driver(c);
    let mut taken = Vec::new();
    let mut outs = Vec::new();
    let mut take = |d: &StreamingTileMode, calls: usize, rows_fed: usize| {
        if points.contains(&calls) {
            let checkpoint = d.checkpoint();
            let json = serde_json::to_string(&checkpoint).unwrap();
            taken.push(Taken {
                calls,
                rows_fed,
                json,
                checkpoint,
            });
        }
    };
    take(&d, 0, 0);
    for (k, &(y0, rows)) in plan.iter().enumerate() {
        outs.push(Out::from(d.push_rows(c.chunk(y0, rows)).unwrap()));
        take(&d, k + 1, y0 + rows);
    }
    let stats = d.stats();
    let peak_window_rows = d.peak_window_rows();
    outs.push(Out::from(d.finish().unwrap()));
    Uninterrupted {
        outs,
        stats,
        peak_window_rows,
        taken,
    }
}

/// The resumed run fed `plan`: every call's output (the last one `finish`'s), the stats before
/// `finish` and the peak window rows.
fn resumed(
    c: &Canvas,
    run: &Run,
    ckpt: MergeCheckpoint,
    plan: &[(usize, usize)],
) -> (Vec<Out>, (MergeStats, Option<MergeStats>), usize) {
    let mut d = run.resume(c, ckpt).unwrap();
    let mut outs: Vec<Out> = plan
        .iter()
        .map(|&(y0, rows)| Out::from(d.push_rows(c.chunk(y0, rows)).unwrap()))
        .collect();
    let (stats, peak) = (d.stats(), d.peak_window_rows());
    outs.push(Out::from(d.finish().unwrap()));
    (outs, stats, peak)
}

/// Every instance handed out, in order.
fn flat(
    outs: &[Out],
) -> (
    Vec<MergedItem<NucleusInstance>>,
    Vec<MergedItem<LayerRegion>>,
) {
    let nuclei = outs.iter().flat_map(|o| o.nuclei.iter().cloned()).collect();
    let layers = outs.iter().flat_map(|o| o.layers.iter().cloned()).collect();
    (nuclei, layers)
}

/// The counters that do not follow the chunking (`peak_held` does).
fn counts(s: MergeStats) -> [usize; 5] {
    [
        s.tiles,
        s.instances_in,
        s.removed_by_margin,
        s.removed_by_cross,
        s.emitted,
    ]
}

/// Checks every checkpoint of an uninterrupted run of `c`: through JSON, resumed and fed the
/// rows from its resume row in chunks of `resume_sizes`, and again fed as the uninterrupted
/// run was (the rows it had already received in one chunk, then its chunks).
fn check_resumes(
    c: &Canvas,
    run: &Run,
    sizes: &[usize],
    resume_sizes: &[usize],
    points: &[usize],
) -> std::result::Result<(), TestCaseError> {
    let plan = chunks(0, c.h, sizes);
    let u = uninterrupted(c, run, &plan, points);
    let (all_nuclei, all_layers) = flat(&u.outs);
    let tile_count = run.tiles(c).len();
    prop_assert_eq!(
        u.outs.iter().map(|o| o.tiles_done).sum::<usize>(),
        tile_count
    );
    for t in &u.taken {
        let ckpt: MergeCheckpoint = serde_json::from_str(&t.json).unwrap();
        prop_assert_eq!(
            &ckpt,
            &t.checkpoint,
            "the JSON round trip changed the checkpoint"
        );
        prop_assert_eq!(&serde_json::to_string(&ckpt).unwrap(), &t.json);
        let before = &u.outs[..t.calls];
        let (nuclei_before, layers_before) = flat(before);
        prop_assert_eq!(
            ckpt.tiles_done(),
            before.iter().map(|o| o.tiles_done).sum::<usize>()
        );
        prop_assert_eq!(ckpt.tile_count(), tile_count);
        prop_assert!(ckpt.resume_row() <= t.rows_fed);
        // nothing handed out is in the checkpoint
        for n in ckpt.held_nuclei() {
            prop_assert!(!nuclei_before.iter().any(|m| m.item == *n), "{:?}", n.bbox);
        }
        for l in ckpt.held_layers() {
            prop_assert!(!layers_before.iter().any(|m| m.item == *l), "{:?}", l.bbox);
        }
        let last_open = before.last().map_or(0, |o| o.first_open_row);

        // any chunking from the resume row
        let plan_after = chunks(ckpt.resume_row(), c.h, resume_sizes);
        let (after, stats, _) = resumed(c, run, ckpt.clone(), &plan_after);
        let (mut nuclei, mut layers) = (nuclei_before.clone(), layers_before.clone());
        let (n_after, l_after) = flat(&after);
        nuclei.extend(n_after);
        layers.extend(l_after);
        prop_assert!(nuclei == all_nuclei, "nuclei differ after call {}", t.calls);
        prop_assert!(layers == all_layers, "layers differ after call {}", t.calls);
        prop_assert_eq!(
            after.iter().map(|o| o.tiles_done).sum::<usize>(),
            tile_count - ckpt.tiles_done()
        );
        let mut open = last_open;
        for o in &after {
            prop_assert!(o.first_open_row >= open, "first open row went back");
            open = o.first_open_row;
        }
        prop_assert_eq!(open, c.h);
        prop_assert_eq!(counts(stats.0), counts(u.stats.0));
        prop_assert_eq!(stats.1.map(counts), u.stats.1.map(counts));

        // the uninterrupted run's chunking: the same outputs call by call
        let mut replay = Vec::new();
        if t.rows_fed > ckpt.resume_row() {
            replay.push((ckpt.resume_row(), t.rows_fed - ckpt.resume_row()));
        }
        let skipped = replay.len();
        replay.extend_from_slice(&plan[t.calls..]);
        let (after, stats, peak) = resumed(c, run, ckpt, &replay);
        if skipped == 1 {
            let expect = Out {
                nuclei: Vec::new(),
                layers: Vec::new(),
                first_open_row: last_open,
                tiles_done: 0,
            };
            prop_assert_eq!(&after[0], &expect);
        }
        prop_assert!(
            after[skipped..] == u.outs[t.calls..],
            "after call {}",
            t.calls
        );
        prop_assert_eq!(stats, u.stats);
        prop_assert_eq!(peak, u.peak_window_rows);
    }
    Ok(())
}

/// A canvas, a layout, the maps, the compat and the chunkings.
#[derive(Debug, Clone)]
struct Case {
    h: usize,
    w: usize,
    nuclei: i32,
    seed: u64,
    tp: bool,
    ls: bool,
    exact: bool,
    tile: u64,
    margin: u64,
    sizes: Vec<usize>,
    resume_sizes: Vec<usize>,
    /// Checkpoint points as fractions of the calls.
    points: Vec<f64>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (40usize..180, 40usize..180, 0i32..40, any::<u64>()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (20u64..100, 0u64..13),
        (
            prop::collection::vec(1usize..70, 1..4),
            prop::collection::vec(1usize..70, 1..4),
            prop::collection::vec(0.0..=1.0f64, 1..4),
        ),
    )
        .prop_map(
            |((h, w, nuclei, seed), (tp, ls, exact), (tile, margin), (sizes, resume, points))| {
                Case {
                    h,
                    w,
                    nuclei,
                    seed,
                    tp,
                    ls,
                    exact,
                    tile,
                    margin,
                    sizes,
                    resume_sizes: resume,
                    points,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_resumed_driver_continues_the_uninterrupted_one_exactly(c in case()) {
        let canvas = Canvas::new(c.h, c.w, c.nuclei, c.seed, c.tp, c.ls).unwrap();
        let run = Run {
            compat: if c.exact {
                TiaToolboxCompat::exact(canvas.size())
            } else {
                TiaToolboxCompat::OFF
            },
            np_hv: if c.ls { NpHvParams::hovernet_plus() } else { NpHvParams::hovernet() },
            ..Run::new(c.tile, c.margin)
        };
        let calls = chunks(0, c.h, &c.sizes).len();
        let points: Vec<usize> = c
            .points
            .iter()
            .map(|f| ((f * (calls + 1) as f64) as usize).min(calls))
            .collect();
        check_resumes(&canvas, &run, &c.sizes, &c.resume_sizes, &points)?;
    }
}

#[test]
fn checkpoints_of_a_dense_canvas_resume_exactly_after_every_call() -> Result<()> {
    // 300 x 260, 120 nuclei (the streaming test's canvas), crosses with pending nuclei
    let c = Canvas::new(260, 300, 120, 12345, true, false)?;
    let run = Run::new(60, 8);
    let calls = chunks(0, c.h, &[23, 41]).len();
    let points: Vec<usize> = (0..=calls).collect();
    check_resumes(&c, &run, &[23, 41], &[17, 64, 5], &points)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // the checkpoints held pending nuclei at some point (the case this test is for)
    let u = uninterrupted(&c, &run, &chunks(0, c.h, &[23, 41]), &points);
    assert!(u.taken.iter().any(|t| t.json.contains("\"waits\":1")));
    Ok(())
}

#[test]
fn checkpoints_of_hgsc_nest_resume_exactly() -> Result<()> {
    // 1500 x 1500, 1294 nuclei of real shapes; tiles 328, margin 64 (the streaming test's run)
    let (t, _) = canvases::hgsc_nest()?;
    let c = Canvas {
        h: t.height,
        w: t.width,
        np: t.np,
        hv: t.hv,
        tp: Some(t.tp),
        ls: None,
    };
    let run = Run::new(328, 64);
    let calls = chunks(0, c.h, &[164]).len();
    check_resumes(&c, &run, &[164], &[100, 301], &[1, calls / 2, calls - 1])
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A driver over a 200 x 160 canvas (tiles 60, margin 8, tp) checkpointed after 100 rows.
fn checkpoint_after_100_rows() -> Result<(Canvas, Run, MergeCheckpoint)> {
    let c = Canvas::new(160, 200, 80, 7, true, false)?;
    let run = Run::new(60, 8);
    let mut d = run.driver(&c);
    for (y0, rows) in chunks(0, 100, &[50]) {
        d.push_rows(c.chunk(y0, rows))?;
    }
    let ckpt = d.checkpoint();
    assert!(ckpt.tiles_done() > 0 && ckpt.held() > 0);
    Ok((c, run, ckpt))
}

fn mismatch(r: Result<StreamingTileMode, MergeError>) -> String {
    match r {
        Err(e @ MergeError::CheckpointMismatch { .. }) => e.to_string(),
        Err(e) => panic!("expected a checkpoint mismatch, got {e}"),
        Ok(_) => panic!("expected a checkpoint mismatch, the driver resumed"),
    }
}

#[test]
fn a_checkpoint_of_another_canvas_size_is_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let tiles = run.tiles(&c);
    let r = StreamingTileMode::resume(
        Size2::new(200, 161),
        tiles,
        8,
        run.np_hv,
        run.compat,
        c.maps(),
        ckpt,
    );
    assert_eq!(
        mismatch(r),
        "the checkpoint does not fit this run: canvas size: checkpoint 200 x 160, this run 200 x 161"
    );
    Ok(())
}

#[test]
fn a_checkpoint_of_another_tile_layout_is_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let n = run.tiles(&c).len();
    let other = Run::new(50, 8);
    let m = other.tiles(&c).len();
    assert_ne!(n, m);
    assert_eq!(
        mismatch(other.resume(&c, ckpt.clone())),
        format!(
            "the checkpoint does not fit this run: tile layout: checkpoint {n} tiles, this run {m} tiles"
        )
    );
    // as many tiles, one of them moved by a pixel
    let mut tiles = run.tiles(&c);
    tiles[2].bounds[3] += 1;
    let r = StreamingTileMode::resume(c.size(), tiles, 8, run.np_hv, run.compat, c.maps(), ckpt);
    let msg = mismatch(r);
    assert!(
        msg.starts_with(
            "the checkpoint does not fit this run: tile layout: checkpoint tile bounds digest "
        ),
        "{msg}"
    );
    Ok(())
}

#[test]
fn a_checkpoint_with_another_margin_is_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let r = StreamingTileMode::resume(
        c.size(),
        run.tiles(&c),
        9,
        run.np_hv,
        run.compat,
        c.maps(),
        ckpt,
    );
    assert_eq!(
        mismatch(r),
        "the checkpoint does not fit this run: margin: checkpoint 8 px, this run 9 px"
    );
    Ok(())
}

#[test]
fn a_checkpoint_with_other_maps_is_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let tiles = run.tiles(&c);
    for (maps, given) in [([false, false], "np, hv"), ([true, true], "np, hv, tp, ls")] {
        let r = StreamingTileMode::resume(
            c.size(),
            tiles.clone(),
            8,
            run.np_hv,
            run.compat,
            maps,
            ckpt.clone(),
        );
        assert_eq!(
            mismatch(r),
            format!(
                "the checkpoint does not fit this run: maps: checkpoint np, hv, tp, this run {given}"
            )
        );
    }
    Ok(())
}

#[test]
fn a_checkpoint_with_another_compat_is_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let exact = Run {
        compat: TiaToolboxCompat::exact(c.size()),
        ..run.clone()
    };
    let msg = mismatch(exact.resume(&c, ckpt.clone()));
    assert!(
        msg.starts_with("the checkpoint does not fit this run: TIAToolbox compat: checkpoint "),
        "{msg}"
    );
    // one switch is enough
    let one = Run {
        compat: TiaToolboxCompat {
            closed_margin_boxes: true,
            ..TiaToolboxCompat::OFF
        },
        ..run
    };
    let msg = mismatch(one.resume(&c, ckpt));
    assert!(msg.contains("closed_margin_boxes: false"), "{msg}");
    Ok(())
}

#[test]
fn a_checkpoint_with_other_np_hv_parameters_is_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let other = Run {
        np_hv: NpHvParams {
            np_threshold: 0.55,
            ..run.np_hv
        },
        ..run
    };
    let msg = mismatch(other.resume(&c, ckpt));
    assert!(
        msg.starts_with("the checkpoint does not fit this run: np/hv parameters: checkpoint "),
        "{msg}"
    );
    Ok(())
}

#[test]
fn a_checkpoint_of_another_format_is_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let mut v = serde_json::to_value(&ckpt)?;
    v["format"] = 2.into();
    let ckpt: MergeCheckpoint = serde_json::from_value(v)?;
    assert_eq!(
        mismatch(run.resume(&c, ckpt)),
        "the checkpoint does not fit this run: checkpoint format 2 (this build reads format 1)"
    );
    Ok(())
}

#[test]
fn damaged_checkpoints_are_refused() -> Result<()> {
    let (c, run, ckpt) = checkpoint_after_100_rows()?;
    let v = serde_json::to_value(&ckpt)?;
    let n = ckpt.tile_count();
    let arrived = v["nuclei"]["arrived"].as_str().unwrap().to_owned();
    let first_done = arrived.find(['0', '1']).unwrap();
    // a tile still to do that no held instance waits for
    let tiles = run.tiles(&c);
    let first_todo = (0..n)
        .find(|&i| &arrived[i..=i] == "." && tiles[i].set != TileSet::Cross)
        .unwrap();
    // the first instance held, final if there is one
    let held = if v["nuclei"]["ready"].as_array().unwrap().is_empty() {
        "pending"
    } else {
        "ready"
    };
    let with_char = |i: usize, ch: char| -> serde_json::Value {
        let mut a: Vec<char> = arrived.chars().collect();
        a[i] = ch;
        a.into_iter().collect::<String>().into()
    };
    let (bad_char, todo_done) = (with_char(first_done, 'x'), with_char(first_todo, '0'));
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(Edit, String)> = vec![
        (
            Box::new(move |v| v["tiles_done"] = (n + 1).into()),
            format!("{} tiles done of a layout of {n}", n + 1),
        ),
        (
            Box::new(|v| v["resume_row"] = 161.into()),
            "resume row 161 is past the canvas height 160".into(),
        ),
        (
            Box::new(|v| v["resume_row"] = 159.into()),
            "resume row 159 is below the top of tile".into(),
        ),
        (
            Box::new(|v| v["nuclei"]["arrived"] = "1".into()),
            format!("nuclei: 1 tile states for a layout of {n} tiles"),
        ),
        (
            Box::new(move |v| v["nuclei"]["arrived"] = bad_char.clone()),
            format!("nuclei: tile state 'x' of tile {first_done}"),
        ),
        (
            // a tile the driver has not done marked as merged
            Box::new(move |v| {
                v["nuclei"]["arrived"] = todo_done.clone();
                let tiles = v["nuclei"]["stats"]["tiles"].as_u64().unwrap();
                v["nuclei"]["stats"]["tiles"] = (tiles + 1).into();
            }),
            format!("tile {first_todo} is merged in the mergers but still to do by the driver"),
        ),
        (
            Box::new(|v| v["nuclei"]["next_id"] = 0.into()),
            "nuclei: next id 0 after".into(),
        ),
        (
            Box::new(move |v| v["nuclei"][held][0]["item"]["centroid"][1] = 1e6.into()),
            "nuclei: instance".into(),
        ),
        (
            Box::new(move |v| {
                let list = v["nuclei"][held].as_array_mut().unwrap();
                let first = list[0].clone();
                list.push(first);
            }),
            "twice".into(),
        ),
        (
            Box::new(move |v| {
                let waits = v["nuclei"][held][0]["waits"].as_u64().unwrap();
                v["nuclei"][held][0]["waits"] = (waits + 1).into();
            }),
            "nuclei: instance".into(),
        ),
        (
            Box::new(move |v| {
                v["layers"] = serde_json::json!({
                    "arrived": v["nuclei"]["arrived"].clone(),
                    "pending": [],
                    "ready": [],
                    "next_id": 1,
                    "stats": v["nuclei"]["stats"].clone(),
                });
            }),
            "a layer merger state is present but this run has no layers".into(),
        ),
    ];
    for (edit, expected) in edits {
        let mut damaged = v.clone();
        edit(&mut damaged);
        let ckpt: MergeCheckpoint = serde_json::from_value(damaged)?;
        match run.resume(&c, ckpt) {
            Err(MergeError::CheckpointInvalid { what }) => {
                assert!(what.contains(&expected), "{what:?} lacks {expected:?}")
            }
            Err(e) => panic!("expected an invalid checkpoint ({expected}), got {e}"),
            Ok(_) => panic!("a damaged checkpoint resumed ({expected})"),
        }
    }
    // an unknown field is not silently dropped
    let mut extra = v.clone();
    extra["window"] = serde_json::json!([0.5, 0.25]);
    assert!(serde_json::from_value::<MergeCheckpoint>(extra).is_err());
    Ok(())
}

#[test]
fn a_checkpoint_holds_instances_not_rows() -> Result<()> {
    // a wide canvas: each window row is 600 x 4 maps x 4 bytes
    for nuclei in [0, 200] {
        let c = Canvas::new(300, 600, nuclei, 99, true, false)?;
        let run = Run::new(100, 16);
        let mut d = run.driver(&c);
        let tiles = run.tiles(&c).len();
        let mut biggest_window = 0;
        let mut held_max = 0;
        for (y0, rows) in chunks(0, c.h, &[40]) {
            d.push_rows(c.chunk(y0, rows))?;
            let ckpt = d.checkpoint();
            let json = serde_json::to_string(&ckpt)?;
            let window_rows = y0 + rows - ckpt.resume_row();
            biggest_window = biggest_window.max(window_rows);
            held_max = held_max.max(ckpt.held());
            // a fixed part, one character per tile, and each instance held with its fields
            let held: usize = ckpt
                .held_nuclei()
                .map(|n| serde_json::to_string(n).unwrap().len() + 64)
                .sum();
            let bound = 1024 + 2 * tiles + held;
            assert!(
                json.len() <= bound,
                "{} bytes for {} instances held, bound {bound}",
                json.len(),
                ckpt.held()
            );
            if nuclei == 0 {
                assert_eq!(held, 0);
            }
            println!(
                "{nuclei} nuclei: {} held, {} bytes of JSON, window {window_rows} rows = {} bytes",
                ckpt.held(),
                json.len(),
                window_rows * d.row_bytes()
            );
            if window_rows >= 40 {
                assert!(
                    json.len() * 10 < window_rows * d.row_bytes(),
                    "{}",
                    json.len()
                );
            }
        }
        // the window did hold rows, and (with nuclei) the checkpoints held instances
        assert!(biggest_window >= 80, "{biggest_window}");
        assert_eq!(held_max > 0, nuclei > 0);
    }
    Ok(())
}

#[test]
fn merged_items_round_trip_through_json_bit_exactly() -> Result<()> {
    let c = Canvas::new(260, 300, 120, 12345, true, true)?;
    let run = Run {
        np_hv: NpHvParams::hovernet_plus(),
        ..Run::new(100, 16)
    };
    let u = uninterrupted(&c, &run, &chunks(0, c.h, &[64]), &[]);
    let (nuclei, layers) = flat(&u.outs);
    assert!(nuclei.len() > 50 && !layers.is_empty());
    for n in &nuclei {
        let line = serde_json::to_string(n)?;
        let back: MergedItem<NucleusInstance> = serde_json::from_str(&line)?;
        assert_eq!(bits(&back.item), bits(&n.item), "{line}");
        assert_eq!(&back, n);
    }
    for l in &layers {
        let back: MergedItem<LayerRegion> = serde_json::from_str(&serde_json::to_string(l)?)?;
        assert_eq!(&back, l);
    }
    Ok(())
}

fn bits(n: &NucleusInstance) -> [Option<u64>; 3] {
    [
        Some(n.centroid[0].to_bits()),
        Some(n.centroid[1].to_bits()),
        n.type_prob.map(f64::to_bits),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_finite_floats_round_trip_through_json(
        x in any::<f64>().prop_filter("finite", |v| v.is_finite()),
        y in 0.0..1e5f64,
        p in any::<f64>().prop_filter("finite", |v| v.is_finite()),
    ) {
        let n = MergedItem {
            id: u64::MAX,
            tile_index: 3,
            item: NucleusInstance {
                label: -1,
                bbox: [i32::MIN, 0, 5, i32::MAX],
                centroid: [x, y],
                contour: vec![[1, 2], [-3, 4]],
                type_id: Some(u32::MAX),
                type_prob: Some(p),
            },
        };
        let back: MergedItem<NucleusInstance> =
            serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        prop_assert_eq!(bits(&back.item), bits(&n.item));
        prop_assert_eq!(back, n);
    }
}

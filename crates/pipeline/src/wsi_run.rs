//! One slide in WSI mode, streamed: a reader thread (patch reads on the rayon pool) -> the run's
//! inference thread (one session for this slide) -> a stitch thread -> post-processing and the
//! cross-tile merge on this thread (tiles on the rayon pool) -> an export thread. Every arrow is
//! a bounded channel, so a slow stage holds back the ones before it; post-processing of a tile
//! starts as soon as its canvas rows are final, while inference of later rows goes on.
//!
//! [`run_wsi_slide`] does three things in order: [`prepare`] the stages from the slide's plan,
//! [`run_stages`] on their threads, and [`finish`] the outputs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::bounded;
use mtseg_export::{OverlayBase, write_overlay_png};
use mtseg_infer::{BatchResult, BatchSender, HeadKind};
use mtseg_instmerge::{MergeCheckpoint, MergedItem, StreamingTileMode, TiaToolboxCompat};
use mtseg_io_config::{RunConfig, SlideInput};
use mtseg_postproc::NucleusInstance;
use mtseg_stitch::{
    CanvasRows, HeadSpec as StitchHead, MemoryBudget, MemoryReservation, ProbabilityStore,
    StitchParams, Stitcher, ZarrLayout,
};
use mtseg_tiling::{ExtractParams, Size2};

use crate::busy_clock::BusyClock;
use crate::model_params::np_hv_params;
use crate::model_provider::LoadedModel;
use crate::output_spec::slide_export_spec;
use crate::pipeline_errors::SlideError;
use crate::progress_events::{ProgressEvent, ProgressSink, SlideSummary, StageTimes};
use crate::slide_checkpoint::{CheckpointIdentity, CheckpointSettings, CheckpointWriter, Resume};
use crate::slide_output::{OutputProvider, SlideOutput};
use crate::slide_plan::{SlideLayout, SlidePlan, plan_slide};
use crate::slide_state::ResultKeys;
use crate::stage_params;
use crate::wsi_stages::{
    ExportMsg, PostprocTotals, Resumed, SlideProgress, export_stage, postproc_stage, read_stage,
    stitch_stage,
};

/// The fixed inputs of one slide's run.
pub(crate) struct SlideJob<'a> {
    pub(crate) cfg: &'a RunConfig,
    pub(crate) index: usize,
    /// The slide's entry in the config (its path, mask, mpp and output stem).
    pub(crate) slide: &'a SlideInput,
    /// `&slide.path`.
    pub(crate) path: &'a Path,
    pub(crate) provenance: &'a serde_json::Value,
    pub(crate) model: &'a LoadedModel,
    pub(crate) outputs: &'a dyn OutputProvider,
    pub(crate) progress: &'a dyn ProgressSink,
    pub(crate) cancel: &'a AtomicBool,
    pub(crate) budget: MemoryBudget,
    /// The CPU stages' threads.
    pub(crate) pool: &'a rayon::ThreadPool,
    /// What the outputs are made with (checkpoints record it).
    pub(crate) keys: &'a ResultKeys,
    /// Where and how often to checkpoint (None: no checkpoints, no resume).
    pub(crate) checkpoint: Option<CheckpointSettings>,
}

impl SlideJob<'_> {
    fn progress(&self) -> SlideProgress<'_> {
        SlideProgress {
            sink: self.progress,
            index: self.index,
        }
    }
}

/// Runs one slide. On error every temporary output is removed (the output is dropped without
/// `finish`).
pub(crate) fn run_wsi_slide(job: &SlideJob<'_>) -> Result<SlideSummary, SlideError> {
    let started = Instant::now();
    let plan = plan_slide(job.cfg, job.slide)?;
    let forward_before = job.model.forward_seconds();
    let stages = prepare(job, &plan)?;
    job.progress.event(&ProgressEvent::SlideStarted {
        slide: job.index,
        path: job.path.to_path_buf(),
        patches: plan.patches_selected,
        tiles: plan.postproc_tiles(),
    });
    let resumed_at_row = stages.resume.as_ref().map(|r| r.resume_row);
    let patches = (layout_len(&plan) - stages.first_patch) as u64;
    let Ran {
        output,
        overlay,
        postproc,
        read,
        stitch,
        export,
    } = run_stages(job, stages)?;
    let outputs = finish(
        job,
        output,
        overlay.as_ref(),
        &postproc.overlay_nuclei,
        &export,
    )?;
    Ok(SlideSummary {
        path: job.path.to_path_buf(),
        nuclei: postproc.nuclei,
        layers: postproc.layers,
        patches,
        tiles: postproc.tiles,
        wall_s: started.elapsed().as_secs_f64(),
        stages: StageTimes {
            read_s: read.seconds(),
            infer_s: job.model.forward_seconds() - forward_before,
            stitch_s: stitch.seconds(),
            postproc_s: postproc.busy.as_secs_f64(),
            export_s: export.seconds(),
        },
        outputs,
        resumed_at_row,
        checkpoints: postproc.checkpoints,
        checkpoint_s: postproc.checkpoint_s,
    })
}

fn layout_len(plan: &SlidePlan) -> usize {
    plan.layout().map_or(0, |l| l.selected.len())
}

/// Everything a slide's stage threads start from.
struct Stages<'p> {
    layout: &'p SlideLayout,
    heads: Vec<HeadKind>,
    model_input: BatchSender,
    results: crossbeam_channel::Receiver<BatchResult>,
    stitcher: Stitcher,
    store: Option<ProbabilityStore>,
    driver: StreamingTileMode,
    /// The post-processing row window's share of the memory budget, held while the slide runs.
    _window: MemoryReservation,
    output: Box<dyn SlideOutput>,
    overlay: Option<OverlayBase>,
    /// What a killed run left to resume from.
    resume: Option<Resume>,
    /// The first of the selected patches to run (after a resume, those above the resume row
    /// are not run again; whole model batches are kept as they were).
    first_patch: usize,
    checkpoints: Option<CheckpointWriter>,
}

/// Builds the stages of one slide from its plan: the model session, the stitcher, the streaming
/// post-processing driver (and its share of the memory budget), the outputs under temporary
/// names, the probability store, and the overlay's base image.
fn prepare<'p>(job: &SlideJob<'_>, plan: &'p SlidePlan) -> Result<Stages<'p>, SlideError> {
    let cfg = job.cfg;
    let slide = || job.path.to_path_buf();
    let layout = plan.layout().ok_or_else(|| SlideError::Panicked {
        slide: slide(),
        stage: "planning (a whole-slide plan without a layout)".into(),
    })?;
    let (model_input, results) = job.model.session().map_err(|e| e.for_slide(job.path))?;
    let heads = job.model.head_kinds();
    let stitch_heads: Vec<StitchHead> = heads
        .iter()
        .map(|k| StitchHead::new(k.name(), k.output_channels()))
        .collect();
    let out = cfg.io.patch_output;
    let stitch_err = |source| SlideError::Stitch {
        slide: slide(),
        source: Box::new(source),
    };

    let [cw, ch] = layout.canvas.canvas_size();
    let canvas = Size2::new(cw as u64, ch as u64);
    let maps = [heads.contains(&HeadKind::Tp), heads.contains(&HeadKind::Ls)];
    let merge_err = |source| SlideError::Merge {
        slide: slide(),
        source: Box::new(source),
    };
    // a new driver, or (with a checkpoint) one that resumes where a killed run stopped
    let driver = |checkpoint: Option<MergeCheckpoint>| {
        let (tiles, margin, np_hv) = (
            layout.tiles.clone(),
            u64::from(cfg.io.margin),
            np_hv_params(cfg),
        );
        let compat = TiaToolboxCompat::OFF;
        match checkpoint {
            None => StreamingTileMode::new(canvas, tiles, margin, np_hv, compat, maps),
            Some(c) => StreamingTileMode::resume(canvas, tiles, margin, np_hv, compat, maps, c),
        }
    };
    let new_driver = || driver(None).map_err(merge_err);
    let state_err = |source| SlideError::State {
        slide: slide(),
        source,
    };
    let identity = match &job.checkpoint {
        Some(_) if cfg.output.save_probabilities => {
            tracing::info!(slide = %job.path.display(), "no resume checkpoints: [output] save_probabilities is on (the probability store cannot be resumed)");
            None
        }
        Some(c) => Some((
            c,
            CheckpointIdentity::of(
                job.path,
                job.keys,
                [
                    cw as u64,
                    ch as u64,
                    layout.tiles.len() as u64,
                    layout.selected.len() as u64,
                ],
            )
            .map_err(state_err)?,
        )),
        None => None,
    };
    let resume = identity
        .as_ref()
        .and_then(|(c, id)| crate::slide_checkpoint::load(&c.dir, id));
    let (driver, resume) = match resume {
        Some(r) => {
            let resumed = serde_json::from_value::<MergeCheckpoint>(r.merge.clone())
                .map_err(|e| e.to_string())
                .and_then(|m| driver(Some(m)).map_err(|e| e.to_string()));
            match resumed {
                Ok(d) => {
                    tracing::info!(slide = %job.path.display(), row = r.resume_row, nuclei = r.totals.nuclei, "resuming from a checkpoint");
                    (d, Some(r))
                }
                Err(why) => {
                    tracing::warn!(slide = %job.path.display(), "ignoring the checkpoint: {why}; the slide starts from the top");
                    (new_driver()?, None)
                }
            }
        }
        None => (new_driver()?, None),
    };
    let checkpoints = match &identity {
        Some((c, id)) => Some(
            CheckpointWriter::open(&c.dir, id.clone(), c.every, resume.as_ref())
                .map_err(state_err)?,
        ),
        None => None,
    };
    let first_row = resume.as_ref().map_or(0, |r| r.resume_row);
    let first_patch = first_patch_at(layout, first_row, cfg.model.batch_size.get() as usize);
    let window_bytes = (driver
        .max_window_rows(layout.canvas.max_band_height().max(out.height as usize))
        * driver.row_bytes()) as u64;
    let window = job
        .budget
        .try_reserve(window_bytes, "the post-processing row window")
        .map_err(|e| stitch_err(e.into()))?;
    let params = StitchParams::new(
        layout.canvas.clone(),
        out,
        stitch_heads.clone(),
        job.budget.clone(),
    )
    .map_err(|e| stitch_err(e.into()))?
    // Patches reach the stitcher in grid order (one reader, one inference thread, in order), which
    // is its merge order: no room is set aside for out-of-order patches (any would reserve as
    // they come).
    .with_consumer_held(window_bytes)
    .with_first_row(first_row as usize);
    let stitcher = Stitcher::new(params).map_err(stitch_err)?;

    let spec = slide_export_spec(cfg, job.slide, layout.slide.as_ref(), job.provenance)?;
    let output = job
        .outputs
        .create(&spec)
        .map_err(|source| SlideError::Output {
            slide: slide(),
            source,
        })?;
    let store = match (cfg.output.save_probabilities, output.probabilities_dir()) {
        (true, Some(dir)) => {
            let mut attrs = serde_json::Map::new();
            attrs.insert(
                "heads".into(),
                serde_json::json!(heads.iter().map(|h| h.name()).collect::<Vec<_>>()),
            );
            attrs.insert(
                "processing_mpp".into(),
                serde_json::json!(spec.processing_mpp),
            );
            Some(
                ProbabilityStore::create_group(
                    &dir,
                    &layout.canvas,
                    &stitch_heads,
                    attrs,
                    ZarrLayout::default(),
                    &job.budget,
                )
                .map_err(stitch_err)?,
            )
        }
        _ => None,
    };
    let overlay = if cfg.output.overlay {
        Some(overlay_base(cfg, layout)?)
    } else {
        None
    };
    Ok(Stages {
        layout,
        heads,
        model_input,
        results,
        stitcher,
        store,
        driver,
        _window: window,
        output,
        overlay,
        resume,
        first_patch,
        checkpoints,
    })
}

/// The first selected patch to run when the canvas starts at `row`: the start of the first
/// model batch (of `batch` patches, counted from the first selected patch as in an
/// uninterrupted run, so that every batch is the same) holding a patch whose output reaches
/// below `row`. Selected patches are in grid order, so their output bottoms never decrease.
fn first_patch_at(layout: &SlideLayout, row: u64, batch: usize) -> usize {
    let top = layout.canvas.origin()[1] as i64;
    let first_needed = layout
        .selected
        .iter()
        .position(|(_, b)| b.output[3] - top > row as i64)
        .unwrap_or(layout.selected.len());
    let batch = batch.max(1);
    first_needed / batch * batch
}

/// The centre of the canvas, at most 1024 px square, read from the slide for the overlay.
fn overlay_base(cfg: &RunConfig, layout: &SlideLayout) -> Result<OverlayBase, SlideError> {
    let [cw, ch] = layout.canvas.canvas_size();
    let [ox, oy] = layout.canvas.origin().map(|v| v as i64);
    let (w, h) = (cw.min(1024), ch.min(1024));
    let x0 = ox + ((cw - w) / 2) as i64;
    let y0 = oy + ((ch - h) / 2) as i64;
    let img = layout.slide.read_region(
        [x0, y0, x0 + w as i64, y0 + h as i64],
        stage_params::resolution(cfg),
        stage_params::interpolation(cfg),
    )?;
    Ok(OverlayBase {
        origin: [x0, y0],
        width: w,
        height: h,
        rgb: img.into_raw(),
    })
}

/// What the stage threads of a slide did.
struct Ran {
    output: Box<dyn SlideOutput>,
    overlay: Option<OverlayBase>,
    postproc: PostprocTotals,
    read: BusyClock,
    stitch: BusyClock,
    export: BusyClock,
}

/// Runs the stage loops on their threads until the slide is done or one fails; the root cause
/// is reported (the earliest stage whose error is not a consequence of another's).
fn run_stages(job: &SlideJob<'_>, stages: Stages<'_>) -> Result<Ran, SlideError> {
    let cfg = job.cfg;
    let path = job.path;
    let Stages {
        layout,
        heads,
        model_input,
        results,
        stitcher,
        store,
        driver,
        _window,
        output,
        overlay,
        resume,
        first_patch,
        checkpoints,
    } = stages;
    let capacity = cfg.pipeline.queue_capacity.get() as usize;
    let extract = ExtractParams {
        resolution: stage_params::resolution(cfg),
        interpolation: stage_params::interpolation(cfg),
        batch_size: cfg.model.batch_size.get() as usize,
    };
    let selected = &layout.selected[first_patch..];
    let total = selected.len() as u64;
    let tiles_total = layout.tiles.len();
    let origin = layout.canvas.origin();
    let (read, stitch, export) = (
        BusyClock::default(),
        BusyClock::default(),
        BusyClock::default(),
    );
    let (rows_tx, rows_rx) = bounded::<CanvasRows>(capacity);
    let (export_tx, export_rx) = bounded::<ExportMsg>(capacity);
    let progress = job.progress();
    let replay = resume.as_ref();
    // Set by the first stage that fails: the reader stops sending batches at once.
    let stopped = AtomicBool::new(false);
    let (reader_res, stitch_res, postproc_res, export_res) = std::thread::scope(|s| {
        // the session's sender moves to the reader: when reading ends, the session closes
        let reader = s.spawn(|| {
            read_stage(
                layout.slide.as_ref(),
                selected,
                extract,
                model_input,
                job.cancel,
                &stopped,
                &read,
                job.pool,
                path,
            )
        });
        // rows_tx moves to the stitcher: when stitching ends, post-processing sees the end
        let stitcher_thread = s.spawn(|| {
            let rows_tx = rows_tx;
            stop_on_error(
                &stopped,
                stitch_stage(
                    stitcher,
                    store,
                    results,
                    &rows_tx,
                    &layout.grid,
                    total,
                    &stitch,
                    progress,
                    path,
                ),
            )
        });
        let exporter = s.spawn(|| {
            let mut output = output;
            let r = replay_checkpoint(output.as_mut(), replay, path)
                .and_then(|()| export_stage(output.as_mut(), &export_rx, &export, path));
            let r = stop_on_error(&stopped, r);
            drop(export_rx);
            (output, r)
        });
        let postproc = stop_on_error(
            &stopped,
            postproc_stage(
                driver,
                Resumed::from(resume.as_ref(), overlay.as_ref()),
                checkpoints,
                &rows_rx,
                &export_tx,
                &heads,
                origin,
                overlay.as_ref(),
                tiles_total,
                progress,
                job.pool,
                path,
            ),
        );
        drop(rows_rx);
        drop(export_tx);
        (
            reader.join(),
            stitcher_thread.join(),
            postproc,
            exporter.join(),
        )
    });
    let panic = |stage: &str| SlideError::Panicked {
        slide: path.to_path_buf(),
        stage: stage.to_string(),
    };
    let reader_res = reader_res.map_err(|_| panic("patch reading"))?;
    let stitch_res = stitch_res.map_err(|_| panic("stitching"))?;
    let (output, export_res) = export_res.map_err(|_| panic("writing outputs"))?;
    let (postproc, postproc_err) = match postproc_res {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e)),
    };
    let root_cause = [
        reader_res.err(),
        stitch_res.err(),
        postproc_err,
        export_res.err(),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|e| matches!(e, SlideError::Interrupted));
    if let Some(e) = root_cause {
        drop(output);
        return Err(e);
    }
    Ok(Ran {
        output,
        overlay,
        postproc: postproc.ok_or_else(|| panic("post-processing"))?,
        read,
        stitch,
        export,
    })
}

/// `r`, after setting `stopped` if it is an error.
fn stop_on_error<T>(stopped: &AtomicBool, r: Result<T, SlideError>) -> Result<T, SlideError> {
    if r.is_err() {
        stopped.store(true, Ordering::Relaxed);
    }
    r
}

/// Hands the writers what a killed run had handed them before its checkpoint.
fn replay_checkpoint(
    output: &mut dyn SlideOutput,
    resume: Option<&Resume>,
    path: &Path,
) -> Result<(), SlideError> {
    let Some(r) = resume else { return Ok(()) };
    let err = |source| SlideError::Output {
        slide: path.to_path_buf(),
        source,
    };
    if !r.nuclei.is_empty() {
        output.nuclei(&r.nuclei).map_err(err)?;
    }
    if !r.layers.is_empty() {
        output.layers(&r.layers).map_err(err)?;
    }
    output.rows_final(r.totals.rows_final).map_err(err)
}

/// Completes the outputs (moves them to their final names) and draws the overlay; returns the
/// files written.
fn finish(
    job: &SlideJob<'_>,
    output: Box<dyn SlideOutput>,
    overlay: Option<&OverlayBase>,
    overlay_nuclei: &[MergedItem<NucleusInstance>],
    clock: &BusyClock,
) -> Result<Vec<PathBuf>, SlideError> {
    let output_err = |source| SlideError::Output {
        slide: job.path.to_path_buf(),
        source,
    };
    let t = Instant::now();
    let mut files = output.finish().map_err(output_err)?;
    if let Some(base) = overlay {
        let png = crate::output_names::overlay_path(job.cfg, job.slide);
        write_overlay_png(
            &png,
            base,
            overlay_nuclei,
            &job.cfg.model.nuclei_classes,
            true, // as the other outputs (see `output_spec::export_spec`)
        )
        .map_err(|e| output_err(Box::new(e)))?;
        files.push(png);
    }
    clock.add(t.elapsed());
    Ok(files)
}

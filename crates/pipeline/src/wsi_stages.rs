//! The stage loops of a whole-slide run, one function each, every one on its own thread and
//! joined by bounded channels: read patches -> (the inference thread) -> stitch -> post-process
//! and merge -> export.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mtseg_export::OverlayBase;
use mtseg_infer::{BatchResult, BatchSender, HeadKind, InferError};
use mtseg_instmerge::{MergedItem, RowChunk, StreamedInstances, StreamingTileMode};
use mtseg_postproc::{LayerRegion, NucleusInstance};
use mtseg_slide::SlideReader;
use mtseg_stitch::{CanvasRows, HeadSlice, PatchView, ProbabilityStore, StitchError, Stitcher};
use mtseg_tiling::{ExtractParams, PatchBox, PatchGrid, read_batch};

use crate::busy_clock::BusyClock;
use crate::pipeline_errors::SlideError;
use crate::progress_events::{ProgressEvent, ProgressSink};
use crate::slide_checkpoint::{CheckpointTotals, CheckpointWriter, Resume};

/// What the post-processing stage sends to the export stage.
pub(crate) enum ExportMsg {
    /// Final nuclei, slide coordinates.
    Nuclei(Vec<MergedItem<NucleusInstance>>),
    /// Final layer polygons, slide coordinates.
    Layers(Vec<MergedItem<LayerRegion>>),
    /// No later instance touches a slide row above this one.
    RowsFinal(u64),
}

/// Where progress of one slide is reported.
#[derive(Clone, Copy)]
pub(crate) struct SlideProgress<'a> {
    pub(crate) sink: &'a dyn ProgressSink,
    pub(crate) index: usize,
}

/// Reads the selected patches batch by batch (the patches of a batch in parallel on `pool`) and
/// sends each batch, with its patches' places on the slide, to the model. Dropping
/// `model_input` at the end closes the slide's session.
///
/// It stops at the next batch when `cancel` (Ctrl-C, SIGTERM) or `stopped` (another stage of
/// this slide failed) is set, so that a failure does not wait for the rest of the slide's
/// forwards.
///
/// Only the reads run on the pool: a stage loop blocks on its channels, and a blocked loop on a
/// pool thread could be the one a waiting read needs (rayon threads steal work while they wait).
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_stage(
    slide: &dyn SlideReader,
    selected: &[(u64, PatchBox)],
    params: ExtractParams,
    model_input: BatchSender,
    cancel: &AtomicBool,
    stopped: &AtomicBool,
    clock: &BusyClock,
    pool: &rayon::ThreadPool,
    path: &Path,
) -> Result<(), SlideError> {
    for chunk in selected.chunks(params.batch_size.max(1)) {
        if cancel.load(Ordering::Relaxed) {
            return Err(SlideError::Cancelled {
                slide: path.to_path_buf(),
            });
        }
        if stopped.load(Ordering::Relaxed) {
            return Err(SlideError::Interrupted);
        }
        let t = Instant::now();
        let b = pool.install(|| read_batch(slide, chunk, params))?;
        clock.add(t.elapsed());
        if model_input.send(b).is_err() {
            return Err(SlideError::Interrupted);
        }
    }
    Ok(())
}

/// Takes the model's results in order, merges each patch into the stitcher and sends the canvas
/// rows that became final down `rows_tx` (and into the probability store). Reports patches done.
/// `results` is dropped on return, so that the inference thread (and the reader behind it) never
/// waits on a stitcher that has stopped.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stitch_stage(
    mut stitcher: Stitcher,
    mut store: Option<ProbabilityStore>,
    results: Receiver<BatchResult>,
    rows_tx: &Sender<CanvasRows>,
    grid: &PatchGrid,
    total: u64,
    clock: &BusyClock,
    progress: SlideProgress<'_>,
    path: &Path,
) -> Result<(), SlideError> {
    let stitch_err = |source| SlideError::Stitch {
        slide: path.to_path_buf(),
        source: Box::new(source),
    };
    let infer_err = |source| SlideError::Infer {
        slide: path.to_path_buf(),
        source: Box::new(source),
    };
    // Rows go down the channel one chunk at a time, as the stitcher makes them (it may wait for
    // post-processing to free memory); the time blocked on the channel is not stitch time.
    let blocked = std::cell::Cell::new(Duration::ZERO);
    let hung_up = std::cell::Cell::new(false);
    let mut emit = |rows: CanvasRows| -> Result<(), StitchError> {
        if let Some(s) = &mut store {
            s.write_rows(&rows)?;
        }
        let t = Instant::now();
        let sent = rows_tx.send(rows);
        blocked.set(blocked.get() + t.elapsed());
        sent.map_err(|_| {
            hung_up.set(true);
            StitchError::OutputClosed
        })
    };
    let stitch_failed = |e| {
        if hung_up.get() {
            SlideError::Interrupted
        } else {
            stitch_err(e)
        }
    };
    let mut done = 0u64;
    let infer_started = Instant::now();
    for result in &results {
        let outputs = result.map_err(infer_err)?;
        let t = Instant::now();
        let blocked_before = blocked.get();
        let n = outputs.len();
        for (i, &index) in outputs.indices.iter().enumerate() {
            let bad = |head: &str, detail: &str| {
                infer_err(InferError::BadOutput {
                    head: head.to_owned(),
                    patch: index,
                    detail: detail.to_owned(),
                })
            };
            let output_box = grid
                .get(index)
                .ok_or_else(|| bad("indices", "no such patch in the slide's grid"))?
                .output;
            let heads = outputs
                .heads
                .iter()
                .map(|h| {
                    let data = h
                        .patch(i)
                        .ok_or_else(|| bad(h.kind.name(), "no values for this patch"))?;
                    Ok(HeadSlice {
                        channels: h.shape[3],
                        data,
                    })
                })
                .collect::<Result<Vec<_>, SlideError>>()?;
            // borrowed: merged straight from the model's output, copied only if it must wait
            let patch = PatchView {
                index: index as usize,
                output_box,
                heads,
            };
            stitcher
                .push_view_with(patch, &mut emit)
                .map_err(stitch_failed)?;
        }
        drop(outputs);
        clock.add(t.elapsed().saturating_sub(blocked.get() - blocked_before));
        done += n as u64;
        let rate = done as f64 / infer_started.elapsed().as_secs_f64().max(1e-9);
        progress.sink.event(&ProgressEvent::PatchesDone {
            slide: progress.index,
            done,
            total,
            eta_s: (done > 0).then(|| (total - done.min(total)) as f64 / rate),
        });
    }
    if done < total {
        // the reader or the model stopped early; its error is the one to report
        return Err(SlideError::Interrupted);
    }
    let t = Instant::now();
    stitcher.finish_with(&mut emit).map_err(stitch_failed)?;
    if let Some(s) = store {
        s.finish().map_err(stitch_err)?;
    }
    clock.add(t.elapsed());
    Ok(())
}

/// What the post-processing stage did.
#[derive(Debug, Default)]
pub(crate) struct PostprocTotals {
    pub(crate) nuclei: u64,
    pub(crate) layers: u64,
    pub(crate) tiles: usize,
    pub(crate) busy: Duration,
    /// The final nuclei inside the overlay region, when an overlay is drawn.
    pub(crate) overlay_nuclei: Vec<MergedItem<NucleusInstance>>,
    /// The last `rows_final` handed out.
    pub(crate) rows_final: u64,
    /// Checkpoints committed, and the seconds they took.
    pub(crate) checkpoints: u32,
    pub(crate) checkpoint_s: f64,
}

/// Where a resumed run's post-processing starts: the totals of the killed run's checkpoint.
pub(crate) struct Resumed(PostprocTotals);

impl Resumed {
    /// The totals a run starts from: those of `resume` (with the overlay's nuclei among the
    /// replayed ones), or zero.
    pub(crate) fn from(resume: Option<&Resume>, overlay: Option<&OverlayBase>) -> Self {
        let Some(r) = resume else {
            return Self(PostprocTotals::default());
        };
        Self(PostprocTotals {
            nuclei: r.totals.nuclei,
            layers: r.totals.layers,
            tiles: r.totals.tiles,
            rows_final: r.totals.rows_final,
            overlay_nuclei: overlay.map_or_else(Vec::new, |base| {
                r.nuclei
                    .iter()
                    .filter(|n| base.meets(n.item.bbox))
                    .cloned()
                    .collect()
            }),
            ..PostprocTotals::default()
        })
    }
}

/// Post-processes and merges the canvas rows as they come (the tiles that became complete in
/// parallel on `pool`; the loop itself stays off it, see [`read_stage`]), moves the final
/// instances from canvas to slide coordinates, and hands them to the export stage. Reports tiles
/// done. With `checkpoints`, logs every final instance and commits a checkpoint after a band
/// of tiles when one is due; a checkpoint that cannot be written is reported and checkpoints
/// stop (the slide goes on).
#[allow(clippy::too_many_arguments)]
pub(crate) fn postproc_stage(
    mut driver: StreamingTileMode,
    start: Resumed,
    mut checkpoints: Option<CheckpointWriter>,
    rows_rx: &Receiver<CanvasRows>,
    export_tx: &Sender<ExportMsg>,
    heads: &[HeadKind],
    origin: [u64; 2],
    overlay: Option<&OverlayBase>,
    tiles_total: usize,
    progress: SlideProgress<'_>,
    pool: &rayon::ThreadPool,
    path: &Path,
) -> Result<PostprocTotals, SlideError> {
    let merge_err = |source| SlideError::Merge {
        slide: path.to_path_buf(),
        source: Box::new(source),
    };
    let shift = origin.map(|v| v as i32);
    let mut totals = start.0;
    let hand_out = |got: StreamedInstances,
                    totals: &mut PostprocTotals,
                    checkpoints: &mut Option<CheckpointWriter>| {
        let send = |msg| export_tx.send(msg).map_err(|_| SlideError::Interrupted);
        let mut nuclei = got.nuclei;
        nuclei.iter_mut().for_each(|n| n.item.translate(shift));
        let mut layers = got.layers;
        layers.iter_mut().for_each(|l| l.item.translate(shift));
        if let Some(w) = checkpoints
            && let Err(e) = w.log(&nuclei, &layers)
        {
            stop_checkpoints(checkpoints, path, &e);
        }
        if !nuclei.is_empty() {
            if let Some(base) = overlay {
                totals
                    .overlay_nuclei
                    .extend(nuclei.iter().filter(|n| base.meets(n.item.bbox)).cloned());
            }
            totals.nuclei += nuclei.len() as u64;
            send(ExportMsg::Nuclei(nuclei))?;
        }
        if !layers.is_empty() {
            totals.layers += layers.len() as u64;
            send(ExportMsg::Layers(layers))?;
        }
        totals.rows_final = got.first_open_row as u64 + origin[1];
        send(ExportMsg::RowsFinal(totals.rows_final))
    };
    let report = |totals: &PostprocTotals| {
        progress.sink.event(&ProgressEvent::TilesDone {
            slide: progress.index,
            done: totals.tiles,
            total: tiles_total,
            nuclei: totals.nuclei,
        });
    };
    for rows in rows_rx {
        let t = Instant::now();
        let chunk = RowChunk::from_heads(rows.y0, rows.rows, &head_maps(&rows, heads))
            .map_err(merge_err)?;
        let got = pool
            .install(|| driver.push_rows(chunk))
            .map_err(merge_err)?;
        let done = got.tiles_done;
        hand_out(got, &mut totals, &mut checkpoints)?;
        totals.busy += t.elapsed();
        if done > 0 {
            totals.tiles += done;
            commit_if_due(&driver, &mut checkpoints, &mut totals, path);
            report(&totals);
        }
    }
    let t = Instant::now();
    let got = pool.install(|| driver.finish()).map_err(merge_err)?;
    let done = got.tiles_done;
    hand_out(got, &mut totals, &mut checkpoints)?;
    totals.busy += t.elapsed();
    totals.tiles += done;
    if done > 0 || tiles_total == 0 {
        report(&totals);
    }
    Ok(totals)
}

/// Commits a checkpoint of `driver` when one is due.
fn commit_if_due(
    driver: &StreamingTileMode,
    checkpoints: &mut Option<CheckpointWriter>,
    totals: &mut PostprocTotals,
    path: &Path,
) {
    let Some(w) = checkpoints else { return };
    if !w.due() {
        return;
    }
    let state = driver.checkpoint();
    let resume_row = state.resume_row() as u64;
    let carried = CheckpointTotals {
        nuclei: totals.nuclei,
        layers: totals.layers,
        tiles: totals.tiles,
        rows_final: totals.rows_final,
    };
    let committed = serde_json::to_value(&state)
        .map_err(std::io::Error::other)
        .and_then(|merge| w.commit(merge, resume_row, carried));
    match committed {
        Ok(()) => {
            totals.checkpoints = w.commits;
            totals.checkpoint_s = w.commit_time.as_secs_f64();
        }
        Err(e) => stop_checkpoints(checkpoints, path, &e),
    }
}

fn stop_checkpoints(checkpoints: &mut Option<CheckpointWriter>, path: &Path, e: &std::io::Error) {
    tracing::warn!(slide = %path.display(), "{e}; no further checkpoints for this slide (a kill now restarts it from its last checkpoint)");
    *checkpoints = None;
}

/// Writes what the post-processing stage hands out, in order.
pub(crate) fn export_stage(
    output: &mut dyn crate::slide_output::SlideOutput,
    rx: &Receiver<ExportMsg>,
    clock: &BusyClock,
    path: &Path,
) -> Result<(), SlideError> {
    for msg in rx {
        let t = Instant::now();
        let r = match &msg {
            ExportMsg::Nuclei(v) => output.nuclei(v),
            ExportMsg::Layers(v) => output.layers(v),
            ExportMsg::RowsFinal(y) => output.rows_final(*y),
        };
        clock.add(t.elapsed());
        r.map_err(|source| SlideError::Output {
            slide: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// The maps of one row chunk, each with its head's kind (the heads in model output order).
fn head_maps<'a>(rows: &'a CanvasRows, heads: &[HeadKind]) -> Vec<(HeadKind, &'a [f32])> {
    heads
        .iter()
        .zip(&rows.heads)
        .map(|(&k, v)| (k, v.as_slice()))
        .collect()
}

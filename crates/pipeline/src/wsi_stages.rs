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
/// Only the reads run on the pool: a stage loop blocks on its channels, and a blocked loop on a
/// pool thread could be the one a waiting read needs (rayon threads steal work while they wait).
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_stage(
    slide: &dyn SlideReader,
    selected: &[(u64, PatchBox)],
    params: ExtractParams,
    model_input: BatchSender,
    cancel: &AtomicBool,
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
}

/// Post-processes and merges the canvas rows as they come (the tiles that became complete in
/// parallel on `pool`; the loop itself stays off it, see [`read_stage`]), moves the final
/// instances from canvas to slide coordinates, and hands them to the export stage. Reports tiles
/// done.
#[allow(clippy::too_many_arguments)]
pub(crate) fn postproc_stage(
    mut driver: StreamingTileMode,
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
    let mut totals = PostprocTotals::default();
    let hand_out = |got: StreamedInstances, totals: &mut PostprocTotals| {
        let send = |msg| export_tx.send(msg).map_err(|_| SlideError::Interrupted);
        if !got.nuclei.is_empty() {
            let mut v = got.nuclei;
            v.iter_mut().for_each(|n| n.item.translate(shift));
            if let Some(base) = overlay {
                totals
                    .overlay_nuclei
                    .extend(v.iter().filter(|n| base.meets(n.item.bbox)).cloned());
            }
            totals.nuclei += v.len() as u64;
            send(ExportMsg::Nuclei(v))?;
        }
        if !got.layers.is_empty() {
            let mut v = got.layers;
            v.iter_mut().for_each(|l| l.item.translate(shift));
            totals.layers += v.len() as u64;
            send(ExportMsg::Layers(v))?;
        }
        send(ExportMsg::RowsFinal(got.first_open_row as u64 + origin[1]))
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
        let got = pool
            .install(|| driver.push_rows(row_chunk(&rows, heads)))
            .map_err(merge_err)?;
        let done = got.tiles_done;
        hand_out(got, &mut totals)?;
        totals.busy += t.elapsed();
        if done > 0 {
            totals.tiles += done;
            report(&totals);
        }
    }
    let t = Instant::now();
    let got = pool.install(|| driver.finish()).map_err(merge_err)?;
    let done = got.tiles_done;
    hand_out(got, &mut totals)?;
    totals.busy += t.elapsed();
    totals.tiles += done;
    if done > 0 || tiles_total == 0 {
        report(&totals);
    }
    Ok(totals)
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

/// The maps of one row chunk, by head, as the streaming driver takes them.
fn row_chunk<'a>(rows: &'a CanvasRows, heads: &[HeadKind]) -> RowChunk<'a> {
    let find = |k: HeadKind| {
        heads
            .iter()
            .position(|&h| h == k)
            .map(|i| rows.heads[i].as_slice())
    };
    RowChunk {
        y0: rows.y0,
        rows: rows.rows,
        // the model was checked for np and hv when it loaded
        np: find(HeadKind::Np).unwrap_or_default(),
        hv: find(HeadKind::Hv).unwrap_or_default(),
        tp: find(HeadKind::Tp),
        ls: find(HeadKind::Ls),
    }
}

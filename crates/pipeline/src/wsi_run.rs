//! One slide in WSI mode, streamed: a reader thread (patch reads on the rayon pool) -> the
//! inference thread -> a stitch thread -> post-processing and the cross-tile merge on this
//! thread (tiles on the rayon pool) -> an export thread. Every arrow is a bounded channel, so a
//! slow stage holds back the ones before it; post-processing of a tile starts as soon as its
//! canvas rows are final, while inference of later rows goes on.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use mtseg_export::{NucleusRecord, OverlayBase, write_overlay_png};
use mtseg_infer::{HeadKind, HeadOutputs, InferError, InferenceThread, InputBatch};
use mtseg_instmerge::{
    MergedItem, RowChunk, StreamedInstances, StreamingTileMode, TiaToolboxCompat,
};
use mtseg_io_config::RunConfig;
use mtseg_postproc::{LayerRegion, NucleusInstance};
use mtseg_slide::{SlideReader, open_slide};
use mtseg_stitch::{
    CanvasPlan, CanvasRows, HeadBlock, HeadSpec as StitchHead, MemoryBudget, PatchPrediction,
    ProbabilityStore, StitchError, StitchParams, Stitcher, ZarrLayout,
};
use mtseg_tiling::{
    ExtractParams, PatchBox, PatchGrid, PostprocTile, SideFlags, Size2, TileSet, read_batch,
    select_patches, tile_layout,
};

use crate::engine::{ModelProvider, SlideModelContext};
use crate::model_params::np_hv_params;
use crate::output_spec::slide_output_spec;
use crate::pipeline_errors::SlideError;
use crate::progress_events::{ProgressEvent, ProgressSink, SlideSummary, StageTimes};
use crate::slide_output::{OutputProvider, SlideOutput};
use crate::{run_plan, stage_params};

/// What the post-processing thread sends to the export thread.
enum ExportMsg {
    Nuclei(Vec<MergedItem<NucleusInstance>>),
    Layers(Vec<MergedItem<LayerRegion>>),
    RowsFinal(u64),
}

/// The fixed inputs of one slide's run.
pub(crate) struct SlideJob<'a> {
    pub(crate) cfg: &'a RunConfig,
    pub(crate) index: usize,
    pub(crate) path: &'a Path,
    pub(crate) provenance: &'a serde_json::Value,
    pub(crate) model: &'a dyn ModelProvider,
    pub(crate) outputs: &'a dyn OutputProvider,
    pub(crate) progress: &'a dyn ProgressSink,
    pub(crate) cancel: &'a AtomicBool,
    pub(crate) budget: MemoryBudget,
}

/// Busy nanoseconds, shared with a stage's thread.
#[derive(Debug, Default, Clone)]
pub(crate) struct BusyClock(Arc<AtomicU64>);

impl BusyClock {
    pub(crate) fn add(&self, d: Duration) {
        self.0.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
    pub(crate) fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 * 1e-9
    }
}

/// The slide, its grid, the selected patches, the canvas and the tiles.
pub(crate) struct SlideLayout {
    pub(crate) slide: Arc<dyn SlideReader>,
    pub(crate) grid: PatchGrid,
    pub(crate) selected: Vec<(u64, PatchBox)>,
    pub(crate) plan: CanvasPlan,
    pub(crate) tiles: Vec<PostprocTile>,
}

/// Opens the slide and lays out the work (the same computation as the dry-run plan).
pub(crate) fn layout(cfg: &RunConfig, path: &Path) -> Result<SlideLayout, SlideError> {
    let slide: Arc<dyn SlideReader> =
        Arc::from(open_slide(path, stage_params::slide_open_options(cfg))?);
    let (w, h) = slide.dimensions_at(stage_params::resolution(cfg))?;
    let grid_err = |source| SlideError::Grid {
        slide: path.to_path_buf(),
        source,
    };
    let grid = stage_params::patch_grid(cfg, Size2::new(w, h))
        .build()
        .map_err(grid_err)?;
    let mask = run_plan::tissue_mask(cfg, slide.as_ref())?;
    let selected =
        select_patches(&grid, mask.as_ref(), stage_params::mask_rule(cfg)).map_err(grid_err)?;
    let boxes: Vec<[i64; 4]> = grid.iter().map(|p| p.output).collect();
    let indices: Vec<usize> = selected.iter().map(|(i, _)| *i as usize).collect();
    let plan = CanvasPlan::new(&boxes, &indices, Size2::new(w, h)).map_err(|source| {
        SlideError::Canvas {
            slide: path.to_path_buf(),
            source,
        }
    })?;
    let tiles = postproc_tiles(cfg, plan.canvas_size()).map_err(grid_err)?;
    Ok(SlideLayout {
        slide,
        grid,
        selected,
        plan,
        tiles,
    })
}

/// TIAToolbox's choice: the whole canvas in one post-processing call when it fits the raw
/// `tile_shape`, else tiles of `tile_shape` rounded down to a multiple of the output patch.
pub(crate) fn postproc_tiles(
    cfg: &RunConfig,
    [cw, ch]: [usize; 2],
) -> Result<Vec<PostprocTile>, mtseg_tiling::GridError> {
    let raw = cfg.io.tile_shape;
    if cw as u64 <= raw.width && ch as u64 <= raw.height {
        if cw == 0 || ch == 0 {
            return Ok(Vec::new());
        }
        return Ok(vec![PostprocTile {
            set: TileSet::Full,
            bounds: [0, 0, cw as i64, ch as i64],
            flags: SideFlags::NONE,
        }]);
    }
    let eff = cfg.io.effective_tile();
    tile_layout(
        Size2::new(cw as u64, ch as u64),
        eff.width.min(eff.height),
        u64::from(cfg.io.margin),
        |_| true,
    )
}

fn translate_nucleus(n: &mut NucleusInstance, [dx, dy]: [i32; 2]) {
    n.bbox = [
        n.bbox[0] + dx,
        n.bbox[1] + dy,
        n.bbox[2] + dx,
        n.bbox[3] + dy,
    ];
    n.centroid = [n.centroid[0] + f64::from(dx), n.centroid[1] + f64::from(dy)];
    for p in &mut n.contour {
        *p = [p[0] + dx, p[1] + dy];
    }
}

fn translate_layer(l: &mut LayerRegion, [dx, dy]: [i32; 2]) {
    l.bbox = [
        l.bbox[0] + dx,
        l.bbox[1] + dy,
        l.bbox[2] + dx,
        l.bbox[3] + dy,
    ];
    for p in &mut l.contour {
        *p = [p[0] + dx, p[1] + dy];
    }
}

/// Runs one slide. On error every temporary output is removed (the output is dropped without
/// `finish`).
pub(crate) fn run_wsi_slide(job: SlideJob<'_>) -> Result<SlideSummary, SlideError> {
    let started = Instant::now();
    let cfg = job.cfg;
    let path = job.path.to_path_buf();
    let lay = layout(cfg, job.path)?;
    let spec = slide_output_spec(cfg, lay.slide.as_ref(), job.provenance)?;
    let total = lay.selected.len() as u64;
    let output_err = |source| SlideError::Output {
        slide: path.clone(),
        source,
    };

    // the model, on its own thread
    let infer_clock = BusyClock::default();
    let ctx = SlideModelContext {
        slide: job.path,
        grid: &lay.grid,
    };
    let factory = job
        .model
        .factory(&ctx)
        .map_err(|source| SlideError::Model {
            slide: path.clone(),
            source: Box::new(source),
        })?;
    let factory = crate::engine::timed(factory, infer_clock.clone());
    let capacity = cfg.pipeline.queue_capacity.get() as usize;
    let mut infer = InferenceThread::spawn("mtseg-infer", capacity, factory).map_err(|e| {
        SlideError::Model {
            slide: path.clone(),
            source: Box::new(e),
        }
    })?;
    let heads: Vec<HeadKind> = infer.heads().iter().map(|h| h.kind).collect();
    if !heads.contains(&HeadKind::Np) || !heads.contains(&HeadKind::Hv) {
        return Err(SlideError::Model {
            slide: path.clone(),
            source: Box::new(mtseg_infer::LoadError::InvalidArchitecture {
                detail: format!(
                    "the model's heads are {:?}; HoVer-Net post-processing needs `np` and `hv`",
                    heads.iter().map(|h| h.name()).collect::<Vec<_>>()
                ),
            }),
        });
    }
    let (has_tp, has_ls) = (heads.contains(&HeadKind::Tp), heads.contains(&HeadKind::Ls));
    let stitch_heads: Vec<StitchHead> = heads
        .iter()
        .map(|k| StitchHead::new(k.name(), k.output_channels()))
        .collect();
    let out = cfg.io.patch_output;
    let batch = cfg.model.batch_size.get() as usize;
    let stitch_err = |source| SlideError::Stitch {
        slide: path.clone(),
        source: Box::new(source),
    };
    let params = StitchParams::new(
        lay.plan.clone(),
        out,
        stitch_heads.clone(),
        job.budget.clone(),
    )
    .map_err(|e| stitch_err(e.into()))?
    .with_reorder_allowance(batch * capacity);
    let stitcher = Stitcher::new(params).map_err(stitch_err)?;

    // post-processing driver and its window
    let [cw, ch] = lay.plan.canvas_size();
    let merge_err = |source| SlideError::Merge {
        slide: path.clone(),
        source: Box::new(source),
    };
    let mut driver = StreamingTileMode::new(
        Size2::new(cw as u64, ch as u64),
        lay.tiles.clone(),
        u64::from(cfg.io.margin),
        np_hv_params(cfg),
        TiaToolboxCompat::OFF,
        [has_tp, has_ls],
    )
    .map_err(merge_err)?;
    let window_bytes = (driver.max_window_rows(lay.plan.max_band_height().max(out.height as usize))
        * driver.row_bytes()) as u64;
    let _window = job
        .budget
        .try_reserve(window_bytes, "the post-processing row window")
        .map_err(|e| stitch_err(e.into()))?;

    let output = job.outputs.create(&spec).map_err(output_err)?;
    let prob_store = match (spec.save_probabilities, output.probabilities_dir()) {
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
                    &lay.plan,
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

    let overlay_base = if cfg.output.overlay {
        let [ox, oy] = lay.plan.origin().map(|v| v as i64);
        let (w, h) = (cw.min(1024), ch.min(1024));
        let x0 = ox + ((cw - w) / 2) as i64;
        let y0 = oy + ((ch - h) / 2) as i64;
        let img = lay.slide.read_region(
            [x0, y0, x0 + w as i64, y0 + h as i64],
            stage_params::resolution(cfg),
            stage_params::interpolation(cfg),
        )?;
        Some(OverlayBase {
            origin: [x0, y0],
            width: w,
            height: h,
            rgb: img.into_raw(),
        })
    } else {
        None
    };
    let mut overlay_nuclei: Vec<NucleusRecord> = Vec::new();

    job.progress.event(&ProgressEvent::SlideStarted {
        slide: job.index,
        path: path.clone(),
        patches: total,
        tiles: lay.tiles.len(),
    });

    let read_clock = BusyClock::default();
    let stitch_clock = BusyClock::default();
    let export_clock = BusyClock::default();
    let mut postproc_busy = Duration::ZERO;
    let origin = lay.plan.origin();
    let shift = [origin[0] as i32, origin[1] as i32];
    let sender = infer.sender().map_err(|e| SlideError::Infer {
        slide: path.clone(),
        source: Box::new(e),
    })?;
    let results = infer.receiver();
    infer.close();

    let (rows_tx, rows_rx) = bounded::<CanvasRows>(capacity);
    let (export_tx, export_rx) = bounded::<ExportMsg>(capacity);
    let mut nuclei_written = 0u64;
    let mut layers_written = 0u64;
    let mut tiles_done = 0usize;
    let tiles_total = lay.tiles.len();

    let (reader_res, stitch_res, postproc_res, export_res) = std::thread::scope(|s| {
        let (slide_ref, selected, read_clock_ref, path_ref, cancel) = (
            lay.slide.as_ref(),
            &lay.selected[..],
            &read_clock,
            &path,
            job.cancel,
        );
        let reader = s.spawn(move || {
            // the sender moves here: when reading ends, the model's input closes
            read_stage(
                cfg,
                slide_ref,
                selected,
                batch,
                &sender,
                cancel,
                read_clock_ref,
                path_ref,
            )
        });
        let (grid, stitch_clock_ref, job_ref) = (&lay.grid, &stitch_clock, &job);
        // rows_tx moves here: when stitching ends, post-processing sees the end of the rows
        let stitch = s.spawn(move || {
            stitch_stage(
                stitcher,
                prob_store,
                &results,
                &rows_tx,
                grid,
                stitch_clock_ref,
                total,
                job_ref,
                path_ref,
            )
        });
        let export = s.spawn(|| {
            let mut output = output;
            let r = export_stage(output.as_mut(), &export_rx, &export_clock, &path);
            drop(export_rx);
            (output, r)
        });
        // post-processing and merge on this thread
        let postproc = (|| -> Result<(), SlideError> {
            let send = |msg| export_tx.send(msg).map_err(|_| SlideError::Interrupted);
            let mut hand_out = |got: StreamedInstances,
                                nuclei_written: &mut u64,
                                layers_written: &mut u64|
             -> Result<(), SlideError> {
                if !got.nuclei.is_empty() {
                    let mut v = got.nuclei;
                    v.iter_mut()
                        .for_each(|n| translate_nucleus(&mut n.item, shift));
                    if let Some(base) = &overlay_base {
                        overlay_nuclei.extend(
                            v.iter()
                                .filter(|n| base.meets(n.item.bbox))
                                .map(crate::export_outputs::nucleus_record),
                        );
                    }
                    *nuclei_written += v.len() as u64;
                    send(ExportMsg::Nuclei(v))?;
                }
                if !got.layers.is_empty() {
                    let mut v = got.layers;
                    v.iter_mut()
                        .for_each(|l| translate_layer(&mut l.item, shift));
                    *layers_written += v.len() as u64;
                    send(ExportMsg::Layers(v))?;
                }
                send(ExportMsg::RowsFinal(got.first_open_row as u64 + origin[1]))
            };
            for rows in &rows_rx {
                let t = Instant::now();
                let maps = split_heads(&rows, &heads);
                let got = driver
                    .push_rows(RowChunk {
                        y0: rows.y0,
                        rows: rows.rows,
                        np: maps.np,
                        hv: maps.hv,
                        tp: maps.tp,
                        ls: maps.ls,
                    })
                    .map_err(merge_err)?;
                let done = got.tiles_done;
                hand_out(got, &mut nuclei_written, &mut layers_written)?;
                postproc_busy += t.elapsed();
                if done > 0 {
                    tiles_done += done;
                    job.progress.event(&ProgressEvent::TilesDone {
                        slide: job.index,
                        done: tiles_done,
                        total: tiles_total,
                        nuclei: nuclei_written,
                    });
                }
            }
            let t = Instant::now();
            let got = driver.finish().map_err(merge_err)?;
            let done = got.tiles_done;
            hand_out(got, &mut nuclei_written, &mut layers_written)?;
            postproc_busy += t.elapsed();
            tiles_done += done;
            if done > 0 || tiles_total == 0 {
                job.progress.event(&ProgressEvent::TilesDone {
                    slide: job.index,
                    done: tiles_done,
                    total: tiles_total,
                    nuclei: nuclei_written,
                });
            }
            Ok(())
        })();
        drop(rows_rx);
        drop(export_tx);
        let reader_res = reader.join();
        let stitch_res = stitch.join();
        let export_res = export.join();
        (reader_res, stitch_res, postproc, export_res)
    });
    let panic = |stage: &str| SlideError::Panicked {
        slide: job.path.to_path_buf(),
        stage: stage.to_string(),
    };
    let reader_res = reader_res.map_err(|_| panic("patch reading"))?;
    let stitch_res = stitch_res.map_err(|_| panic("stitching"))?;
    let (output, export_res) = export_res.map_err(|_| panic("writing outputs"))?;
    // the root cause first: the earliest stage whose error is not a consequence of another's
    let first = [
        reader_res.err(),
        stitch_res.err(),
        postproc_res.err(),
        export_res.err(),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|e| matches!(e, SlideError::Interrupted));
    if let Some(e) = first {
        drop(output);
        return Err(e);
    }
    let t = Instant::now();
    let mut outputs = output.finish().map_err(|source| SlideError::Output {
        slide: job.path.to_path_buf(),
        source,
    })?;
    if let Some(base) = &overlay_base {
        let png = crate::output_names::overlay_path(cfg, job.path);
        write_overlay_png(
            &png,
            base,
            &overlay_nuclei,
            &cfg.model.nuclei_classes,
            cfg.output.overwrite,
        )
        .map_err(|e| SlideError::Output {
            slide: job.path.to_path_buf(),
            source: Box::new(e),
        })?;
        outputs.push(png);
    }
    export_clock.add(t.elapsed());
    Ok(SlideSummary {
        path: job.path.to_path_buf(),
        nuclei: nuclei_written,
        layers: layers_written,
        patches: total,
        tiles: tiles_total,
        wall_s: started.elapsed().as_secs_f64(),
        stages: StageTimes {
            read_s: read_clock.seconds(),
            infer_s: infer_clock.seconds(),
            stitch_s: stitch_clock.seconds(),
            postproc_s: postproc_busy.as_secs_f64(),
            export_s: export_clock.seconds(),
        },
        outputs,
    })
}

#[allow(clippy::too_many_arguments)]
fn read_stage(
    cfg: &RunConfig,
    slide: &dyn SlideReader,
    selected: &[(u64, PatchBox)],
    batch: usize,
    sender: &Sender<InputBatch>,
    cancel: &AtomicBool,
    clock: &BusyClock,
    path: &Path,
) -> Result<(), SlideError> {
    let params = ExtractParams {
        resolution: stage_params::resolution(cfg),
        interpolation: stage_params::interpolation(cfg),
        batch_size: batch,
    };
    for chunk in selected.chunks(batch.max(1)) {
        if cancel.load(Ordering::Relaxed) {
            return Err(SlideError::Cancelled {
                slide: path.to_path_buf(),
            });
        }
        let t = Instant::now();
        let b = read_batch(slide, chunk, params)?;
        clock.add(t.elapsed());
        let input = InputBatch {
            indices: b.indices,
            height: b.patch.height as usize,
            width: b.patch.width as usize,
            pixels: b.pixels,
        };
        if sender.send(input).is_err() {
            return Err(SlideError::Interrupted);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn stitch_stage(
    mut stitcher: Stitcher,
    mut store: Option<ProbabilityStore>,
    results: &Receiver<Result<HeadOutputs, InferError>>,
    rows_tx: &Sender<CanvasRows>,
    grid: &PatchGrid,
    clock: &BusyClock,
    total: u64,
    job: &SlideJob<'_>,
    path: &Path,
) -> Result<(), SlideError> {
    let stitch_err = |source| SlideError::Stitch {
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
    let mut done = 0u64;
    let infer_started = Instant::now();
    for result in results {
        let outputs = result.map_err(|source| SlideError::Infer {
            slide: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let t = Instant::now();
        let blocked_before = blocked.get();
        let n = outputs.len();
        for (i, &index) in outputs.indices.iter().enumerate() {
            let output_box = grid.get(index).map(|b| b.output).unwrap_or_default();
            let heads = outputs
                .heads
                .iter()
                .map(|h| HeadBlock::new(h.shape[3], h.patch(i).unwrap_or_default().to_vec()))
                .collect();
            let patch = PatchPrediction {
                index: index as usize,
                output_box,
                heads,
            };
            if let Err(e) = stitcher.push_with(patch, &mut emit) {
                return Err(if hung_up.get() {
                    SlideError::Interrupted
                } else {
                    stitch_err(e)
                });
            }
        }
        drop(outputs);
        clock.add(t.elapsed().saturating_sub(blocked.get() - blocked_before));
        done += n as u64;
        let rate = done as f64 / infer_started.elapsed().as_secs_f64().max(1e-9);
        job.progress.event(&ProgressEvent::PatchesDone {
            slide: job.index,
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
    if let Err(e) = stitcher.finish_with(&mut emit) {
        return Err(if hung_up.get() {
            SlideError::Interrupted
        } else {
            stitch_err(e)
        });
    }
    if let Some(s) = store {
        s.finish().map_err(stitch_err)?;
    }
    clock.add(t.elapsed());
    Ok(())
}

fn export_stage(
    output: &mut dyn SlideOutput,
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

/// The maps of one row chunk, by head.
struct HeadMaps<'a> {
    np: &'a [f32],
    hv: &'a [f32],
    tp: Option<&'a [f32]>,
    ls: Option<&'a [f32]>,
}

fn split_heads<'a>(rows: &'a CanvasRows, heads: &[HeadKind]) -> HeadMaps<'a> {
    let find = |k: HeadKind| {
        heads
            .iter()
            .position(|&h| h == k)
            .map(|i| rows.heads[i].as_slice())
    };
    HeadMaps {
        np: find(HeadKind::Np).unwrap_or_default(),
        hv: find(HeadKind::Hv).unwrap_or_default(),
        tp: find(HeadKind::Tp),
        ls: find(HeadKind::Ls),
    }
}

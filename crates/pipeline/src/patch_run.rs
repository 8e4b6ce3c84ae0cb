//! Patch mode: each image is one model input (TIAToolbox's `patch_mode=True`): its output patch
//! is post-processed on its own, coordinates relative to the output patch, one set of outputs
//! per image.
//!
//! The model is loaded once for the whole list. A reader thread reads the images in parallel
//! (rayon) and hands them to the inference thread in batches of `[model] batch_size`; this thread
//! post-processes and writes the images of each returned batch in parallel. An image that cannot
//! be used (missing, unreadable, not exactly the model's input size) is reported and the others
//! go on; a failing model or forward is reported for every image it concerns.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};
use mtseg_infer::{BatchResult, BatchSender, HeadKind, HeadOutputs};
use mtseg_instmerge::{CanvasMaps, full_canvas_mode};
use mtseg_io_config::{RunConfig, SlideInput};
use mtseg_slide::open_slide;
use mtseg_tiling::{PatchBatch, PatchBox, Size2};
use rayon::prelude::*;

use crate::model_params::np_hv_params;
use crate::model_provider::LoadedModel;
use crate::pipeline_errors::SlideError;
use crate::progress_events::{SlideSummary, StageTimes};
use crate::slide_output::OutputProvider;
use crate::stage_params;

/// The images of one patch-mode run and what they share.
pub(crate) struct PatchJob<'a> {
    /// The configuration.
    pub(crate) cfg: &'a RunConfig,
    /// The images, in run order (their index is their position).
    pub(crate) images: &'a [SlideInput],
    /// The run's model.
    pub(crate) model: &'a LoadedModel,
    /// Where outputs go.
    pub(crate) outputs: &'a dyn OutputProvider,
    /// Provenance recorded in every output.
    pub(crate) provenance: &'a serde_json::Value,
    /// Set to stop at the next batch.
    pub(crate) cancel: &'a AtomicBool,
    /// The CPU stages' threads.
    pub(crate) pool: &'a rayon::ThreadPool,
}

/// Receives each image's result: its index in the run, its path, its summary or error.
pub(crate) type Report<'r> = dyn FnMut(usize, &Path, Result<SlideSummary, SlideError>) + 'r;

/// One image read and ready for the model.
struct ReadImage {
    index: usize,
    pixels: Vec<u8>,
    read_s: f64,
    started: Instant,
}

/// What the reader hands on: a batch for the model, or images that could not be read.
enum ReadOutcome {
    Batch(Vec<ReadImage>),
    Failed(Vec<(usize, SlideError)>),
}

/// Runs every image of `job`, calling `report` once per image with its result (images in the
/// order their batches complete; within a batch, in run order).
pub(crate) fn run_patch_images(job: &PatchJob<'_>, report: &mut Report<'_>) {
    let cfg = job.cfg;
    let images = job.images;
    if images.is_empty() {
        return;
    };
    let (iw, ih) = (cfg.io.patch_input.width, cfg.io.patch_input.height);
    let batch = cfg.model.batch_size.get() as usize;
    let (sender, results) = match job.model.session() {
        Ok(s) => s,
        Err(e) => {
            let reason = e.reason();
            fail_all(
                images,
                0..images.len(),
                "loading the model",
                &reason,
                report,
            );
            return;
        }
    };
    // Batches in flight, in submission order (the inference thread keeps the order).
    let (pending_tx, pending_rx) = unbounded::<ReadOutcome>();

    std::thread::scope(|s| {
        // The sender and the announcement channel move to the reader: when it ends, both close.
        s.spawn(move || read_images(job, [iw, ih], batch, &sender, &pending_tx));
        consume(job, &pending_rx, &results, report);
    });
}

/// Reads the images batch by batch and submits each batch to the model. Stops when the model's
/// input closes or the run is cancelled (the images not read are reported as cancelled).
fn read_images(
    job: &PatchJob<'_>,
    [iw, ih]: [u64; 2],
    batch: usize,
    model_input: &BatchSender,
    pending: &Sender<ReadOutcome>,
) {
    let indices: Vec<usize> = (0..job.images.len()).collect();
    for (c, chunk) in indices.chunks(batch.max(1)).enumerate() {
        if job.cancel.load(Ordering::Relaxed) {
            let rest = indices[c * batch.max(1)..]
                .iter()
                .map(|&i| {
                    let slide = job.images[i].path.clone();
                    (i, SlideError::Cancelled { slide })
                })
                .collect();
            let _ = pending.send(ReadOutcome::Failed(rest));
            return;
        }
        let read: Vec<Result<ReadImage, (usize, SlideError)>> = job.pool.install(|| {
            chunk
                .par_iter()
                .map(|&i| read_image(job.cfg, i, &job.images[i], [iw, ih]).map_err(|e| (i, e)))
                .collect()
        });
        let (ok, failed): (Vec<_>, Vec<_>) = read.into_iter().partition(Result::is_ok);
        let failed: Vec<_> = failed.into_iter().filter_map(Result::err).collect();
        if !failed.is_empty() && pending.send(ReadOutcome::Failed(failed)).is_err() {
            return;
        }
        let ok: Vec<ReadImage> = ok.into_iter().filter_map(Result::ok).collect();
        if ok.is_empty() {
            continue;
        }
        let mut pixels = Vec::with_capacity(ok.len() * (iw * ih * 3) as usize);
        let mut idx = Vec::with_capacity(ok.len());
        let mut kept = Vec::with_capacity(ok.len());
        for mut img in ok {
            pixels.append(&mut img.pixels);
            idx.push(img.index as u64);
            kept.push(img);
        }
        let kept_len = kept.len();
        // The batch is announced before it is submitted, so the consumer always knows it.
        if pending.send(ReadOutcome::Batch(kept)).is_err() {
            return;
        }
        // each image is its own slide: its one patch reads all of it and predicts the centre
        let (ow, oh) = (
            job.cfg.io.patch_output.width,
            job.cfg.io.patch_output.height,
        );
        let (dx, dy) = (((iw - ow) / 2) as i64, ((ih - oh) / 2) as i64);
        let whole = PatchBox {
            input: [0, 0, iw as i64, ih as i64],
            output: [dx, dy, dx + ow as i64, dy + oh as i64],
        };
        let input = PatchBatch {
            indices: idx,
            boxes: vec![whole; kept_len],
            patch: Size2::new(iw, ih),
            pixels,
        };
        if model_input.send(input).is_err() {
            return;
        }
    }
}

/// Opens one image, checks its size and reads it at the processing resolution.
fn read_image(
    cfg: &RunConfig,
    index: usize,
    image: &SlideInput,
    [iw, ih]: [u64; 2],
) -> Result<ReadImage, SlideError> {
    let started = Instant::now();
    let path = image.path.as_path();
    let slide = open_slide(path, stage_params::slide_open_options(cfg, image))?;
    let res = stage_params::resolution(cfg);
    let (w, h) = slide.dimensions_at(res)?;
    if (w, h) != (iw, ih) {
        return Err(SlideError::PatchSize {
            slide: path.to_path_buf(),
            width: w,
            height: h,
            want_width: iw,
            want_height: ih,
        });
    }
    let img = slide.read_region(
        [0, 0, w as i64, h as i64],
        res,
        stage_params::interpolation(cfg),
    )?;
    Ok(ReadImage {
        index,
        pixels: img.into_raw(),
        read_s: started.elapsed().as_secs_f64(),
        started,
    })
}

/// Takes the reader's outcomes in order: failures are reported at once, each batch is matched
/// with the model's result for it, then its images are post-processed and written in parallel.
fn consume(
    job: &PatchJob<'_>,
    pending: &Receiver<ReadOutcome>,
    results: &Receiver<BatchResult>,
    report: &mut Report<'_>,
) {
    let images = job.images;
    let mut model_failed: Option<String> = None;
    let mut forward_seen = 0.0;
    for outcome in pending {
        let batch = match outcome {
            ReadOutcome::Failed(v) => {
                for (i, e) in v {
                    report(i, &images[i].path, Err(e));
                }
                continue;
            }
            ReadOutcome::Batch(b) => b,
        };
        // Always take the batch's result, even after a failure: the inference thread must not
        // block on a full result queue.
        let received = results.recv();
        let got = match (&model_failed, received) {
            (Some(reason), _) => Err(reason.clone()),
            // (the inference thread checked the outputs against the batch)
            (None, Ok(Ok(out))) => Ok(out),
            // A forward error concerns this batch only; the next batches may still run.
            (None, Ok(Err(e))) => Err(e.to_string()),
            (None, Err(_)) => Err(model_failed
                .insert("the inference thread stopped".to_owned())
                .clone()),
        };
        let out = match got {
            Ok(out) => out,
            Err(reason) => {
                let indices = batch.iter().map(|img| img.index);
                fail_all(images, indices, "inference", &reason, report);
                continue;
            }
        };
        // Forward seconds since the last batch, shared by its images (approximate when the next
        // forward has already finished).
        let forward_now = job.model.forward_seconds();
        let infer_s = (forward_now - forward_seen) / batch.len() as f64;
        forward_seen = forward_now;
        let done: Vec<(usize, Result<SlideSummary, SlideError>)> = job.pool.install(|| {
            batch
                .par_iter()
                .enumerate()
                .map(|(j, img)| {
                    let r = finish_image(job, img, &out, j, infer_s);
                    (img.index, r)
                })
                .collect()
        });
        for (i, r) in done {
            report(i, &images[i].path, r);
        }
    }
}

/// Reports the images `indices` of `images` as failed in `stage` for `reason` (a failure they
/// share: the model not loading, a forward failing).
fn fail_all(
    images: &[SlideInput],
    indices: impl IntoIterator<Item = usize>,
    stage: &'static str,
    reason: &str,
    report: &mut Report<'_>,
) {
    for i in indices {
        let p = &images[i].path;
        report(i, p, Err(batch_error(p, stage, reason)));
    }
}

fn batch_error(path: &Path, stage: &'static str, reason: &str) -> SlideError {
    SlideError::Batch {
        slide: path.to_path_buf(),
        stage,
        reason: reason.to_owned(),
    }
}

/// Post-processes the `j`-th output patch of `out` (image `img`) and writes its outputs.
fn finish_image(
    job: &PatchJob<'_>,
    img: &ReadImage,
    out: &HeadOutputs,
    j: usize,
    infer_s: f64,
) -> Result<SlideSummary, SlideError> {
    let cfg = job.cfg;
    let image = &job.images[img.index];
    let path = &image.path;
    let t_post = Instant::now();
    let head = |k: HeadKind| out.head(k).and_then(|t| t.patch(j));
    let needed = |k: HeadKind| {
        head(k).ok_or_else(|| {
            let reason = format!("the model gave no `{}` values for this image", k.name());
            batch_error(path, "inference", &reason)
        })
    };
    let size = out.head(HeadKind::Np).map_or(0, |t| t.shape[1]);
    let canvas = CanvasMaps {
        height: size,
        width: size,
        np: needed(HeadKind::Np)?,
        hv: needed(HeadKind::Hv)?,
        tp: head(HeadKind::Tp),
        ls: head(HeadKind::Ls),
    };
    let result =
        full_canvas_mode(&canvas, &np_hv_params(cfg)).map_err(|source| SlideError::Merge {
            slide: path.to_path_buf(),
            source: Box::new(source),
        })?;
    let postproc_s = t_post.elapsed().as_secs_f64();
    let t_export = Instant::now();
    let spec = crate::output_spec::patch_export_spec(cfg, image, size, job.provenance);
    let output_err = |source| SlideError::Output {
        slide: path.to_path_buf(),
        source,
    };
    let mut output = job.outputs.create(&spec).map_err(output_err)?;
    output.nuclei(&result.nuclei).map_err(output_err)?;
    output.layers(&result.layers).map_err(output_err)?;
    output.rows_final(size as u64).map_err(output_err)?;
    let files = output.finish().map_err(output_err)?;
    Ok(SlideSummary {
        path: path.to_path_buf(),
        nuclei: result.nuclei.len() as u64,
        layers: result.layers.len() as u64,
        patches: 1,
        tiles: 1,
        wall_s: img.started.elapsed().as_secs_f64(),
        stages: StageTimes {
            read_s: img.read_s,
            infer_s,
            stitch_s: 0.0,
            postproc_s,
            export_s: t_export.elapsed().as_secs_f64(),
        },
        outputs: files,
        resumed_at_row: None,
        checkpoints: 0,
        checkpoint_s: 0.0,
    })
}

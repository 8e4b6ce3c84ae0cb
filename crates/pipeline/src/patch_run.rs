//! Patch mode: each image is one model input (TIAToolbox's `patch_mode=True`): its output patch
//! is post-processed on its own, coordinates relative to the output patch, one set of outputs
//! per image.

use std::path::Path;
use std::time::Instant;

use mtseg_infer::{HeadKind, InferenceThread, InputBatch};
use mtseg_instmerge::{CanvasMaps, full_canvas_mode};
use mtseg_io_config::RunConfig;
use mtseg_slide::open_slide;
use mtseg_tiling::Size2;

use crate::engine::{ModelProvider, SlideModelContext};
use crate::model_params::np_hv_params;
use crate::output_names::slide_stem;
use crate::output_spec::tagged_output_paths;
use crate::pipeline_errors::SlideError;
use crate::progress_events::{SlideSummary, StageTimes};
use crate::slide_output::{OutputProvider, SlideOutputSpec};
use crate::stage_params;

/// Runs one image of patch mode.
pub(crate) fn run_patch_image(
    cfg: &RunConfig,
    _index: usize,
    path: &Path,
    model: &dyn ModelProvider,
    outputs: &dyn OutputProvider,
    provenance: &serde_json::Value,
) -> Result<SlideSummary, SlideError> {
    let started = Instant::now();
    let slide = open_slide(path, stage_params::slide_open_options(cfg))?;
    let res = stage_params::resolution(cfg);
    let (w, h) = slide.dimensions_at(res)?;
    let (iw, ih) = (
        u64::from(cfg.io.patch_input.width),
        u64::from(cfg.io.patch_input.height),
    );
    if (w, h) != (iw, ih) {
        return Err(SlideError::PatchSize {
            slide: path.to_path_buf(),
            width: w,
            height: h,
            want_width: iw,
            want_height: ih,
        });
    }
    let t_read = Instant::now();
    let img = slide.read_region(
        [0, 0, w as i64, h as i64],
        res,
        stage_params::interpolation(cfg),
    )?;
    let read_s = t_read.elapsed().as_secs_f64();
    let grid_err = |source| SlideError::Grid {
        slide: path.to_path_buf(),
        source,
    };
    let grid = mtseg_tiling::PatchGridBuilder::new(Size2::new(w, h), Size2::new(iw, ih))
        .patch_output(Size2::new(iw, ih))
        .stride(Size2::new(iw, ih))
        .build()
        .map_err(grid_err)?;
    let factory = model
        .factory(&SlideModelContext {
            slide: path,
            grid: &grid,
        })
        .map_err(|source| SlideError::Model {
            slide: path.to_path_buf(),
            source: Box::new(source),
        })?;
    let t_infer = Instant::now();
    let infer =
        InferenceThread::spawn("mtseg-infer", 1, factory).map_err(|source| SlideError::Model {
            slide: path.to_path_buf(),
            source: Box::new(source),
        })?;
    let infer_err = |source| SlideError::Infer {
        slide: path.to_path_buf(),
        source: Box::new(source),
    };
    infer
        .submit(InputBatch {
            indices: vec![0],
            pixels: img.into_raw(),
            height: ih as usize,
            width: iw as usize,
        })
        .map_err(infer_err)?;
    let out = infer.recv().map_err(infer_err)?;
    drop(infer);
    let infer_s = t_infer.elapsed().as_secs_f64();
    let t_post = Instant::now();
    let head = |k: HeadKind| out.head(k).and_then(|t| t.patch(0));
    let size = out.head(HeadKind::Np).map_or(0, |t| t.shape[1]);
    let canvas = CanvasMaps {
        height: size,
        width: size,
        np: head(HeadKind::Np).unwrap_or_default(),
        hv: head(HeadKind::Hv).unwrap_or_default(),
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
    let spec = SlideOutputSpec {
        slide: path.to_path_buf(),
        stem: slide_stem(path),
        paths: tagged_output_paths(cfg, path),
        overwrite: cfg.output.overwrite,
        gzip_geojson: cfg.output.gzip_geojson,
        scale_factor: [1.0, 1.0],
        processing_size: [size as u64, size as u64],
        processing_mpp: None,
        baseline_mpp: None,
        nuclei_classes: cfg.model.nuclei_classes.clone(),
        layer_classes: cfg.model.layer_classes.clone(),
        save_maps: cfg.output.save_predictions,
        save_probabilities: false,
        provenance: provenance.clone(),
    };
    let output_err = |source| SlideError::Output {
        slide: path.to_path_buf(),
        source,
    };
    let mut output = outputs.create(&spec).map_err(output_err)?;
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
        wall_s: started.elapsed().as_secs_f64(),
        stages: StageTimes {
            read_s,
            infer_s,
            stitch_s: 0.0,
            postproc_s,
            export_s: t_export.elapsed().as_secs_f64(),
        },
        outputs: files,
    })
}

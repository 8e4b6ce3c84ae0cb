//! What the outputs of a slide need to know (paths, scale to baseline, classes, provenance),
//! and the checks made before any work starts.

use std::io::Read;
use std::path::Path;

use mtseg_export::{SlideExportSpec, Task};
use mtseg_io_config::{RunConfig, SlideInput};
use mtseg_slide::SlideReader;
use sha2::{Digest, Sha256};

use crate::output_names::output_files;
use crate::pipeline_errors::{RunError, SlideError};
use crate::stage_params;

/// Before any work: the output directory must exist or be creatable, and be writable.
///
/// # Errors
/// [`RunError::OutputDir`].
pub(crate) fn check_output_dir(cfg: &RunConfig) -> Result<(), RunError> {
    let dir = &cfg.output.dir;
    let dir_err = |source| RunError::OutputDir {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_err)?;
    let probe = dir.join(format!(".mtseg-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(dir_err)?;
    std::fs::remove_file(&probe).map_err(dir_err)?;
    Ok(())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Provenance stored with every output: the config file and model file hashes, the versions.
///
/// # Errors
/// [`RunError::Weights`] when the configured weights file cannot be read.
pub(crate) fn provenance(cfg: &RunConfig) -> Result<serde_json::Value, RunError> {
    let config_sha256 = sha256_file(&cfg.path).ok();
    let model_sha256 = match &cfg.model.weights {
        Some(w) => Some(sha256_file(w).map_err(|source| RunError::Weights {
            path: w.clone(),
            source,
        })?),
        None => None,
    };
    Ok(serde_json::json!({
        "software": "mtseg-pipeline",
        "version": env!("CARGO_PKG_VERSION"),
        "config": cfg.path.display().to_string(),
        "config_sha256": config_sha256,
        "model": cfg.model.preset.clone().unwrap_or_else(|| cfg.model.architecture.name().to_string()),
        "weights": cfg.model.weights.as_ref().map(|w| w.display().to_string()),
        "weights_sha256": model_sha256,
        "resolution": format!("{:?}", cfg.io.resolution),
        "patch_input": [cfg.io.patch_input.width, cfg.io.patch_input.height],
        "patch_output": [cfg.io.patch_output.width, cfg.io.patch_output.height],
        "stride": [cfg.io.stride.width, cfg.io.stride.height],
        "tile_shape": [cfg.io.tile_shape.width, cfg.io.tile_shape.height],
        "margin": cfg.io.margin,
    }))
}

/// The export spec of one opened slide (WSI mode; `input` is its entry in the config): its
/// outputs, the processing size and resolution, the scale to baseline pixels, the classes and
/// the provenance.
///
/// # Errors
/// [`SlideError::Read`] / [`SlideError::Resolution`] when the processing resolution cannot be
/// applied to the slide.
pub(crate) fn slide_export_spec(
    cfg: &RunConfig,
    input: &SlideInput,
    slide: &dyn SlideReader,
    provenance: &serde_json::Value,
) -> Result<SlideExportSpec, SlideError> {
    let res = stage_params::resolution(cfg);
    let (w, h) = slide.dimensions_at(res)?;
    let info = slide.info();
    let scale = info
        .baseline_scale(res)
        .map_err(|reason| SlideError::Resolution {
            slide: slide.path().to_path_buf(),
            reason,
        })?;
    let scale_factor = [1.0 / scale[0], 1.0 / scale[1]];
    let mut spec = export_spec(cfg, input, [w, h], provenance);
    spec.scale_factor = scale_factor;
    spec.processing_mpp = info
        .mpp
        .map(|m| [m[0] * scale_factor[0], m[1] * scale_factor[1]]);
    spec.baseline_mpp = info.mpp;
    Ok(spec)
}

/// The export spec of one patch-mode image of `size` px: coordinates relative to the output
/// patch, no resolution known.
pub(crate) fn patch_export_spec(
    cfg: &RunConfig,
    image: &SlideInput,
    size: usize,
    provenance: &serde_json::Value,
) -> SlideExportSpec {
    export_spec(cfg, image, [size as u64; 2], provenance)
}

/// What every spec shares; scale 1 and no resolution until the slide says otherwise.
fn export_spec(
    cfg: &RunConfig,
    slide: &SlideInput,
    processing_size: [u64; 2],
    provenance: &serde_json::Value,
) -> SlideExportSpec {
    let paths = output_files(cfg, slide);
    let has_layers = paths.iter().any(|(t, _, _)| *t == Task::Layers);
    SlideExportSpec {
        slide_path: slide.path.clone(),
        stem: slide.stem(),
        paths,
        // the engine decided, with the slide's lock held, that what exists under these names
        // may be replaced (see `slide_state::completion`)
        overwrite: true,
        gzip_geojson: cfg.output.gzip_geojson,
        scale_factor: [1.0, 1.0],
        processing_size,
        processing_mpp: None,
        baseline_mpp: None,
        nuclei_classes: cfg.model.nuclei_classes.clone(),
        layer_classes: cfg.model.layer_classes.clone(),
        save_instance_map: cfg.output.save_predictions,
        save_layer_map: cfg.output.save_predictions && has_layers,
        provenance: provenance.clone(),
    }
}

//! The pure forward rate of a run config's model: the model loaded as `mtseg-pipeline` loads
//! it (same device, precision and libtorch threads, [`mtseg_pipeline::torch_threads`]), fed real
//! patches of the config's first slide, and nothing else running. `scripts/bench-defaults`
//! divides the end-to-end wall by it (`ours / pure forward`): how close the whole pipeline gets
//! to the model's own limit on this machine.
//!
//! ```text
//! cargo bench -p mtseg-pipeline --features torch --bench forward_rate -- \
//!     --config FILE [--batches N] [--forward-only] [--json FILE]
//! ```
//! Reads `N` batches (default 6) of the config's batch size from the first rows of the slide at
//! the config's resolution (read time is not counted), runs one batch to warm up, then times
//! `forward_pending` (the forward and the copy of its outputs), the per-pixel head transform
//! alone (`PendingOutputs::finish`, on another thread in a run) and `forward` (both) over all
//! batches (`--forward-only`: not `forward`, for slow models). Set `OMP_WAIT_POLICY` as
//! the binary does (`PASSIVE`) to measure what a run gets. Prints one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mtseg_infer::{BatchView, load_model};
use mtseg_io_config::RunConfig;
use mtseg_pipeline::{model_params, stage_params, torch_threads};
use mtseg_slide::open_slide;
use serde_json::json;

fn main() -> Result<()> {
    let mut config = None;
    let mut batches = 6usize;
    let mut json_out: Option<PathBuf> = None;
    let mut forward_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next().map(PathBuf::from),
            "--batches" => batches = args.next().context("--batches N")?.parse()?,
            "--json" => json_out = args.next().map(PathBuf::from),
            "--forward-only" => forward_only = true,
            "--bench" => {}
            other => bail!("unknown argument {other} (--config FILE [--batches N] [--json FILE])"),
        }
    }
    let Some(config) = config else {
        eprintln!("forward_rate: no --config given; nothing to measure");
        return Ok(());
    };
    let cfg = RunConfig::from_file(&config)?;
    let slide_input = cfg
        .input
        .slides
        .first()
        .with_context(|| format!("{}: no slide", config.display()))?;
    let slide = open_slide(
        &slide_input.path,
        stage_params::slide_open_options(&cfg, slide_input),
    )
    .with_context(|| format!("opening {}", slide_input.path.display()))?;
    let (res, interp) = (
        stage_params::resolution(&cfg),
        stage_params::interpolation(&cfg),
    );
    let (input, stride) = (
        cfg.io.patch_input.height as i64,
        cfg.io.stride.height as i64,
    );
    let (w, _h) = slide.dimensions_at(res).map_err(anyhow::Error::msg)?;
    let batch_size = cfg.model.batch_size.get() as usize;
    // patches along the first rows, left to right
    let per_row = ((w as i64 - input).max(0) / stride + 1) as usize;
    let mut pixels: Vec<Vec<u8>> = Vec::new();
    for b in 0..=batches {
        let mut px = Vec::with_capacity(batch_size * (input * input * 3) as usize);
        for k in 0..batch_size {
            let i = b * batch_size + k;
            let (x, y) = ((i % per_row) as i64 * stride, (i / per_row) as i64 * stride);
            let img = slide.read_region([x, y, x + input, y + input], res, interp)?;
            px.extend_from_slice(img.as_raw());
        }
        pixels.push(px);
    }
    let params = model_params(&cfg, None)?;
    let mut model = load_model(&params)?;
    let indices: Vec<u64> = (0..batch_size as u64).collect();
    let side = input as usize;
    fn view<'a>(
        px: &'a [u8],
        indices: &'a [u64],
        side: usize,
    ) -> Result<BatchView<'a>, mtseg_infer::InferError> {
        BatchView::new(px, indices, side, side)
    }
    model.forward_pending(view(&pixels[0], &indices, side)?)?; // warm-up
    let t = Instant::now();
    let mut pending = Vec::new();
    for px in &pixels[1..] {
        pending.push(model.forward_pending(view(px, &indices, side)?)?);
    }
    let pending_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for p in pending {
        std::hint::black_box(p.finish());
    }
    let transform_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if !forward_only {
        for px in &pixels[1..] {
            model.forward(view(px, &indices, side)?)?;
        }
    }
    let full_s = (!forward_only).then(|| t.elapsed().as_secs_f64());
    let patches = (batches * batch_size) as f64;
    let result = json!({
        "config": config.display().to_string(),
        "slide": slide_input.path.display().to_string(),
        "device": format!("{:?}", params.device),
        "precision": params.precision.to_string(),
        "torch_threads": torch_threads(&cfg).get(),
        "omp_wait_policy": std::env::var("OMP_WAIT_POLICY").ok(),
        "batch_size": batch_size,
        "patches": patches,
        "forward_s_per_patch": pending_s / patches,
        "forward_patches_per_s": patches / pending_s,
        "transform_s_per_patch": transform_s / patches,
        "forward_and_transform_s_per_patch": full_s.map(|s| s / patches),
    });
    println!("{result}");
    if let Some(p) = json_out {
        std::fs::write(&p, format!("{result:#}\n"))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

//! A real run: providers from the config, Ctrl-C handling, the progress display, and the
//! summary printed at the end (nuclei per slide, seconds per stage, peak memory).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mtseg_io_config::{Device, RunConfig};
use mtseg_pipeline::{
    Engine, ExportOutputs, ModelProvider, RunError, RunSummary, SkipReason, TorchModelProvider,
    cuda_device_count, worker_devices, worker_model_params,
};

use crate::exit_codes::Exit;
use crate::progress_display::{ProgressDisplay, ProgressMode};

/// Runs every slide of `cfg`; returns the exit code.
/// (`slides`: the indices of the config's slides this process runs, its shard.)
pub(crate) fn run(
    cfg: &RunConfig,
    slides: &[usize],
    devices: &[Device],
    mode: ProgressMode,
) -> Exit {
    let requested = if devices.is_empty() {
        vec![cfg.model.device]
    } else {
        devices.to_vec()
    };
    let devices = worker_devices(
        &requested,
        cfg.pipeline.workers as usize,
        cuda_device_count(),
    );
    let params = match worker_model_params(cfg, &devices) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let models: Vec<TorchModelProvider> = params.into_iter().map(TorchModelProvider::new).collect();
    let workers: Vec<&dyn ModelProvider> = models.iter().map(|m| m as &dyn ModelProvider).collect();
    let outputs = ExportOutputs;
    let display = ProgressDisplay::new(mode);
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    // First Ctrl-C: stop at the next batch, remove temporary outputs, report. Second: exit now
    // (temporary files may stay, never a partial file under a final name).
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after the current batch (Ctrl-C again to exit now)");
    });
    let engine = Engine::new(cfg, workers[0], &outputs, &display)
        .with_workers(workers.clone())
        .with_slides(slides.to_vec())
        .with_cancel_flag(Arc::clone(&cancel));
    match engine.run() {
        Ok(summary) => {
            print_summary(&summary);
            if cancel.load(Ordering::SeqCst) {
                Exit::Interrupted
            } else if summary.failed.is_empty() {
                Exit::Ok
            } else {
                Exit::SlidesFailed
            }
        }
        Err(
            e @ (RunError::OutputsExist { .. }
            | RunError::OutputsDiffer { .. }
            | RunError::ModelConfig(_)
            | RunError::OutputDir { .. }
            | RunError::Weights { .. }),
        ) => {
            eprintln!("error: {}", mtseg_pipeline::error_chain(&e));
            Exit::Usage
        }
        Err(e) => {
            eprintln!("error: {}", mtseg_pipeline::error_chain(&e));
            Exit::Internal
        }
    }
}

fn print_summary(s: &RunSummary) {
    println!(
        "{:<40} {:>9} {:>8} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7}",
        "slide", "nuclei", "wall s", "read", "infer", "stitch", "postproc", "export", "tiles"
    );
    for sl in &s.slides {
        let st = &sl.stages;
        println!(
            "{:<40} {:>9} {:>8.1} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>7.1} {:>7}",
            sl.path.display().to_string(),
            sl.nuclei,
            sl.wall_s,
            st.read_s,
            st.infer_s,
            st.stitch_s,
            st.postproc_s,
            st.export_s,
            sl.tiles
        );
        for o in &sl.outputs {
            println!("    -> {}", o.display());
        }
    }
    for (path, reason) in &s.skipped {
        let why = match reason {
            SkipReason::Complete => "complete",
            SkipReason::InProgressElsewhere => "in progress in another process",
            _ => "skipped",
        };
        println!("{:<40} skipped: {why}", path.display().to_string());
    }
    for (path, error) in &s.failed {
        println!("{:<40} FAILED: {error}", path.display().to_string());
    }
    println!(
        "{} slide(s) done, {} skipped, {} failed, {} nuclei, {:.1} s, peak memory {}",
        s.slides.len(),
        s.skipped.len(),
        s.failed.len(),
        s.nuclei(),
        s.wall_s,
        s.peak_rss_bytes.map_or("unknown".to_string(), |b| format!(
            "{:.0} MiB",
            b as f64 / (1 << 20) as f64
        ))
    );
}

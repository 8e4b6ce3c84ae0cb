//! The stage wiring of mtseg-pipeline: from a checked [`mtseg_io_config::RunConfig`] to the
//! outputs of every slide.
//!
//! This crate sits above every stage crate and below the `cli`. It owns no algorithm: it turns
//! the config into each stage's parameters ([`stage_params`]), plans each slide once
//! ([`plan_slide`], also what `--dry-run` prints), loads the model once per run, and joins the
//! stages with bounded channels:
//!
//! ```text
//!              one per run                      one session per slide
//! ModelProvider ──────────> inference thread <──────────────────────────┐
//!                                  │ HeadOutputs                         │ PatchBatch
//! slide ─> plan_slide ─> reader ───┼─────────────────────────────────────┘ (rayon pool)
//!   (grid, mask, canvas, tiles)    v
//!                               stitcher ──CanvasRows──> post-processing + merge ──> export
//!                               (memory budget)          (tiles on the rayon pool)   (OutputProvider)
//! ```
//!
//! A failing slide is reported ([`RunSummary::failed`]) and the others go on; the outputs of a
//! slide appear under their final names only when the slide is complete.
//!
//! Cohorts: each slide's state lives in `<output dir>/.mtseg/` (a lock held while a process
//! works on it, records of done and failed attempts with the [`ResultKeys`] its outputs were made
//! with, and resume checkpoints), so a rerun skips complete slides, two processes never work on
//! one slide, a killed slide resumes from its last checkpoint with identical outputs, and
//! [`cohort_status`] reads where every slide stands. [`Engine::with_slides`] runs a shard,
//! [`Engine::with_workers`] one model per device pulling slides from one queue.
//!
//! ```no_run
//! use mtseg_io_config::RunConfig;
//! use mtseg_pipeline::{Engine, MemoryOutputs, ModelFactory, ModelProvider, NoProgress};
//!
//! /// Any `mtseg_infer::Model` can serve a run; a real run uses `TorchModelProvider`.
//! struct MyModel;
//! impl ModelProvider for MyModel {
//!     fn factory(&self) -> Result<ModelFactory, mtseg_infer::LoadError> {
//!         Err(mtseg_infer::LoadError::InvalidArchitecture { detail: "plug a model in".into() })
//!     }
//! }
//!
//! let cfg = RunConfig::from_file("configs/hovernet.toml")?;
//! let outputs = MemoryOutputs::default(); // or ExportOutputs: .db, GeoJSON, Zarr
//! let summary = Engine::new(&cfg, &MyModel, &outputs, &NoProgress).run()?;
//! println!("{} nuclei, {} slides failed", summary.nuclei(), summary.failed.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Logging
//! Through `tracing`: `info` when the model is loaded (its heads) and when a slide is done (its
//! nuclei and wall time), `error` for each failed slide (with its causes). Progress goes to the
//! [`ProgressSink`] instead ([`ProgressEvent`], the `--progress json` schema). The stage crates
//! log on their own (e.g. `mtseg_infer` a `debug` line per batch forward).
#![forbid(unsafe_code)]

mod busy_clock;
mod engine;
mod export_outputs;
mod model_params;
mod model_provider;
mod output_names;
mod output_spec;
mod patch_run;
mod pipeline_errors;
mod progress_events;
mod slide_checkpoint;
mod slide_output;
mod slide_plan;
mod slide_state;
pub mod stage_params;
mod wsi_run;
mod wsi_stages;

pub use engine::{Engine, RunSummary};
pub use export_outputs::ExportOutputs;
pub use model_params::{
    ModelConfigError, cpu_threads, model_params, torch_threads, worker_devices, worker_model_params,
};
#[cfg(feature = "torch")]
pub use model_provider::TorchModelProvider;
pub use model_provider::{ModelFactory, ModelProvider};
/// The CUDA devices libtorch sees (0 without CUDA), for [`worker_devices`].
#[cfg(feature = "torch")]
pub use mtseg_infer::cuda_device_count;
pub use pipeline_errors::{RunError, SlideError, error_chain};
pub use progress_events::{
    NoProgress, ProgressEvent, ProgressSink, SkipReason, SlideSummary, StageTimes,
};
pub use slide_output::{CollectedSlide, MemoryOutputs, OutputError, OutputProvider, SlideOutput};
pub use slide_plan::{PlannedOutput, PostprocPlan, SlidePlan, plan_slide, tissue_mask};
pub use slide_state::{
    CohortStatus, DoneRecord, FailedRecord, ResultKeys, SlideState, SlideStatus, StartedRecord,
    StatusCounts, cohort_status,
};

//! The stage wiring of mtseg-pipeline: from a checked [`mtseg_io_config::RunConfig`] to work on
//! each slide.
//!
//! This crate sits above every stage crate (`slide`, `tiling`, `infer`, `stitch`, `postproc`,
//! `instmerge`, `export`) and below the `cli`. It owns the translation of the config into each
//! stage's parameters ([`stage_params`], one small function per stage), the output file names
//! ([`output_paths`]), and the run plan that `--dry-run` prints ([`plan_slide`]).
//!
//! ```no_run
//! use mtseg_io_config::RunConfig;
//! use mtseg_pipeline::plan_slide;
//! let cfg = RunConfig::from_file("configs/hovernet.toml")?;
//! for slide in &cfg.input.slides {
//!     match plan_slide(&cfg, slide) {
//!         Ok(p) => println!("{}: {} of {} patches", p.path.display(), p.patches_selected, p.patches_total),
//!         Err(e) => eprintln!("{e}"),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Logging
//! Nothing yet beyond what the stage crates log.
#![forbid(unsafe_code)]

mod engine;
mod export_outputs;
mod model_params;
mod output_names;
mod output_spec;
mod patch_run;
mod pipeline_errors;
mod progress_events;
mod run_plan;
mod slide_output;
pub mod stage_params;
mod wsi_run;

#[cfg(feature = "torch")]
pub use engine::TorchModelProvider;
pub use engine::{Engine, ModelFactory, ModelProvider, RunSummary, SlideModelContext, error_chain};
pub use export_outputs::{ExportOutputs, export_spec};
pub use model_params::{
    ModelConfigError, cpu_threads, device, model_params, np_hv_params, torch_threads,
};
pub use output_names::{output_paths, overlay_path, slide_stem, tasks};
pub use output_spec::{check_outputs_writable, provenance, slide_output_spec, tagged_output_paths};
pub use pipeline_errors::{RunError, SlideError};
pub use progress_events::{
    NoProgress, ProgressEvent, ProgressSink, SlideSummary, StageTimes, peak_rss_bytes,
};
pub use run_plan::{PlannedOutput, PostprocPlan, SlidePlan, plan_slide, tissue_mask};
pub use slide_output::{
    CollectedSlide, MemoryOutputs, OutputError, OutputProvider, SlideOutput, SlideOutputSpec,
};

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

mod output_names;
mod pipeline_errors;
mod run_plan;
pub mod stage_params;

pub use output_names::{output_paths, slide_stem, tasks};
pub use pipeline_errors::SlideError;
pub use run_plan::{PlannedOutput, PostprocPlan, SlidePlan, plan_slide, tissue_mask};

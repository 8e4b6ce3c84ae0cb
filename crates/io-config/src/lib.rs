//! The run config of mtseg-pipeline: the TOML file a user writes, checked and resolved.
//!
//! This crate is the first step of a run: the CLI hands it the path given with `--config`, it
//! returns a [`RunConfig`] (or a [`ConfigError`] that names the file, line, key and the closest
//! valid key), and the `pipeline` crate turns that into the small parameter structs of each stage
//! (slide reading, patch grid, inference, stitching, post-processing, export). No stage sees the
//! whole config.
//!
//! # Overview
//! - [`RunConfig::from_file`] reads `[model]`, `[io]`, `[input]`, `[output]` and `[pipeline]`.
//!   Every table rejects unknown keys (a typo fails with its line and a "did you mean" hint).
//! - [`preset`] gives the IO configs of TIAToolbox's five pretrained HoVer-Net models
//!   ([`PRESET_NAMES`]); `[model] preset = "..."` fills architecture, shapes and class names, and
//!   any `[io]` key overrides the preset.
//! - `[input]` lists every input as a [`SlideInput`]: `slides` entries, then the rows of a
//!   `manifest` file, a plain list of paths or a CSV whose rows may give a slide its own mask,
//!   mpp and output stem (grammar and errors: `configs/hovernet.toml`; a bad row names the
//!   manifest's line and column, [`ConfigError::Manifest`]).
//! - A [`Shard`] (`"i/N"`: `[input] shard`, the CLI's `--shard`, or a Slurm job array's
//!   variables, [`Shard::from_slurm_env`]) picks every N-th input ([`InputConfig::shard_slides`],
//!   precedence in [`InputConfig::choose_shard`]); the config itself always keeps every input.
//! - Impossible shapes (stride larger than the output patch, output larger than the input, a tile
//!   smaller than a patch, a margin wider than half a tile) are rejected here, before any work.
//! - Values are resolved into the shared types of `mtseg-types` (re-exported here): the
//!   [`Architecture`] (heads, width divisor, and for TorchScript the head channels from the class
//!   names and the sizes from `[io]`), [`Device`], [`Precision`], [`MemoryLimit`] and [`Size2`].
//!   Their grammars are those types' `FromStr`, so the CLI's `--device` accepts exactly what
//!   `[model] device` accepts.
//!
//! ```
//! use mtseg_io_config::{RunConfig, Size2};
//! let toml = r#"
//!     [model]
//!     preset = "hovernet_fast-pannuke"
//!     [io]
//!     stride = 128
//!     [input]
//!     slides = ["slide.svs"]
//! "#;
//! let cfg = RunConfig::from_toml(toml, "run.toml".as_ref()).unwrap();
//! assert_eq!(cfg.io.patch_input, Size2::square(256));
//! assert_eq!(cfg.io.stride, Size2::square(128));
//!
//! let typo = RunConfig::from_toml("[io]\nstrde = 3\n", "run.toml".as_ref()).unwrap_err();
//! assert!(typo.to_string().contains("did you mean `stride`?"));
//! ```
//!
//! # Choices a reader might question
//! - Relative paths in the config are resolved against the current directory (as a shell would),
//!   not the config's directory; entries of a `manifest` file are resolved against the manifest's
//!   directory, so a manifest can sit beside its slides.
//! - A glob in `slides` that matches nothing is a config error (in a manifest it adds nothing);
//!   a plain path that does not exist is not: it is reported as a failed slide at run time and
//!   the other slides still run.
//! - Shards are round robin (input k goes to shard k % N), not contiguous blocks: shard sizes
//!   differ by at most one, and a cohort sorted by size or site is spread over all shards.
//! - Shapes are written in the config as one number or TIAToolbox's `[height, width]`, and held
//!   as [`Size2`] (width, height), the axis order of every stage.
//! - The raw serde layer keeps the source span of every checked value, so semantic errors found
//!   after parsing (a zero stride, an unknown preset) still carry their line.
#![forbid(unsafe_code)]

mod config_errors;
mod input_slides;
mod manifest;
mod model_io;
mod presets;
mod raw_config;
mod run_config;
mod shard;

pub use config_errors::{ConfigError, Location};
pub use input_slides::{SlideInput, SlideOrigin};
pub use model_io::{ModelIo, ResolutionSpec};
/// The shared vocabulary the config resolves into, re-exported so that callers need one import.
pub use mtseg_types::{Architecture, Device, HeadKind, HeadSpec, MemoryLimit, Precision, Size2};
pub use presets::{PRESET_NAMES, Preset, preset};
pub use run_config::{
    BackendChoice, InputConfig, InputMode, Interpolation, MaskRuleChoice, MaskSpec, ModelConfig,
    OutputConfig, OutputFormat, PipelineConfig, RunConfig,
};
pub use shard::{Shard, ShardChoice, ShardError, ShardSource};

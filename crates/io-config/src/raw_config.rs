//! The raw serde layer: exactly what the TOML file says, with the source span of every value that
//! is validated later, so that a bad value is reported with its line. Unknown keys are rejected
//! (`deny_unknown_fields`) in every table.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) model: Option<RawModel>,
    pub(crate) io: Option<RawIo>,
    pub(crate) input: Option<RawInput>,
    pub(crate) output: Option<RawOutput>,
    pub(crate) pipeline: Option<RawPipeline>,
}

/// `[model]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub(crate) preset: Option<Spanned<String>>,
    pub(crate) architecture: Option<Spanned<String>>,
    pub(crate) num_types: Option<Spanned<i64>>,
    pub(crate) num_layers: Option<Spanned<i64>>,
    pub(crate) heads: Option<Spanned<Vec<String>>>,
    pub(crate) weights: Option<Spanned<String>>,
    pub(crate) device: Option<Spanned<String>>,
    pub(crate) batch_size: Option<Spanned<i64>>,
    pub(crate) precision: Option<Spanned<String>>,
    pub(crate) nuclei_classes: Option<Spanned<Vec<String>>>,
    pub(crate) layer_classes: Option<Spanned<Vec<String>>>,
    pub(crate) width_divisor: Option<Spanned<i64>>,
}

/// A shape: one number (square) or `[height, width]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum RawShape {
    Square(i64),
    HeightWidth(Vec<i64>),
}

/// `resolution = { mpp = 0.25 }` and its siblings.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResolution {
    pub(crate) mpp: Option<f64>,
    pub(crate) power: Option<f64>,
    pub(crate) baseline: Option<f64>,
}

/// `[io]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIo {
    pub(crate) resolution: Option<Spanned<RawResolution>>,
    pub(crate) patch_input: Option<Spanned<RawShape>>,
    pub(crate) patch_output: Option<Spanned<RawShape>>,
    pub(crate) stride: Option<Spanned<RawShape>>,
    pub(crate) tile_shape: Option<Spanned<RawShape>>,
    pub(crate) margin: Option<Spanned<i64>>,
    pub(crate) interpolation: Option<Spanned<String>>,
}

/// `[input]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInput {
    pub(crate) mode: Option<Spanned<String>>,
    pub(crate) slides: Option<Spanned<Vec<String>>>,
    pub(crate) manifest: Option<Spanned<String>>,
    pub(crate) mask: Option<Spanned<String>>,
    pub(crate) mask_rule: Option<Spanned<String>>,
    pub(crate) mpp: Option<Spanned<f64>>,
    pub(crate) backend: Option<Spanned<String>>,
    pub(crate) shard: Option<Spanned<String>>,
}

/// `[output]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    pub(crate) dir: Option<Spanned<String>>,
    pub(crate) formats: Option<Spanned<Vec<String>>>,
    pub(crate) overwrite: Option<bool>,
    pub(crate) save_predictions: Option<bool>,
    pub(crate) save_probabilities: Option<bool>,
    pub(crate) gzip_geojson: Option<bool>,
    pub(crate) overlay: Option<bool>,
}

/// `[pipeline]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    pub(crate) memory_limit: Option<Spanned<String>>,
    pub(crate) queue_capacity: Option<Spanned<i64>>,
    pub(crate) threads: Option<Spanned<i64>>,
    pub(crate) read_workers: Option<Spanned<i64>>,
    pub(crate) workers: Option<Spanned<i64>>,
    pub(crate) checkpoint: Option<bool>,
    pub(crate) checkpoint_every_s: Option<Spanned<f64>>,
}

/// The keys each table accepts, for "did you mean" hints.
pub(crate) fn keys_of(table: Option<&str>) -> &'static [&'static str] {
    match table {
        None => &["model", "io", "input", "output", "pipeline"],
        Some("model") => &[
            "preset",
            "architecture",
            "num_types",
            "num_layers",
            "heads",
            "weights",
            "device",
            "batch_size",
            "precision",
            "nuclei_classes",
            "layer_classes",
            "width_divisor",
        ],
        Some("io") => &[
            "resolution",
            "patch_input",
            "patch_output",
            "stride",
            "tile_shape",
            "margin",
            "interpolation",
        ],
        Some("input") => &[
            "mode",
            "slides",
            "manifest",
            "mask",
            "mask_rule",
            "mpp",
            "backend",
            "shard",
        ],
        Some("output") => &[
            "dir",
            "formats",
            "overwrite",
            "save_predictions",
            "save_probabilities",
            "gzip_geojson",
            "overlay",
        ],
        Some("pipeline") => &[
            "memory_limit",
            "queue_capacity",
            "threads",
            "read_workers",
            "workers",
            "checkpoint",
            "checkpoint_every_s",
        ],
        Some(_) => &[],
    }
}

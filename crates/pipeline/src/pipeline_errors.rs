//! Errors of one slide's run. A slide error is reported and the other slides go on.

use std::path::PathBuf;

/// What went wrong with one slide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlideError {
    /// The slide could not be opened.
    #[error(transparent)]
    Open(#[from] mtseg_slide::OpenError),
    /// The slide could not be read.
    #[error(transparent)]
    Read(#[from] mtseg_slide::ReadError),
    /// The tissue mask image could not be used.
    #[error("tissue mask {mask} for slide {slide}: {reason}")]
    Mask {
        /// The slide.
        slide: PathBuf,
        /// The mask file.
        mask: PathBuf,
        /// Why.
        reason: String,
    },
    /// No patch to run, or an impossible grid.
    #[error("slide {slide}: {source}")]
    Grid {
        /// The slide.
        slide: PathBuf,
        /// Why.
        source: mtseg_tiling::GridError,
    },
    /// The stitch canvas cannot be planned.
    #[error("slide {slide}: {source}")]
    Canvas {
        /// The slide.
        slide: PathBuf,
        /// Why.
        source: mtseg_stitch::PlanError,
    },
    /// In patch mode, an image is not one model input patch.
    #[error(
        "image {slide} is {width} x {height} px, but patch mode needs images of exactly {want_width} x {want_height} (the model's input patch); use mode = \"wsi\" for larger images"
    )]
    PatchSize {
        /// The image.
        slide: PathBuf,
        /// Its width.
        width: u64,
        /// Its height.
        height: u64,
        /// The model's input width.
        want_width: u64,
        /// The model's input height.
        want_height: u64,
    },
    /// The processing resolution cannot be applied to the slide.
    #[error("slide {slide}: {reason}")]
    Resolution {
        /// The slide.
        slide: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model could not be loaded.
    #[error("slide {slide}: loading the model: {source}")]
    Model {
        /// The slide.
        slide: PathBuf,
        /// Why (the run's one load error, shared by every slide it fails).
        source: std::sync::Arc<mtseg_infer::LoadError>,
    },
    /// A forward failed.
    #[error("slide {slide}: inference: {source}")]
    Infer {
        /// The slide.
        slide: PathBuf,
        /// Why.
        source: Box<mtseg_infer::InferError>,
    },
    /// Stitching failed (memory budget, inconsistent patches, probability store).
    #[error("slide {slide}: stitching: {source}")]
    Stitch {
        /// The slide.
        slide: PathBuf,
        /// Why.
        source: Box<mtseg_stitch::StitchError>,
    },
    /// Post-processing or the cross-tile merge failed.
    #[error("slide {slide}: post-processing: {source}")]
    Merge {
        /// The slide.
        slide: PathBuf,
        /// Why.
        source: Box<mtseg_instmerge::MergeError>,
    },
    /// Writing an output failed; nothing is left under a final name.
    #[error("slide {slide}: writing outputs: {source}")]
    Output {
        /// The slide.
        slide: PathBuf,
        /// Why (names the file).
        source: crate::slide_output::OutputError,
    },
    /// The run was cancelled (Ctrl-C); the slide's temporary outputs were removed.
    #[error("slide {slide}: cancelled")]
    Cancelled {
        /// The slide.
        slide: PathBuf,
    },
    /// In patch mode, a failure shared by a whole batch of images (the model not loading, a
    /// forward failing), reported for each image of the batch.
    #[error("image {slide}: {stage}: {reason}")]
    Batch {
        /// The image.
        slide: PathBuf,
        /// The stage that failed.
        stage: &'static str,
        /// Why (the error of the batch).
        reason: String,
    },
    /// A stage stopped because another one failed (never the error reported when the other
    /// one's error is known).
    #[error("a stage stopped because another one failed")]
    Interrupted,
    /// A stage's thread panicked (a bug).
    #[error("slide {slide}: the {stage} thread panicked (a bug; please report it)")]
    Panicked {
        /// The slide.
        slide: PathBuf,
        /// The stage.
        stage: String,
    },
    /// The slide's state files (lock, records, checkpoints) cannot be written.
    #[error("slide {slide}: {source}")]
    State {
        /// The slide.
        slide: PathBuf,
        /// Why (the message names the file).
        source: std::io::Error,
    },
}

/// What stops a whole run before any slide is processed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Outputs exist and `[output] overwrite` is false.
    #[error(
        "{} output(s) already exist, e.g. {}; set [output] overwrite = true (or pass --overwrite) \
         to replace them, or choose another [output] dir",
        existing.len(),
        existing.iter().take(3).map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    OutputsExist {
        /// The existing outputs.
        existing: Vec<PathBuf>,
    },
    /// A slide's outputs were made with other result keys (config, weights or engine version)
    /// and `[output] overwrite` is false.
    #[error(
        "outputs of {slide} exist from a run with another `{key}` (recorded {recorded}, now {now}; \
         see {record}); set [output] overwrite = true (or pass --overwrite) to replace them, or \
         choose another [output] dir"
    )]
    OutputsDiffer {
        /// The slide.
        slide: PathBuf,
        /// Its done record.
        record: PathBuf,
        /// The first key that differs.
        key: String,
        /// The recorded value.
        recorded: String,
        /// This run's value.
        now: String,
    },
    /// The CPU thread pool could not be started.
    #[error("cannot start {threads} CPU threads ([pipeline] threads): {reason}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Why not.
        reason: String,
    },
    /// The output directory cannot be created or written.
    #[error("output directory {dir}: {source}")]
    OutputDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The weights file cannot be read.
    #[error("[model] weights {path}: {source}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `[model]` table does not describe a loadable model.
    #[error(transparent)]
    ModelConfig(#[from] crate::model_params::ModelConfigError),
}

/// An error and its causes, `a: b: c`, without repeating a cause already in the message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        source = c.source();
    }
    s
}

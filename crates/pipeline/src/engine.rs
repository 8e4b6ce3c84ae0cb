//! A whole run: every slide of the config, one after the other, each streamed through the
//! stages ([`crate::wsi_run`]) or, in patch mode, each image as one model input. A failing
//! slide is reported and the others go on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mtseg_infer::{BatchView, HeadOutputs, HeadSpec, InferError, LoadError, Model};
use mtseg_io_config::{InputMode, RunConfig};
use mtseg_stitch::MemoryBudget;
use mtseg_tiling::PatchGrid;

use crate::output_spec::{check_outputs_writable, provenance};
use crate::pipeline_errors::{RunError, SlideError};
use crate::progress_events::{ProgressEvent, ProgressSink, SlideSummary, peak_rss_bytes};
use crate::slide_output::OutputProvider;
use crate::wsi_run::{BusyClock, SlideJob, run_wsi_slide};

/// Builds the model on the inference thread (a model need not be `Send`).
pub type ModelFactory = Box<dyn FnOnce() -> Result<Box<dyn Model>, LoadError> + Send>;

/// What a model provider may know of the slide it serves: test models such as an oracle map
/// patch indices to places on the slide through the grid.
#[derive(Debug, Clone, Copy)]
pub struct SlideModelContext<'a> {
    /// The slide.
    pub slide: &'a Path,
    /// Its patch grid at the processing resolution (index -> input and output box).
    pub grid: &'a PatchGrid,
}

/// Makes the model: in WSI mode once per slide (with that slide's context); in patch mode once
/// for the whole list of images (with the first image's context: every image has the same
/// one-patch grid).
pub trait ModelProvider: Send + Sync {
    /// A factory that loads the model (called on the inference thread).
    ///
    /// # Errors
    /// A [`LoadError`] known before loading (e.g. a missing weights file).
    fn factory(&self, ctx: &SlideModelContext<'_>) -> Result<ModelFactory, LoadError>;
}

/// The configured model, loaded with libtorch ([`mtseg_infer::load_model`]).
#[cfg(feature = "torch")]
#[derive(Debug, Clone)]
pub struct TorchModelProvider {
    params: mtseg_infer::ModelParams,
}

#[cfg(feature = "torch")]
impl TorchModelProvider {
    /// A provider loading `params` for every slide.
    pub fn new(params: mtseg_infer::ModelParams) -> Self {
        Self { params }
    }
}

#[cfg(feature = "torch")]
impl ModelProvider for TorchModelProvider {
    fn factory(&self, _: &SlideModelContext<'_>) -> Result<ModelFactory, LoadError> {
        let params = self.params.clone();
        Ok(Box::new(move || mtseg_infer::load_model(&params)))
    }
}

/// Adds the forward time of a model to a stage clock.
struct TimedModel {
    inner: Box<dyn Model>,
    clock: BusyClock,
}

impl Model for TimedModel {
    fn heads(&self) -> &[HeadSpec] {
        self.inner.heads()
    }
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }
    fn output_size(&self) -> usize {
        self.inner.output_size()
    }
    fn forward(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError> {
        let t = Instant::now();
        let r = self.inner.forward(batch);
        self.clock.add(t.elapsed());
        r
    }
}

pub(crate) fn timed(factory: ModelFactory, clock: BusyClock) -> ModelFactory {
    Box::new(move || factory().map(|inner| Box::new(TimedModel { inner, clock }) as Box<dyn Model>))
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Slides that completed, in run order.
    pub slides: Vec<SlideSummary>,
    /// Slides that failed: path and error (with causes).
    pub failed: Vec<(PathBuf, String)>,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Peak resident memory of the process, bytes, if known.
    pub peak_rss_bytes: Option<u64>,
}

impl RunSummary {
    /// Nuclei written over all slides.
    pub fn nuclei(&self) -> u64 {
        self.slides.iter().map(|s| s.nuclei).sum()
    }
}

/// One run of the pipeline over the slides of a config.
pub struct Engine<'a> {
    cfg: &'a RunConfig,
    model: &'a dyn ModelProvider,
    outputs: &'a dyn OutputProvider,
    progress: &'a dyn ProgressSink,
    cancel: Arc<AtomicBool>,
}

impl<'a> Engine<'a> {
    /// An engine for `cfg` with these providers.
    pub fn new(
        cfg: &'a RunConfig,
        model: &'a dyn ModelProvider,
        outputs: &'a dyn OutputProvider,
        progress: &'a dyn ProgressSink,
    ) -> Self {
        Self {
            cfg,
            model,
            outputs,
            progress,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag that stops the run (e.g. set from a Ctrl-C handler): the current slide stops
    /// at its next batch, its temporary outputs are removed, and no later slide starts.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// Use `flag` as the cancel flag.
    #[must_use]
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = flag;
        self
    }

    /// Runs every slide. Checks first, before any work, that no output exists (unless
    /// `[output] overwrite`) and that the output directory can be written.
    ///
    /// # Errors
    /// [`RunError`] for what stops the whole run before it starts; a failing slide is not an
    /// error of the run (see [`RunSummary::failed`]).
    pub fn run(&self) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let cfg = self.cfg;
        check_outputs_writable(cfg)?;
        let provenance = provenance(cfg)?;
        let budget = MemoryBudget::new(cfg.pipeline.memory_limit);
        let slides = &cfg.input.slides;
        self.progress.event(&ProgressEvent::RunStarted {
            slides: slides.len(),
        });
        let mut summary = RunSummary {
            slides: Vec::new(),
            failed: Vec::new(),
            wall_s: 0.0,
            peak_rss_bytes: None,
        };
        let mut report = |index: usize, path: &Path, result: Result<SlideSummary, SlideError>| {
            match result {
                Ok(s) => {
                    tracing::info!(slide = %path.display(), nuclei = s.nuclei, wall_s = s.wall_s, "slide done");
                    self.progress.event(&ProgressEvent::SlideFinished {
                        slide: index,
                        summary: s.clone(),
                    });
                    summary.slides.push(s);
                }
                Err(e) => self.fail(&mut summary, index, path, &e),
            }
        };
        match cfg.input.mode {
            InputMode::Wsi => {
                for (index, path) in slides.iter().enumerate() {
                    let result = if self.cancel.load(Ordering::Relaxed) {
                        Err(SlideError::Cancelled {
                            slide: path.clone(),
                        })
                    } else {
                        self.run_one(index, path, &provenance, &budget)
                    };
                    report(index, path, result);
                }
            }
            InputMode::Patch => crate::patch_run::run_patch_images(
                &crate::patch_run::PatchJob {
                    cfg,
                    images: slides,
                    model: self.model,
                    outputs: self.outputs,
                    provenance: &provenance,
                    cancel: &self.cancel,
                },
                &mut report,
            ),
        }
        summary.wall_s = started.elapsed().as_secs_f64();
        summary.peak_rss_bytes = peak_rss_bytes();
        self.progress.event(&ProgressEvent::RunFinished {
            slides_ok: summary.slides.len(),
            slides_failed: summary.failed.len(),
            nuclei: summary.nuclei(),
            wall_s: summary.wall_s,
            peak_rss_bytes: summary.peak_rss_bytes,
        });
        Ok(summary)
    }

    fn fail(&self, summary: &mut RunSummary, index: usize, path: &Path, e: &SlideError) {
        let error = error_chain(e);
        tracing::error!(slide = %path.display(), "{error}");
        self.progress.event(&ProgressEvent::SlideFailed {
            slide: index,
            path: path.to_path_buf(),
            error: error.clone(),
        });
        summary.failed.push((path.to_path_buf(), error));
    }

    fn run_one(
        &self,
        index: usize,
        path: &Path,
        provenance: &serde_json::Value,
        budget: &MemoryBudget,
    ) -> Result<SlideSummary, SlideError> {
        run_wsi_slide(SlideJob {
            cfg: self.cfg,
            index,
            path,
            provenance,
            model: self.model,
            outputs: self.outputs,
            progress: self.progress,
            cancel: &self.cancel,
            budget: budget.clone(),
        })
    }
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

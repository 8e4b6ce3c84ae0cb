//! A whole run: the model loaded once, then every slide of the config, one after the other,
//! each streamed through the stages ([`crate::wsi_run`]) or, in patch mode, each image as one
//! model input ([`crate::patch_run`]). A failing slide is reported and the others go on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mtseg_io_config::{InputMode, RunConfig};
use mtseg_stitch::MemoryBudget;

use crate::model_provider::{LoadedModel, ModelProvider};
use crate::output_spec::{check_outputs_writable, provenance};
use crate::pipeline_errors::{RunError, SlideError, error_chain};
use crate::progress_events::{ProgressEvent, ProgressSink, SlideSummary, peak_rss_bytes};
use crate::slide_output::OutputProvider;
use crate::wsi_run::{SlideJob, run_wsi_slide};

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
        let threads = crate::model_params::cpu_threads(cfg).get();
        // The CPU stages (patch reads, post-processing tiles) run on this pool of
        // `[pipeline] threads`; libtorch has its own threads (`torch_threads`).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("mtseg-cpu-{i}"))
            .build()
            .map_err(|e| RunError::ThreadPool {
                threads,
                reason: e.to_string(),
            })?;
        let slides = &cfg.input.slides;
        self.progress.event(&ProgressEvent::RunStarted {
            slides: slides.len(),
        });
        // One model for the whole run; a load error fails each slide (not retried per slide).
        let model = (!slides.is_empty())
            .then(|| LoadedModel::load(self.model, cfg.pipeline.queue_capacity.get() as usize));
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
        match (cfg.input.mode, &model) {
            (_, None) => {}
            (InputMode::Wsi, Some(model)) => {
                for (index, slide) in slides.iter().enumerate() {
                    let path = &slide.path;
                    let result = if self.cancel.load(Ordering::Relaxed) {
                        Err(SlideError::Cancelled {
                            slide: path.clone(),
                        })
                    } else {
                        run_wsi_slide(&SlideJob {
                            cfg,
                            index,
                            slide,
                            path,
                            provenance: &provenance,
                            model,
                            outputs: self.outputs,
                            progress: self.progress,
                            cancel: &self.cancel,
                            budget: budget.clone(),
                            pool: &pool,
                        })
                    };
                    report(index, path, result);
                }
            }
            (InputMode::Patch, Some(model)) => crate::patch_run::run_patch_images(
                &crate::patch_run::PatchJob {
                    cfg,
                    images: slides,
                    model,
                    outputs: self.outputs,
                    provenance: &provenance,
                    cancel: &self.cancel,
                    pool: &pool,
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
}

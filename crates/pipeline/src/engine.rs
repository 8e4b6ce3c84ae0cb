//! A whole run: the model loaded once per worker, then every slide of the run (a shard of the
//! config's slides, or all), each streamed through the stages ([`crate::wsi_run`]) or, in patch
//! mode, each image as one model input ([`crate::patch_run`]). A failing slide is reported and
//! the others go on.
//!
//! Before any work each slide is checked against the output directory's state
//! ([`crate::slide_state`]): complete slides are skipped, outputs made with other result keys
//! stop the run (unless overwrite). Workers then pull slides from one queue; a worker takes a
//! slide's lock first and skips the slide when another process holds it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mtseg_io_config::{InputMode, RunConfig, SlideInput};
use mtseg_stitch::MemoryBudget;

use crate::model_provider::{LoadedModel, ModelProvider};
use crate::output_spec::{check_output_dir, provenance};
use crate::pipeline_errors::{RunError, SlideError, error_chain};
use crate::progress_events::{
    ProgressEvent, ProgressSink, SkipReason, SlideSummary, peak_rss_bytes,
};
use crate::slide_checkpoint::CheckpointSettings;
use crate::slide_output::OutputProvider;
use crate::slide_state::{
    Completion, LockAttempt, ResultKeys, SlideLock, SlideStatePaths, clear_done, completion,
    done_record, record_done, record_failed, record_started, remove_leftovers, try_lock,
};
use crate::wsi_run::{SlideJob, run_wsi_slide};

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Slides that completed, in run order.
    pub slides: Vec<SlideSummary>,
    /// Slides not processed: complete already, or in progress in another process.
    pub skipped: Vec<(PathBuf, SkipReason)>,
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
    /// One model per worker.
    models: Vec<&'a dyn ModelProvider>,
    outputs: &'a dyn OutputProvider,
    progress: &'a dyn ProgressSink,
    cancel: Arc<AtomicBool>,
    /// The indices of the config's slides to run (a shard), or all.
    selection: Option<Vec<usize>>,
}

/// The run's slides to process, and those complete with the seconds their check took.
type Decided = (Vec<usize>, Vec<(usize, f64)>);

/// What every worker shares.
struct Shared<'r> {
    provenance: serde_json::Value,
    weights_sha256: Option<String>,
    budget: MemoryBudget,
    pool: rayon::ThreadPool,
    summary: Mutex<&'r mut RunSummary>,
}

impl<'a> Engine<'a> {
    /// An engine for `cfg` with these providers (one worker).
    pub fn new(
        cfg: &'a RunConfig,
        model: &'a dyn ModelProvider,
        outputs: &'a dyn OutputProvider,
        progress: &'a dyn ProgressSink,
    ) -> Self {
        Self {
            cfg,
            models: vec![model],
            outputs,
            progress,
            cancel: Arc::new(AtomicBool::new(false)),
            selection: None,
        }
    }

    /// One worker per model (e.g. one per GPU): each loads its model once and takes the next
    /// slide from the run's queue when it is free. Patch mode uses the first. An empty list
    /// keeps the current models.
    #[must_use]
    pub fn with_workers(mut self, models: Vec<&'a dyn ModelProvider>) -> Self {
        if !models.is_empty() {
            self.models = models;
        }
        self
    }

    /// Runs only these slides of the config (indices into `[input]` slides, e.g. a shard's).
    #[must_use]
    pub fn with_slides(mut self, indices: Vec<usize>) -> Self {
        self.selection = Some(indices);
        self
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

    /// Runs every slide. Checks first, before any work, that the output directory can be
    /// written and where each slide stands: complete slides (same result keys, every output
    /// present) are skipped; existing outputs made with other result keys, or not recorded as
    /// this engine's, stop the run unless `[output] overwrite`.
    ///
    /// # Errors
    /// [`RunError`] for what stops the whole run before it starts; a failing slide is not an
    /// error of the run (see [`RunSummary::failed`]).
    pub fn run(&self) -> Result<RunSummary, RunError> {
        let started = Instant::now();
        let cfg = self.cfg;
        check_output_dir(cfg)?;
        let provenance = provenance(cfg)?;
        let weights_sha256 = provenance["weights_sha256"].as_str().map(str::to_owned);
        let all: Vec<usize> = (0..cfg.input.slides.len()).collect();
        let run_slides = self.selection.as_deref().unwrap_or(&all);
        let (todo, complete) = self.decide(run_slides, weights_sha256.as_deref())?;
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
        self.progress.event(&ProgressEvent::RunStarted {
            slides: run_slides.len(),
        });
        let mut summary = RunSummary {
            slides: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
            wall_s: 0.0,
            peak_rss_bytes: None,
        };
        let shared = Shared {
            provenance,
            weights_sha256,
            budget: MemoryBudget::new(cfg.pipeline.memory_limit),
            pool,
            summary: Mutex::new(&mut summary),
        };
        for (index, seconds) in complete {
            self.skip(&shared, index, SkipReason::Complete, seconds);
        }
        match cfg.input.mode {
            InputMode::Wsi => self.run_wsi_queue(&shared, &todo),
            InputMode::Patch => self.run_patch(&shared, &todo),
        }
        drop(shared);
        summary.wall_s = started.elapsed().as_secs_f64();
        summary.peak_rss_bytes = peak_rss_bytes();
        self.progress.event(&ProgressEvent::RunFinished {
            slides_ok: summary.slides.len(),
            slides_skipped: summary.skipped.len(),
            slides_failed: summary.failed.len(),
            nuclei: summary.nuclei(),
            wall_s: summary.wall_s,
            peak_rss_bytes: summary.peak_rss_bytes,
        });
        Ok(summary)
    }

    /// Splits the run's slides into those to process and those complete (with the seconds
    /// the check took); stops on outputs this run may not replace.
    fn decide(&self, slides: &[usize], weights_sha256: Option<&str>) -> Result<Decided, RunError> {
        let cfg = self.cfg;
        let (mut todo, mut complete, mut unrecorded) = (Vec::new(), Vec::new(), Vec::new());
        for &index in slides {
            let t = Instant::now();
            let slide = &cfg.input.slides[index];
            if cfg.output.overwrite {
                todo.push(index);
                continue;
            }
            let keys = ResultKeys::of(cfg, slide, weights_sha256);
            match completion(cfg, slide, &keys) {
                Completion::Complete => complete.push((index, t.elapsed().as_secs_f64())),
                Completion::Absent => todo.push(index),
                Completion::Unrecorded { existing } => unrecorded.extend(existing),
                Completion::Differs {
                    record,
                    key,
                    recorded,
                    now,
                } => {
                    return Err(RunError::OutputsDiffer {
                        slide: slide.path.clone(),
                        record,
                        key,
                        recorded: recorded.to_string(),
                        now: now.to_string(),
                    });
                }
            }
        }
        if !unrecorded.is_empty() {
            return Err(RunError::OutputsExist {
                existing: unrecorded,
            });
        }
        Ok((todo, complete))
    }

    /// Whole-slide mode: every worker takes the next slide of `todo` until none is left.
    fn run_wsi_queue(&self, shared: &Shared<'_>, todo: &[usize]) {
        let next = AtomicUsize::new(0);
        let capacity = self.cfg.pipeline.queue_capacity.get() as usize;
        let work = |provider: &dyn ModelProvider| {
            // loaded when the worker first has a slide to process (a run that skips every
            // slide loads nothing)
            let mut model: Option<LoadedModel> = None;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&index) = todo.get(k) else { break };
                let slide = &self.cfg.input.slides[index];
                let path = &slide.path;
                if self.cancel.load(Ordering::Relaxed) {
                    let e = SlideError::Cancelled {
                        slide: path.clone(),
                    };
                    self.fail(shared, index, path, &e);
                    continue;
                }
                let Some((lock, paths, keys)) = self.claim(shared, index) else {
                    continue;
                };
                let model = model.get_or_insert_with(|| LoadedModel::load(provider, capacity));
                let result = run_wsi_slide(&SlideJob {
                    cfg: self.cfg,
                    index,
                    slide,
                    path,
                    provenance: &shared.provenance,
                    model,
                    outputs: self.outputs,
                    progress: self.progress,
                    cancel: &self.cancel,
                    budget: shared.budget.clone(),
                    pool: &shared.pool,
                    keys: &keys,
                    checkpoint: self.cfg.pipeline.checkpoint.then(|| CheckpointSettings {
                        dir: paths.checkpoint.clone(),
                        every: self.cfg.pipeline.checkpoint_every,
                    }),
                });
                self.settle(shared, index, &paths, &keys, result);
                drop(lock);
            }
        };
        // the first worker runs on this thread, the others (one per further model) beside it
        std::thread::scope(|s| {
            for (w, &provider) in self.models.iter().enumerate().skip(1) {
                let work = &work;
                if let Err(e) = std::thread::Builder::new()
                    .name(format!("mtseg-worker-{w}"))
                    .spawn_scoped(s, move || work(provider))
                {
                    tracing::error!("cannot start worker {w}: {e}; the others take its slides");
                }
            }
            work(self.models[0]);
        });
    }

    /// Takes a slide's lock and prepares its state files. `None` when the slide is skipped
    /// (another process holds it, or finished it since the run started) or its state cannot
    /// be written (reported as failed).
    fn claim(
        &self,
        shared: &Shared<'_>,
        index: usize,
    ) -> Option<(SlideLock, SlideStatePaths, ResultKeys)> {
        let t = Instant::now();
        let cfg = self.cfg;
        let slide = &cfg.input.slides[index];
        let path = &slide.path;
        let paths = SlideStatePaths::of(cfg, slide);
        let state_err = |source| SlideError::State {
            slide: path.clone(),
            source,
        };
        let lock = match try_lock(&paths) {
            Ok(LockAttempt::Held(lock)) => lock,
            Ok(LockAttempt::Busy) => {
                let seconds = t.elapsed().as_secs_f64();
                self.skip(shared, index, SkipReason::InProgressElsewhere, seconds);
                return None;
            }
            Err(e) => {
                self.fail(shared, index, path, &state_err(e));
                return None;
            }
        };
        let keys = ResultKeys::of(cfg, slide, shared.weights_sha256.as_deref());
        if !cfg.output.overwrite {
            // another process may have finished it, or written other outputs, since the check
            match completion(cfg, slide, &keys) {
                Completion::Complete => {
                    let seconds = t.elapsed().as_secs_f64();
                    self.skip(shared, index, SkipReason::Complete, seconds);
                    return None;
                }
                Completion::Absent => {}
                Completion::Differs { record, key, .. } => {
                    let e = std::io::Error::other(format!(
                        "its outputs were written meanwhile with another `{key}` (see {})",
                        record.display()
                    ));
                    self.fail(shared, index, path, &state_err(e));
                    return None;
                }
                Completion::Unrecorded { existing } => {
                    let e = std::io::Error::other(format!(
                        "{} appeared meanwhile, written by something else",
                        existing[0].display()
                    ));
                    self.fail(shared, index, path, &state_err(e));
                    return None;
                }
            }
        }
        remove_leftovers(cfg, slide);
        if let Err(e) = clear_done(&paths).and_then(|()| record_started(&paths, path, &keys)) {
            self.fail(shared, index, path, &state_err(e));
            return None;
        }
        Some((lock, paths, keys))
    }

    /// Records and reports the outcome of a slide.
    fn settle(
        &self,
        shared: &Shared<'_>,
        index: usize,
        paths: &SlideStatePaths,
        keys: &ResultKeys,
        result: Result<SlideSummary, SlideError>,
    ) {
        let path = &self.cfg.input.slides[index].path;
        let result = result.and_then(|s| {
            record_done(
                paths,
                &done_record(path, keys, &s.outputs, s.nuclei, s.wall_s),
            )
            .map(|()| {
                crate::slide_checkpoint::remove(&paths.checkpoint);
                s
            })
            .map_err(|source| SlideError::State {
                slide: path.clone(),
                source,
            })
        });
        match result {
            Ok(s) => {
                tracing::info!(slide = %path.display(), nuclei = s.nuclei, wall_s = s.wall_s, "slide done");
                self.progress.event(&ProgressEvent::SlideFinished {
                    slide: index,
                    summary: s.clone(),
                });
                lock_summary(shared).slides.push(s);
            }
            Err(e) => {
                if !matches!(e, SlideError::Cancelled { .. }) {
                    record_failed(paths, path, &error_chain(&e));
                }
                self.fail(shared, index, path, &e);
            }
        }
    }

    /// Patch mode: the images of `todo` that this process can lock, through one model.
    fn run_patch(&self, shared: &Shared<'_>, todo: &[usize]) {
        let mut claimed = Vec::new();
        for &index in todo {
            if let Some(c) = self.claim(shared, index) {
                claimed.push((index, c));
            }
        }
        if claimed.is_empty() {
            return;
        }
        let images: Vec<SlideInput> = claimed
            .iter()
            .map(|(i, _)| self.cfg.input.slides[*i].clone())
            .collect();
        let capacity = self.cfg.pipeline.queue_capacity.get() as usize;
        let model = LoadedModel::load(self.models[0], capacity);
        let mut report = |k: usize, _: &Path, result: Result<SlideSummary, SlideError>| {
            let (index, (_, paths, keys)) = &claimed[k];
            self.settle(shared, *index, paths, keys, result);
        };
        crate::patch_run::run_patch_images(
            &crate::patch_run::PatchJob {
                cfg: self.cfg,
                images: &images,
                model: &model,
                outputs: self.outputs,
                provenance: &shared.provenance,
                cancel: &self.cancel,
                pool: &shared.pool,
            },
            &mut report,
        );
    }

    fn skip(&self, shared: &Shared<'_>, index: usize, reason: SkipReason, seconds: f64) {
        let path = &self.cfg.input.slides[index].path;
        tracing::info!(slide = %path.display(), ?reason, "slide skipped");
        self.progress.event(&ProgressEvent::SlideSkipped {
            slide: index,
            path: path.clone(),
            reason,
            seconds,
        });
        lock_summary(shared).skipped.push((path.clone(), reason));
    }

    fn fail(&self, shared: &Shared<'_>, index: usize, path: &Path, e: &SlideError) {
        let error = error_chain(e);
        tracing::error!(slide = %path.display(), "{error}");
        self.progress.event(&ProgressEvent::SlideFailed {
            slide: index,
            path: path.to_path_buf(),
            error: error.clone(),
        });
        lock_summary(shared)
            .failed
            .push((path.to_path_buf(), error));
    }
}

fn lock_summary<'s, 'r>(shared: &'s Shared<'r>) -> std::sync::MutexGuard<'s, &'r mut RunSummary> {
    shared
        .summary
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

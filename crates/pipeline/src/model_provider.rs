//! The model of a run: a [`ModelProvider`] says how to build it, and [`LoadedModel`] builds it
//! once, on its own inference thread, and serves every slide of the run through one session per
//! slide.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use mtseg_infer::{
    BatchResult, BatchSender, BatchView, HeadKind, HeadOutputs, HeadSpec, InferError,
    InferenceThread, LoadError, Model, PendingOutputs,
};

use crate::busy_clock::BusyClock;

/// Builds the model on the inference thread (a model need not be `Send`).
pub type ModelFactory = Box<dyn FnOnce() -> Result<Box<dyn Model>, LoadError> + Send>;

/// Says how to build the run's model. The engine asks once per run (once per device), before
/// the first slide, and the model then serves every slide: nothing slide-specific goes into it.
/// (Test models that must know where a patch lies on the slide read it from each batch:
/// [`mtseg_infer::BatchView::boxes`].)
pub trait ModelProvider: Send + Sync {
    /// A factory that loads the model (called on the inference thread).
    ///
    /// # Errors
    /// A [`LoadError`] known before loading (e.g. a missing weights file).
    fn factory(&self) -> Result<ModelFactory, LoadError>;
}

/// The configured model, loaded with libtorch ([`mtseg_infer::load_model`]).
#[cfg(feature = "torch")]
#[derive(Debug, Clone)]
pub struct TorchModelProvider {
    params: mtseg_infer::ModelParams,
}

#[cfg(feature = "torch")]
impl TorchModelProvider {
    /// A provider loading `params`.
    pub fn new(params: mtseg_infer::ModelParams) -> Self {
        Self { params }
    }
}

#[cfg(feature = "torch")]
impl ModelProvider for TorchModelProvider {
    fn factory(&self) -> Result<ModelFactory, LoadError> {
        let params = self.params.clone();
        Ok(Box::new(move || mtseg_infer::load_model(&params)))
    }
}

/// Adds the forward time of a model to a clock.
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
    fn forward_pending(&mut self, batch: BatchView<'_>) -> Result<PendingOutputs, InferError> {
        let t = Instant::now();
        let r = self.inner.forward_pending(batch);
        self.clock.add(t.elapsed());
        r
    }
}

/// The run's model, loaded once on its inference thread, or why it could not be loaded (every
/// slide then fails with that error; it is not retried per slide).
pub(crate) struct LoadedModel {
    thread: Result<InferenceThread, Arc<LoadError>>,
    forward: BusyClock,
}

impl LoadedModel {
    /// Loads the model of `provider` on a new inference thread whose queues hold `capacity`
    /// batches. The model must have `np` and `hv` heads (HoVer-Net post-processing).
    pub(crate) fn load(provider: &dyn ModelProvider, capacity: usize) -> Self {
        let forward = BusyClock::default();
        let clock = forward.clone();
        let thread = provider
            .factory()
            .and_then(|factory| {
                InferenceThread::spawn("mtseg-infer", capacity, move || {
                    factory().map(|inner| Box::new(TimedModel { inner, clock }) as Box<dyn Model>)
                })
            })
            .and_then(|t| check_np_hv(t.heads()).map(|()| t))
            .map_err(Arc::new);
        if let Ok(t) = &thread {
            tracing::info!(
                heads = ?t.heads().iter().map(|h| h.kind.name()).collect::<Vec<_>>(),
                "model loaded"
            );
        }
        Self { thread, forward }
    }

    /// A session for one slide or one list of images.
    pub(crate) fn session(&self) -> Result<(BatchSender, Receiver<BatchResult>), ModelUnavailable> {
        // the load error is shared by every slide that asks
        let t = self
            .thread
            .as_ref()
            .map_err(|e| ModelUnavailable::Load(Arc::clone(e)))?;
        t.session().map_err(ModelUnavailable::Gone)
    }

    /// The model's head kinds, in output order (empty when it did not load).
    pub(crate) fn head_kinds(&self) -> Vec<HeadKind> {
        self.thread
            .as_ref()
            .map(|t| t.heads().iter().map(|h| h.kind).collect())
            .unwrap_or_default()
    }

    /// Seconds spent in the model's forward so far (all sessions).
    pub(crate) fn forward_seconds(&self) -> f64 {
        self.forward.seconds()
    }
}

/// Why a session could not start.
#[derive(Debug)]
pub(crate) enum ModelUnavailable {
    /// The model did not load (the run's one load error).
    Load(Arc<LoadError>),
    /// The inference thread has stopped.
    Gone(InferError),
}

impl ModelUnavailable {
    /// Why, with its causes.
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Load(e) => crate::pipeline_errors::error_chain(e.as_ref()),
            Self::Gone(e) => crate::pipeline_errors::error_chain(e),
        }
    }

    /// The error of `slide`.
    pub(crate) fn for_slide(self, slide: &std::path::Path) -> crate::pipeline_errors::SlideError {
        let slide = slide.to_path_buf();
        match self {
            Self::Load(source) => crate::pipeline_errors::SlideError::Model { slide, source },
            Self::Gone(e) => crate::pipeline_errors::SlideError::Infer {
                slide,
                source: Box::new(e),
            },
        }
    }
}

fn check_np_hv(heads: &[HeadSpec]) -> Result<(), LoadError> {
    let has = |k| heads.iter().any(|h| h.kind == k);
    if has(HeadKind::Np) && has(HeadKind::Hv) {
        return Ok(());
    }
    Err(LoadError::InvalidArchitecture {
        detail: format!(
            "the model's heads are {:?}; HoVer-Net post-processing needs `np` and `hv`",
            heads.iter().map(|h| h.kind.name()).collect::<Vec<_>>()
        ),
    })
}

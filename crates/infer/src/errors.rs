//! Errors of the crate, split by phase: loading a model, running a batch. (Parsing a device or
//! precision fails with [`mtseg_types::ParseError`].)

use std::path::PathBuf;

/// Loading a model failed: the device, the weights file or the TorchScript module is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The weights file could not be read.
    #[error("cannot read weights file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file ends early or its structure is broken.
    #[error("weights file {path} is truncated or corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file is of a kind this crate does not read.
    #[error("weights file {path} is not in a supported format: {detail}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What was found, and what to do.
        detail: String,
    },
    /// A tensor the architecture needs is not in the file.
    #[error(
        "weights file {path} has no tensor '{tensor}' (expected shape {expected:?}) needed by {architecture}{}",
        hint(looks_like.as_deref())
    )]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The state-dict name of the missing tensor.
        tensor: String,
        /// Its expected shape.
        expected: Box<[usize]>,
        /// The architecture that was asked for.
        architecture: Box<str>,
        /// A known architecture that the file does match, if any.
        looks_like: Option<Box<str>>,
    },
    /// A tensor has another shape than the architecture needs.
    #[error(
        "tensor '{tensor}' in weights file {path} has shape {found:?}, but {architecture} needs {expected:?}{}",
        hint(looks_like.as_deref())
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The state-dict name of the tensor.
        tensor: String,
        /// The shape the architecture needs.
        expected: Box<[usize]>,
        /// The shape in the file.
        found: Box<[usize]>,
        /// The architecture that was asked for.
        architecture: Box<str>,
        /// A known architecture that the file does match, if any.
        looks_like: Option<Box<str>>,
    },
    /// The file has a tensor the architecture does not use (TIAToolbox loads with `strict=True`).
    #[error("weights file {path} has tensor '{tensor}' that {architecture} does not use{}", hint(looks_like.as_deref()))]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The state-dict name of the tensor.
        tensor: String,
        /// The architecture that was asked for.
        architecture: Box<str>,
        /// A known architecture that the file does match, if any.
        looks_like: Option<Box<str>>,
    },
    /// A tensor has an element type that cannot be converted to float32.
    #[error("tensor '{tensor}' in weights file {path} has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The dtype as the file names it.
        dtype: String,
    },
    /// CUDA was asked for but this machine (or this libtorch) has no such CUDA device.
    #[error(
        "device {requested} requested, but {available} CUDA device(s) are available{}; use device = \"cpu\" or \"auto\"",
        if *.libtorch_has_cuda { "" } else { " (this build of libtorch has no CUDA support)" }
    )]
    CudaUnavailable {
        /// The device as asked for, e.g. "cuda:0".
        requested: String,
        /// How many CUDA devices libtorch sees.
        available: usize,
        /// Whether libtorch was built with CUDA at all.
        libtorch_has_cuda: bool,
    },
    /// A reduced precision was asked for on a device that does not support it here: fp16 on a
    /// CPU (libtorch's CPU fp16 convolutions measured about 2x slower than fp32; bf16 is the
    /// reduced precision that runs on a CPU).
    #[error(
        "precision {precision} is only supported on CUDA devices, not on {device} (there it is slower than fp32); use precision = \"bf16\" or \"fp32\""
    )]
    PrecisionNeedsCuda {
        /// The precision asked for.
        precision: String,
        /// The device it was asked for on.
        device: String,
    },
    /// The architecture parameters are impossible (e.g. zero classes).
    #[error("invalid architecture: {detail}")]
    InvalidArchitecture {
        /// What is wrong.
        detail: String,
    },
    /// The model needs libtorch, but the crate was built without the `torch` feature.
    #[error("mtseg-infer was built without the `torch` feature: cannot run {what}")]
    TorchDisabled {
        /// What was asked for.
        what: String,
    },
    /// libtorch refused an operation while loading or checking the model.
    #[error("libtorch error while loading {path}: {detail}")]
    Torch {
        /// The file being loaded.
        path: PathBuf,
        /// libtorch's message.
        detail: String,
    },
    /// The inference thread could not be started or stopped before it reported.
    #[error("inference thread failed before the model was loaded: {detail}")]
    Thread {
        /// What happened.
        detail: String,
    },
}

impl From<mtseg_types::InvalidArchitecture> for LoadError {
    fn from(e: mtseg_types::InvalidArchitecture) -> Self {
        Self::InvalidArchitecture { detail: e.detail }
    }
}

fn hint(looks_like: Option<&str>) -> String {
    match looks_like {
        Some(a) => format!(" (the file matches {a} instead)"),
        None => String::new(),
    }
}

/// Running a batch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// The pixel buffer does not have n × h × w × 3 bytes.
    #[error("batch of {n} patches of {height}x{width} RGB needs {expected} bytes, got {found}")]
    BadBufferLength {
        /// Patches in the batch.
        n: usize,
        /// Patch height.
        height: usize,
        /// Patch width.
        width: usize,
        /// n × h × w × 3.
        expected: usize,
        /// The buffer length.
        found: usize,
    },
    /// The model's output does not hold what the batch needs (a head missing, too few patches,
    /// another size), or names a patch the batch did not have.
    #[error("model output `{head}`, patch {patch}: {detail}")]
    BadOutput {
        /// The head (or `indices` for the patch list).
        head: String,
        /// The patch index concerned (the first one without values).
        patch: u64,
        /// What is wrong.
        detail: String,
    },
    /// A batch says where its patches come from, but not for each patch.
    #[error("batch has {found} origins for {n} patches (one box per patch, or none)")]
    BadOrigins {
        /// Patches in the batch.
        n: usize,
        /// Origins given.
        found: usize,
    },
    /// The number of patch indices differs from the number of patches.
    #[error("batch has {n} patches but {indices} patch indices")]
    BadIndexCount {
        /// Patches in the batch.
        n: usize,
        /// Indices given.
        indices: usize,
    },
    /// The patch size is not the model's input size.
    #[error("model takes {expected}x{expected} patches, got {height}x{width}")]
    WrongPatchSize {
        /// The model's input size.
        expected: usize,
        /// Patch height.
        height: usize,
        /// Patch width.
        width: usize,
    },
    /// A head came back with another shape than declared.
    #[error("head {head} came back with shape {found:?}, expected {expected:?}")]
    WrongOutputShape {
        /// The head.
        head: String,
        /// Declared NCHW shape.
        expected: Vec<i64>,
        /// Returned shape.
        found: Vec<i64>,
    },
    /// libtorch failed during the forward.
    #[error("libtorch error during forward: {detail}")]
    Torch {
        /// libtorch's message.
        detail: String,
    },
    /// The inference thread stopped (its model failed to load, it panicked, or it was shut down).
    #[error("inference thread is gone: {detail}")]
    ThreadGone {
        /// What is known about why.
        detail: String,
    },
}

//! Training and evaluation of the small HoVer-Net shipped in `models/`: HoVer-Net fast with every
//! channel count divided by 8 ([`mtseg_infer::Architecture::HoVerNetFastSlim`]), trained from
//! scratch on histolytics' `hgsc_nest.jpg` (right two thirds) and scored on the held-out left
//! third.
//!
//! # Where it sits
//!
//! ```text
//! data/hgsc_nest.jpg + masks --(dataset, patch_sampler)--> batches --(trainer, torch)--> weights
//! weights --(mtseg_infer::load_model)--> Model --(tiled_inference)--> np/hv/tp canvas
//!   --(mtseg_postproc::postprocess_nuclei)--> instances --(mtseg_test_models)--> F1, AJI
//! ```
//! The weights are a `.safetensors` in TIAToolbox's state-dict layout, so the pipeline loads the
//! demo model through the same native loader as a TIAToolbox HoVer-Net. The evaluation runs any
//! [`mtseg_infer::Model`] and needs no libtorch itself.
//!
//! # Brief overview
//!
//! - [`AnnotatedImage`], [`HeldOutSplit`], [`CLASS_NAMES`], [`NATIVE_MPP`]: the data and the split
//!   (columns `0..500` held out).
//! - [`predict_image`]: TIAToolbox's patch grid over an image, batched forwards, one canvas.
//! - [`evaluate`] / [`EvalReport`]: post-processing and scores (detection F1 and AJI as
//!   `mtseg_test_models` defines them, type accuracy of the matched nuclei).
//! - With the `torch` feature: [`TrainableHoVerNet`] (the network in `tch`, TIAToolbox's names),
//!   [`hovernet_losses`], [`PatchSampler`], [`train`] / [`TrainConfig`], [`save_safetensors`] /
//!   [`load_into`], and the `mtseg-train` binary (`train`, `eval`, `bench`).
//!
//! # Example
//!
//! ```
//! use mtseg_train::{AnnotatedImage, HELD_OUT_COLUMNS, HeldOutSplit};
//!
//! // a 2 x 600 image with one nucleus per 100 columns
//! let (height, width) = (2, 600);
//! let image = AnnotatedImage {
//!     height,
//!     width,
//!     rgb: vec![200; height * width * 3],
//!     labels: (0..height * width).map(|i| (i % width / 100 + 1) as i32).collect(),
//!     types: vec![3; height * width],
//! };
//! let split = HeldOutSplit::new(&image)?;
//! assert_eq!(HELD_OUT_COLUMNS, 500);
//! assert_eq!((split.held_out.width, split.train.width), (500, 100));
//! assert_eq!((split.held_out.instance_count(), split.train.instance_count()), (5, 1));
//! // with a model: mtseg_train::evaluate(model, &split.held_out, &params, 8)
//! # Ok::<(), mtseg_train::TrainError>(())
//! ```
//!
//! # Choices a reader might question
//!
//! - **The training graph is separate from `mtseg_infer`'s.** The inference model folds BatchNorm
//!   and holds no gradients; training needs `tch::nn` variables and BN in training mode. A test
//!   (`tests/shipped_model.rs`) checks that the shipped weights give the same outputs through
//!   both graphs.
//! - **Width / 8, not a new architecture.** The reduced network keeps TIAToolbox's layers, names
//!   and 256 → 164 geometry, so every pipeline path (grid, stitching, post-processing) is the one
//!   a real HoVer-Net takes; only the channel counts shrink (about 64x fewer multiply-adds; on a
//!   2-core CPU about 157 ms per 256² patch against 2.3 s at full width).
//! - **No pixel of the held-out third is seen in training**, not even as input context: training
//!   patches are padded with 255 outside the right two thirds, as TIAToolbox pads out-of-slide
//!   pixels, and the held-out third is evaluated as an image of its own.
//!
//! # Logging
//!
//! None from the library; the binary prints progress to stderr.

#![cfg_attr(not(feature = "torch"), forbid(unsafe_code))]

mod dataset;
mod heldout_eval;
mod instance_metrics;
mod rng;
mod tiled_inference;

#[cfg(feature = "torch")]
mod losses;
#[cfg(feature = "torch")]
mod patch_sampler;
#[cfg(feature = "torch")]
mod trainable_hovernet;
#[cfg(feature = "torch")]
mod trainer;
#[cfg(feature = "torch")]
mod weights_export;

use std::path::PathBuf;

pub use dataset::{AnnotatedImage, CLASS_NAMES, HELD_OUT_COLUMNS, HeldOutSplit, NATIVE_MPP};
pub use heldout_eval::{DETECTION_IOU, EvalReport, evaluate};
pub use rng::SplitMix64;
pub use tiled_inference::{CanvasMaps, predict_image};

#[cfg(feature = "torch")]
pub use losses::{LossTerms, Targets, hovernet_losses};
#[cfg(feature = "torch")]
pub use patch_sampler::{ColourJitter, INPUT_SIZE, OUTPUT_SIZE, PatchSampler};
#[cfg(feature = "torch")]
pub use trainable_hovernet::{HeadLogits, TrainableHoVerNet};
#[cfg(feature = "torch")]
pub use trainer::{StepLog, TrainConfig, TrainedModel, train};
#[cfg(feature = "torch")]
pub use weights_export::{architecture, load_into, save_safetensors};

/// Errors of reading data, running models and writing weights.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file has unexpected content.
    #[error("{path}: {detail}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The histolytics masks could not be read.
    #[error(transparent)]
    Labels(#[from] mtseg_test_models::LabelError),
    /// Loading a model failed.
    #[error(transparent)]
    Load(#[from] mtseg_infer::LoadError),
    /// A forward pass failed.
    #[error(transparent)]
    Infer(#[from] mtseg_infer::InferError),
    /// Post-processing failed.
    #[error(transparent)]
    Postproc(#[from] mtseg_postproc::PostprocError),
    /// libtorch failed while training.
    #[cfg(feature = "torch")]
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

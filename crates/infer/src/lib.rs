//! Inference for mtseg-pipeline: the [`Model`] trait and head contract, native HoVer-Net and
//! HoVer-Net+ in libtorch (through `tch`), a TorchScript backend, and one inference thread per
//! device.
//!
//! # Where it sits
//!
//! ```text
//! tiling --(patch batches: n × h × w × 3 u8, NHWC, + patch indices)--> infer
//! infer  --(HeadOutputs: per head a Vec<f32> NHWC + shape, + the patch indices)--> stitch
//! ```
//! The `pipeline` crate turns the run config's `[model]` table into [`ModelParams`], starts an
//! [`InferenceThread`] per device and moves batches in and [`HeadOutputs`] out through bounded
//! channels. Of the mtseg crates it depends only on `mtseg-types`, which defines the
//! architecture, heads, device and precision this crate loads and runs (re-exported here).
//!
//! # Brief overview
//!
//! - [`HeadKind`], [`HeadSpec`] (from `mtseg-types`), [`HeadOutputs`]: the contract. Values are
//!   those of TIAToolbox's `infer_batch`: NHWC float32; `np` = softmax channel 1, `hv` raw,
//!   `tp` / `ls` = argmax as float.
//! - [`Architecture`], [`Device`], [`Precision`] (from `mtseg-types`), [`ForwardOptions`],
//!   [`ModelParams`]: what to load. [`Architecture::HoVerNetFastSlim`] is HoVer-Net fast with every
//!   channel count divided by 2, 4 or 8 (same tensor names): the architecture of the small demo
//!   model in `models/`. This crate adds what needs libtorch or the weights: the state-dict
//!   layout of each architecture, loading, BatchNorm folding and the forward.
//! - [`WeightSet`]: TIAToolbox `.pth` (a `torch.save`d state dict, possibly nested) and
//!   `.safetensors` files, read in pure Rust and checked tensor by tensor against the architecture.
//! - [`Model`] and [`InferenceThread`]: a batched forward, and the thread that runs it.
//! - With the `torch` feature: [`load_model`], [`HoVerNet`] (native, optional BatchNorm folding)
//!   and [`TorchScriptModel`].
//!
//! # Example
//!
//! ```
//! use mtseg_infer::{Architecture, Device, HeadKind, ModelParams, Precision};
//!
//! let arch = Architecture::HoVerNetFast { num_types: Some(6) };
//! let mut params = ModelParams::new(arch, "models/hovernet_fast-pannuke.pth");
//! params.device = "cpu".parse::<Device>()?;
//! params.precision = "fp32".parse::<Precision>()?;
//! let heads: Vec<_> = params.architecture.heads().iter().map(|h| h.kind).collect();
//! assert_eq!(heads, [HeadKind::Np, HeadKind::Hv, HeadKind::Tp]);
//! assert_eq!(params.architecture.output_size(), 164);
//! assert!("cuda:x".parse::<Device>().is_err());
//! # Ok::<(), mtseg_infer::ParseError>(())
//! ```
//!
//! # Choices a reader might question
//!
//! - The `.pth` reader is our own (the `zip` crate for the archive and a small pickle machine,
//!   `weights_pth.rs`): libtorch's C++ API cannot read Python `torch.save` pickles, and reading in
//!   Rust lets weight files be checked (names, shapes, architecture) without libtorch.
//! - BatchNorm folding is on by default: a BN that directly follows a convolution is merged into
//!   it at load time (computed in f64). Pre-activation BNs (after an addition or a concatenation)
//!   stay. Results differ from TIAToolbox by float rounding only (see the parity tests).
//! - `tp` / `ls` are computed as `argmax(softmax(x))`, exactly as TIAToolbox does, so that ties
//!   created by softmax rounding resolve the same way.
//! - Speed knobs ([`ForwardOptions`]) change results by float rounding only. With
//!   [`ForwardOptions::reference`] (no folding, no merging, NCHW) the forward is bit-identical to
//!   TIAToolbox's on CPU; the defaults (BN folding, channels-last memory) are 1.67x faster than
//!   TIAToolbox's PyTorch-eager `infer_batch` on a 2-core CPU (`benches/hovernet_forward.rs`)
//!   and stay within 1e-4 of it. Merging the decoder's first convolutions of all heads is
//!   available but off (no measurable gain).
//! - bf16 runs on a CPU too (`precision = "bf16"`: weights and inputs cast, oneDNN's bf16
//!   convolutions, outputs back to f32), tested against fp32 in `tests/bf16_cpu.rs`; it is not
//!   the default (on the demo model np moves by up to 0.45 and 0.8% of pixels cross np = 0.5;
//!   nuclei F1 vs fp32 to be measured), nor faster without AMX (0.75x fp32 on an avx512_bf16
//!   CPU). fp16 on a CPU is refused: its convolutions measured ~2x slower than fp32. No GPU was available while this crate was written: the CUDA paths (device resolution,
//!   bf16 / fp16 there) are implemented but only their refusal on a CPU-only machine is tested.
//!
//! # Logging
//!
//! `debug!` per batch forward (patch count, milliseconds) and per model load; `info!` for the
//! device chosen by `auto`. Never prints.

#![cfg_attr(not(feature = "torch"), forbid(unsafe_code))]

#[cfg(feature = "torch")]
mod device;
mod errors;
mod head_values;
mod heads;
mod hovernet_spec;
mod inference_thread;
mod model;
mod params;
mod raw_tensor;
mod weights;
mod weights_pth;
mod weights_safetensors;

#[cfg(feature = "torch")]
mod head_transform;
#[cfg(feature = "torch")]
mod hovernet;
#[cfg(feature = "torch")]
mod hovernet_blocks;
#[cfg(feature = "torch")]
mod load;
#[cfg(feature = "torch")]
mod torchscript;

pub use errors::{InferError, LoadError};
pub use heads::{HeadOutputs, HeadTensor, PendingOutputs};
pub use inference_thread::{BatchResult, BatchSender, InferenceThread};
pub use model::{BatchView, Model};
pub use mtseg_types::{Architecture, Device, HeadKind, HeadSpec, ParseError, Precision};
pub use mtseg_types::{PatchBatch, PatchBox};
pub use params::{ForwardOptions, ModelParams};
pub use raw_tensor::RawTensor;
pub use weights::WeightSet;

#[cfg(feature = "torch")]
pub use device::cuda_device_count;
#[cfg(feature = "torch")]
pub use hovernet::HoVerNet;
#[cfg(feature = "torch")]
pub use load::load_model;
#[cfg(feature = "torch")]
pub use torchscript::TorchScriptModel;

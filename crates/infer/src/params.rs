//! What to load and how to run it: the parameters the `pipeline` crate fills from the run config.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use mtseg_types::{Architecture, Device, Precision};

/// Knobs that change speed, never results beyond float rounding. Defaults are the fastest
/// measured on CPU (`benches/hovernet_forward.rs`): folding on, channels-last on, head
/// convolutions not merged, libtorch's default thread count (one per physical core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardOptions {
    /// Fold each BatchNorm that directly follows a convolution into that convolution at load time
    /// (native models only). Default: true.
    pub fold_batch_norm: bool,
    /// Run convolutions on channels-last (NHWC-strided) tensors. Default: true (about 1.4x faster
    /// than NCHW on CPU with oneDNN).
    pub channels_last: bool,
    /// Compute the decoder's first convolution of all heads as one convolution. Default: false
    /// (no measurable gain on CPU: 3.92 s vs 3.85 s per 2-patch batch, within noise).
    pub merge_head_convs: bool,
    /// libtorch intra-op threads; `None` keeps libtorch's default (one per core). Process-wide.
    pub intra_op_threads: Option<NonZeroUsize>,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            fold_batch_norm: true,
            channels_last: true,
            merge_head_convs: false,
            intra_op_threads: None,
        }
    }
}

impl ForwardOptions {
    /// The plain, layer-for-layer TIAToolbox forward (no folding, no merging, NCHW).
    #[must_use]
    pub fn reference() -> Self {
        Self {
            fold_batch_norm: false,
            channels_last: false,
            merge_head_convs: false,
            intra_op_threads: None,
        }
    }
}

/// Everything needed to load a model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelParams {
    /// The network.
    pub architecture: Architecture,
    /// Weights: TIAToolbox `.pth`, `.safetensors`, or the TorchScript `.pt` for
    /// [`Architecture::TorchScript`].
    pub weights: PathBuf,
    /// Where to run. Default [`Device::Auto`].
    pub device: Device,
    /// Float precision. Default [`Precision::Fp32`].
    pub precision: Precision,
    /// Speed knobs that do not change results.
    pub options: ForwardOptions,
}

impl ModelParams {
    /// Parameters with the defaults: device auto, fp32, default [`ForwardOptions`].
    #[must_use]
    pub fn new(architecture: Architecture, weights: impl Into<PathBuf>) -> Self {
        Self {
            architecture,
            weights: weights.into(),
            device: Device::Auto,
            precision: Precision::Fp32,
            options: ForwardOptions::default(),
        }
    }
}

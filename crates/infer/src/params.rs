//! What to load and how to run it: the parameters the `pipeline` crate fills from the run config.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use crate::device::{Device, Precision};
use crate::errors::LoadError;
use crate::heads::{HeadSpec, hovernet_heads};
use crate::hovernet_spec::WIDTH_DIVISORS;

/// The network to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Architecture {
    /// TIAToolbox `HoVerNet(mode="fast")`: 256² in, 164² out; a type head when `num_types` is set.
    HoVerNetFast {
        /// Number of nucleus types (tp head), or none for a model without a type head.
        num_types: Option<u32>,
    },
    /// TIAToolbox's `HoVerNet(mode="fast")` with every channel count divided by `width_divisor`
    /// (2, 4 or 8): the same layers, depth, kernels, crops, tensor names and 256² → 164²
    /// geometry, about `width_divisor²` times fewer operations. For small models trained for a
    /// task (the demo model in `models/` is width / 8); `width_divisor` 1 is [`Self::HoVerNetFast`],
    /// which [`Architecture::hovernet_fast`] returns for it.
    HoVerNetFastSlim {
        /// Number of nucleus types (tp head), or none for a model without a type head.
        num_types: Option<u32>,
        /// Divisor of every channel count: 2, 4 or 8.
        width_divisor: u32,
    },
    /// TIAToolbox `HoVerNet(mode="original")`: 270² in, 80² out.
    HoVerNetOriginal {
        /// Number of nucleus types (tp head), or none for a model without a type head.
        num_types: Option<u32>,
    },
    /// TIAToolbox `HoVerNetPlus` (always fast mode): 256² in, 164² out, heads np, hv, tp, ls.
    HoVerNetPlus {
        /// Number of nucleus types.
        num_types: u32,
        /// Number of tissue layer classes.
        num_layers: u32,
    },
    /// A `torch.jit.trace` / `torch.jit.script` export: takes NCHW float32 in 0..255 (the
    /// module divides by 255 itself, as TIAToolbox models do) and returns the raw head logits,
    /// NCHW, as a tuple/list in the order of `heads`, or as a dict keyed by head name.
    TorchScript {
        /// The heads, in output order, with their raw channel counts.
        heads: Vec<HeadSpec>,
        /// Input patch side in pixels.
        input_size: u32,
        /// Output side in pixels.
        output_size: u32,
    },
}

impl Architecture {
    /// HoVer-Net fast with channels divided by `width_divisor`: [`Self::HoVerNetFast`] for 1,
    /// [`Self::HoVerNetFastSlim`] otherwise ([`Architecture::validate`] accepts 2, 4 and 8).
    #[must_use]
    pub fn hovernet_fast(num_types: Option<u32>, width_divisor: u32) -> Self {
        if width_divisor == 1 {
            Self::HoVerNetFast { num_types }
        } else {
            Self::HoVerNetFastSlim {
                num_types,
                width_divisor,
            }
        }
    }

    /// The heads in TIAToolbox's `infer_batch` order (= the order of [`crate::HeadOutputs::heads`]).
    #[must_use]
    pub fn heads(&self) -> Vec<HeadSpec> {
        match self {
            Self::HoVerNetFast { num_types }
            | Self::HoVerNetFastSlim { num_types, .. }
            | Self::HoVerNetOriginal { num_types } => hovernet_heads(*num_types, None),
            Self::HoVerNetPlus {
                num_types,
                num_layers,
            } => hovernet_heads(Some(*num_types), Some(*num_layers)),
            Self::TorchScript { heads, .. } => heads.clone(),
        }
    }

    /// Input patch side in pixels (256 fast / HoVer-Net+, 270 original).
    #[must_use]
    pub fn input_size(&self) -> u32 {
        match self {
            Self::HoVerNetFast { .. }
            | Self::HoVerNetFastSlim { .. }
            | Self::HoVerNetPlus { .. } => 256,
            Self::HoVerNetOriginal { .. } => 270,
            Self::TorchScript { input_size, .. } => *input_size,
        }
    }

    /// Output side in pixels (164 fast / HoVer-Net+, 80 original).
    #[must_use]
    pub fn output_size(&self) -> u32 {
        match self {
            Self::HoVerNetFast { .. }
            | Self::HoVerNetFastSlim { .. }
            | Self::HoVerNetPlus { .. } => 164,
            Self::HoVerNetOriginal { .. } => 80,
            Self::TorchScript { output_size, .. } => *output_size,
        }
    }

    /// Checks the parameters (class counts ≥ 1, width divisor 2, 4 or 8, heads unique, sizes
    /// non-zero).
    ///
    /// # Errors
    /// [`LoadError::InvalidArchitecture`] naming the bad value.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |detail: String| Err(LoadError::InvalidArchitecture { detail });
        match self {
            Self::HoVerNetFast { num_types: Some(0) }
            | Self::HoVerNetFastSlim {
                num_types: Some(0), ..
            }
            | Self::HoVerNetOriginal { num_types: Some(0) } => {
                bad(format!("{self}: num_types must be at least 1"))
            }
            Self::HoVerNetFastSlim { width_divisor, .. }
                if !WIDTH_DIVISORS.contains(width_divisor) =>
            {
                bad(format!(
                    "{self}: width_divisor must be one of {WIDTH_DIVISORS:?} (1 is hovernet fast)"
                ))
            }
            Self::HoVerNetPlus {
                num_types,
                num_layers,
            } if *num_types == 0 || *num_layers == 0 => bad(format!(
                "{self}: num_types and num_layers must be at least 1"
            )),
            Self::TorchScript {
                heads,
                input_size,
                output_size,
            } => {
                if heads.is_empty() {
                    return bad("torchscript: no heads declared".into());
                }
                if *input_size == 0 || *output_size == 0 {
                    return bad(format!(
                        "torchscript: input_size {input_size} and output_size {output_size} must be > 0"
                    ));
                }
                for (i, h) in heads.iter().enumerate() {
                    if heads[..i].iter().any(|o| o.kind == h.kind) {
                        return bad(format!("torchscript: head {} declared twice", h.kind));
                    }
                    let min = if matches!(h.kind, crate::HeadKind::Np | crate::HeadKind::Hv) {
                        2
                    } else {
                        1
                    };
                    if h.raw_channels < min
                        || (matches!(h.kind, crate::HeadKind::Np | crate::HeadKind::Hv)
                            && h.raw_channels != 2)
                    {
                        return bad(format!(
                            "torchscript: head {} cannot have {} channels",
                            h.kind, h.raw_channels
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types =
            |t: &Option<u32>| t.map_or_else(|| "no type head".to_owned(), |t| format!("{t} types"));
        match self {
            Self::HoVerNetFast { num_types } => write!(f, "hovernet fast ({})", types(num_types)),
            Self::HoVerNetFastSlim {
                num_types,
                width_divisor,
            } => write!(
                f,
                "hovernet fast, width / {width_divisor} ({})",
                types(num_types)
            ),
            Self::HoVerNetOriginal { num_types } => {
                write!(f, "hovernet original ({})", types(num_types))
            }
            Self::HoVerNetPlus {
                num_types,
                num_layers,
            } => {
                write!(f, "hovernetplus ({num_types} types, {num_layers} layers)")
            }
            Self::TorchScript {
                heads,
                input_size,
                output_size,
            } => {
                let names: Vec<_> = heads.iter().map(|h| h.kind.name()).collect();
                write!(
                    f,
                    "torchscript ({} heads, {input_size} -> {output_size})",
                    names.join(",")
                )
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeadKind;

    #[test]
    fn sizes_and_heads() {
        let a = Architecture::HoVerNetFast { num_types: Some(6) };
        assert_eq!((a.input_size(), a.output_size()), (256, 164));
        let kinds: Vec<_> = a.heads().iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [HeadKind::Np, HeadKind::Hv, HeadKind::Tp]);
        let o = Architecture::HoVerNetOriginal { num_types: None };
        assert_eq!(
            (o.input_size(), o.output_size(), o.heads().len()),
            (270, 80, 2)
        );
        let p = Architecture::HoVerNetPlus {
            num_types: 3,
            num_layers: 5,
        };
        assert_eq!(
            p.heads().last().map(|h| (h.kind, h.raw_channels)),
            Some((HeadKind::Ls, 5))
        );
        let s = Architecture::hovernet_fast(Some(4), 8);
        assert_eq!(
            s,
            Architecture::HoVerNetFastSlim {
                num_types: Some(4),
                width_divisor: 8
            }
        );
        assert_eq!(
            (s.input_size(), s.output_size(), s.heads().len()),
            (256, 164, 3)
        );
        assert_eq!(s.to_string(), "hovernet fast, width / 8 (4 types)");
        assert_eq!(
            Architecture::hovernet_fast(None, 1),
            Architecture::HoVerNetFast { num_types: None }
        );
    }

    #[test]
    fn validation() {
        assert!(
            Architecture::HoVerNetFast { num_types: Some(0) }
                .validate()
                .is_err()
        );
        assert!(
            Architecture::HoVerNetPlus {
                num_types: 3,
                num_layers: 0
            }
            .validate()
            .is_err()
        );
        for (d, ok) in [
            (0, false),
            (1, false),
            (2, true),
            (4, true),
            (8, true),
            (16, false),
        ] {
            let a = Architecture::HoVerNetFastSlim {
                num_types: Some(4),
                width_divisor: d,
            };
            assert_eq!(a.validate().is_ok(), ok, "width_divisor {d}");
        }
        let e = Architecture::hovernet_fast(Some(4), 3)
            .validate()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("width_divisor must be one of [2, 4, 8]"),
            "{e}"
        );
        assert!(Architecture::hovernet_fast(Some(0), 8).validate().is_err());
        let ts = |heads| Architecture::TorchScript {
            heads,
            input_size: 256,
            output_size: 164,
        };
        assert!(ts(vec![]).validate().is_err());
        let np = HeadSpec::new(HeadKind::Np, 2);
        assert!(
            ts(vec![np, np])
                .validate()
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(ts(vec![HeadSpec::new(HeadKind::Hv, 3)]).validate().is_err());
        assert!(
            ts(vec![np, HeadSpec::new(HeadKind::Tp, 6)])
                .validate()
                .is_ok()
        );
    }
}

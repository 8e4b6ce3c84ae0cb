//! [`Architecture`]: the network that turns patches into head outputs, with its heads, patch
//! sizes and width divisor.

use std::fmt;

use crate::{HeadKind, HeadSpec, Size2};

/// The network to run.
///
/// The run config resolves `[model]` into one of these (`io-config`); `infer` builds or loads
/// it. Native HoVer-Net flavours have fixed patch sizes ([`Architecture::native_patch_sizes`]);
/// a TorchScript module declares its own. Not `#[non_exhaustive]`: a new network must be
/// handled by every crate that matches on it (config names, layouts, loaders).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// Architecture parameters that cannot describe a network (zero classes, a width divisor that
/// does not divide the channels, a TorchScript head declared twice, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid architecture: {detail}")]
pub struct InvalidArchitecture {
    /// What is wrong, naming the architecture and the bad value.
    pub detail: String,
}

impl Architecture {
    /// The width divisors HoVer-Net fast accepts: every channel count (and the dense units'
    /// 32-channel, 4-group convolution) stays a whole number of channels per group. 1 is the
    /// published network ([`Self::HoVerNetFast`]), the others [`Self::HoVerNetFastSlim`].
    pub const WIDTH_DIVISORS: [u32; 4] = [1, 2, 4, 8];

    /// The architecture names of the run config, in the order of the variants.
    pub const NAMES: [&'static str; 4] = [
        "hovernet-fast",
        "hovernet-original",
        "hovernetplus",
        "torchscript",
    ];

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

    /// The run config's name of the architecture (one of [`Architecture::NAMES`]; a slim
    /// network is "hovernet-fast" with a width divisor).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::HoVerNetFast { .. } | Self::HoVerNetFastSlim { .. } => Self::NAMES[0],
            Self::HoVerNetOriginal { .. } => Self::NAMES[1],
            Self::HoVerNetPlus { .. } => Self::NAMES[2],
            Self::TorchScript { .. } => Self::NAMES[3],
        }
    }

    /// The heads in TIAToolbox's `infer_batch` order (np, hv[, tp][, ls]).
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

    /// Whether the model returns head `kind`.
    #[must_use]
    pub fn has_head(&self, kind: HeadKind) -> bool {
        self.heads().iter().any(|h| h.kind == kind)
    }

    /// The nucleus type count (the tp head's channels), if the model has a type head.
    #[must_use]
    pub fn num_types(&self) -> Option<u32> {
        self.heads()
            .iter()
            .find(|h| h.kind == HeadKind::Tp)
            .map(|h| h.raw_channels)
    }

    /// The (input, output) patch side a native network is built for: (256, 164) for fast,
    /// slim and plus, (270, 80) for original; `None` for TorchScript (it declares its own).
    #[must_use]
    pub fn native_patch_sizes(&self) -> Option<(u32, u32)> {
        match self {
            Self::HoVerNetFast { .. }
            | Self::HoVerNetFastSlim { .. }
            | Self::HoVerNetPlus { .. } => Some((256, 164)),
            Self::HoVerNetOriginal { .. } => Some((270, 80)),
            Self::TorchScript { .. } => None,
        }
    }

    /// Input patch side in pixels (256 fast / HoVer-Net+, 270 original).
    #[must_use]
    pub fn input_size(&self) -> u32 {
        match self {
            Self::TorchScript { input_size, .. } => *input_size,
            native => native.native_patch_sizes().map_or(0, |(i, _)| i),
        }
    }

    /// Output side in pixels (164 fast / HoVer-Net+, 80 original).
    #[must_use]
    pub fn output_size(&self) -> u32 {
        match self {
            Self::TorchScript { output_size, .. } => *output_size,
            native => native.native_patch_sizes().map_or(0, |(_, o)| o),
        }
    }

    /// (input, output) patch sizes, square.
    #[must_use]
    pub fn patch_sizes(&self) -> (Size2, Size2) {
        (
            Size2::square(u64::from(self.input_size())),
            Size2::square(u64::from(self.output_size())),
        )
    }

    /// The divisor of every channel count: 1 except for [`Self::HoVerNetFastSlim`].
    #[must_use]
    pub fn width_divisor(&self) -> u32 {
        match self {
            Self::HoVerNetFastSlim { width_divisor, .. } => *width_divisor,
            _ => 1,
        }
    }

    /// Checks the parameters: class counts ≥ 1, a slim width divisor of 2, 4 or 8, TorchScript
    /// heads declared once each with np and hv at 2 raw channels and tp / ls at ≥ 1, and
    /// non-zero TorchScript sizes with the output no larger than the input.
    ///
    /// # Errors
    /// [`InvalidArchitecture`] naming the architecture and the bad value.
    pub fn validate(&self) -> Result<(), InvalidArchitecture> {
        let bad = |detail: String| Err(InvalidArchitecture { detail });
        match self {
            Self::HoVerNetFast { num_types: Some(0) }
            | Self::HoVerNetFastSlim {
                num_types: Some(0), ..
            }
            | Self::HoVerNetOriginal { num_types: Some(0) } => {
                bad(format!("{self}: num_types must be at least 1"))
            }
            Self::HoVerNetFastSlim { width_divisor, .. }
                if *width_divisor == 1 || !Self::WIDTH_DIVISORS.contains(width_divisor) =>
            {
                bad(format!(
                    "{self}: width_divisor must be one of {:?} (1 is hovernet fast)",
                    &Self::WIDTH_DIVISORS[1..]
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
                if output_size > input_size {
                    return bad(format!(
                        "torchscript: output_size {output_size} is larger than input_size {input_size}"
                    ));
                }
                for (i, h) in heads.iter().enumerate() {
                    if heads[..i].iter().any(|o| o.kind == h.kind) {
                        return bad(format!("torchscript: head {} declared twice", h.kind));
                    }
                    let fits = match HeadSpec::required_raw_channels(h.kind) {
                        Some(n) => h.raw_channels == n,
                        None => h.raw_channels >= 1,
                    };
                    if !fits {
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

/// The heads TIAToolbox returns, in its order, for a HoVer-Net-style model.
fn hovernet_heads(num_types: Option<u32>, num_layers: Option<u32>) -> Vec<HeadSpec> {
    let mut heads = vec![
        HeadSpec::new(HeadKind::Np, 2),
        HeadSpec::new(HeadKind::Hv, 2),
    ];
    if let Some(t) = num_types {
        heads.push(HeadSpec::new(HeadKind::Tp, t));
    }
    if let Some(l) = num_layers {
        heads.push(HeadSpec::new(HeadKind::Ls, l));
    }
    heads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_heads() {
        let a = Architecture::HoVerNetFast { num_types: Some(6) };
        assert_eq!((a.input_size(), a.output_size()), (256, 164));
        assert_eq!(a.native_patch_sizes(), Some((256, 164)));
        let kinds: Vec<_> = a.heads().iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [HeadKind::Np, HeadKind::Hv, HeadKind::Tp]);
        assert_eq!(a.num_types(), Some(6));
        let o = Architecture::HoVerNetOriginal { num_types: None };
        assert_eq!(
            (o.input_size(), o.output_size(), o.heads().len()),
            (270, 80, 2)
        );
        assert_eq!(o.num_types(), None);
        assert_eq!(o.name(), "hovernet-original");
        let p = Architecture::HoVerNetPlus {
            num_types: 3,
            num_layers: 5,
        };
        assert_eq!(
            p.heads().last().map(|h| (h.kind, h.raw_channels)),
            Some((HeadKind::Ls, 5))
        );
        assert!(p.has_head(HeadKind::Ls));
        let s = Architecture::hovernet_fast(Some(4), 8);
        assert_eq!(
            s,
            Architecture::HoVerNetFastSlim {
                num_types: Some(4),
                width_divisor: 8
            }
        );
        assert_eq!((s.width_divisor(), s.name()), (8, "hovernet-fast"));
        assert_eq!(s.patch_sizes(), (Size2::square(256), Size2::square(164)));
        assert_eq!(s.to_string(), "hovernet fast, width / 8 (4 types)");
        assert_eq!(
            Architecture::hovernet_fast(None, 1),
            Architecture::HoVerNetFast { num_types: None }
        );
        let ts = Architecture::TorchScript {
            heads: vec![
                HeadSpec::new(HeadKind::Np, 2),
                HeadSpec::new(HeadKind::Hv, 2),
            ],
            input_size: 128,
            output_size: 96,
        };
        assert_eq!(ts.native_patch_sizes(), None);
        assert_eq!((ts.input_size(), ts.output_size()), (128, 96));
        assert_eq!(ts.to_string(), "torchscript (np,hv heads, 128 -> 96)");
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
            (3, false),
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
        for d in Architecture::WIDTH_DIVISORS {
            assert_eq!(Architecture::hovernet_fast(Some(4), d).validate(), Ok(()));
        }
        let e = Architecture::hovernet_fast(Some(4), 3)
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid architecture: hovernet fast, width / 3 (4 types): width_divisor must be one \
             of [2, 4, 8] (1 is hovernet fast)"
        );
        assert!(Architecture::hovernet_fast(Some(0), 8).validate().is_err());
        let ts = |heads, input_size, output_size| Architecture::TorchScript {
            heads,
            input_size,
            output_size,
        };
        assert!(ts(vec![], 256, 164).validate().is_err());
        let np = HeadSpec::new(HeadKind::Np, 2);
        let e = ts(vec![np, np], 256, 164).validate().unwrap_err();
        assert!(e.to_string().contains("head np declared twice"), "{e}");
        assert!(
            ts(vec![HeadSpec::new(HeadKind::Hv, 3)], 256, 164)
                .validate()
                .is_err()
        );
        assert!(
            ts(vec![np, HeadSpec::new(HeadKind::Tp, 0)], 256, 164)
                .validate()
                .is_err()
        );
        assert!(ts(vec![np], 0, 164).validate().is_err());
        assert!(ts(vec![np], 64, 80).validate().is_err());
        assert_eq!(
            ts(vec![np, HeadSpec::new(HeadKind::Tp, 6)], 256, 164).validate(),
            Ok(())
        );
    }
}

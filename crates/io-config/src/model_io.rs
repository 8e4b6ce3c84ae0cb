//! The resolved model description: which network, at which resolution, with which patch, stride,
//! post-processing tile and margin.

use std::fmt;

/// A resolution as the user wrote it (TIAToolbox's `units` + `resolution`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResolutionSpec {
    /// Microns per pixel, e.g. 0.25.
    Mpp(f64),
    /// Objective power, e.g. 40 (needs the slide's objective power).
    Power(f64),
    /// A scale relative to the slide's level 0 (1.0 = baseline, 0.5 = half size).
    Baseline(f64),
}

impl ResolutionSpec {
    /// The number, whatever the unit.
    pub fn value(self) -> f64 {
        match self {
            Self::Mpp(v) | Self::Power(v) | Self::Baseline(v) => v,
        }
    }
}

impl fmt::Display for ResolutionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mpp(v) => write!(f, "{v} mpp"),
            Self::Power(v) => write!(f, "{v}x"),
            Self::Baseline(v) => write!(f, "{v} x baseline"),
        }
    }
}

/// A (height, width) pair of positive pixel counts, as TIAToolbox's `(h, w)` shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape2 {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

impl Shape2 {
    /// A square shape.
    pub const fn square(side: u32) -> Self {
        Self {
            height: side,
            width: side,
        }
    }
}

impl fmt::Display for Shape2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.height == self.width {
            write!(f, "{}", self.height)
        } else {
            write!(f, "{}x{} (h x w)", self.height, self.width)
        }
    }
}

/// One output head of a model, in TIAToolbox's head contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadName {
    /// Nucleus probability (softmax channel 1), 1 channel.
    Np,
    /// Horizontal and vertical distance maps, 2 channels.
    Hv,
    /// Nucleus type id (argmax), 1 channel.
    Tp,
    /// Tissue layer id (argmax), 1 channel.
    Ls,
}

impl HeadName {
    /// All heads, in TIAToolbox's output order.
    pub const ALL: [HeadName; 4] = [Self::Np, Self::Hv, Self::Tp, Self::Ls];

    /// The lower-case name used in configs and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Np => "np",
            Self::Hv => "hv",
            Self::Tp => "tp",
            Self::Ls => "ls",
        }
    }

    /// Channels of this head in the stitched maps.
    pub fn channels(self) -> u32 {
        match self {
            Self::Hv => 2,
            Self::Np | Self::Tp | Self::Ls => 1,
        }
    }

    /// Parses a head name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// The network that turns patches into head outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Architecture {
    /// HoVer-Net "fast" mode (256 -> 164); `num_types` None means no type head.
    HoVerNetFast {
        /// Classes of the type head, background included.
        num_types: Option<u32>,
    },
    /// HoVer-Net "original" mode (270 -> 80).
    HoVerNetOriginal {
        /// Classes of the type head, background included.
        num_types: Option<u32>,
    },
    /// HoVer-Net+ (fast mode, with a tissue-layer head).
    HoVerNetPlus {
        /// Nucleus classes, background included.
        num_types: u32,
        /// Layer classes, background included.
        num_layers: u32,
    },
    /// A TorchScript module (e.g. a `torch.jit.trace` export) with the declared heads.
    TorchScript {
        /// The heads the module returns, in order.
        heads: Vec<HeadName>,
    },
}

impl Architecture {
    /// The config name of the architecture.
    pub fn name(&self) -> &'static str {
        match self {
            Self::HoVerNetFast { .. } => "hovernet-fast",
            Self::HoVerNetOriginal { .. } => "hovernet-original",
            Self::HoVerNetPlus { .. } => "hovernetplus",
            Self::TorchScript { .. } => "torchscript",
        }
    }

    /// The heads the model returns, in order (TIAToolbox's `infer_batch` order).
    pub fn heads(&self) -> Vec<HeadName> {
        match self {
            Self::HoVerNetFast { num_types } | Self::HoVerNetOriginal { num_types } => {
                let mut h = vec![HeadName::Np, HeadName::Hv];
                if num_types.is_some() {
                    h.push(HeadName::Tp);
                }
                h
            }
            Self::HoVerNetPlus { .. } => {
                vec![HeadName::Np, HeadName::Hv, HeadName::Tp, HeadName::Ls]
            }
            Self::TorchScript { heads } => heads.clone(),
        }
    }

    /// The (input, output) patch side the native network is built for, `None` for TorchScript.
    pub fn native_patch_shapes(&self) -> Option<(u32, u32)> {
        match self {
            Self::HoVerNetFast { .. } | Self::HoVerNetPlus { .. } => Some((256, 164)),
            Self::HoVerNetOriginal { .. } => Some((270, 80)),
            Self::TorchScript { .. } => None,
        }
    }
}

/// Shapes and resolution of a model run (TIAToolbox's `IOInstanceSegmentorConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelIo {
    /// The resolution patches are read and outputs are produced at.
    pub resolution: ResolutionSpec,
    /// Patch given to the model.
    pub patch_input: Shape2,
    /// Centre region the model predicts.
    pub patch_output: Shape2,
    /// Step between patches, in pixels at `resolution`.
    pub stride: Shape2,
    /// Post-processing tile (rounded down to a multiple of `patch_output` when used).
    pub tile_shape: Shape2,
    /// Margin of the cross-tile merge, in pixels.
    pub margin: u32,
}

impl ModelIo {
    /// The post-processing tile actually used: `floor(tile_shape / patch_output) * patch_output`
    /// per axis, as TIAToolbox's `_get_tile_info`.
    pub fn effective_tile(&self) -> Shape2 {
        Shape2 {
            height: self.tile_shape.height / self.patch_output.height * self.patch_output.height,
            width: self.tile_shape.width / self.patch_output.width * self.patch_output.width,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_follow_tiatoolbox_order() {
        let fast = Architecture::HoVerNetFast { num_types: Some(6) };
        assert_eq!(fast.heads(), vec![HeadName::Np, HeadName::Hv, HeadName::Tp]);
        let kumar = Architecture::HoVerNetOriginal { num_types: None };
        assert_eq!(kumar.heads(), vec![HeadName::Np, HeadName::Hv]);
        let plus = Architecture::HoVerNetPlus {
            num_types: 3,
            num_layers: 5,
        };
        assert_eq!(plus.heads().len(), 4);
    }

    #[test]
    fn effective_tile_rounds_down_to_output_multiples() {
        let io = crate::preset("hovernet_fast-pannuke").unwrap().io;
        assert_eq!(io.effective_tile(), Shape2::square(984));
        let io = crate::preset("hovernetplus-oed").unwrap().io;
        assert_eq!(io.effective_tile(), Shape2::square(1968));
        let io = crate::preset("hovernet_original-kumar").unwrap().io;
        assert_eq!(io.effective_tile(), Shape2::square(2000));
        let io = crate::preset("hovernet_original-consep").unwrap().io;
        assert_eq!(io.effective_tile(), Shape2::square(960));
    }

    #[test]
    fn head_names_round_trip() {
        for h in HeadName::ALL {
            assert_eq!(HeadName::parse(h.as_str()), Some(h));
        }
        assert_eq!(HeadName::parse("xx"), None);
    }
}

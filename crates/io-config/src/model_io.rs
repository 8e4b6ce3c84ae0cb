//! The resolved model IO: at which resolution, with which patch, stride, post-processing tile
//! and margin. The network itself is [`mtseg_types::Architecture`].

use std::fmt;

use mtseg_types::Size2;

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

/// Shapes and resolution of a model run (TIAToolbox's `IOInstanceSegmentorConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelIo {
    /// The resolution patches are read and outputs are produced at.
    pub resolution: ResolutionSpec,
    /// Patch given to the model.
    pub patch_input: Size2,
    /// Centre region the model predicts.
    pub patch_output: Size2,
    /// Step between patches, in pixels at `resolution`.
    pub stride: Size2,
    /// Post-processing tile (rounded down to a multiple of `patch_output` when used).
    pub tile_shape: Size2,
    /// Margin of the cross-tile merge, in pixels.
    pub margin: u32,
}

impl ModelIo {
    /// The post-processing tile actually used: `floor(tile_shape / patch_output) * patch_output`
    /// per axis, as TIAToolbox's `_get_tile_info`.
    pub fn effective_tile(&self) -> Size2 {
        Size2 {
            height: self.tile_shape.height / self.patch_output.height * self.patch_output.height,
            width: self.tile_shape.width / self.patch_output.width * self.patch_output.width,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_tile_rounds_down_to_output_multiples() {
        let io = crate::preset("hovernet_fast-pannuke").unwrap().io;
        assert_eq!(io.effective_tile(), Size2::square(984));
        let io = crate::preset("hovernetplus-oed").unwrap().io;
        assert_eq!(io.effective_tile(), Size2::square(1968));
        let io = crate::preset("hovernet_original-kumar").unwrap().io;
        assert_eq!(io.effective_tile(), Size2::square(2000));
        let io = crate::preset("hovernet_original-consep").unwrap().io;
        assert_eq!(io.effective_tile(), Size2::square(960));
    }
}

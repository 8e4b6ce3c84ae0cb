//! One small function per stage, turning the run config into that stage's parameters. No stage
//! sees the whole [`RunConfig`].

use mtseg_io_config::{
    BackendChoice, Interpolation as CfgInterpolation, MaskRuleChoice, ResolutionSpec, RunConfig,
    SlideInput,
};
use mtseg_slide::{Backend, Interpolation, OpenOptions, Resolution};
use mtseg_tiling::{MaskRule, PatchGridBuilder, Size2};

/// How the slide crate opens `slide` (its manifest's mpp, else `[input] mpp`, for files that
/// carry no resolution).
pub fn slide_open_options(cfg: &RunConfig, slide: &SlideInput) -> OpenOptions {
    OpenOptions {
        backend: match cfg.input.backend {
            BackendChoice::Auto => Backend::Auto,
            BackendChoice::OpenSlide => Backend::OpenSlide,
            BackendChoice::Tiff => Backend::Tiff,
            BackendChoice::Image => Backend::Image,
        },
        fallback_mpp: cfg.input.mpp_for(slide),
    }
}

/// The processing resolution.
pub fn resolution(cfg: &RunConfig) -> Resolution {
    match cfg.io.resolution {
        ResolutionSpec::Mpp(v) => Resolution::Mpp(v),
        ResolutionSpec::Power(v) => Resolution::Power(v),
        ResolutionSpec::Baseline(v) => Resolution::Baseline(v),
    }
}

/// The resampling choice of patch reads.
pub fn interpolation(cfg: &RunConfig) -> Interpolation {
    match cfg.interpolation {
        CfgInterpolation::Optimise => Interpolation::Optimise,
        CfgInterpolation::TiaToolbox => Interpolation::TiaToolbox,
        CfgInterpolation::Area => Interpolation::Area,
        CfgInterpolation::Cubic => Interpolation::Cubic,
    }
}

/// How patches are matched against the tissue mask.
pub fn mask_rule(cfg: &RunConfig) -> MaskRule {
    match cfg.input.mask_rule {
        MaskRuleChoice::Overlap => MaskRule::AnyOverlap,
        MaskRuleChoice::TiaToolbox => MaskRule::TiaToolbox,
    }
}

/// The patch grid over an image of `image` pixels at the processing resolution.
pub fn patch_grid(cfg: &RunConfig, image: Size2) -> PatchGridBuilder {
    let io = &cfg.io;
    PatchGridBuilder::new(image, io.patch_input)
        .patch_output(io.patch_output)
        .stride(io.stride)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_slide_mpp_overrides_the_config_mpp() {
        let cfg = RunConfig::from_toml(
            "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"a.png\"]\nmpp = 0.5\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let plain = SlideInput::new("a.png");
        assert_eq!(slide_open_options(&cfg, &plain).fallback_mpp, Some(0.5));
        let own = SlideInput {
            mpp: Some(0.25),
            ..plain
        };
        assert_eq!(slide_open_options(&cfg, &own).fallback_mpp, Some(0.25));
    }
}

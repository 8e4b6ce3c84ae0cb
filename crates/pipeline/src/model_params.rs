//! The `[model]` table turned into the infer crate's [`ModelParams`], and the post-processing
//! constants that go with the architecture. The config already holds the shared (`mtseg-types`)
//! architecture, device and precision, so nothing is translated here.

use std::num::NonZeroUsize;

use mtseg_infer::{Device, ModelParams};
use mtseg_io_config::{Architecture, RunConfig};
use mtseg_postproc::NpHvParams;

/// Why the `[model]` table cannot be turned into a model to load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelConfigError {
    /// No weights file is configured.
    #[error(
        "{config}: [model] weights is required to run the model (only --dry-run works without it)"
    )]
    NoWeights {
        /// The config file.
        config: String,
    },
}

/// The device the model runs on: `--device` when given, else `[model] device`.
pub(crate) fn device(cfg: &RunConfig, override_device: Option<Device>) -> Device {
    override_device.unwrap_or(cfg.model.device)
}

/// Everything the infer crate needs to load the configured model.
///
/// # Errors
/// [`ModelConfigError::NoWeights`] when no weights file is configured.
pub fn model_params(
    cfg: &RunConfig,
    override_device: Option<Device>,
) -> Result<ModelParams, ModelConfigError> {
    let weights = cfg
        .model
        .weights
        .clone()
        .ok_or_else(|| ModelConfigError::NoWeights {
            config: cfg.path.display().to_string(),
        })?;
    let mut params = ModelParams::new(cfg.model.architecture.clone(), weights);
    params.device = device(cfg, override_device);
    params.options.intra_op_threads = Some(torch_threads(cfg));
    params.precision = cfg.model.precision;
    Ok(params)
}

/// CPU threads of the run: `[pipeline] threads`, or every core when 0.
pub(crate) fn cpu_threads(cfg: &RunConfig) -> NonZeroUsize {
    NonZeroUsize::new(cfg.pipeline.threads as usize)
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// libtorch's intra-op threads: one core is left to reading, stitching and post-processing,
/// which run alongside the forwards (on 2 cores a forward with 2 threads next to the other
/// stages was 5x slower than with 1: `scripts/bench-e2e`).
pub(crate) fn torch_threads(cfg: &RunConfig) -> NonZeroUsize {
    NonZeroUsize::new(cpu_threads(cfg).get() - 1).unwrap_or(NonZeroUsize::MIN)
}

/// HoVer-Net's post-processing constants for the architecture: HoVer-Net+ runs at 0.5 mpp and
/// scales them by 0.5, as TIAToolbox does.
pub(crate) fn np_hv_params(cfg: &RunConfig) -> NpHvParams {
    match cfg.model.architecture {
        Architecture::HoVerNetPlus { .. } => NpHvParams::hovernet_plus(),
        _ => NpHvParams::hovernet(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtseg_infer::{HeadKind, HeadSpec};
    use std::path::Path;

    fn cfg(model: &str) -> RunConfig {
        RunConfig::from_toml(
            &format!(
                "[model]\n{model}\n[io]\nresolution = {{ mpp = 0.5 }}\npatch_input = 256\n\
                 patch_output = 164\nstride = 164\ntile_shape = 2048\nmargin = 128\n\
                 [input]\nslides = [\"s.svs\"]\n"
            ),
            Path::new("run.toml"),
        )
        .unwrap()
    }

    #[test]
    fn presets_map_to_the_native_architectures() {
        let c = cfg("preset = \"hovernet_fast-pannuke\"\nweights = \"w.pth\"\ndevice = \"cuda:1\"");
        let p = model_params(&c, None).unwrap();
        assert_eq!(
            p.architecture,
            Architecture::HoVerNetFast { num_types: Some(6) }
        );
        assert_eq!(p.device, Device::Cuda(1));
        assert_eq!(
            model_params(&c, Some(Device::Cpu)).unwrap().device,
            Device::Cpu
        );
        let c = cfg("preset = \"hovernetplus-oed\"\nweights = \"w.pth\"");
        assert_eq!(
            model_params(&c, None).unwrap().architecture,
            Architecture::HoVerNetPlus {
                num_types: 3,
                num_layers: 5
            }
        );
        assert_eq!(np_hv_params(&c), NpHvParams::hovernet_plus());
    }

    #[test]
    fn torchscript_heads_take_their_channels_from_the_classes() {
        let c = cfg(
            "architecture = \"torchscript\"\nheads = [\"np\", \"hv\", \"tp\"]\nweights = \"m.pt\"\n\
             nuclei_classes = [\"bg\", \"a\", \"b\"]",
        );
        let a = model_params(&c, None).unwrap().architecture;
        assert_eq!(a.heads()[2], HeadSpec::new(HeadKind::Tp, 3));
        assert_eq!((a.input_size(), a.output_size()), (256, 164));
    }

    #[test]
    fn missing_weights_are_named() {
        let c = cfg("preset = \"hovernet_fast-pannuke\"");
        let e = model_params(&c, None).unwrap_err().to_string();
        assert!(e.contains("run.toml: [model] weights is required"), "{e}");
        // A TorchScript tp head without class names is a config error now (io-config's
        // `torchscript_heads_need_their_classes_and_no_repeats`), before any model is built.
        let e = RunConfig::from_toml(
            "[model]\narchitecture = \"torchscript\"\nheads = [\"np\", \"hv\", \"tp\"]\nweights = \"m.pt\"\n\
             [io]\nresolution = { mpp = 0.5 }\npatch_input = 256\npatch_output = 164\n\
             [input]\nslides = [\"s.svs\"]\n",
            Path::new("run.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`tp` head needs `nuclei_classes`"), "{e}");
    }
}

//! The `[model]` table turned into the infer crate's [`ModelParams`], and the post-processing
//! constants that go with the architecture.

use std::num::NonZeroUsize;

use mtseg_infer::{Architecture, Device, HeadKind, HeadSpec, ModelParams, Precision};
use mtseg_io_config::{
    Architecture as CfgArchitecture, DeviceSpec, HeadName, Precision as CfgPrecision, RunConfig,
};
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
    /// A TorchScript model with a type or layer head needs the class names to know its
    /// channel count.
    #[error(
        "{config}: [model] architecture = \"torchscript\" with a `{head}` head needs `{key}` \
         (the class names, background first) to know the head's channel count"
    )]
    MissingClasses {
        /// The config file.
        config: String,
        /// The head.
        head: &'static str,
        /// The key to set.
        key: &'static str,
    },
}

/// The device the model runs on: `--device` when given, else `[model] device`.
pub fn device(cfg: &RunConfig, override_device: Option<Device>) -> Device {
    override_device.unwrap_or(match cfg.model.device {
        DeviceSpec::Auto => Device::Auto,
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Cuda(n) => Device::Cuda(n),
    })
}

/// The infer crate's architecture for the configured one.
///
/// # Errors
/// [`ModelConfigError::MissingClasses`] for a TorchScript type/layer head without class names.
pub fn architecture(cfg: &RunConfig) -> Result<Architecture, ModelConfigError> {
    let io = &cfg.io;
    Ok(match &cfg.model.architecture {
        CfgArchitecture::HoVerNetFast { num_types } => {
            Architecture::hovernet_fast(*num_types, cfg.model.width_divisor)
        }
        CfgArchitecture::HoVerNetOriginal { num_types } => Architecture::HoVerNetOriginal {
            num_types: *num_types,
        },
        CfgArchitecture::HoVerNetPlus {
            num_types,
            num_layers,
        } => Architecture::HoVerNetPlus {
            num_types: *num_types,
            num_layers: *num_layers,
        },
        CfgArchitecture::TorchScript { heads } => {
            let config = cfg.path.display().to_string();
            let classes = |n: usize, head, key| {
                u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                    ModelConfigError::MissingClasses {
                        config: config.clone(),
                        head,
                        key,
                    }
                })
            };
            let mut specs = Vec::with_capacity(heads.len());
            for h in heads {
                specs.push(match h {
                    HeadName::Np => HeadSpec::new(HeadKind::Np, 2),
                    HeadName::Hv => HeadSpec::new(HeadKind::Hv, 2),
                    HeadName::Tp => HeadSpec::new(
                        HeadKind::Tp,
                        classes(cfg.model.nuclei_classes.len(), "tp", "nuclei_classes")?,
                    ),
                    HeadName::Ls => HeadSpec::new(
                        HeadKind::Ls,
                        classes(cfg.model.layer_classes.len(), "ls", "layer_classes")?,
                    ),
                });
            }
            Architecture::TorchScript {
                heads: specs,
                input_size: io.patch_input.width,
                output_size: io.patch_output.width,
            }
        }
    })
}

/// Everything the infer crate needs to load the configured model.
///
/// # Errors
/// [`ModelConfigError`] when the weights are missing or a TorchScript head lacks its classes.
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
    let mut params = ModelParams::new(architecture(cfg)?, weights);
    params.device = device(cfg, override_device);
    params.options.intra_op_threads = Some(torch_threads(cfg));
    params.precision = match cfg.model.precision {
        CfgPrecision::Fp32 => Precision::Fp32,
        CfgPrecision::Bf16 => Precision::Bf16,
        CfgPrecision::Fp16 => Precision::Fp16,
    };
    Ok(params)
}

/// CPU threads of the run: `[pipeline] threads`, or every core when 0.
pub fn cpu_threads(cfg: &RunConfig) -> NonZeroUsize {
    NonZeroUsize::new(cfg.pipeline.threads as usize)
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// libtorch's intra-op threads: one core is left to reading, stitching and post-processing,
/// which run alongside the forwards (on 2 cores a forward with 2 threads next to the other
/// stages was 5x slower than with 1: `scripts/bench-e2e`).
pub fn torch_threads(cfg: &RunConfig) -> NonZeroUsize {
    NonZeroUsize::new(cpu_threads(cfg).get() - 1).unwrap_or(NonZeroUsize::MIN)
}

/// HoVer-Net's post-processing constants for the architecture: HoVer-Net+ runs at 0.5 mpp and
/// scales them by 0.5, as TIAToolbox does.
pub fn np_hv_params(cfg: &RunConfig) -> NpHvParams {
    match cfg.model.architecture {
        CfgArchitecture::HoVerNetPlus { .. } => NpHvParams::hovernet_plus(),
        _ => NpHvParams::hovernet(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            architecture(&c).unwrap(),
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
        let a = architecture(&c).unwrap();
        assert_eq!(a.heads()[2], HeadSpec::new(HeadKind::Tp, 3));
        assert_eq!((a.input_size(), a.output_size()), (256, 164));
    }

    #[test]
    fn missing_weights_and_classes_are_named() {
        let c = cfg("preset = \"hovernet_fast-pannuke\"");
        let e = model_params(&c, None).unwrap_err().to_string();
        assert!(e.contains("run.toml: [model] weights is required"), "{e}");
        let c = cfg(
            "architecture = \"torchscript\"\nheads = [\"np\", \"hv\", \"tp\"]\nweights = \"m.pt\"",
        );
        let e = model_params(&c, None).unwrap_err().to_string();
        assert!(e.contains("`tp` head needs `nuclei_classes`"), "{e}");
    }
}

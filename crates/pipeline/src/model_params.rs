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

/// The device of each model worker on this node: the requested devices (`--device`, a comma
/// list, or `[model] device`), with `auto` meaning every CUDA device when there are any
/// (`cuda_devices` of them) and the CPU otherwise; `workers` models in all, taking the devices
/// in turn (0: one per device). Each worker loads its own model and takes slides from the run's
/// queue.
pub fn worker_devices(requested: &[Device], workers: usize, cuda_devices: usize) -> Vec<Device> {
    let mut base: Vec<Device> = Vec::new();
    for &d in requested {
        match d {
            Device::Auto if cuda_devices > 0 => {
                base.extend((0..cuda_devices).map(|n| Device::Cuda(n as u32)));
            }
            Device::Auto => base.push(Device::Cpu),
            d => base.push(d),
        }
    }
    if base.is_empty() {
        base.push(Device::Cpu);
    }
    let n = if workers == 0 { base.len() } else { workers };
    (0..n).map(|i| base[i % base.len()]).collect()
}

/// The model parameters of each worker on `devices` (see [`worker_devices`]): libtorch's CPU
/// threads are shared out among the CPU workers.
///
/// # Errors
/// As [`model_params`].
pub fn worker_model_params(
    cfg: &RunConfig,
    devices: &[Device],
) -> Result<Vec<ModelParams>, ModelConfigError> {
    let cpu_workers = devices.iter().filter(|&&d| d == Device::Cpu).count().max(1);
    let threads =
        NonZeroUsize::new(torch_threads(cfg).get() / cpu_workers).unwrap_or(NonZeroUsize::MIN);
    devices
        .iter()
        .map(|&d| {
            let mut p = model_params(cfg, Some(d))?;
            if d == Device::Cpu {
                p.options.intra_op_threads = Some(threads);
            }
            Ok(p)
        })
        .collect()
}

/// CPU threads of the run: `[pipeline] threads`, or every core when 0. Reading,
/// post-processing and writing share them (the run's rayon pool).
pub fn cpu_threads(cfg: &RunConfig) -> NonZeroUsize {
    NonZeroUsize::new(cfg.pipeline.threads as usize)
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// libtorch's intra-op threads on the CPU: all of [`cpu_threads`] (shared out among CPU model
/// workers by [`worker_model_params`]). The forward is the run's critical path on a CPU (96 %
/// of a HoVer-Net run), so it gets every core, and the other stages run on the same cores in
/// its gaps: libtorch's OpenMP threads must then wait passively (`OMP_WAIT_POLICY=PASSIVE`,
/// which the `mtseg-pipeline` binary sets), or their spinning takes the cores the other stages
/// need and stalls the forward (README, "Threads": measured on 2 cores).
pub fn torch_threads(cfg: &RunConfig) -> NonZeroUsize {
    cpu_threads(cfg)
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

    #[test]
    fn workers_take_the_devices_in_turn() {
        let (cpu, c0, c1) = (Device::Cpu, Device::Cuda(0), Device::Cuda(1));
        assert_eq!(worker_devices(&[Device::Auto], 0, 0), vec![cpu]);
        assert_eq!(worker_devices(&[Device::Auto], 0, 2), vec![c0, c1]);
        assert_eq!(worker_devices(&[Device::Auto], 3, 2), vec![c0, c1, c0]);
        assert_eq!(worker_devices(&[cpu], 2, 4), vec![cpu, cpu]);
        assert_eq!(worker_devices(&[c1, c0], 0, 2), vec![c1, c0]);
        assert_eq!(worker_devices(&[], 0, 0), vec![cpu]);
    }
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

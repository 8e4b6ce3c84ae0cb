//! Presets, overrides, defaults, manifests and the shipped configs resolve as documented.

use std::path::{Path, PathBuf};

use mtseg_io_config::{
    Architecture, Device, HeadKind, HeadSpec, InputMode, Interpolation, MaskSpec, MemoryLimit,
    OutputFormat, Precision, ResolutionSpec, RunConfig, Size2, SlideInput, SlideOrigin,
};

#[test]
fn preset_values_apply_and_any_io_key_overrides_them() {
    let cfg = RunConfig::from_toml(
        r#"
        [model]
        preset = "hovernetplus-oed"
        [io]
        resolution = { power = 20 }
        stride = [100, 120]
        tile_shape = [1000, 2000]
        margin = 64
        interpolation = "tiatoolbox"
        [input]
        slides = ["x.svs", "y.tif"]
        mask = "masks/{stem}.png"
        [pipeline]
        memory_limit = "2GiB"
        "#,
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(
        cfg.model.architecture,
        Architecture::HoVerNetPlus {
            num_types: 3,
            num_layers: 5
        }
    );
    assert_eq!(cfg.model.layer_classes.len(), 5);
    assert_eq!(cfg.io.resolution, ResolutionSpec::Power(20.0));
    assert_eq!(
        cfg.io.stride,
        Size2 {
            height: 100,
            width: 120
        }
    );
    assert_eq!(cfg.io.patch_output, Size2::square(164));
    assert_eq!(
        cfg.io.tile_shape,
        Size2 {
            height: 1000,
            width: 2000
        }
    );
    assert_eq!(cfg.io.margin, 64);
    assert_eq!(cfg.interpolation, Interpolation::TiaToolbox);
    assert_eq!(
        cfg.input.slides,
        vec![SlideInput::new("x.svs"), SlideInput::new("y.tif")]
    );
    assert_eq!(cfg.input.mask, MaskSpec::Path("masks/{stem}.png".into()));
    assert_eq!(cfg.pipeline.memory_limit, MemoryLimit::Bytes(2 << 30));
}

#[test]
fn defaults_are_documented_values() {
    let cfg = RunConfig::from_toml(
        "[model]\npreset = \"hovernet_original-kumar\"\n[input]\nslides = [\"a.svs\"]\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(cfg.model.device, Device::Auto);
    assert_eq!(cfg.model.precision, Precision::Fp32);
    assert_eq!(cfg.model.batch_size.get(), 8);
    assert!(cfg.model.nuclei_classes.is_empty());
    assert_eq!(cfg.input.mode, InputMode::Wsi);
    assert_eq!(cfg.input.mask, MaskSpec::Auto);
    assert_eq!(cfg.output.dir, PathBuf::from("results"));
    assert_eq!(
        cfg.output.formats,
        vec![OutputFormat::AnnotationStore, OutputFormat::QuPath]
    );
    assert!(!cfg.output.overwrite);
    assert_eq!(cfg.pipeline.memory_limit, MemoryLimit::PercentOfRam(50.0));
    assert_eq!(cfg.pipeline.queue_capacity.get(), 8);
    assert_eq!(cfg.io.tile_shape, Size2::square(2048));
}

#[test]
fn torchscript_model_declares_heads_and_shapes() {
    let cfg = RunConfig::from_toml(
        r#"
        [model]
        architecture = "torchscript"
        heads = ["np", "hv", "tp"]
        weights = "m.pt"
        nuclei_classes = ["bg", "tumour"]
        [io]
        resolution = { mpp = 0.5 }
        patch_input = 128
        patch_output = 96
        stride = 48
        [input]
        mode = "patch"
        slides = ["p.png"]
        "#,
        Path::new("c.toml"),
    )
    .unwrap();
    let Architecture::TorchScript {
        heads,
        input_size,
        output_size,
    } = &cfg.model.architecture
    else {
        panic!()
    };
    assert_eq!(heads.len(), 3);
    assert_eq!(heads[2], HeadSpec::new(HeadKind::Tp, 2));
    assert_eq!((*input_size, *output_size), (128, 96));
    assert_eq!(cfg.io.stride, Size2::square(48));
    assert_eq!(cfg.input.mode, InputMode::Patch);
}

#[test]
fn manifest_entries_are_relative_to_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("slides")).unwrap();
    for n in ["a.svs", "b.svs"] {
        std::fs::write(dir.path().join("slides").join(n), b"x").unwrap();
    }
    let manifest = dir.path().join("list.txt");
    std::fs::write(&manifest, "# my slides\nslides/*.svs\n\nother/c.tif\n").unwrap();
    let toml = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nmanifest = \"{}\"\n",
        manifest.display()
    );
    let cfg = RunConfig::from_toml(&toml, Path::new("c.toml")).unwrap();
    let entry = |path: &str, line| SlideInput {
        origin: SlideOrigin::Manifest {
            file: manifest.clone(),
            line,
        },
        ..SlideInput::new(dir.path().join(path))
    };
    assert_eq!(
        cfg.input.slides,
        vec![
            entry("slides/a.svs", 2),
            entry("slides/b.svs", 2),
            entry("other/c.tif", 4)
        ]
    );
}

/// bf16 runs on a CPU (oneDNN); fp16 on a CPU is refused (tests/config_errors.rs).
#[test]
fn bf16_is_accepted_on_the_cpu() {
    let cfg = RunConfig::from_toml(
        "[model]\npreset = \"hovernet_fast-pannuke\"\ndevice = \"cpu\"\nprecision = \"bf16\"\n\
         [input]\nslides = [\"a.svs\"]\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(cfg.model.device, Device::Cpu);
    assert_eq!(cfg.model.precision, Precision::Bf16);
}

#[test]
fn shared_types_come_out_of_the_config() {
    let cfg = RunConfig::from_toml(
        r#"
        [model]
        preset = "hovernet_fast-pannuke"
        width_divisor = 8
        device = "CUDA:1"
        precision = "bf16"
        [input]
        slides = ["a.svs"]
        [pipeline]
        memory_limit = "1.5 GiB"
        "#,
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(
        cfg.model.architecture,
        Architecture::HoVerNetFastSlim {
            num_types: Some(6),
            width_divisor: 8
        }
    );
    assert_eq!(cfg.model.device, Device::Cuda(1));
    assert_eq!(cfg.model.precision, Precision::Bf16);
    assert_eq!(cfg.pipeline.memory_limit, MemoryLimit::Bytes(3 << 29));
    let limit = |text: &str| {
        RunConfig::from_toml(
            &format!(
                "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"a.svs\"]\n\
                 [pipeline]\nmemory_limit = \"{text}\"\n"
            ),
            Path::new("c.toml"),
        )
        .unwrap()
        .pipeline
        .memory_limit
    };
    // Fractional bytes round half up, exactly as `MemoryLimit::from_str`.
    assert_eq!(limit("1.5"), MemoryLimit::Bytes(2));
    assert_eq!(limit("0.1GiB"), MemoryLimit::Bytes(107_374_182));
    assert_eq!(limit("25%"), MemoryLimit::PercentOfRam(25.0));
    assert_eq!(limit("512 MB"), "512 MB".parse().unwrap());
}

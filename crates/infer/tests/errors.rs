//! Load-time errors through `load_model`: a CUDA device beyond those present (on a CPU-only or a
//! GPU machine), fp16 on CPU, weights of another architecture, truncated and missing files.
//!
//! Needs the generated weights: `.venv/bin/python tools/fixtures/make_test_weights.py`.

#![cfg(feature = "torch")]

#[path = "support/fixtures.rs"]
mod fixtures;

use mtseg_infer::{
    Architecture, BatchView, Device, HeadKind, LoadError, ModelParams, Precision, load_model,
};

fn fast6() -> ModelParams {
    let mut p = ModelParams::new(
        Architecture::HoVerNetFast { num_types: Some(6) },
        fixtures::weights("hovernet_fast6.pth"),
    );
    p.device = Device::Cpu;
    p
}

/// `cuda:N` is refused, naming the device and how many there are, whenever N is not below the
/// number of CUDA devices libtorch sees: `cuda:0` and `cuda:3` on a CPU-only machine, `cuda:count`
/// and beyond on a GPU machine. There, every device below the count loads and runs a forward.
/// `auto` always loads.
#[test]
fn cuda_devices_beyond_the_count_are_refused() {
    let count = usize::try_from(tch::Cuda::device_count()).expect("device count >= 0");
    let mut refused = vec![format!("cuda:{count}"), format!("cuda:{}", count + 3)];
    if count == 0 {
        refused.push("cuda:0".to_owned());
    }
    for requested in &refused {
        let mut p = fast6();
        p.device = requested.parse().unwrap();
        let e = load_model(&p)
            .err()
            .expect("a CUDA device beyond the count must be refused");
        let msg = e.to_string();
        assert!(
            matches!(e, LoadError::CudaUnavailable { available, .. } if available == count),
            "{msg}"
        );
        assert!(
            msg.contains(requested.as_str())
                && msg.contains(&format!("{count} CUDA device(s)"))
                && msg.contains("\"cpu\""),
            "{msg}"
        );
    }
    for n in 0..count {
        let mut p = fast6();
        p.device = format!("cuda:{n}").parse().unwrap();
        let mut model = load_model(&p).unwrap_or_else(|e| panic!("cuda:{n} must load: {e}"));
        let size = model.input_size();
        let pixels = vec![128u8; size * size * 3];
        let out = model
            .forward(BatchView::new(&pixels, &[0], size, size).unwrap())
            .unwrap_or_else(|e| panic!("forward on cuda:{n}: {e}"));
        assert!(out.head(HeadKind::Np).is_some(), "no np head from cuda:{n}");
    }
    // `auto` takes cuda:0 where there is one and the CPU otherwise (no forward needed to see it load).
    let mut p = fast6();
    p.device = Device::Auto;
    assert!(load_model(&p).is_ok());
}

/// fp16 is refused on the CPU, naming the precision, the device, the reason and the precisions
/// that run there (bf16 on the CPU: tests/bf16_cpu.rs).
#[test]
fn fp16_on_the_cpu_is_refused() {
    let mut p = fast6();
    p.precision = Precision::Fp16;
    let e = load_model(&p).err().expect("load must fail");
    assert!(matches!(e, LoadError::PrecisionNeedsCuda { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("fp16") && msg.contains("cpu") && msg.contains("slower than fp32"),
        "{msg}"
    );
    assert!(msg.contains("\"bf16\" or \"fp32\""), "{msg}");
}

#[test]
fn weights_of_another_architecture() {
    let mut p = fast6();
    p.weights = fixtures::weights("hovernet_original5.pth");
    let e = load_model(&p).err().expect("load must fail");
    let msg = e.to_string();
    assert!(matches!(e, LoadError::ShapeMismatch { .. }), "{msg}");
    assert!(
        msg.contains("'decoder.tp.u3.conva.weight'") && msg.contains("hovernet_original5.pth"),
        "{msg}"
    );
    assert!(msg.contains("matches hovernet original (5 types)"), "{msg}");

    let mut p = fast6();
    p.architecture = Architecture::HoVerNetPlus {
        num_types: 6,
        num_layers: 4,
    };
    let e = load_model(&p).err().expect("load must fail");
    assert!(
        matches!(&e, LoadError::MissingTensor { tensor, .. } if tensor == "decoder.ls.u3.conva.weight"),
        "{e}"
    );
}

#[test]
fn truncated_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixtures::weights("hovernet_fast6.pth")).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let mut p = fast6();
    p.weights = cut;
    let e = load_model(&p).err().expect("load must fail");
    assert!(
        matches!(e, LoadError::Corrupt { .. }) && e.to_string().contains("cut.pth"),
        "{e}"
    );

    p.weights = dir.path().join("absent.safetensors");
    let e = load_model(&p).err().expect("load must fail");
    assert!(
        matches!(e, LoadError::Io { .. }) && e.to_string().contains("absent.safetensors"),
        "{e}"
    );
}

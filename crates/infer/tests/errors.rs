//! Load-time errors through `load_model` on this CPU-only machine: CUDA asked for where there is
//! none, bf16 on CPU, weights of another architecture, truncated and missing files.
//!
//! Needs the generated weights: `.venv/bin/python tools/fixtures/make_test_weights.py`.

#![cfg(feature = "torch")]

#[path = "support/fixtures.rs"]
mod fixtures;

use mtseg_infer::{Architecture, Device, LoadError, ModelParams, Precision, load_model};

fn fast6() -> ModelParams {
    let mut p = ModelParams::new(
        Architecture::HoVerNetFast { num_types: Some(6) },
        fixtures::weights("hovernet_fast6.pth"),
    );
    p.device = Device::Cpu;
    p
}

#[test]
fn cuda_requested_where_there_is_none() {
    // This test documents the CPU-only CI machine: if libtorch sees a GPU it checks nothing.
    if tch::Cuda::is_available() {
        eprintln!("a CUDA device is present: the CUDA-unavailable error cannot be provoked here");
        return;
    }
    for requested in ["cuda:0", "cuda:3"] {
        let mut p = fast6();
        p.device = requested.parse().unwrap();
        let e = load_model(&p)
            .err()
            .expect("CUDA must be refused on a machine without it");
        let msg = e.to_string();
        assert!(
            matches!(e, LoadError::CudaUnavailable { available: 0, .. }),
            "{msg}"
        );
        assert!(
            msg.contains(requested) && msg.contains("0 CUDA device(s)") && msg.contains("\"cpu\""),
            "{msg}"
        );
    }
    // `auto` falls back to the CPU (no forward needed to see it load).
    let mut p = fast6();
    p.device = Device::Auto;
    assert!(load_model(&p).is_ok());
}

#[test]
fn reduced_precision_needs_cuda() {
    for precision in [Precision::Bf16, Precision::Fp16] {
        let mut p = fast6();
        p.precision = precision;
        let e = load_model(&p).err().expect("load must fail");
        assert!(matches!(e, LoadError::PrecisionNeedsCuda { .. }), "{e}");
        assert!(
            e.to_string().contains(&precision.to_string()) && e.to_string().contains("cpu"),
            "{e}"
        );
    }
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

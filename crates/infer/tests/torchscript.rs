//! The TorchScript backend: a `torch.jit.trace` of the same HoVer-Net fast (6 types) gives
//! TIAToolbox's outputs under the same head contract; wrong declarations give clear errors.
//!
//! The trace is made by `.venv/bin/python tools/fixtures/make_test_weights.py`
//! (target/test-weights/hovernet_fast6.traced.pt; heads returned as a tuple tp, np, hv).

#![cfg(feature = "torch")]

#[path = "support/fixtures.rs"]
mod fixtures;

use mtseg_infer::{
    Architecture, BatchView, Device, HeadKind, HeadSpec, InferError, LoadError, ModelParams,
    load_model,
};
use tch::{Kind, Tensor};

fn npy(name: &str) -> Vec<f32> {
    let t = Tensor::read_npy(fixtures::fixture(name))
        .unwrap()
        .to_kind(Kind::Float)
        .contiguous();
    let mut v = vec![0f32; t.numel()];
    t.copy_data(&mut v, t.numel());
    v
}

/// The first reference patch, 256² centre crop.
fn patch() -> Vec<u8> {
    let v = npy("input_270.npy");
    let mut out = Vec::new();
    for y in 7..263 {
        for x in 7..263 {
            for c in 0..3 {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                out.push(v[(y * 270 + x) * 3 + c] as u8);
            }
        }
    }
    out
}

fn params(heads: Vec<HeadSpec>, output_size: u32) -> ModelParams {
    let arch = Architecture::TorchScript {
        heads,
        input_size: 256,
        output_size,
    };
    let mut p = ModelParams::new(arch, fixtures::weights("hovernet_fast6.traced.pt"));
    p.device = Device::Cpu;
    p
}

fn fast6_heads() -> Vec<HeadSpec> {
    vec![
        HeadSpec::new(HeadKind::Tp, 6),
        HeadSpec::new(HeadKind::Np, 2),
        HeadSpec::new(HeadKind::Hv, 2),
    ]
}

#[test]
fn traced_model_matches_tiatoolbox() {
    let mut model = load_model(&params(fast6_heads(), 164)).unwrap();
    assert_eq!(
        model.heads().iter().map(|h| h.kind).collect::<Vec<_>>(),
        [HeadKind::Tp, HeadKind::Np, HeadKind::Hv]
    );
    let pixels = patch();
    let out = model
        .forward(BatchView::new(&pixels, &[42], 256, 256).unwrap())
        .unwrap();
    assert_eq!(out.indices, [42]);
    for head in &out.heads {
        let reference = npy(&format!("hovernet_fast6.{}.npy", head.kind));
        let step = if matches!(head.kind, HeadKind::Tp) {
            1
        } else {
            2
        };
        let c = head.shape[3];
        let (h, w) = (head.shape[1], head.shape[2]);
        let mut max = 0f32;
        let mut differ = 0;
        let rw = w / step;
        for y in (0..h).step_by(step) {
            for x in (0..w).step_by(step) {
                for k in 0..c {
                    let ours = head.data[(y * w + x) * c + k];
                    // Patch 0 of the 2-patch reference.
                    let theirs = reference[((y / step) * rw + x / step) * c + k];
                    max = max.max((ours - theirs).abs());
                    differ += usize::from(ours != theirs);
                }
            }
        }
        println!(
            "torchscript hovernet_fast6 {}: max |diff| {max:.3e}, {differ} values differ",
            head.kind
        );
        match head.kind {
            HeadKind::Tp => assert_eq!(differ, 0, "tp argmax differs"),
            _ => assert!(max <= 1e-4, "{}: {max}", head.kind),
        }
    }
}

#[test]
fn wrong_declarations_are_errors() {
    // Declared 5 types where the module computes 6.
    let mut heads = fast6_heads();
    heads[0].raw_channels = 5;
    let mut model = load_model(&params(heads, 164)).unwrap();
    let pixels = patch();
    let e = model
        .forward(BatchView::new(&pixels, &[0], 256, 256).unwrap())
        .unwrap_err();
    assert!(matches!(e, InferError::WrongOutputShape { .. }), "{e}");
    assert!(
        e.to_string().contains("head tp") && e.to_string().contains("[1, 5, 164, 164]"),
        "{e}"
    );

    // Wrong patch size: refused before running.
    let e = model
        .forward(BatchView::new(&[0; 3 * 4], &[0], 2, 2).unwrap())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("model takes 256x256 patches, got 2x2"),
        "{e}"
    );

    // A state dict is not a TorchScript module.
    let mut p = params(fast6_heads(), 164);
    p.weights = fixtures::weights("hovernet_fast6.pth");
    let e = load_model(&p).err().expect("load must fail");
    assert!(matches!(e, LoadError::UnsupportedFormat { .. }), "{e}");
    assert!(
        e.to_string().contains("hovernet_fast6.pth") && e.to_string().contains("TorchScript"),
        "{e}"
    );

    // No heads.
    let e = load_model(&params(vec![], 164))
        .err()
        .expect("load must fail");
    assert!(matches!(e, LoadError::InvalidArchitecture { .. }), "{e}");
}

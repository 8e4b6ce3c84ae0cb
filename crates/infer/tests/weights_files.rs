//! Reading TIAToolbox `.pth` / `.safetensors` weight files (pure Rust, no libtorch) and the errors
//! for wrong, truncated or incomplete files.
//!
//! Needs the generated weights: `.venv/bin/python tools/fixtures/make_test_weights.py`.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::path::Path;

use mtseg_infer::{Architecture, LoadError, WeightSet};
use sha2::{Digest, Sha256};

const FAST6: Architecture = Architecture::HoVerNetFast { num_types: Some(6) };

fn read(name: &str) -> WeightSet {
    let p = fixtures::weights(name);
    WeightSet::read(&p).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn generated_weights_are_the_reference_ones() {
    // The .safetensors bytes are deterministic; their digests are recorded beside the reference
    // outputs, which were computed from exactly these weights.
    let expected = std::fs::read_to_string(fixtures::fixture("weights.sha256")).unwrap();
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        let (digest, name) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(fixtures::weights(name)).unwrap();
        let found = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            found,
            digest,
            "{name} differs from the weights the reference outputs were made with: rerun `{}` \
             (delete target/test-weights first); if the recipe changed on purpose, remake the \
             references with tools/fixtures/infer_reference.py",
            fixtures::SETUP
        );
    }
}

#[test]
fn pth_safetensors_and_nested_agree_and_fit() {
    for (name, arch) in [
        ("hovernet_fast6", FAST6),
        (
            "hovernet_original5",
            Architecture::HoVerNetOriginal { num_types: Some(5) },
        ),
        (
            "hovernetplus3x5",
            Architecture::HoVerNetPlus {
                num_types: 3,
                num_layers: 5,
            },
        ),
    ] {
        let pth = read(&format!("{name}.pth"));
        pth.check(&arch).unwrap_or_else(|e| panic!("{e}"));
        let st = read(&format!("{name}.safetensors"));
        let nested = read(&format!("{name}.nested.pth"));
        assert_eq!(pth.names(), st.names(), "{name}: file order differs");
        assert_eq!(pth.names(), nested.names());
        for n in pth.names() {
            assert_eq!(pth.get(n), st.get(n), "{name}: {n}");
            assert_eq!(pth.get(n), nested.get(n), "{name}: {n}");
        }
        assert_eq!(
            pth.get("conv0./.weight").map(|t| t.shape.clone()),
            Some(vec![64, 3, 7, 7])
        );
    }
}

#[test]
fn weights_of_another_architecture_name_the_tensor() {
    let fast = read("hovernet_fast6.pth");
    let e = fast
        .check(&Architecture::HoVerNetOriginal { num_types: Some(6) })
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LoadError::ShapeMismatch { .. }), "{msg}");
    assert!(msg.contains("'decoder.tp.u3.conva.weight'"), "{msg}");
    assert!(
        msg.contains("[256, 1024, 3, 3]") && msg.contains("[256, 1024, 5, 5]"),
        "{msg}"
    );
    assert!(msg.contains("hovernet_fast6.pth"), "{msg}");
    assert!(msg.contains("matches hovernet fast (6 types)"), "{msg}");

    let e = fast
        .check(&Architecture::HoVerNetFast { num_types: Some(5) })
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("'decoder.tp.u0.conv.weight' in weights file"),
        "{e}"
    );

    let e = fast
        .check(&Architecture::HoVerNetPlus {
            num_types: 6,
            num_layers: 5,
        })
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::MissingTensor { tensor, .. } if tensor == "decoder.ls.u3.conva.weight"),
        "{e}"
    );

    let e = fast
        .check(&Architecture::HoVerNetFast { num_types: None })
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::UnexpectedTensor { tensor, .. } if tensor == "decoder.tp.u3.conva.weight"),
        "{e}"
    );
}

fn truncated_copy(src: &Path, dir: &Path, keep: f64) -> std::path::PathBuf {
    let bytes = std::fs::read(src).unwrap();
    let out = dir.join(src.file_name().unwrap());
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    std::fs::write(&out, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
    out
}

#[test]
fn truncated_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["hovernet_original5.pth", "hovernet_original5.safetensors"] {
        let p = truncated_copy(&fixtures::weights(name), dir.path(), 0.6);
        let e = WeightSet::read(&p).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LoadError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("truncated or corrupt") && msg.contains(name),
            "{msg}"
        );
    }
    let empty = dir.path().join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        WeightSet::read(&empty),
        Err(LoadError::UnsupportedFormat { .. })
    ));
    let missing = dir.path().join("nope.pth");
    let e = WeightSet::read(&missing).unwrap_err();
    assert!(
        matches!(e, LoadError::Io { .. }) && e.to_string().contains("nope.pth"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    // A safetensors file with every tensor of hovernet_original5 but one.
    let full = read("hovernet_original5.safetensors");
    let drop = "d2.units.3.conv2/bn.running_var";
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = full
        .names()
        .iter()
        .filter(|n| n.as_str() != drop)
        .map(|n| {
            let t = full.get(n).unwrap();
            (
                n.clone(),
                t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("incomplete.safetensors");
    safetensors::serialize_to_file(views, None, &p).unwrap();
    let w = WeightSet::read(&p).unwrap();
    let e = w
        .check(&Architecture::HoVerNetOriginal { num_types: Some(5) })
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, LoadError::MissingTensor { tensor, .. } if tensor == drop),
        "{msg}"
    );
    assert!(
        msg.contains("incomplete.safetensors") && msg.contains("[256]"),
        "{msg}"
    );
}

#[test]
fn torchscript_file_is_not_a_state_dict() {
    let e = WeightSet::read(&fixtures::weights("hovernet_fast6.traced.pt")).unwrap_err();
    assert!(e.to_string().contains("TorchScript module"), "{e}");
}

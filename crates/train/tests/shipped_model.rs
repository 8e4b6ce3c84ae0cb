//! The shipped demo model (`models/hovernet_fast_w8-hgsc_nest.safetensors`): its quality on the
//! held-out third as stated in `models/README.md`, and the pipeline's loader against the training
//! graph. Needs libtorch and the data of `scripts/setup`:
//!
//! ```text
//! . scripts/env.sh && cargo test -p mtseg-train --release --features torch
//! ```
//! `MTSEG_TRAIN_WEIGHTS=path` checks another weights file's parity; the quality numbers are those
//! of the shipped file and are always checked on it.

#![cfg(feature = "torch")]

use std::path::{Path, PathBuf};

use mtseg_infer::{BatchView, Device, ForwardOptions, HeadKind, HoVerNet, Model, ModelParams};
use mtseg_postproc::NpHvParams;
use mtseg_train::{
    AnnotatedImage, CLASS_NAMES, HeldOutSplit, TrainableHoVerNet, architecture, evaluate, load_into,
};
use tch::{Kind, Tensor};

const WIDTH_DIVISOR: i64 = 8;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The weights file shipped in `models/`, which the model card describes.
fn shipped_weights() -> PathBuf {
    root().join("models/hovernet_fast_w8-hgsc_nest.safetensors")
}

/// The file the parity tests check: `MTSEG_TRAIN_WEIGHTS` or the shipped one.
fn weights() -> PathBuf {
    std::env::var_os("MTSEG_TRAIN_WEIGHTS").map_or_else(shipped_weights, PathBuf::from)
}

fn split() -> HeldOutSplit {
    let data = root().join("data");
    let image = AnnotatedImage::load_hgsc_nest(&data)
        .unwrap_or_else(|e| panic!("{e}: run scripts/setup first"));
    HeldOutSplit::new(&image).unwrap()
}

/// Four 256² patches of the held-out third (the top-left corners of a 2 x 2 grid).
fn patches(image: &AnnotatedImage) -> Vec<u8> {
    let mut px = Vec::new();
    for (y0, x0) in [(0, 0), (0, 244), (600, 100), (1244, 244)] {
        for y in y0..y0 + 256 {
            let row = (y * image.width + x0) * 3;
            px.extend_from_slice(&image.rgb[row..row + 256 * 3]);
        }
    }
    px
}

/// The pipeline's loader (`mtseg_infer`, BatchNorm folded, channels-last) and the training graph
/// in eval mode give the same logits for the shipped weights.
#[test]
fn infer_loader_matches_training_graph() {
    let split = split();
    let px = patches(&split.held_out);
    let arch = architecture(CLASS_NAMES.len() as i64, WIDTH_DIVISOR);
    let mut vars = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = TrainableHoVerNet::new(&vars.root(), CLASS_NAMES.len() as i64, WIDTH_DIVISOR);
    load_into(&mut vars, &weights()).unwrap();
    let x = Tensor::from_slice(&px)
        .view([4, 256, 256, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float);
    let out = tch::no_grad(|| net.forward_t(&x, false));
    let indices = [0u64, 1, 2, 3];
    let batch = BatchView::new(&px, &indices, 256, 256).unwrap();
    for options in [ForwardOptions::default(), ForwardOptions::reference()] {
        let mut model =
            HoVerNet::load(&weights(), &arch, tch::Device::Cpu, Kind::Float, &options).unwrap();
        let logits = model.forward_logits(batch).unwrap();
        for (kind, ours) in [
            (HeadKind::Np, &out.np),
            (HeadKind::Hv, &out.hv),
            (HeadKind::Tp, &out.tp),
        ] {
            let head = logits.head(kind).unwrap();
            let theirs = Tensor::from_slice(&head.data)
                .view([4, 164, 164, head.shape[3] as i64])
                .permute([0, 3, 1, 2]);
            let diff = (ours - &theirs).abs().max().double_value(&[]);
            let scale = theirs.abs().max().double_value(&[]).max(1.0);
            // the plain graph differs by float rounding only; BatchNorm folding (computed in
            // f64, rounded to f32 once) adds its own rounding
            let tolerance = if options.fold_batch_norm { 1e-3 } else { 1e-4 };
            assert!(
                diff <= tolerance * scale,
                "{kind} ({options:?}): max |diff| {diff}, max |value| {scale}"
            );
        }
        // and the post-softmax outputs the pipeline stitches
        let outputs = model.forward(batch).unwrap();
        let np = Tensor::from_slice(&outputs.head(HeadKind::Np).unwrap().data).view([4, 164, 164]);
        let ours = out.np.softmax(1, Kind::Float).select(1, 1);
        let diff = (ours - np).abs().max().double_value(&[]);
        assert!(
            diff < 1e-3,
            "np probability ({options:?}): max |diff| {diff}"
        );
    }
}

/// The held-out numbers stated in models/README.md ("Measured quality"): post-processing scale
/// factor, detection F1 at IoU 0.5, AJI.
const STATED: [(f64, f64, f64); 2] = [(1.0, 0.7586, 0.5398), (0.5, 0.7424, 0.5227)];

/// The held-out numbers of the model card, through the pipeline's loader, grid and
/// post-processing. Always the shipped weights: the card's numbers are those of that file, so
/// `MTSEG_TRAIN_WEIGHTS` does not apply here.
#[test]
fn held_out_quality_as_stated_in_the_model_card() {
    let split = split();
    let arch = architecture(CLASS_NAMES.len() as i64, WIDTH_DIVISOR);
    let mut params = ModelParams::new(arch, shipped_weights());
    params.device = Device::Cpu;
    let mut model = mtseg_infer::load_model(&params).unwrap();
    for (scale_factor, f1, aji) in STATED {
        let pp = NpHvParams {
            scale_factor,
            ..NpHvParams::hovernet()
        };
        let r = evaluate(model.as_mut(), &split.held_out, &pp, 8).unwrap();
        eprintln!("scale_factor {scale_factor}: {r}");
        assert_eq!(r.true_instances, 564);
        for (name, measured, stated) in [("F1", r.detection.f1, f1), ("AJI", r.aji, aji)] {
            assert!(
                (measured - stated).abs() <= 0.005,
                "scale_factor {scale_factor}: {name} measured {measured:.4}, the model card \
                 states {stated:.4}"
            );
        }
        assert!(
            r.detection.f1 >= 0.7,
            "F1 {:.4} is below the 0.7 aim",
            r.detection.f1
        );
    }
}

#[test]
fn forward_runs_at_the_stated_model_size() {
    let bytes = std::fs::metadata(weights()).unwrap().len();
    assert!(bytes <= 20 * 1024 * 1024, "{bytes} bytes");
    let mut params = ModelParams::new(
        architecture(CLASS_NAMES.len() as i64, WIDTH_DIVISOR),
        weights(),
    );
    params.device = Device::Cpu;
    let model = mtseg_infer::load_model(&params).unwrap();
    assert_eq!((model.input_size(), model.output_size()), (256, 164));
    let kinds: Vec<_> = model.heads().iter().map(|h| h.kind).collect();
    assert_eq!(kinds, [HeadKind::Np, HeadKind::Hv, HeadKind::Tp]);
}

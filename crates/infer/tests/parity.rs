//! Parity with TIAToolbox 2.1.3's `infer_batch` on the same weights and inputs, with and without
//! BatchNorm folding: np and hv within max |diff| 1e-4, tp / ls argmax identical except at exact
//! ties (counted: a mismatch is accepted only where our two best logits are within 1e-4).
//!
//! References: tests/fixtures/*.npy, made by tools/fixtures/infer_reference.py (see the README
//! there). Weights: `.venv/bin/python tools/fixtures/make_test_weights.py`.
//! Each forward of 2 patches takes a few seconds on a 2-core CPU. Run with `--nocapture` to see
//! the numbers; they are also appended to target/test-weights/parity-report.txt.

#![cfg(feature = "torch")]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::io::Write;

use mtseg_infer::{
    Architecture, BatchView, Device, ForwardOptions, HeadKind, HeadOutputs, HoVerNet,
    InferenceThread, ModelParams, PatchBatch, load_model,
};
use tch::{Kind, Tensor};

const TOL: f32 = 1e-4;
/// A tp/ls mismatch is accepted only where our two best logits are this close (a tie within
/// float rounding, the same tolerance as np/hv).
const TIE: f32 = 1e-4;

fn npy_f32(name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = Tensor::read_npy(fixtures::fixture(name))
        .unwrap()
        .to_kind(Kind::Float)
        .contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let mut v = vec![0f32; t.numel()];
    t.copy_data(&mut v, t.numel());
    (v, shape)
}

/// The 2 input patches at `size` (270, or its centre 256 crop).
fn inputs(size: usize) -> Vec<u8> {
    let (v, s) = npy_f32("input_270.npy");
    assert_eq!(s, [2, 270, 270, 3]);
    let off = (270 - size) / 2;
    let mut out = Vec::with_capacity(2 * size * size * 3);
    for n in 0..2 {
        for y in off..off + size {
            for x in off..off + size {
                for c in 0..3 {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    out.push(v[((n * 270 + y) * 270 + x) * 3 + c] as u8);
                }
            }
        }
    }
    out
}

/// Our head values at the reference's pixels (every `step`-th row and column).
fn subsample(data: &[f32], shape: [usize; 4], step: usize) -> Vec<f32> {
    let [n, h, w, c] = shape;
    let mut out = Vec::new();
    for i in 0..n {
        for y in (0..h).step_by(step) {
            for x in (0..w).step_by(step) {
                let at = ((i * h + y) * w + x) * c;
                out.extend_from_slice(&data[at..at + c]);
            }
        }
    }
    out
}

#[derive(Debug, Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn add(&mut self, s: String) {
        println!("{s}");
        self.lines.push(s);
    }
    fn save(&self) {
        let path = fixtures::weights_dir().join("parity-report.txt");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            for l in &self.lines {
                let _ = writeln!(f, "{l}");
            }
        }
    }
}

/// Compares `ours` with the references of `model`; returns argmax mismatches per head for tie
/// checking.
fn compare(
    model: &str,
    label: &str,
    ours: &HeadOutputs,
    report: &mut Report,
) -> Vec<(HeadKind, Vec<usize>)> {
    let mut mismatches = Vec::new();
    let mut failures = Vec::new();
    for head in &ours.heads {
        let (reference, rshape) = npy_f32(&format!("{model}.{}.npy", head.kind));
        let step = head.shape[1] / rshape[1];
        assert_eq!(rshape[3], head.shape[3], "{model} {}", head.kind);
        let mine = subsample(&head.data, head.shape, step);
        assert_eq!(mine.len(), reference.len(), "{model} {}", head.kind);
        match head.kind {
            HeadKind::Np | HeadKind::Hv => {
                let max = mine
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                let scale = reference.iter().map(|v| v.abs()).fold(0f32, f32::max);
                report.add(format!(
                    "{model} [{label}] {}: max |diff| {max:.3e} (max |value| {scale:.2})",
                    head.kind
                ));
                if max > TOL {
                    failures.push(format!(
                        "{model} [{label}] {}: max |diff| {max} > {TOL}",
                        head.kind
                    ));
                }
            }
            _ => {
                let bad: Vec<usize> = mine
                    .iter()
                    .zip(&reference)
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(i, _)| i)
                    .collect();
                report.add(format!(
                    "{model} [{label}] {}: {} of {} argmax differ",
                    head.kind,
                    bad.len(),
                    reference.len()
                ));
                mismatches.push((head.kind, bad));
            }
        }
    }
    report.save();
    assert!(failures.is_empty(), "{failures:#?}");
    mismatches
}

/// Every argmax mismatch must be an exact tie in our logits (top-2 within `TIE`).
fn check_ties(
    model: &str,
    label: &str,
    net: &mut HoVerNet,
    pixels: &[u8],
    size: usize,
    mism: &[(HeadKind, Vec<usize>)],
    report: &mut Report,
) {
    if mism.iter().all(|(_, v)| v.is_empty()) {
        report.add(format!(
            "{model} [{label}] ties at mismatches: 0 (no mismatch)"
        ));
        return;
    }
    let logits = net
        .forward_logits(BatchView::new(pixels, &[0, 1], size, size).unwrap())
        .unwrap();
    for (kind, idx) in mism {
        let t = logits.head(*kind).unwrap();
        let c = t.shape[3];
        let mut ties = 0;
        for &i in idx {
            let mut v: Vec<f32> = t.data[i * c..(i + 1) * c].to_vec();
            v.sort_by(|a, b| b.total_cmp(a));
            if v[0] - v[1] <= TIE {
                ties += 1;
            } else {
                panic!(
                    "{model} [{label}] {kind}: argmax differs at pixel {i} where the top logits are {} and {}",
                    v[0], v[1]
                );
            }
        }
        report.add(format!(
            "{model} [{label}] {kind}: {ties} mismatches, all at ties"
        ));
    }
}

fn run_model(model: &str, arch: &Architecture) {
    let size = arch.input_size() as usize;
    let pixels = inputs(size);
    let mut report = Report::default();
    let weights = fixtures::weights(&format!("{model}.pth"));
    for (label, options) in [
        ("tiatoolbox layers", ForwardOptions::reference()),
        ("bn folded + channels-last", ForwardOptions::default()),
    ] {
        let mut net =
            HoVerNet::load(&weights, arch, tch::Device::Cpu, Kind::Float, &options).unwrap();
        let t0 = std::time::Instant::now();
        let ours = mtseg_infer::Model::forward(
            &mut net,
            BatchView::new(&pixels, &[7, 9], size, size).unwrap(),
        )
        .unwrap();
        report.add(format!(
            "{model} [{label}] forward of 2 patches: {:.2} s",
            t0.elapsed().as_secs_f64()
        ));
        assert_eq!(ours.indices, [7, 9]);
        let mism = compare(model, label, &ours, &mut report);
        check_ties(model, label, &mut net, &pixels, size, &mism, &mut report);
        report.save();
        report.lines.clear();
    }
}

#[test]
fn hovernet_fast_6_types() {
    run_model(
        "hovernet_fast6",
        &Architecture::HoVerNetFast { num_types: Some(6) },
    );
}

#[test]
fn hovernet_original_5_types() {
    run_model(
        "hovernet_original5",
        &Architecture::HoVerNetOriginal { num_types: Some(5) },
    );
}

#[test]
fn hovernetplus_3_types_5_layers() {
    run_model(
        "hovernetplus3x5",
        &Architecture::HoVerNetPlus {
            num_types: 3,
            num_layers: 5,
        },
    );
}

/// The same model from .safetensors, NCHW, head convolutions merged, through the inference
/// thread, one patch per batch: same values as the reference.
#[test]
fn safetensors_nchw_through_the_inference_thread() {
    let arch = Architecture::HoVerNetOriginal { num_types: Some(5) };
    let mut params = ModelParams::new(
        arch.clone(),
        fixtures::weights("hovernet_original5.safetensors"),
    );
    params.device = Device::Cpu;
    params.options.channels_last = false;
    params.options.merge_head_convs = true;
    let thread = InferenceThread::spawn("infer-test", 2, move || load_model(&params)).unwrap();
    let pixels = inputs(270);
    let half = pixels.len() / 2;
    for (i, chunk) in [&pixels[..half], &pixels[half..]].into_iter().enumerate() {
        thread
            .submit(PatchBatch {
                indices: vec![i as u64],
                boxes: Vec::new(),
                patch: mtseg_types::Size2::new(270, 270),
                pixels: chunk.to_vec(),
            })
            .unwrap();
    }
    thread
        .submit(PatchBatch {
            indices: vec![],
            boxes: Vec::new(),
            patch: mtseg_types::Size2::new(270, 270),
            pixels: vec![],
        })
        .unwrap();
    let a = thread.recv().unwrap();
    let b = thread.recv().unwrap();
    let empty = thread.recv().unwrap();
    assert!(
        empty.is_empty()
            && empty
                .heads
                .iter()
                .all(|h| h.data.is_empty() && h.shape[0] == 0)
    );
    assert!(thread.join().unwrap().is_empty());
    // Concatenate the two single-patch batches and compare.
    let heads = a
        .heads
        .iter()
        .zip(&b.heads)
        .map(|(x, y)| {
            let mut t = x.clone();
            t.shape[0] = 2;
            t.data.extend_from_slice(&y.data);
            t
        })
        .collect();
    let both = HeadOutputs {
        indices: vec![0, 1],
        heads,
    };
    let mut report = Report::default();
    let label = "safetensors, bn folded + merged, NCHW, thread";
    let mism = compare("hovernet_original5", label, &both, &mut report);
    let options = ForwardOptions {
        channels_last: false,
        merge_head_convs: true,
        ..ForwardOptions::default()
    };
    let weights = fixtures::weights("hovernet_original5.safetensors");
    let mut net = HoVerNet::load(&weights, &arch, tch::Device::Cpu, Kind::Float, &options).unwrap();
    check_ties(
        "hovernet_original5",
        label,
        &mut net,
        &pixels,
        270,
        &mism,
        &mut report,
    );
    report.save();
}

//! bf16 on the CPU (`precision = "bf16"`, oneDNN's bf16 convolutions): the seeded random HoVer-Net
//! fast (6 types), the trained demo model (HoVer-Net fast / 8, `models/`) and the cheap
//! TorchScript model load and run through `load_model`, return float32 head values of the fp32
//! shapes, and stay within measured tolerances of their fp32 run on the two real `hgsc_nest`
//! patches of tests/fixtures/input_270.npy (256² centre crops).
//!
//! The tolerances are about twice the differences measured on this 2-core Sapphire Rapids VM
//! (libtorch 2.11, avx512_bf16) and stated per model below; `--nocapture` prints the measured
//! values. bf16 keeps 8 significant bits: each layer's output is rounded to about 2^-9 relative,
//! and a deep network amplifies that where its output is steep (np near 0.5). Each differs from
//! fp32 by more than zero: the test fails if bf16 were silently not applied.
//!
//! fp16 on the CPU stays refused (tests/errors.rs).

#![cfg(feature = "torch")]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};

use mtseg_infer::{
    Architecture, BatchView, Device, HeadKind, HeadOutputs, HeadSpec, HoVerNet, ModelParams,
    Precision, load_model,
};
use tch::{Kind, Tensor};

/// The two reference patches of `data/hgsc_nest.jpg`, 256² centre crops, NHWC u8.
fn patches() -> Vec<u8> {
    let t = Tensor::read_npy(fixtures::fixture("input_270.npy")).unwrap();
    assert_eq!(t.size(), [2, 270, 270, 3]);
    let t = t.narrow(1, 7, 256).narrow(2, 7, 256).contiguous();
    let mut v = vec![0u8; t.numel()];
    t.copy_data(&mut v, t.numel());
    v
}

fn demo_model() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/hovernet_fast_w8-hgsc_nest.safetensors");
    assert!(p.is_file(), "the demo model {} is missing", p.display());
    p
}

fn cheap_model() -> PathBuf {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models/cheap_hovernet.pt");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup (tools/fixtures/make_cheap_model.py)",
        p.display()
    );
    p
}

/// How bf16 head values differ from fp32's.
#[derive(Debug)]
struct Diff {
    /// max |bf16 − fp32| of the np probabilities.
    np_max: f32,
    /// mean |bf16 − fp32| of the np probabilities.
    np_mean: f64,
    /// Share of pixels on which the np > 0.5 foreground differs.
    np_mask: f64,
    /// max |bf16 − fp32| of hv.
    hv_max: f32,
    /// mean |bf16 − fp32| of hv.
    hv_mean: f64,
    /// Share of pixels whose tp class differs.
    tp_changed: f64,
}

fn diff(bf16: &HeadOutputs, fp32: &HeadOutputs) -> Diff {
    let pair = |k: HeadKind| {
        let (a, b) = (bf16.head(k).unwrap(), fp32.head(k).unwrap());
        assert_eq!(a.shape, b.shape, "{k} shape");
        assert!(
            a.data.iter().all(|v| v.is_finite()),
            "{k}: non-finite bf16 value"
        );
        (&a.data, &b.data)
    };
    let max = |(a, b): (&Vec<f32>, &Vec<f32>)| {
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    };
    let mean = |(a, b): (&Vec<f32>, &Vec<f32>)| {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from((x - y).abs()))
            .sum::<f64>()
            / a.len() as f64
    };
    let share = |(a, b): (&Vec<f32>, &Vec<f32>), f: &dyn Fn(f32, f32) -> bool| {
        a.iter().zip(b).filter(|&(&x, &y)| f(x, y)).count() as f64 / a.len() as f64
    };
    let (np, hv, tp) = (pair(HeadKind::Np), pair(HeadKind::Hv), pair(HeadKind::Tp));
    Diff {
        np_max: max(np),
        np_mean: mean(np),
        np_mask: share(np, &|x, y| (x > 0.5) != (y > 0.5)),
        hv_max: max(hv),
        hv_mean: mean(hv),
        tp_changed: share(tp, &|x, y| x != y),
    }
}

/// The model of `params` in fp32 and in bf16 on the CPU, both run on the two patches.
fn fp32_and_bf16(mut params: ModelParams) -> (HeadOutputs, HeadOutputs) {
    let pixels = patches();
    let view = BatchView::new(&pixels, &[3, 9], 256, 256).unwrap();
    params.device = Device::Cpu;
    params.precision = Precision::Fp32;
    let fp32 = load_model(&params).unwrap().forward(view).unwrap();
    params.precision = Precision::Bf16;
    let bf16 = load_model(&params).unwrap().forward(view).unwrap();
    assert_eq!(bf16.indices, [3, 9]);
    let heads = |o: &HeadOutputs| {
        o.heads
            .iter()
            .map(|h| (h.kind, h.shape))
            .collect::<Vec<_>>()
    };
    assert_eq!(heads(&bf16), heads(&fp32));
    (fp32, bf16)
}

/// The seeded random HoVer-Net fast: a random network's outputs are flat (np within 0.3..0.7,
/// tp logits near ties), so its tp classes are not compared; np and hv are, and the raw logits.
/// Measured: np max 0.071 / mean 0.010, hv max 0.28 / mean 0.031 (hv spans ±0.68).
#[test]
fn random_hovernet_fast_in_bf16_stays_near_fp32() {
    let arch = Architecture::HoVerNetFast { num_types: Some(6) };
    let (fp32, bf16) = fp32_and_bf16(ModelParams::new(
        arch,
        fixtures::weights("hovernet_fast6.safetensors"),
    ));
    let d = diff(&bf16, &fp32);
    println!("random hovernet fast6, bf16 vs fp32: {d:?}");
    assert!(
        d.np_max > 0.0 && d.hv_max > 0.0,
        "bf16 was not applied: {d:?}"
    );
    assert!(d.np_max <= 0.15 && d.np_mean <= 0.02, "{d:?}");
    assert!(d.hv_max <= 0.5 && d.hv_mean <= 0.06, "{d:?}");
}

/// The trained demo model (HoVer-Net fast, widths / 8): confident outputs, so the foreground
/// and the classes are compared too. Measured: np max 0.45 / mean 0.008 (the max at a pixel near
/// 0.5), np > 0.5 changed on 0.76% of pixels, hv max 0.18 / mean 0.016, tp changed on 0.91%.
#[test]
fn demo_model_in_bf16_keeps_its_foreground_and_classes() {
    let arch = Architecture::hovernet_fast(Some(4), 8);
    let (fp32, bf16) = fp32_and_bf16(ModelParams::new(arch, demo_model()));
    let d = diff(&bf16, &fp32);
    println!("demo model (hovernet fast / 8), bf16 vs fp32: {d:?}");
    assert!(
        d.np_max > 0.0 && d.hv_max > 0.0,
        "bf16 was not applied: {d:?}"
    );
    assert!(d.np_mean <= 0.016 && d.np_mask <= 0.015, "{d:?}");
    assert!(d.hv_max <= 0.36 && d.hv_mean <= 0.032, "{d:?}");
    assert!(d.tp_changed <= 0.02, "{d:?}");
}

/// The cheap TorchScript model (`torch.jit.script`, its constants cast with the module).
/// Measured: np max 0.0098 (np > 0.5 changed on 0.15% of pixels), hv max 0.004, tp changed on
/// 0.02% of pixels.
#[test]
fn cheap_torchscript_model_in_bf16_stays_near_fp32() {
    let arch = Architecture::TorchScript {
        heads: vec![
            HeadSpec::new(HeadKind::Np, 2),
            HeadSpec::new(HeadKind::Hv, 2),
            HeadSpec::new(HeadKind::Tp, 4),
        ],
        input_size: 256,
        output_size: 164,
    };
    let (fp32, bf16) = fp32_and_bf16(ModelParams::new(arch, cheap_model()));
    let d = diff(&bf16, &fp32);
    println!("cheap torchscript model, bf16 vs fp32: {d:?}");
    assert!(
        d.np_max > 0.0 && d.hv_max > 0.0,
        "bf16 was not applied: {d:?}"
    );
    assert!(d.np_max <= 0.02 && d.np_mask <= 0.003, "{d:?}");
    assert!(d.hv_max <= 0.01, "{d:?}");
    assert!(d.tp_changed <= 0.001, "{d:?}");
}

/// The native model's raw logits in bf16 come back as float32 through
/// [`HoVerNet::forward_logits`] too, for every head. Measured on the first patch, mean |diff| /
/// max |fp32 logit|: np 1.5%, hv 1.6%, tp 1.5% (max |diff| np 1.2 of 5.6).
#[test]
fn native_bf16_logits_come_back_as_f32() {
    let arch = Architecture::hovernet_fast(Some(4), 8);
    let pixels = patches();
    let view = BatchView::new(&pixels[..256 * 256 * 3], &[0], 256, 256).unwrap();
    let options = mtseg_infer::ForwardOptions::default();
    let mut fp32 = HoVerNet::load(
        &demo_model(),
        &arch,
        tch::Device::Cpu,
        Kind::Float,
        &options,
    )
    .unwrap();
    let mut bf16 = HoVerNet::load(
        &demo_model(),
        &arch,
        tch::Device::Cpu,
        Kind::BFloat16,
        &options,
    )
    .unwrap();
    let (a, b) = (
        fp32.forward_logits(view).unwrap(),
        bf16.forward_logits(view).unwrap(),
    );
    for (x, y) in a.heads.iter().zip(&b.heads) {
        assert_eq!(x.shape, y.shape, "{}", x.kind);
        let scale = x.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max = x
            .data
            .iter()
            .zip(&y.data)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        let mean = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(p, q)| f64::from((p - q).abs()))
            .sum::<f64>()
            / x.data.len() as f64;
        println!(
            "demo model raw {} logits: |bf16 - fp32| max {max} mean {mean} (scale {scale})",
            x.kind
        );
        assert!(
            max > 0.0 && mean <= 0.03 * f64::from(scale),
            "{}: {mean} of {scale}",
            x.kind
        );
    }
}

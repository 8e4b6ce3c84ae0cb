//! Parity with TIAToolbox 2.1.3 post-processing on the committed fixtures.
//!
//! Each folder of `tests/fixtures` holds quantised np/hv/tp(/ls) maps and what TIAToolbox's
//! `HoVerNet._proc_np_hv` + `get_instance_info` (and `HoVerNetPlus._proc_ls` + `_get_layer_info`)
//! returned for exactly the float32 values rebuilt here. Regenerate with
//! `tools/fixtures/.venv/bin/python tools/fixtures/postproc_reference.py` (see the fixtures README).
//!
//! Tolerance: none. Label maps must be identical (not just equal up to relabelling), and boxes,
//! contours, types must be equal, centroids and type probabilities equal to the bit.

#[allow(unreachable_pub)]
#[path = "support/metrics.rs"]
mod metrics;

use std::path::Path;

use anyhow::{Context, Result};
use mtseg_postproc::{
    CanvasView, NpHvParams, layer_info, postprocess_layers, postprocess_nuclei, proc_layers,
};
use mtseg_test_models::npy;
use serde_json::Value;

/// This crate's `tests/fixtures` folder.
fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Case {
    h: usize,
    w: usize,
    np: Vec<f32>,
    hv: Vec<f32>,
    tp: Option<Vec<f32>>,
    ls: Option<Vec<f32>>,
}

fn load_case(dir: &Path) -> Result<Case> {
    let np = npy::read(&dir.join("np_u16.npy.gz"))?;
    let (h, w) = (np.shape[0], np.shape[1]);
    let np: Vec<f32> = np
        .to_f64()
        .into_iter()
        .map(|q| q as f32 / 65535.0f32)
        .collect();
    let hv: Vec<f32> = npy::read(&dir.join("hv_i16.npy.gz"))?
        .to_f64()
        .into_iter()
        .map(|q| q as f32 / 32767.0f32)
        .collect();
    let half = |name: &str| -> Result<Option<Vec<f32>>> {
        let p = dir.join(name);
        if !p.exists() {
            return Ok(None);
        }
        Ok(Some(
            npy::read(&p)?
                .to_f64()
                .into_iter()
                .map(|q| q as f32 / 2.0f32)
                .collect(),
        ))
    };
    Ok(Case {
        h,
        w,
        np,
        hv,
        tp: half("tp_half_u8.npy.gz")?,
        ls: half("ls_half_u8.npy.gz")?,
    })
}

fn pair(v: &Value) -> [i32; 2] {
    [
        v[0].as_i64().expect("int") as i32,
        v[1].as_i64().expect("int") as i32,
    ]
}

fn check_case(name: &str) -> Result<()> {
    let dir = fixtures_dir().join(name);
    let case = load_case(&dir).with_context(|| name.to_string())?;
    let info: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("info.json"))?)?;
    let meta = &info["meta"];
    let scale = meta["scale_factor"].as_f64().expect("scale");
    let offset = pair(&meta["offset"]);
    let params = NpHvParams {
        scale_factor: scale,
        ..NpHvParams::hovernet()
    };
    let mut view = CanvasView::new(case.h, case.w, &case.np, &case.hv)?;
    if let Some(tp) = &case.tp {
        view = view.with_types(tp)?;
    }
    if let Some(ls) = &case.ls {
        view = view.with_layers(ls)?;
    }
    let out = postprocess_nuclei(&view, &params, offset)?;

    let expected: Vec<i32> = npy::read(&dir.join("inst_i32.npy.gz"))?
        .to_i64()
        .into_iter()
        .map(|v| v as i32)
        .collect();
    let agreement = metrics::compare(&out.labels, &expected);
    println!(
        "{name}: pixel agreement {:.6}, F1 {:.4} ({} / {} / {}), identical map: {}",
        agreement.pixel_agreement,
        agreement.f1,
        agreement.matched,
        agreement.n_pred,
        agreement.n_ref,
        out.labels == expected
    );
    assert!(agreement.pixel_agreement >= 0.995, "{name}: {agreement:?}");
    assert!(agreement.f1 >= 0.99, "{name}: {agreement:?}");
    assert_eq!(out.labels, expected, "{name}: label maps differ");

    let exp = info["instances"].as_array().expect("instances");
    assert_eq!(out.instances.len(), exp.len(), "{name}: instance count");
    for (got, e) in out.instances.iter().zip(exp) {
        let label = e["label"].as_i64().expect("label") as i32;
        assert_eq!(got.label, label, "{name}: labels");
        let bbox: Vec<i32> = e["box"]
            .as_array()
            .expect("box")
            .iter()
            .map(|v| v.as_i64().expect("int") as i32)
            .collect();
        assert_eq!(got.bbox.to_vec(), bbox, "{name} label {label}: box");
        let cb: Vec<u64> = e["centroid_bits"]
            .as_array()
            .expect("bits")
            .iter()
            .map(|v| v.as_u64().expect("u64"))
            .collect();
        assert_eq!(
            got.centroid.map(f64::to_bits).to_vec(),
            cb,
            "{name} label {label}: centroid"
        );
        let contour: Vec<[i32; 2]> = e["contour"]
            .as_array()
            .expect("contour")
            .iter()
            .map(pair)
            .collect();
        assert_eq!(got.contour, contour, "{name} label {label}: contour");
        if case.tp.is_some() {
            assert_eq!(
                got.type_id,
                Some(e["type"].as_u64().expect("type") as u32),
                "{name} label {label}: type"
            );
            assert_eq!(
                got.type_prob.map(f64::to_bits),
                Some(e["prob_bits"].as_u64().expect("bits")),
                "{name} label {label}: prob"
            );
        } else {
            assert_eq!((got.type_id, got.type_prob), (None, None));
        }
    }

    if case.ls.is_some() {
        let layers = postprocess_layers(&view, offset)?;
        let exp_map: Vec<u8> = npy::read(&dir.join("layer_u8.npy.gz"))?
            .to_i64()
            .into_iter()
            .map(|v| v as u8)
            .collect();
        assert_eq!(layers.layer_map, exp_map, "{name}: layer map");
        let exp: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("layer_info.json"))?)?;
        let exp = exp.as_array().expect("layers");
        assert_eq!(
            layers.regions.len(),
            exp.len(),
            "{name}: layer polygon count"
        );
        for (k, (got, e)) in layers.regions.iter().zip(exp).enumerate() {
            assert_eq!(e["key"].as_u64(), Some(k as u64 + 1));
            assert_eq!(
                u64::from(got.type_id),
                e["type"].as_u64().expect("type"),
                "{name} layer {k}: type"
            );
            let bbox: Vec<i32> = e["box"]
                .as_array()
                .expect("box")
                .iter()
                .map(|v| v.as_i64().expect("int") as i32)
                .collect();
            assert_eq!(got.bbox.to_vec(), bbox, "{name} layer {k}: box");
            let contour: Vec<[i32; 2]> = e["contour"]
                .as_array()
                .expect("contour")
                .iter()
                .map(pair)
                .collect();
            assert_eq!(got.contour, contour, "{name} layer {k}: contour");
        }
        // the two steps are usable alone too
        let again = proc_layers(case.ls.as_deref().expect("ls"), case.h, case.w)?;
        assert_eq!(layer_info(&again, case.h, case.w, offset)?, layers.regions);
    }
    Ok(())
}

#[test]
fn clean_targets() -> Result<()> {
    check_case("clean_512")
}

#[test]
fn noisy_targets() -> Result<()> {
    check_case("noisy_256")
}

#[test]
fn blurred_targets() -> Result<()> {
    check_case("blurred_256")
}

#[test]
fn touching_nuclei() -> Result<()> {
    check_case("touching_256")
}

#[test]
fn image_derived_model() -> Result<()> {
    check_case("image_model_320")
}

#[test]
fn hovernet_plus_nuclei_and_layers() -> Result<()> {
    check_case("hovernetplus_384")
}

#[test]
fn empty_canvas() -> Result<()> {
    check_case("empty_40")
}

#[test]
fn nuclei_on_the_border() -> Result<()> {
    check_case("borders_48x64")
}

//! Each kernel against the output of the OpenCV / SciPy / scikit-image call it reproduces
//! (`tests/fixtures/kernels`, made by `tools/fixtures/postproc_reference.py`). Bit-exact.

use mtseg_test_models::npy;

use crate::contours::{ChainApprox, ContourTracer};
use crate::fill_holes::fill_holes;
use crate::label_components::{LabelScratch, label_4conn, remove_small_labels};
use crate::morphology::{Element, MorphScratch, close, open};
use crate::normalize::{normalize_minmax_f32_channel, normalize_minmax_f64_to_f32};
use crate::sobel::{SeparableScratch, gaussian_blur_3x3_f64, sobel_f32, sobel_kernel};
use crate::watershed::{WatershedHeap, watershed};

/// This crate's `tests/fixtures` folder.
fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(name: &str) -> npy::NpyArray {
    npy::read(&fixtures_dir().join("kernels").join(name)).expect("fixture")
}

fn load_u8(name: &str) -> (Vec<u8>, usize, usize) {
    let a = load(name);
    (
        a.to_i64().into_iter().map(|v| v as u8).collect(),
        a.shape[0],
        a.shape[1],
    )
}

fn same_bits_f64(a: &[f64], b: &[f64]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

#[test]
fn deriv_kernels_match_get_deriv_kernels() {
    for ks in [21usize, 11] {
        let k = load(&format!("deriv_kernels_k{ks}.npy.gz")).to_f64();
        assert_eq!(sobel_kernel(ks, 1), k[..ks].to_vec());
        assert_eq!(sobel_kernel(ks, 0), k[ks..].to_vec());
    }
}

#[test]
fn sobel_normalize_gaussian_are_bit_exact() {
    for tag in ["a", "small"] {
        let x = load(&format!("sobel_in_{tag}.npy.gz"));
        let (h, w) = (x.shape[0], x.shape[1]);
        let src = x.to_f32();
        let mut s = SeparableScratch::default();
        let mut out = vec![0.0; h * w];
        for ks in [21usize, 11, 5] {
            for (hor, name) in [(true, "dx"), (false, "dy")] {
                let exp = load(&format!("sobel_{name}_k{ks}_{tag}.npy.gz")).to_f64();
                sobel_f32(&src, h, w, ks, hor, &mut out, &mut s);
                assert_eq!(same_bits_f64(&out, &exp), 0, "sobel {name} k{ks} {tag}");
            }
        }
        let sob = load(&format!("sobel_dx_k21_{tag}.npy.gz")).to_f64();
        let exp = load(&format!("norm64_{tag}.npy.gz")).to_f32();
        let mut o32 = vec![0.0f32; h * w];
        normalize_minmax_f64_to_f32(&sob, &mut o32);
        assert!(
            o32.iter()
                .zip(&exp)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "norm64 {tag}"
        );
        let xin = load(&format!("norm32_in_{tag}.npy.gz")).to_f32();
        let exp = load(&format!("norm32_{tag}.npy.gz")).to_f32();
        normalize_minmax_f32_channel(&xin, 1, 0, &mut o32);
        assert!(
            o32.iter()
                .zip(&exp)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "norm32 {tag}"
        );
        let gin = load(&format!("gauss_in_{tag}.npy.gz")).to_f64();
        let exp = load(&format!("gauss_{tag}.npy.gz")).to_f64();
        gaussian_blur_3x3_f64(&gin, h, w, &mut out, &mut s);
        assert_eq!(same_bits_f64(&out, &exp), 0, "gauss {tag}");
    }
}

#[test]
fn morphology_matches_morphology_ex() {
    let (b, h, w) = load_u8("bin_in.npy.gz");
    let mut ms = MorphScratch::default();
    let mut o = b.clone();
    open(&mut o, h, w, &Element::ellipse_5x5(), &mut ms);
    assert_eq!(o, load_u8("open_ellipse5.npy.gz").0, "ellipse opening");
    let (big, bh, bw) = load_u8("bin_big_in.npy.gz");
    let el = Element::rect(20, 20);
    let mut o = big.clone();
    close(&mut o, bh, bw, &el, &mut ms);
    assert_eq!(o, load_u8("close20.npy.gz").0, "20x20 closing");
    let mut o = big.clone();
    open(&mut o, bh, bw, &el, &mut ms);
    assert_eq!(o, load_u8("open20.npy.gz").0, "20x20 opening");
}

#[test]
fn fill_holes_and_labels_match_scipy_skimage() {
    let (b, h, w) = load_u8("bin_in.npy.gz");
    let mut inv: Vec<u8> = b.iter().map(|&v| 1 - v).collect();
    fill_holes(&mut inv, h, w, &mut Vec::new());
    assert_eq!(inv, load_u8("fill_holes.npy.gz").0);
    let mut lab = vec![0; h * w];
    let n = label_4conn(&b, h, w, &mut lab, &mut LabelScratch::default());
    let exp: Vec<i32> = load("label4.npy.gz")
        .to_i64()
        .into_iter()
        .map(|v| v as i32)
        .collect();
    assert_eq!(lab, exp);
    remove_small_labels(&mut lab, n, 9, &mut Vec::new());
    let exp: Vec<i32> = load("remove_small_le9.npy.gz")
        .to_i64()
        .into_iter()
        .map(|v| v as i32)
        .collect();
    assert_eq!(lab, exp);
}

#[test]
fn contours_match_find_contours() {
    let (c, h, w) = load_u8("contour_in.npy.gz");
    for (name, approx) in [("simple", ChainApprox::Simple), ("none", ChainApprox::None)] {
        let text = std::fs::read_to_string(
            fixtures_dir()
                .join("kernels")
                .join(format!("contours_{name}.json")),
        )
        .expect("fixture");
        let exp: Vec<Vec<[i32; 2]>> = serde_json::from_str(&text).expect("json");
        let mut t = ContourTracer::default();
        let (buf, stride) = t.reset(h, w);
        for y in 0..h {
            for x in 0..w {
                buf[(y + 1) * stride + x + 1] = i32::from(c[y * w + x]);
            }
        }
        t.trace_all(approx);
        let mut order = Vec::new();
        t.output_order(&mut order);
        let got: Vec<Vec<[i32; 2]>> = order.iter().map(|&id| t.points(id).to_vec()).collect();
        assert_eq!(got.len(), exp.len(), "{name}: contour count");
        for (k, (g, e)) in got.iter().zip(&exp).enumerate() {
            assert_eq!(g, e, "{name}: contour {k}");
        }
        assert_eq!(t.first_contour().map(<[_]>::to_vec), exp.first().cloned());
    }
}

#[test]
fn watershed_matches_skimage_with_ties() {
    let img = load("ws_img.npy.gz");
    let (h, w) = (img.shape[0], img.shape[1]);
    let img = img.to_f64();
    let mut lab: Vec<i32> = load("ws_markers.npy.gz")
        .to_i64()
        .into_iter()
        .map(|v| v as i32)
        .collect();
    let (mask, _, _) = load_u8("ws_mask.npy.gz");
    watershed(&img, &mut lab, &mask, h, w, &mut WatershedHeap::default());
    let exp: Vec<i32> = load("ws_out.npy.gz")
        .to_i64()
        .into_iter()
        .map(|v| v as i32)
        .collect();
    assert_eq!(lab, exp);
}

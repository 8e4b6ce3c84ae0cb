//! The stitched probability maps of the native HoVer-Net fast with seeded random weights
//! (`target/test-weights/hovernet_fast6.pth`, made by `scripts/setup`) on `hgsc_nest.jpg` at
//! 0.5 mpp, saved as Zarr by `mtseg-pipeline`, against TIAToolbox 2.1.3's `return_probabilities`
//! maps of the same run (`tests/fixtures/e2e/fast6_hgsc.probs_rows16.npy.gz`: every 16th row,
//! full width; np, h, v, tp). np and hv must agree within 1e-4.
//!
//! Slow (~100 HoVer-Net forwards on the CPU, a few minutes): the one test of this binary.

use std::process::Command;
use std::sync::Arc;

use mtseg_test_models::npy;
use mtseg_test_models::repo_root as root;
use sha2::{Digest, Sha256};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

/// The fixture rows: (rows, 1500, 4) float32.
fn tiatoolbox_rows() -> (Vec<f32>, usize) {
    let a = npy::read(&root().join("tests/fixtures/e2e/fast6_hgsc.probs_rows16.npy.gz")).unwrap();
    assert_eq!(a.shape, [94, 1500, 4]);
    (a.to_f32(), 94)
}

#[test]
fn random_weight_hovernet_maps_match_tiatoolbox_within_1e_4() {
    let weights = root().join("target/test-weights/hovernet_fast6.pth");
    assert!(weights.exists(), "run scripts/setup first");
    // the same input pixels as TIAToolbox: OpenCV's (libjpeg-turbo's) decode, which scripts/setup
    // saves losslessly (our JPEG decoder differs by +-1 on some pixels, and a random network
    // amplifies that far past 1e-4; see the README's differences)
    let runs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/e2e/runs.json")).unwrap(),
    )
    .unwrap();
    let want = runs["fast6_hgsc"]["image_decoded"]["sha256_rgb_u8"]
        .as_str()
        .unwrap();
    let slide = mtseg_slide::open_slide(
        &root().join("data/hgsc_nest_decoded.png"),
        mtseg_slide::OpenOptions {
            fallback_mpp: Some(0.5),
            ..Default::default()
        },
    )
    .unwrap();
    let img = slide
        .read_region(
            [0, 0, 1500, 1500],
            mtseg_slide::Resolution::Mpp(0.5),
            mtseg_slide::Interpolation::Optimise,
        )
        .unwrap();
    let got = format!("{:x}", Sha256::digest(img.as_raw()));
    assert_eq!(
        got, want,
        "data/hgsc_nest_decoded.png is not OpenCV's decode of hgsc_nest.jpg (rerun scripts/setup)"
    );

    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npreset = \"hovernet_fast-pannuke\"\nweights = {:?}\ndevice = \"cpu\"\nbatch_size = 8\n\
             [io]\nresolution = {{ mpp = 0.5 }}\ntile_shape = 2048\n\
             [input]\nslides = [{:?}]\nmpp = 0.5\nmask = \"none\"\n\
             [output]\ndir = {:?}\nformats = [\"zarr\"]\nsave_probabilities = true\n",
            weights.display().to_string(),
            root().join("data/hgsc_nest_decoded.png").display().to_string(),
            tmp.path().join("out").display().to_string()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"))
        .args(["--config", cfg.to_str().unwrap(), "--progress", "none"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // TIAToolbox's names: `probabilities/<head>` inside the slide's Zarr output.
    let store = tmp.path().join("out/hgsc_nest_decoded.zarr");
    let fs = Arc::new(FilesystemStore::new(&store).unwrap());
    let read = |head: usize, c: u64| -> Vec<f32> {
        let a = Array::open(fs.clone(), &format!("/probabilities/{head}")).unwrap();
        a.retrieve_array_subset(&ArraySubset::new_with_ranges(&[0..1500, 0..1500, 0..c]))
            .unwrap()
    };
    let (np, hv, tp) = (read(0, 1), read(1, 2), read(2, 1));
    let (theirs, rows) = tiatoolbox_rows();
    let (mut max_np, mut max_hv, mut tp_diff) = (0f32, 0f32, 0usize);
    for r in 0..rows {
        let y = r * 16;
        for x in 0..1500 {
            let t = &theirs[(r * 1500 + x) * 4..(r * 1500 + x) * 4 + 4];
            let p = y * 1500 + x;
            max_np = max_np.max((np[p] - t[0]).abs());
            max_hv = max_hv
                .max((hv[2 * p] - t[1]).abs())
                .max((hv[2 * p + 1] - t[2]).abs());
            tp_diff += usize::from(tp[p] != t[3]);
        }
    }
    println!(
        "random-weight HoVer-Net fast, hgsc_nest 0.5 mpp, {} px compared: max |np| diff {max_np:.2e}, \
         max |hv| diff {max_hv:.2e}, tp ids differing {tp_diff}",
        rows * 1500
    );
    assert!(max_np <= 1e-4 && max_hv <= 1e-4, "np {max_np} hv {max_hv}");
}

//! `mtseg-pipeline --config` end to end with the cheap TorchScript test model
//! (`tools/fixtures/make_cheap_model.py`, made by `scripts/setup`), against TIAToolbox 2.1.3's
//! `MultiTaskSegmentor` run of the same model file on the same inputs
//! (`tests/fixtures/e2e/`, made by `tools/fixtures/tiatoolbox_e2e.py`): the nuclei must match
//! (F1 >= 0.99 at IoU 0.5), and every output must be complete and readable.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mtseg_test_models::{cheap_model, repo_root as root};
use mtseg_test_models::{match_instances, rasterise_contours};

fn run(config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"))
        .arg("--config")
        .arg(config)
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap()
}

fn config(dir: &Path, slide: &str, io: &str, input: &str) -> PathBuf {
    let text = format!(
        "[model]\narchitecture = \"torchscript\"\nheads = [\"np\", \"hv\", \"tp\"]\n\
         weights = {:?}\nnuclei_classes = [\"Background\", \"Dark\", \"Pale\", \"Large\"]\n\
         device = \"cpu\"\nbatch_size = 8\n\
         [io]\npatch_input = 256\npatch_output = 164\nstride = 164\nmargin = 128\n{io}\n\
         [input]\nslides = [{:?}]\n{input}\n\
         [output]\ndir = {:?}\nformats = [\"annotationstore\", \"qupath\", \"zarr\"]\n",
        cheap_model().display().to_string(),
        root().join(slide).display().to_string(),
        dir.join("out").display().to_string(),
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `(id, contour)` of TIAToolbox's nuclei from a fixture file.
fn tiatoolbox_nuclei(name: &str) -> Vec<(u64, Vec<[i32; 2]>)> {
    let f = std::fs::File::open(root().join("tests/fixtures/e2e").join(name)).unwrap();
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    v["nuclei"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let flat: Vec<i32> = n[3]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() as i32)
                .collect();
            (i as u64 + 1, flat.chunks(2).map(|p| [p[0], p[1]]).collect())
        })
        .collect()
}

/// `(id, contour)` of our nuclei, from the GeoJSON (baseline coordinates) scaled back by
/// `1 / scale` to the processing resolution, checking every feature on the way.
fn our_nuclei(geojson: &Path, scale: f64) -> Vec<(u64, Vec<[i32; 2]>)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(geojson).unwrap()).unwrap();
    assert_eq!(v["type"], "FeatureCollection");
    let mut out = Vec::new();
    for (i, f) in v["features"].as_array().unwrap().iter().enumerate() {
        assert_eq!(f["properties"]["objectType"], "detection", "{f}");
        assert!(f["properties"]["classification"]["name"].is_string(), "{f}");
        let g = &f["geometry"];
        let polys: Vec<&serde_json::Value> = match g["type"].as_str().unwrap() {
            "Polygon" => vec![&g["coordinates"]],
            "MultiPolygon" => g["coordinates"].as_array().unwrap().iter().collect(),
            t => panic!("feature {i}: geometry {t}"),
        };
        let mut contour = Vec::new();
        for p in polys {
            let ring = p[0].as_array().unwrap();
            assert!(
                ring.len() >= 4,
                "feature {i}: ring of {} points",
                ring.len()
            );
            assert_eq!(ring.first(), ring.last(), "feature {i}: ring not closed");
            for xy in &ring[..ring.len() - 1] {
                let (x, y) = (xy[0].as_f64().unwrap(), xy[1].as_f64().unwrap());
                contour.push([(x / scale).round() as i32, (y / scale).round() as i32]);
            }
        }
        out.push((i as u64 + 1, contour));
    }
    out
}

fn count_store_rows(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    let meta: String = c
        .query_row(
            "SELECT value FROM metadata WHERE key = 'compression'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(meta, "\"zlib\"");
    let rtree: i64 = c
        .query_row("SELECT count(*) FROM rtree", [], |r| r.get(0))
        .unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM annotations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, rtree);
    n
}

fn compare(
    ours: &[(u64, Vec<[i32; 2]>)],
    theirs: &[(u64, Vec<[i32; 2]>)],
    w: usize,
    h: usize,
) -> f64 {
    let a = rasterise_contours(ours, w, h);
    let b = rasterise_contours(theirs, w, h);
    let m = match_instances(&b, &a, w, h, 0.5);
    println!(
        "ours {} vs TIAToolbox {}: tp {} fp {} fn {} F1 {:.4} mean IoU {:.4}",
        ours.len(),
        theirs.len(),
        m.tp,
        m.fp,
        m.fn_,
        m.f1,
        m.mean_iou
    );
    m.f1
}

/// Post-processing calls `--dry-run` plans for the (one) slide of `cfg`: tiles + seam strips +
/// cross sections, or 1 for the whole canvas.
fn planned_tiles(cfg: &Path) -> usize {
    let o = run(cfg, &["--dry-run"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("post-processing:"))
        .unwrap_or_else(|| panic!("no post-processing line in:\n{stdout}"));
    if line.contains("whole canvas") {
        return 1;
    }
    // "  post-processing: 35 tiles of 984 px + 58 seam strips + 24 cross sections (margin 128)"
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = |w: &str| -> usize {
        let i = words.iter().position(|x| *x == w).unwrap();
        words[i - 1].parse().unwrap()
    };
    before("tiles") + before("seam") + before("cross")
}

#[test]
fn hgsc_nest_matches_tiatoolbox_with_the_cheap_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "data/hgsc_nest.jpg",
        "resolution = { mpp = 0.5 }\ntile_shape = 2048",
        "mpp = 0.5\nmask = \"none\"",
    );
    let o = run(&cfg, &["--progress", "json"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stdout}\n{stderr}");
    // JSON-lines progress: every line parses, the run ends with run_finished
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    let out = tmp.path().join("out");
    let ours = our_nuclei(&out.join("hgsc_nest.geojson"), 1.0);
    let theirs = tiatoolbox_nuclei("cheap_hgsc_0.5mpp.nuclei.json.gz");
    assert!(compare(&ours, &theirs, 1500, 1500) >= 0.99);
    assert_eq!(
        count_store_rows(&out.join("hgsc_nest.db")),
        ours.len() as i64
    );
    assert!(out.join("hgsc_nest.zarr/zarr.json").exists());
    assert!(stdout.contains("hgsc_nest.db"), "{stdout}");
}

#[test]
fn cmu_small_region_at_0_25_mpp_in_tile_mode_matches_tiatoolbox() {
    let tmp = tempfile::tempdir().unwrap();
    // TIAToolbox's mask rule and resampling, so both engines read the same 495 patches
    let cfg = config(
        tmp.path(),
        "data/cmu_small_region.svs",
        "resolution = { mpp = 0.25 }\ntile_shape = 2048\ninterpolation = \"tiatoolbox\"",
        "mask = \"auto\"\nmask_rule = \"tiatoolbox\"",
    );
    let o = run(&cfg, &["--progress", "log"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("495 patches"), "{stderr}");
    // the dry run plans the post-processing tiles the run made (README difference 18)
    let planned = planned_tiles(&cfg);
    let ran: usize = stdout
        .lines()
        .find(|l| l.contains("cmu_small_region.svs") && !l.contains("->"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no tiles column for the slide in:\n{stdout}"));
    assert_eq!(ran, planned, "{stdout}");
    let out = tmp.path().join("out");
    // baseline is 0.499 mpp: polygons are scaled by 0.25 / 0.499
    let ours = our_nuclei(&out.join("cmu_small_region.geojson"), 0.25 / 0.499);
    let theirs = tiatoolbox_nuclei("cheap_cmu_0.25mpp.nuclei.json.gz");
    assert!(compare(&ours, &theirs, 4431, 5922) >= 0.99);
    assert_eq!(
        count_store_rows(&out.join("cmu_small_region.db")),
        ours.len() as i64
    );
}

#[test]
fn existing_outputs_stop_the_run_before_any_work_and_stay_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "data/hgsc_nest.jpg",
        "resolution = { mpp = 0.5 }\ntile_shape = 2048",
        "mpp = 0.5\nmask = \"none\"",
    );
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("hgsc_nest.db"), b"an older result").unwrap();
    let o = run(&cfg, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("hgsc_nest.db") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(out.join("hgsc_nest.db")).unwrap(),
        b"an older result"
    );
    assert!(!out.join("hgsc_nest.geojson").exists());
    // --overwrite replaces it with a real store
    let o = run(&cfg, &["--overwrite", "--progress", "none"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(count_store_rows(&out.join("hgsc_nest.db")) > 100);
}

#[test]
fn an_unwritable_output_directory_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("out");
    std::fs::write(&blocker, b"a file where the output directory should be").unwrap();
    let cfg = config(
        tmp.path(),
        "data/hgsc_nest.jpg",
        "resolution = { mpp = 0.5 }\ntile_shape = 2048",
        "mpp = 0.5\nmask = \"none\"",
    );
    let o = run(&cfg, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("output directory") && stderr.contains("out"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_leaves_no_file_under_a_final_name() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "data/cmu_small_region.svs",
        "resolution = { mpp = 0.25 }\ntile_shape = 2048",
        "mask = \"auto\"",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtseg-pipeline"))
        .arg("--config")
        .arg(&cfg)
        .args(["--progress", "json"])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait until patches are flowing, then interrupt
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "the run ended before any patch was done");
        if line.contains("\"patches_done\"") {
            break;
        }
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("cancelled"), "{rest}");
    // only the state folder (the slide's lock file, its started record and checkpoint) stays
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".mtseg")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let state = tmp.path().join("out/.mtseg");
    assert!(
        !state.join("cmu_small_region.done.json").exists()
            && !state.join("cmu_small_region.failed.json").exists(),
        "an interrupted slide is neither done nor failed"
    );
}

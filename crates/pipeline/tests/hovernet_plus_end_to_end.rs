//! HoVer-Net+ through the whole streamed pipeline (read -> infer -> stitch -> nuclei and layer
//! post-processing -> merge -> .db / GeoJSON / Zarr) with the oracle test model on
//! `hgsc_nest.jpg`: heads `np, hv, tp` rendered from the image's known nuclei and `ls` from a
//! synthetic layer raster (bands, holes and blobs of classes 1-3, see
//! `mtseg_test_models::synthetic_layer_raster`), in full-canvas mode (the canvas fits the
//! tile) and in tile mode. The nuclei and the layers must come back, in every output format:
//!
//! - nuclei: F1 at IoU 0.5 against the true instances;
//! - layer polygons: exactly TIAToolbox's layer post-processing of the `ls` canvas (in tile
//!   mode, its dense tile-mode map: each tile's cleaned crop over its bounds, full tiles, then
//!   strips, then crosses), and per class an IoU with the true raster above a bound set from
//!   what that post-processing does (comment in `check`);
//! - `<stem>_layer_segmentation.db`: TIAToolbox's schema, one row per polygon with its key,
//!   `{"box", "type"}` properties (class names of the preset) and the contour as geometry;
//!   `<stem>_layer_segmentation.geojson`: one classified annotation per polygon;
//! - `<stem>.zarr`: `layer_segmentation/layer_map` equals the polygons drawn (holes empty), the
//!   tables their ids and types.
//!
//! About 5 s in the test profile (two pipeline runs of 100 patches each).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use mtseg_export::SlideExportSpec;
use mtseg_export::{Task, annotation_key};
use mtseg_instmerge::{MergedItem, dense_tile_layer_map};
use mtseg_io_config::{RunConfig, Size2};
use mtseg_pipeline::{
    CollectedSlide, Engine, ExportOutputs, MemoryOutputs, NoProgress, OutputError, OutputProvider,
    SlideOutput,
};
use mtseg_postproc::{LayerRegion, NucleusInstance, layer_info, proc_layers};
use mtseg_test_models::{
    LabelSource, RasterLabels, match_instances, rasterise_contours, rasterise_layer_polygons,
    read_annotation_store, read_zarr_array, synthetic_layer_raster,
};

#[path = "support/oracle_provider.rs"]
mod oracle_provider;
use oracle_provider::OracleProvider;

/// `hgsc_nest.jpg` (read at its own 0.5 mpp, the HoVer-Net+ resolution: 1500 x 1500).
const W: usize = 1500;
const H: usize = 1500;
/// `hovernetplus-oed` layer classes.
const LAYER_NAMES: [&str; 5] = [
    "Background",
    "Other Tissue",
    "Basal Epithelium",
    "(Core) Epithelium",
    "Keratin",
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

/// Writes every file (the export crate) and keeps the records in memory too.
#[derive(Default)]
struct Tee(MemoryOutputs);

struct TeeOutput(Box<dyn SlideOutput>, Box<dyn SlideOutput>);

impl OutputProvider for Tee {
    fn create(&self, spec: &SlideExportSpec) -> Result<Box<dyn SlideOutput>, OutputError> {
        Ok(Box::new(TeeOutput(
            self.0.create(spec)?,
            ExportOutputs.create(spec)?,
        )))
    }
}

impl SlideOutput for TeeOutput {
    fn nuclei(&mut self, items: &[MergedItem<NucleusInstance>]) -> Result<(), OutputError> {
        self.0.nuclei(items)?;
        self.1.nuclei(items)
    }
    fn layers(&mut self, items: &[MergedItem<LayerRegion>]) -> Result<(), OutputError> {
        self.0.layers(items)?;
        self.1.layers(items)
    }
    fn rows_final(&mut self, y: u64) -> Result<(), OutputError> {
        self.0.rows_final(y)?;
        self.1.rows_final(y)
    }
    fn probabilities_dir(&self) -> Option<PathBuf> {
        self.1.probabilities_dir()
    }
    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
        self.0.finish()?;
        self.1.finish()
    }
}

/// The HoVer-Net+ preset (256 -> 164 at 0.5 mpp, layer classes named by the preset), no tissue
/// mask, every output format with the dense maps.
fn config(dir: &Path, slide: &Path, tile: u32, margin: u32) -> Result<RunConfig> {
    let text = format!(
        "[model]\npreset = \"hovernetplus-oed\"\nbatch_size = 8\n\
         [io]\nresolution = {{ mpp = 0.5 }}\ntile_shape = {tile}\nmargin = {margin}\n\
         [input]\nslides = [{:?}]\nmpp = 0.5\nmask = \"none\"\n\
         [output]\ndir = {:?}\nformats = [\"annotationstore\", \"qupath\", \"zarr\"]\n\
         save_predictions = true\n",
        slide.display().to_string(),
        dir.join("out").display().to_string()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, &text)?;
    let cfg = RunConfig::from_file(&path)?;
    assert_eq!(cfg.model.layer_classes, LAYER_NAMES);
    Ok(cfg)
}

/// IoU of the pixels of `class` in two maps.
fn class_iou(a: &[u8], b: &[u8], class: u8) -> f64 {
    let (mut i, mut u) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        i += usize::from(x == class && y == class);
        u += usize::from(x == class || y == class);
    }
    i as f64 / u.max(1) as f64
}

/// `map` shifted by `(d, d)` pixels right and down (0 where nothing comes in).
fn shifted(map: &[u8], d: usize) -> Vec<u8> {
    let mut out = vec![0u8; W * H];
    for y in d..H {
        out[y * W + d..(y + 1) * W].copy_from_slice(&map[(y - d) * W..(y + 1 - d) * W - d]);
    }
    out
}

/// Pixels where two maps differ, with the first few `(x, y, a, b)`.
fn differences(a: &[u8], b: &[u8]) -> (usize, Vec<(usize, usize, u8, u8)>) {
    let d: Vec<_> = a
        .iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i % W, i / W, *x, *y))
        .collect();
    (d.len(), d.into_iter().take(8).collect())
}

/// What the layer post-processing should give for this run: TIAToolbox's layer map of the
/// `ls` canvas (the truth raster: stride = output, so nothing is averaged), whole in full mode,
/// tile by tile in tile mode (each tile's cleaned map over its bounds, full tiles, then strips,
/// then crosses, as TIAToolbox's dense tile-mode `predictions`).
fn expected_layer_map(truth: &[u8], tiled: Option<(u64, u64)>) -> Result<Vec<u8>> {
    let ls: Vec<f32> = truth.iter().map(|&c| f32::from(c)).collect();
    let Some((tile, margin)) = tiled else {
        return Ok(proc_layers(&ls, H, W)?);
    };
    Ok(dense_tile_layer_map(
        &ls,
        Size2::new(W as u64, H as u64),
        tile,
        margin,
    )?)
}

/// One mode's run: the slide's records, its output directory and the tile count.
struct Run {
    slide: CollectedSlide,
    out: PathBuf,
    tiles: usize,
}

fn run(truth: &RasterLabels, tile: u32, margin: u32) -> Result<(Run, tempfile::TempDir)> {
    let tmp = tempfile::tempdir()?;
    let cfg = config(tmp.path(), &data().join("hgsc_nest.jpg"), tile, margin)?;
    let outputs = Tee::default();
    let source: Arc<dyn LabelSource> = Arc::new(truth.clone());
    let summary = Engine::new(
        &cfg,
        &OracleProvider::new(source).with_layers(),
        &outputs,
        &NoProgress,
    )
    .run()?;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let s = &summary.slides[0];
    let slide = outputs.0.collected().remove(0);
    assert!(slide.finished);
    assert_eq!(s.layers, slide.layers.len() as u64);
    assert_eq!(s.nuclei, slide.nuclei.len() as u64);
    println!(
        "tile_shape {tile} margin {margin}: {} tiles, {} nuclei, {} layer polygons, {:.2} s, {:?}",
        s.tiles, s.nuclei, s.layers, s.wall_s, s.stages
    );
    let run = Run {
        slide,
        out: tmp.path().join("out"),
        tiles: s.tiles,
    };
    Ok((run, tmp))
}

/// Checks one mode. `tiled`: the effective tile and margin in tile mode. `iou_bounds`: the
/// least IoU of each layer class 1-3 with the truth, and with the truth shifted by (2, 2).
fn check(
    truth: &RasterLabels,
    layers: &[u8],
    run: &Run,
    tiled: Option<(u64, u64)>,
    iou_bounds: [[f64; 3]; 2],
) -> Result<()> {
    let s = &run.slide;
    match tiled {
        None => assert_eq!(run.tiles, 1, "full-canvas mode"),
        Some(_) => assert!(run.tiles > 4, "tile mode, got {} tiles", run.tiles),
    }

    // nuclei: as in oracle_end_to_end.rs, at HoVer-Net+'s scale (Sobel 11, marker area 3)
    let nuclei: Vec<(u64, Vec<[i32; 2]>)> = s
        .nuclei
        .iter()
        .map(|n| (n.id, n.item.contour.clone()))
        .collect();
    let pred = rasterise_contours(&nuclei, W, H);
    let m = match_instances(truth.labels(), &pred, W, H, 0.5);
    println!(
        "  nuclei F1 {:.4} (tp {} fp {} fn {})",
        m.f1, m.tp, m.fp, m.fn_
    );
    // measured 0.981 (full) and 0.979 (tile mode): the misses are small or thin nuclei
    assert!(m.f1 >= 0.975, "F1 {}", m.f1);

    // layer polygons: ids 1..=N, classes 1-3, each present
    assert!(
        s.layers
            .iter()
            .enumerate()
            .all(|(i, l)| l.id == i as u64 + 1)
    );
    for c in 1..=3u8 {
        assert!(s.layers.iter().any(|l| l.item.type_id == c), "no class {c}");
    }
    assert!(s.layers.iter().all(|l| (1..=3).contains(&l.item.type_id)));

    // exactly TIAToolbox's layer post-processing of the truth
    let polygons: Vec<(u8, &[[i32; 2]])> = s
        .layers
        .iter()
        .map(|l| (l.item.type_id, &l.item.contour[..]))
        .collect();
    let drawn = rasterise_layer_polygons(&polygons, W, H);
    let expected = expected_layer_map(layers, tiled)?;
    let (n, first) = differences(&drawn, &expected);
    assert_eq!(n, 0, "polygons vs TIAToolbox's layer map: {first:?}");
    if tiled.is_none() {
        // in full mode, the very polygons of `_get_layer_info` (in another order: our ids
        // follow the first contour point, row-major)
        let want = layer_info(&expected, H, W, [0, 0])?;
        let mut want: Vec<_> = want.iter().map(|r| (&r.contour, r.type_id)).collect();
        let mut got: Vec<_> = s
            .layers
            .iter()
            .map(|l| (&l.item.contour, l.item.type_id))
            .collect();
        want.sort();
        got.sort();
        assert!(
            got == want,
            "{} polygons, expected {}",
            got.len(),
            want.len()
        );
    }

    // ... and close to the truth. TIAToolbox's `_proc_ls` closes then opens every class with a
    // 20 x 20 square anchored at (10, 10) (offsets -10..=+9, the same for erosion and dilation,
    // as OpenCV does): each operation moves every edge one pixel right and down, so the result
    // is the raster shifted by (2, 2), which costs a band `t` px thick an IoU of about
    // (t - 2) / (t + 2) (0.94 for the 70 px class-2 band). Beyond the shift it rounds corners
    // (caps of ~1.5 px on the 35-50 px discs) and turns each 3,848 px class-3 disc (under the
    // 20,000 px epithelium minimum) into class 1. Tile mode cleans each tile's crop on its own
    // (TIAToolbox's dense tile map): pieces of epithelium cut by the narrow strips and crosses
    // fall under 20,000 px and become class 1, and edges are not shifted at tile borders.
    // Bounds: just below the IoUs measured (printed).
    let truth_shifted = shifted(layers, 2);
    for c in 1..=3u8 {
        let (iou, iou_shifted) = (
            class_iou(&drawn, layers, c),
            class_iou(&drawn, &truth_shifted, c),
        );
        println!("  class {c}: IoU {iou:.4}, with the truth shifted by (2, 2) {iou_shifted:.4}");
        let k = usize::from(c - 1);
        assert!(iou >= iou_bounds[0][k], "class {c}: IoU {iou}");
        assert!(
            iou_shifted >= iou_bounds[1][k],
            "class {c}: IoU {iou_shifted}"
        );
    }

    check_store(s, &run.out, tiled.is_none())?;
    check_geojson(s, &run.out)?;

    // the Zarr: the layer map (slide size) is the polygons filled, i.e. the same map
    let zarr = run.out.join("hgsc_nest.zarr");
    let (map, shape) = read_zarr_array::<u8>(&zarr, "/layer_segmentation/layer_map")?;
    assert_eq!(shape, [H as u64, W as u64]);
    let (n, first) = differences(&map, &drawn);
    println!("  Zarr layer map: {n} pixels differ from the polygons");
    assert_eq!(n, 0, "Zarr layer map vs polygons: {first:?}");
    let (ids, _) = read_zarr_array::<u64>(&zarr, "/layer_segmentation/id")?;
    let (types, _) = read_zarr_array::<u32>(&zarr, "/layer_segmentation/type")?;
    assert_eq!(ids, s.layers.iter().map(|l| l.id).collect::<Vec<_>>());
    assert_eq!(
        types,
        s.layers
            .iter()
            .map(|l| u32::from(l.item.type_id))
            .collect::<Vec<_>>()
    );
    let (inst, _) = read_zarr_array::<u32>(&zarr, "/nuclei_segmentation/instance_map")?;
    assert_eq!(
        inst.iter().copied().max(),
        s.nuclei.last().map(|n| n.id as u32)
    );
    Ok(())
}

/// `<stem>_layer_segmentation.db` in TIAToolbox's schema, one annotation per polygon (all of
/// them simple in full mode; in tile mode the cuts between tiles leave a few one-pixel spurs),
/// and `<stem>_nuclei_segmentation.db` with the nuclei.
fn check_store(s: &CollectedSlide, out: &Path, full_mode: bool) -> Result<()> {
    let db = read_annotation_store(&out.join("hgsc_nest_layer_segmentation.db"))?;
    let tables: Vec<&str> = db.tables.iter().map(|(n, _)| n.as_str()).collect();
    for t in ["annotations", "metadata", "rtree"] {
        assert!(tables.contains(&t), "{tables:?}");
    }
    let rtree_sql = &db.tables.iter().find(|(n, _)| n == "rtree").unwrap().1;
    // TIAToolbox's column order: id, min_x, max_x, min_y, max_y
    let at = |c: &str| rtree_sql.find(c).unwrap_or(usize::MAX);
    assert!(
        rtree_sql.contains("USING rtree(")
            && at("min_x") < at("max_x")
            && at("max_x") < at("min_y")
            && at("min_y") < at("max_y")
            && at("max_y") < usize::MAX,
        "{rtree_sql}"
    );
    let meta = |k: &str| {
        db.metadata
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(meta("version"), Some("\"1.0.1\""));
    assert_eq!(meta("compression"), Some("\"zlib\""));
    assert_eq!(db.annotations.len(), s.layers.len());
    assert_eq!(db.rtree.len(), s.layers.len());
    let mut simple = 0;
    for (a, l) in db.annotations.iter().zip(&s.layers) {
        assert_eq!(
            a.key,
            annotation_key("hgsc_nest", Task::Layers, l.id).to_string()
        );
        let p: serde_json::Value = serde_json::from_str(&a.properties)?;
        let b = l.item.bbox;
        assert_eq!(
            p,
            serde_json::json!({"box": b, "type": LAYER_NAMES[usize::from(l.item.type_id)]})
        );
        assert!(a.area > 0.0);
        // scale factor 1 (read at the slide's own 0.5 mpp): the exterior ring is the contour,
        // closed, unless the contour touches itself (a one-pixel spur or neck: then its loops
        // with area, as a MultiPolygon or a single Polygon without the spurs)
        let contour: Vec<[f64; 2]> = l
            .item
            .contour
            .iter()
            .map(|p| [f64::from(p[0]), f64::from(p[1])])
            .collect();
        let ring = &a.polygons[0][0];
        assert_eq!(ring.first(), ring.last());
        let same = a.objtype == "Polygon" && ring[..ring.len() - 1] == contour[..];
        if same {
            simple += 1;
        } else {
            let mut pts = l.item.contour.clone();
            pts.sort_unstable();
            pts.dedup();
            assert!(
                pts.len() < l.item.contour.len(),
                "layer {} ({}) was changed but its contour does not touch itself",
                l.id,
                a.objtype
            );
        }
    }
    println!(
        "  .db: {} layer annotations, {simple} with the contour as their exterior ring",
        db.annotations.len()
    );
    if full_mode {
        assert_eq!(simple, db.annotations.len());
    }
    let nuclei = read_annotation_store(&out.join("hgsc_nest_nuclei_segmentation.db"))?;
    assert_eq!(nuclei.annotations.len(), s.nuclei.len());
    let p: serde_json::Value = serde_json::from_str(&nuclei.annotations[0].properties)?;
    assert!(
        p.get("centroid").is_some() && p.get("prob").is_some(),
        "{p}"
    );
    Ok(())
}

/// `<stem>_layer_segmentation.geojson`: one annotation feature per polygon, classified by name.
fn check_geojson(s: &CollectedSlide, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(out.join("hgsc_nest_layer_segmentation.geojson"))?;
    let g: serde_json::Value = serde_json::from_str(&text)?;
    let features = g["features"].as_array().expect("features");
    assert_eq!(features.len(), s.layers.len());
    for (f, l) in features.iter().zip(&s.layers) {
        assert_eq!(f["properties"]["objectType"], "annotation");
        assert_eq!(
            f["properties"]["classification"]["name"],
            LAYER_NAMES[usize::from(l.item.type_id)]
        );
    }
    Ok(())
}

#[test]
fn hovernet_plus_nuclei_and_layers_come_back_in_full_and_tile_mode() -> Result<()> {
    let started = std::time::Instant::now();
    let layers = synthetic_layer_raster(W, H);
    let truth = RasterLabels::hgsc_nest(&data())?
        .with_layers(layers.clone())?
        .with_num_layers(5);

    // full-canvas mode: the 1500 x 1500 canvas fits the preset's 2048 tile
    let (full, _tmp) = run(&truth, 2048, 128)?;
    check(
        &truth,
        &layers,
        &full,
        None,
        // measured 0.918, 0.954, 0.947 and 0.963, 0.998, 0.966
        [[0.91, 0.95, 0.94], [0.96, 0.995, 0.96]],
    )?;

    // tile mode: tiles of floor(600 / 164) * 164 = 492 with a 64 px margin, 49 tiles
    let (tiled, _tmp) = run(&truth, 600, 64)?;
    check(
        &truth,
        &layers,
        &tiled,
        Some((492, 64)),
        // measured 0.833, 0.900, 0.896 and 0.866, 0.940, 0.912
        [[0.83, 0.89, 0.89], [0.86, 0.93, 0.91]],
    )?;
    println!("test time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

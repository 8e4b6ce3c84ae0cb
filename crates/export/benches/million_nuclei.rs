//! Writer throughput on a slide of 10^6 synthetic nuclei: nuclei per second and output bytes of
//! the TIAToolbox `.db`, the QuPath GeoJSON and the Zarr store, alone and all together.
//!
//! ```text
//! cargo bench -p mtseg-export --bench million_nuclei                       # 10^6 nuclei
//! cargo bench -p mtseg-export --bench million_nuclei -- --quick            # 20 000 nuclei
//! cargo bench -p mtseg-export --bench million_nuclei -- --nuclei 200000 --formats db,geojson
//! ```
//!
//! Options: `--nuclei N` (default 1 000 000), `--quick` (= `--nuclei 20000`), `--formats`
//! (comma-separated, default `db,geojson,zarr,all`; also `geojson-gz` and `zarr-map`, the Zarr
//! store with the dense instance map, `save_predictions = true`), `--batch-rows R` (grid rows of
//! 1000 nuclei per `write_nuclei` call, default 4), `--dir PATH` (where the outputs go, removed
//! afterwards unless `--keep`, which leaves them in `PATH/<format>/`; default the system
//! temporary directory).
//!
//! The nuclei (`support/synthetic_nuclei.rs`): 512 noisy-ellipse templates traced by postproc
//! (14-44 contour points), one per 100 × 100 cell of a slide 100 000 px wide, 5 classes (6 with
//! Background, PanNuke's) and a type probability. They go to [`SlideExporter`] as the pipeline
//! hands them out: in id order, `--batch-rows` cell rows per `write_nuclei`, then `rows_final`
//! at the top of the next batch, then `finish` (fsync and rename included in the time).
//! Everything is generated before the clock starts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mtseg_export::{Format, SlideExportSpec, SlideExporter, Task};
use mtseg_instmerge::MergedItem;
use mtseg_postproc::NucleusInstance;

#[path = "support/synthetic_nuclei.rs"]
mod synthetic_nuclei;

use synthetic_nuclei::{CELL, CELLS_PER_ROW, nuclei};

/// PanNuke's classes (HoVer-Net's `hovernet_fast-pannuke`).
const CLASSES: [&str; 6] = [
    "Background",
    "Neoplastic",
    "Inflammatory",
    "Connective",
    "Dead",
    "Non-Neoplastic Epithelial",
];

struct Options {
    nuclei: usize,
    formats: Vec<String>,
    batch_rows: usize,
    dir: PathBuf,
    keep: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        nuclei: 1_000_000,
        formats: ["db", "geojson", "zarr", "all"].map(String::from).to_vec(),
        batch_rows: 4,
        dir: std::env::temp_dir(),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--nuclei" => {
                options.nuclei = value("--nuclei")?
                    .parse()
                    .map_err(|e| format!("--nuclei: {e}"))?;
            }
            "--quick" => options.nuclei = 20_000,
            "--formats" => {
                options.formats = value("--formats")?.split(',').map(str::to_owned).collect();
            }
            "--batch-rows" => {
                options.batch_rows = value("--batch-rows")?
                    .parse()
                    .map_err(|e| format!("--batch-rows: {e}"))?;
            }
            "--dir" => options.dir = PathBuf::from(value("--dir")?),
            "--keep" => options.keep = true,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.batch_rows == 0 {
        return Err("--batch-rows must be > 0".into());
    }
    Ok(options)
}

/// The outputs of a case, or `None` for an unknown name.
fn case_outputs(name: &str) -> Option<(Vec<Format>, bool, bool)> {
    // (formats, gzip, instance map)
    Some(match name {
        "db" => (vec![Format::AnnotationStore], false, false),
        "geojson" => (vec![Format::QuPath], false, false),
        "geojson-gz" => (vec![Format::QuPath], true, false),
        "zarr" => (vec![Format::Zarr], false, false),
        "zarr-map" => (vec![Format::Zarr], false, true),
        "all" => (
            vec![Format::AnnotationStore, Format::QuPath, Format::Zarr],
            false,
            false,
        ),
        _ => return None,
    })
}

fn spec(dir: &Path, formats: &[Format], gzip: bool, map: bool, rows: u64) -> SlideExportSpec {
    let paths = formats
        .iter()
        .map(|&format| {
            let name = match format {
                Format::AnnotationStore => "bench.db",
                Format::QuPath if gzip => "bench.geojson.gz",
                Format::QuPath => "bench.geojson",
                Format::Zarr => "bench.zarr",
            };
            (Task::Nuclei, format, dir.join(name))
        })
        .collect();
    SlideExportSpec {
        slide_path: PathBuf::from("/slides/bench.svs"),
        stem: "bench".into(),
        paths,
        overwrite: true,
        gzip_geojson: gzip,
        scale_factor: [2.0, 2.0],
        processing_size: [(CELLS_PER_ROW as u64) * CELL as u64, rows * CELL as u64],
        processing_mpp: Some([0.5, 0.5]),
        baseline_mpp: Some([0.25, 0.25]),
        nuclei_classes: CLASSES.map(String::from).to_vec(),
        layer_classes: Vec::new(),
        save_instance_map: map,
        save_layer_map: false,
        provenance: serde_json::json!({"bench": "million_nuclei"}),
    }
}

fn run_case(
    name: &str,
    nuclei: &[MergedItem<NucleusInstance>],
    options: &Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let (formats, gzip, map) = case_outputs(name).ok_or(format!("unknown format {name:?}"))?;
    let temp = tempfile::tempdir_in(&options.dir)?;
    let dir = if options.keep {
        let kept = options.dir.join(name);
        std::fs::create_dir_all(&kept)?;
        kept
    } else {
        temp.path().to_path_buf()
    };
    let rows = nuclei.len().div_ceil(CELLS_PER_ROW) as u64;
    let batch = options.batch_rows * CELLS_PER_ROW;
    let start = Instant::now();
    let mut exporter = SlideExporter::create(spec(&dir, &formats, gzip, map, rows))?;
    let mut peak_map = 0;
    for (k, chunk) in nuclei.chunks(batch).enumerate() {
        exporter.write_nuclei(chunk)?;
        exporter.rows_final(((k + 1) * options.batch_rows) as u64 * CELL as u64)?;
        peak_map = peak_map.max(exporter.map_buffer_bytes());
    }
    let written = Instant::now();
    let summary = exporter.finish()?;
    let end = Instant::now();
    let seconds = (end - start).as_secs_f64();
    let sizes: Vec<String> = summary
        .files
        .iter()
        .map(|f| {
            format!(
                "{} {:.1} MB",
                f.path.file_name().unwrap_or_default().to_string_lossy(),
                f.bytes as f64 / 1e6
            )
        })
        .collect();
    println!(
        "{name:<11} {:>9.0} nuclei/s  {:>7.2} s (finish {:.2} s)  {}{}",
        summary.nuclei as f64 / seconds,
        seconds,
        (end - written).as_secs_f64(),
        sizes.join(", "),
        if map {
            format!(", map buffer peak {:.0} MB", peak_map as f64 / 1e6)
        } else {
            String::new()
        }
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    for name in &options.formats {
        case_outputs(name).ok_or(format!("unknown format {name:?}"))?;
    }
    let start = Instant::now();
    let nuclei = nuclei(options.nuclei);
    let mut points: Vec<usize> = nuclei.iter().map(|n| n.item.contour.len()).collect();
    points.sort_unstable();
    let pct = |p: usize| {
        points
            .get(points.len().saturating_sub(1) * p / 100)
            .unwrap_or(&0)
    };
    println!(
        "{} nuclei on {} x {} px (processing), contour points: 1% {} / median {} / 99% {} \
         (mean {:.1}), batches of {} nuclei; generated in {:.2} s",
        nuclei.len(),
        CELLS_PER_ROW as i64 * i64::from(CELL),
        nuclei.len().div_ceil(CELLS_PER_ROW) as i64 * i64::from(CELL),
        pct(1),
        pct(50),
        pct(99),
        points.iter().sum::<usize>() as f64 / points.len().max(1) as f64,
        options.batch_rows * CELLS_PER_ROW,
        start.elapsed().as_secs_f64()
    );
    for name in &options.formats {
        run_case(name, &nuclei, &options)?;
    }
    Ok(())
}

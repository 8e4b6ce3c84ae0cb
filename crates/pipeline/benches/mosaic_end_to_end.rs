//! End-to-end bench of the whole engine on a 15k x 15k slide: `data/hgsc_mosaic_15k.tif`, 10 x 10
//! copies of `data/hgsc_nest.jpg` (`vips arrayjoin`) saved as a tiled JPEG pyramid TIFF at
//! 0.5 mpp. `scripts/bench-e2e` makes the slide and runs this bench next to TIAToolbox.
//!
//! Two cases, in tile mode (tile_shape 2048, margin 128), no tissue mask, patches 256 -> 164 with
//! stride 164 (92 x 92 = 8,464 patches), batch 8, all three outputs (AnnotationStore, QuPath
//! GeoJSON, Zarr) written for real to a temporary directory:
//! - `oracle`: the oracle test model renders HoVer-Net maps from the known nuclei of the mosaic
//!   ([`MosaicLabels`], 10 x 10 copies of `hgsc_nest`'s instance mask); detection F1 at IoU 0.5 of
//!   the nuclei read back from the written GeoJSON against that truth, copy by copy;
//! - `cheap`: the cheap TorchScript model (`target/test-models/cheap_hovernet.pt`) through
//!   [`TorchModelProvider`], as `mtseg-pipeline --config` loads it; forward time against the rest.
//!
//! Each case runs in a child process (this binary re-executed with `--child CASE`) so that peak
//! RSS is per case. CPU threads: `--threads N` (default 2) sets `RAYON_NUM_THREADS` of the child
//! (reading, post-processing) and libtorch's intra-op threads; the pipeline's stage threads
//! (reader, inference, stitch, post-processing, export) come on top.
//!
//! ```text
//! cargo bench -p mtseg-pipeline --features torch --bench mosaic_end_to_end -- \
//!     [--case oracle|cheap]... [--slide FILE] [--threads N] [--copies N] [--json FILE]
//! ```
//! Writes a JSON summary (default `target/bench-e2e/ours.json`) and prints a table. `cargo bench`
//! runs it in `crates/pipeline`: give `--slide`/`--json` as absolute paths. It links libtorch
//! without an rpath (this crate has no build script), so `LD_LIBRARY_PATH` must hold the torch
//! `lib` directory of `.venv`, as `scripts/bench-e2e` sets it.

use std::io::{BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail, ensure};
use mtseg_io_config::RunConfig;
use mtseg_pipeline::{
    Engine, ExportOutputs, ProgressEvent, ProgressSink, RunSummary, TorchModelProvider,
    model_params,
};
use mtseg_test_models::{
    LabelSource, MosaicLabels, RasterLabels, match_instances, rasterise_contours,
};
use serde_json::{Value, json};

#[path = "../tests/support/oracle_provider.rs"]
mod oracle_provider;
use oracle_provider::OracleProvider;

/// Copies of `hgsc_nest` across and down in the default slide.
const COPIES: u32 = 10;
/// Side of `hgsc_nest.jpg` (and of its masks).
const BASE: i64 = 1500;
/// Pixels around a copy that its predicted nuclei may reach into (they are assigned to a copy by
/// the centre of their box; hgsc_nest's nuclei are < 100 px across).
const F1_MARGIN: i64 = 128;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Oracle,
    Cheap,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Oracle => "oracle",
            Case::Cheap => "cheap",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        match s {
            "oracle" => Ok(Case::Oracle),
            "cheap" => Ok(Case::Cheap),
            _ => bail!("unknown case `{s}` (oracle, cheap)"),
        }
    }
}

struct Args {
    cases: Vec<Case>,
    slide: PathBuf,
    /// Whether `--slide` was given (a missing default slide skips the bench).
    slide_given: bool,
    threads: usize,
    /// libtorch intra-op threads (default: `threads`).
    torch_threads: Option<usize>,
    /// Copies of `hgsc_nest` across and down in the slide (for the oracle's truth).
    copies: u32,
    json: PathBuf,
    child: Option<(Case, PathBuf)>,
}

impl Args {
    fn parse() -> Result<Self> {
        let mut a = Args {
            cases: Vec::new(),
            slide: root().join("data/hgsc_mosaic_15k.tif"),
            slide_given: false,
            threads: 2,
            torch_threads: None,
            copies: COPIES,
            json: root().join("target/bench-e2e/ours.json"),
            child: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--bench" => {} // passed by `cargo bench`
                "--case" => a.cases.push(Case::parse(&value("--case")?)?),
                "--slide" => {
                    a.slide = std::path::absolute(value("--slide")?)?;
                    a.slide_given = true;
                }
                "--threads" => a.threads = value("--threads")?.parse().context("--threads")?,
                "--torch-threads" => {
                    a.torch_threads = Some(
                        value("--torch-threads")?
                            .parse()
                            .context("--torch-threads")?,
                    );
                }
                "--copies" => a.copies = value("--copies")?.parse().context("--copies")?,
                "--json" => a.json = PathBuf::from(value("--json")?),
                "--child" => {
                    let case = Case::parse(&value("--child")?)?;
                    a.child = Some((case, PathBuf::from(value("--child")?)));
                }
                "-h" | "--help" => {
                    println!(
                        "mosaic_end_to_end [--case oracle|cheap]... [--slide FILE] [--threads N] [--copies N] [--json FILE]"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument `{other}`"),
            }
        }
        ensure!(a.threads > 0, "--threads must be at least 1");
        ensure!(a.torch() > 0, "--torch-threads must be at least 1");
        if a.cases.is_empty() {
            a.cases = vec![Case::Oracle, Case::Cheap];
        }
        Ok(a)
    }
}

impl Args {
    fn torch(&self) -> usize {
        self.torch_threads.unwrap_or(self.threads)
    }
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    match &args.child {
        Some((case, result)) => child(*case, &args, result),
        None => parent(&args),
    }
}

// ---- parent: one child per case, then the table ----------------------------------------------

fn parent(args: &Args) -> Result<()> {
    if !args.slide.exists() && args.slide_given {
        bail!("{} is missing", args.slide.display());
    }
    if !args.slide.exists() {
        eprintln!(
            "mosaic_end_to_end: SKIPPED: {} is missing; scripts/bench-e2e makes it",
            args.slide.display()
        );
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let tmp = tempfile::tempdir()?;
    let mut cases = serde_json::Map::new();
    for &case in &args.cases {
        let result = tmp.path().join(format!("{}.json", case.name()));
        eprintln!(
            "== {}: {} ({} threads) ==",
            case.name(),
            args.slide.display(),
            args.threads
        );
        let status = Command::new(&exe)
            .args(["--child", case.name()])
            .arg(&result)
            .arg("--slide")
            .arg(&args.slide)
            .args(["--threads", &args.threads.to_string()])
            .args(["--copies", &args.copies.to_string()])
            .args(["--torch-threads", &args.torch().to_string()])
            .env("RAYON_NUM_THREADS", args.threads.to_string())
            .status()
            .context("running the child")?;
        ensure!(status.success(), "case {} failed: {status}", case.name());
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&result)?)?;
        cases.insert(case.name().into(), v);
    }
    let summary = json!({
        "slide": args.slide.display().to_string(),
        "threads": args.threads,
        "torch_threads": args.torch(),
        "threads_note": "threads = RAYON_NUM_THREADS (reading, post-processing); torch_threads = libtorch intra-op threads; the stage threads come on top",
        "cpus": std::thread::available_parallelism().map_or(0, NonZeroUsize::get),
        "cases": cases,
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&summary)? + "\n")?;
    print_table(&summary);
    println!("wrote {}", args.json.display());
    Ok(())
}

fn print_table(s: &Value) {
    println!();
    println!(
        "{:<7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8} {:>9}",
        "case",
        "nuclei",
        "wall_s",
        "cpu_s",
        "read_s",
        "infer_s",
        "stitch_s",
        "post_s",
        "export_s",
        "stages_s",
        "overlap",
        "nf/fwd",
        "rss_MiB",
        "F1"
    );
    let Some(cases) = s["cases"].as_object() else {
        return;
    };
    for (name, c) in cases {
        let st = &c["stages"];
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<7} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>8.2} {:>7.3} {:>8.0} {:>9}",
            name,
            c["nuclei"],
            f(&c["wall_s"]),
            f(&c["cpu_s"]),
            f(&st["read_s"]),
            f(&st["infer_s"]),
            f(&st["stitch_s"]),
            f(&st["postproc_s"]),
            f(&st["export_s"]),
            f(&c["stage_sum_s"]),
            f(&c["overlap"]),
            f(&c["non_forward_per_forward"]),
            f(&c["peak_rss_bytes"]) / f64::from(1u32 << 20),
            c["f1"]["f1"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}")),
        );
    }
    println!(
        "cpu_s = user + system CPU of the run; \
         overlap = stage sum / wall (stages are busy times of concurrent threads); \
         nf/fwd = (wall - infer_s) / infer_s"
    );
}

// ---- child: one engine run ---------------------------------------------------------------------

/// Prints progress every 10% of the patches and when post-processing is done.
#[derive(Default)]
struct Progress {
    next: AtomicU64,
    started: Mutex<Option<std::time::Instant>>,
}

impl ProgressSink for Progress {
    fn event(&self, e: &ProgressEvent) {
        let t = || {
            let mut s = self.started.lock().expect("not poisoned");
            s.get_or_insert_with(std::time::Instant::now)
                .elapsed()
                .as_secs_f64()
        };
        match e {
            ProgressEvent::SlideStarted { patches, tiles, .. } => {
                eprintln!("  [{:7.1}s] {patches} patches, {tiles} tiles", t());
            }
            ProgressEvent::PatchesDone { done, total, .. } => {
                let next = self.next.load(Ordering::Relaxed);
                if *done >= next {
                    self.next
                        .store(done + (total / 10).max(1), Ordering::Relaxed);
                    eprintln!("  [{:7.1}s] patches {done}/{total}", t());
                }
            }
            ProgressEvent::TilesDone {
                done,
                total,
                nuclei,
                ..
            } if done == total => {
                eprintln!("  [{:7.1}s] tiles {done}/{total}, {nuclei} nuclei", t());
            }
            _ => {}
        }
    }
}

fn config(case: Case, slide: &Path, out: &Path) -> Result<RunConfig> {
    let model = match case {
        Case::Oracle => "preset = \"hovernet_fast-pannuke\"\n".to_owned(),
        Case::Cheap => {
            let weights = root().join("target/test-models/cheap_hovernet.pt");
            ensure!(
                weights.exists(),
                "{} is missing: run scripts/setup (it makes the cheap model)",
                weights.display()
            );
            format!(
                "architecture = \"torchscript\"\nheads = [\"np\", \"hv\", \"tp\"]\n\
                 weights = {:?}\nnuclei_classes = [\"Background\", \"Dark\", \"Pale\", \"Large\"]\n\
                 device = \"cpu\"\n",
                weights.display().to_string()
            )
        }
    };
    // the shapes TIAToolbox's script uses: 256 -> 164, stride 164, tile 2048, margin 128
    let text = format!(
        "[model]\n{model}batch_size = 8\n\
         [io]\nresolution = {{ mpp = 0.5 }}\npatch_input = 256\npatch_output = 164\nstride = 164\n\
         tile_shape = 2048\nmargin = 128\n\
         [input]\nmode = \"wsi\"\nslides = [{:?}]\nmask = \"none\"\n\
         [output]\ndir = {:?}\nformats = [\"annotationstore\", \"qupath\", \"zarr\"]\n\
         overwrite = true\n",
        slide.display().to_string(),
        out.join("out").display().to_string()
    );
    let path = out.join("run.toml");
    std::fs::write(&path, text)?;
    Ok(RunConfig::from_file(&path)?)
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in USER_HZ = 100 ticks,
/// the fixed Linux ABI value), `None` where unavailable.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "pid (comm) ".
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn child(case: Case, args: &Args, result: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("mtseg-bench-e2e-")
        .tempdir()?;
    let cfg = config(case, &args.slide, tmp.path())?;
    let progress = Progress::default();
    let mosaic = match case {
        Case::Oracle => Some(Arc::new(MosaicLabels::new(
            Arc::new(RasterLabels::hgsc_nest(&root().join("data"))?),
            args.copies,
            args.copies,
        )?)),
        Case::Cheap => None,
    };
    let cpu_before = process_cpu_seconds();
    let summary: RunSummary = match &mosaic {
        Some(m) => {
            let provider = OracleProvider::new(Arc::clone(m) as Arc<dyn LabelSource>);
            Engine::new(&cfg, &provider, &ExportOutputs, &progress).run()?
        }
        None => {
            let mut params = model_params(&cfg, None)?;
            params.options.intra_op_threads = NonZeroUsize::new(args.torch());
            let provider = TorchModelProvider::new(params);
            Engine::new(&cfg, &provider, &ExportOutputs, &progress).run()?
        }
    };
    let cpu_s = process_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    ensure!(
        summary.failed.is_empty(),
        "slide failed: {:?}",
        summary.failed
    );
    let s = summary.slides.first().context("the run reports no slide")?;
    let stage_sum = s.stages.total();
    let outputs: Vec<Value> = s
        .outputs
        .iter()
        .map(|p| json!({"path": p.file_name().map(|n| n.to_string_lossy().into_owned()), "bytes": du(p)}))
        .collect();
    let mut v = json!({
        "case": case.name(),
        "slide": args.slide.display().to_string(),
        "threads": args.threads,
        "torch_threads": args.torch(),
        "patches": s.patches,
        "tiles": s.tiles,
        "nuclei": s.nuclei,
        "wall_s": summary.wall_s,
        "slide_wall_s": s.wall_s,
        "stages": s.stages,
        "stage_sum_s": stage_sum,
        "overlap": stage_sum / summary.wall_s,
        "forward_s": s.stages.infer_s,
        "non_forward_s": summary.wall_s - s.stages.infer_s,
        "non_forward_per_forward": (summary.wall_s - s.stages.infer_s) / s.stages.infer_s,
        "peak_rss_bytes": summary.peak_rss_bytes,
        "cpu_s": cpu_s,
        "cpu_per_wall": cpu_s.map(|c| c / summary.wall_s),
        "outputs": outputs,
    });
    eprintln!(
        "  {} nuclei, wall {:.1} s, CPU {:.1} s, stages {:.1} s ({:?}), peak RSS {:.0} MiB",
        s.nuclei,
        summary.wall_s,
        cpu_s.unwrap_or(f64::NAN),
        stage_sum,
        s.stages,
        summary.peak_rss_bytes.unwrap_or(0) as f64 / f64::from(1u32 << 20)
    );
    // everything below runs after the engine: not in its time or peak RSS
    let geojson = s
        .outputs
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "geojson"))
        .context("no GeoJSON output")?;
    let nuclei = read_geojson(geojson)?;
    ensure!(
        nuclei.len() as u64 == s.nuclei,
        "the GeoJSON holds {} features, the run reports {} nuclei",
        nuclei.len(),
        s.nuclei
    );
    if let Some(m) = &mosaic {
        let f1 = mosaic_f1(m, args.copies as usize, nuclei, args.threads)?;
        eprintln!("  F1 {f1}");
        v["f1"] = f1;
    }
    std::fs::write(result, serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// Bytes of a file or of everything under a directory.
fn du(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// The nuclei of our QuPath GeoJSON (one feature per line), as pixel contours: the exterior
/// ring(s) without the closing point, rounded (baseline = processing resolution here).
fn read_geojson(path: &Path) -> Result<Vec<Vec<[i32; 2]>>> {
    let f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        let line = line.trim().trim_end_matches(',');
        if !line.starts_with("{\"type\":\"Feature\"") {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let g = &v["geometry"];
        let polys: Vec<&Value> = match g["type"].as_str() {
            Some("Polygon") => vec![&g["coordinates"]],
            Some("MultiPolygon") => g["coordinates"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            t => bail!("{}:{}: geometry {t:?}", path.display(), n + 1),
        };
        let mut contour = Vec::new();
        for p in polys {
            let ring = p[0].as_array().context("a polygon without a ring")?;
            for xy in &ring[..ring.len().saturating_sub(1)] {
                let (x, y) = (xy[0].as_f64(), xy[1].as_f64());
                let (Some(x), Some(y)) = (x, y) else {
                    bail!("{}:{}: bad point {xy}", path.display(), n + 1);
                };
                contour.push([x.round() as i32, y.round() as i32]);
            }
        }
        out.push(contour);
    }
    Ok(out)
}

/// Detection F1 at IoU > 0.5 of `nuclei` against the mosaic's truth, copy by copy: a predicted
/// nucleus belongs to the copy holding the centre of its box and is rasterised whole (in a
/// window of the copy plus [`F1_MARGIN`]); a true nucleus belongs to the copy its id comes from.
/// So each nucleus of either side is counted once, and memory stays at a few copies.
fn mosaic_f1(
    mosaic: &MosaicLabels,
    n: usize,
    nuclei: Vec<Vec<[i32; 2]>>,
    threads: usize,
) -> Result<Value> {
    let mut per_copy: Vec<Vec<(u64, Vec<[i32; 2]>)>> = vec![Vec::new(); n * n];
    for (i, c) in nuclei.into_iter().enumerate() {
        if c.is_empty() {
            continue;
        }
        let (x0, x1) = (c.iter().map(|p| p[0]).min(), c.iter().map(|p| p[0]).max());
        let (y0, y1) = (c.iter().map(|p| p[1]).min(), c.iter().map(|p| p[1]).max());
        let (Some(x0), Some(x1), Some(y0), Some(y1)) = (x0, x1, y0, y1) else {
            continue;
        };
        let cx = ((i64::from(x0) + i64::from(x1)) / 2 / BASE).clamp(0, n as i64 - 1);
        let cy = ((i64::from(y0) + i64::from(y1)) / 2 / BASE).clamp(0, n as i64 - 1);
        per_copy[cy as usize * n + cx as usize].push((i as u64 + 1, c));
    }
    let stride = mosaic.id_stride();
    let side = (BASE + 2 * F1_MARGIN) as usize;
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0u64, 0u64, 0.0f64));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut labels = vec![0i32; side * side];
                let mut types = vec![0u8; side * side];
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n * n {
                        break;
                    }
                    let (ox, oy) = (
                        (k % n) as i64 * BASE - F1_MARGIN,
                        (k / n) as i64 * BASE - F1_MARGIN,
                    );
                    mosaic.fill(ox, oy, side, side, &mut labels, &mut types);
                    let (lo, hi) = (k as i32 * stride, (k as i32 + 1) * stride);
                    labels
                        .iter_mut()
                        .filter(|l| **l <= lo || **l > hi)
                        .for_each(|l| *l = 0);
                    let shifted: Vec<(u64, Vec<[i32; 2]>)> = per_copy[k]
                        .iter()
                        .map(|(id, c)| {
                            let c = c
                                .iter()
                                .map(|p| [p[0] - ox as i32, p[1] - oy as i32])
                                .collect();
                            (*id, c)
                        })
                        .collect();
                    let pred = rasterise_contours(&shifted, side, side);
                    let m = match_instances(&labels, &pred, side, side, 0.5);
                    let mut t = totals.lock().expect("not poisoned");
                    t.0 += m.tp;
                    t.1 += m.fp;
                    t.2 += m.fn_;
                    t.3 += m.mean_iou * m.tp as f64;
                }
            });
        }
    });
    let (tp, fp, fn_, iou_sum) = totals.into_inner().expect("not poisoned");
    let f1 = 2.0 * tp as f64 / (2 * tp + fp + fn_).max(1) as f64;
    Ok(json!({
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn_,
        "truth": tp + fn_,
        "truth_instances": mosaic.instance_count(),
        "mean_iou": if tp > 0 { iou_sum / tp as f64 } else { 0.0 },
        "method": "per 1500^2 copy (+128 px window), IoU > 0.5, nuclei from the written GeoJSON",
    }))
}

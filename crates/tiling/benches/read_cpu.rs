//! Read CPU per patch: the pipeline's patch reads (`read_batch`, batches of 8 consecutive
//! patches of the grid, 256 px input, stride 164) against one `read_region` per patch (what
//! `read_batch` did before it read each batch's union once), on a rayon pool of 1 and 2 threads.
//!
//! Run: `cargo bench -p mtseg-tiling --bench read_cpu` (add `-- quick` for one repeat, and words
//! such as `tiff` or `svs` to run only the cases whose name holds one). Cases:
//! - `data/hgsc_mosaic_15k.tif` (tiled JPEG pyramid, 256^2 tiles, 0.5 mpp; `scripts/make-mosaic`)
//!   read at 0.5 mpp (no resampling) by the TIFF backend and by OpenSlide (what `Backend::Auto`
//!   picks for it): 4 grid rows across the middle.
//! - `data/cmu_small_region.svs` read at 0.25 mpp by OpenSlide (every patch resampled from a
//!   129^2 level read, cubic): 12 grid rows across the middle.
//!
//! Every repeat opens the slide afresh (cold tile caches) and reads the same patches; with the
//! word `warm`, one slide read once before is used instead, so that its caches hold the tiles and
//! mostly not-decoding is timed (OpenSlide's 32 MiB cache holds only part of the 4 rows). The
//! numbers are process CPU (user + system, `/proc/self/stat`, 10 ms ticks) and wall time per
//! patch, the median (and the least, for CPU) of 5 repeats. Both ways are checked to give
//! identical pixels.
//! Timings are noisy on a shared machine: compare the two ways of one run, not runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mtseg_slide::{Backend, Interpolation, OpenOptions, Resolution, SlideReader, open_slide};
use mtseg_tiling::{ExtractParams, PatchBox, PatchGridBuilder, Size2, read_batch};
use rayon::prelude::*;

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in USER_HZ = 100 ticks,
/// the fixed Linux ABI value).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat has a ')'") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "pid (comm) ".
    let ticks = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

struct Case {
    name: &'static str,
    path: PathBuf,
    backend: Backend,
    resolution: Resolution,
    rows: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// One `read_region` per patch, in parallel (the former `read_batch`).
    PerPatch,
    /// `read_batch`.
    ReadBatch,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::PerPatch => "read_region per patch",
            Way::ReadBatch => "read_batch",
        }
    }
}

fn patches(slide: &dyn SlideReader, case: &Case) -> Vec<(u64, PatchBox)> {
    let (w, h) = slide.dimensions_at(case.resolution).expect("dimensions");
    let grid = PatchGridBuilder::new(Size2::new(w, h), Size2::new(256, 256))
        .patch_output(Size2::new(164, 164))
        .stride(Size2::new(164, 164))
        .build()
        .expect("grid");
    let per_row = grid.len() / grid.rows();
    let first_row = grid.rows() / 2 - case.rows / 2;
    (first_row * per_row..(first_row + case.rows) * per_row)
        .map(|i| (i, grid.get(i).expect("in the grid")))
        .collect()
}

fn params(case: &Case) -> ExtractParams {
    ExtractParams {
        resolution: case.resolution,
        interpolation: Interpolation::Optimise,
        batch_size: 8,
    }
}

fn open(case: &Case) -> Box<dyn SlideReader> {
    let opts = OpenOptions {
        backend: case.backend,
        ..OpenOptions::default()
    };
    open_slide(&case.path, opts).expect("slide opens")
}

/// Reads every batch from `slide`; returns (CPU s, wall s) and the pixels of all batches.
fn run(slide: &dyn SlideReader, case: &Case, way: Way, threads: usize) -> (f64, f64, Vec<u8>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let selected = patches(slide, case);
    let p = params(case);
    let mut pixels = Vec::new();
    let (cpu0, t0) = (process_cpu_seconds(), Instant::now());
    for chunk in selected.chunks(p.batch_size) {
        match way {
            Way::ReadBatch => {
                let b = pool
                    .install(|| read_batch(slide, chunk, p))
                    .expect("read_batch");
                pixels.extend_from_slice(&b.pixels);
            }
            Way::PerPatch => {
                let images: Vec<_> = pool.install(|| {
                    chunk
                        .par_iter()
                        .map(|(_, b)| {
                            slide
                                .read_region(b.input, p.resolution, p.interpolation)
                                .expect("read_region")
                        })
                        .collect()
                });
                for img in &images {
                    pixels.extend_from_slice(img.as_raw());
                }
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    (process_cpu_seconds() - cpu0, wall, pixels)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let quick = args.iter().any(|a| a == "quick");
    let warm = args.iter().any(|a| a == "warm");
    // Other words select the cases whose name contains one of them.
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| *a != "quick" && *a != "warm")
        .collect();
    let repeats = if quick { 1 } else { 5 };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let cases = [
        Case {
            name: "hgsc_mosaic_15k.tif, tiff backend, 0.5 mpp (native)",
            path: data.join("hgsc_mosaic_15k.tif"),
            backend: Backend::Tiff,
            resolution: Resolution::Mpp(0.5),
            rows: 4,
        },
        Case {
            name: "hgsc_mosaic_15k.tif, openslide, 0.5 mpp (native)",
            path: data.join("hgsc_mosaic_15k.tif"),
            backend: Backend::OpenSlide,
            resolution: Resolution::Mpp(0.5),
            rows: 4,
        },
        Case {
            name: "cmu_small_region.svs, openslide, 0.25 mpp (cubic x2)",
            path: data.join("cmu_small_region.svs"),
            backend: Backend::OpenSlide,
            resolution: Resolution::Mpp(0.25),
            rows: 12,
        },
    ];
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for case in &cases {
        if !filters.is_empty() && !filters.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        if !case.path.exists() {
            println!(
                "{}: missing (scripts/setup, scripts/make-mosaic), skipped",
                case.name
            );
            continue;
        }
        let n = patches(open(case).as_ref(), case).len();
        println!("{} ({n} patches, batches of 8):", case.name);
        for threads in [1, 2] {
            let mut reference: Option<Vec<u8>> = None;
            for way in [Way::PerPatch, Way::ReadBatch] {
                let (mut cpu, mut wall) = (Vec::new(), Vec::new());
                // Warm: one slide whose tile caches hold every tile (read once before), so only
                // what is not decoding is timed.
                let warmed = warm.then(|| {
                    let s = open(case);
                    run(s.as_ref(), case, way, threads);
                    s
                });
                for _ in 0..repeats {
                    let fresh;
                    let slide = match &warmed {
                        Some(s) => s.as_ref(),
                        None => {
                            fresh = open(case);
                            fresh.as_ref()
                        }
                    };
                    let (c, w, px) = run(slide, case, way, threads);
                    cpu.push(c);
                    wall.push(w);
                    match &reference {
                        None => reference = Some(px),
                        Some(r) => assert!(*r == px, "{}: pixels differ", way.label()),
                    }
                }
                let per = |s: f64| s / n as f64 * 1e3;
                let least = cpu.iter().copied().fold(f64::INFINITY, f64::min);
                println!(
                    "  {threads} thread(s), {:<22} CPU {:6.3} ms/patch (least {:6.3}), wall {:6.3} ms/patch",
                    way.label(),
                    per(median(cpu)),
                    per(least),
                    per(median(wall)),
                );
            }
        }
    }
}

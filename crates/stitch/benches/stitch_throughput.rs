//! Stitch throughput and peak memory on synthetic slides (not a test; a `harness = false` bench).
//!
//! ```text
//! cargo bench -p mtseg-stitch --bench stitch_throughput          # the default table
//! cargo bench -p mtseg-stitch --bench stitch_throughput -- --sizes 10000,10000x40000,40000 \
//!     --budgets 256MiB,1GiB --stride 164                         # sizes: N (square) or WxH
//! ```
//! Other flags: `--batch 16` (patches per batch), `--capacity 4` (input channel),
//! `--out-capacity 1` (rows channel), `--rows-per-chunk 0` ([`StitchParams::rows_per_chunk`]),
//! `--malloc-fixed` (children run with `MALLOC_MMAP_THRESHOLD_=1048576`, which turns off glibc's
//! dynamic mmap threshold: freed row buffers go back to the OS instead of staying in malloc's
//! arena; see the crate docs, "Memory"), `--summary FILE` (else
//! `target/stitch-bench-summary.txt`).
//!
//! Each configuration runs in a child process (this binary again) so that its peak RSS
//! (`VmHWM` in `/proc/self/status`) is its own. A producer thread plays a fast test model:
//! HoVer-Net fast shapes (patch output 164 × 164, heads np/hv/tp = 1 + 2 + 1 = 4 float32
//! channels), each block a constant, sent in batches over a bounded channel, like inference. The
//! stitcher runs on its own thread, driven as the pipeline's stitch stage drives it
//! ([`Stitcher::push_with`] sending each item of rows on a bounded channel); a consumer drops
//! the rows as they come.
//!
//! Printed per configuration, as a table (also written to `target/stitch-bench-summary.txt`):
//! canvas Mpx, wall time, throughput (canvas Mpx/s over the wall time, and over the stitcher's
//! busy time), peak RSS, the budget's peak reservation, the unaccounted memory (peak RSS minus
//! the peak reservation), what the model's batches in flight account for.
#![allow(missing_docs)]

use std::fmt::Write as _;
use std::time::Instant;

use crossbeam_channel::bounded;
use mtseg_stitch::{
    CanvasPlan, CanvasRows, HeadBlock, HeadSpec, MemoryBudget, MemoryLimit, PatchPrediction, Size2,
    StitchError, StitchParams, Stitcher,
};

const OUT: usize = 164;
const MIB: f64 = 1024.0 * 1024.0;

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident bytes now (`/proc/self/statm`, second field, in pages).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Samples RSS and the budget's use every millisecond; keeps the largest `RSS - reserved` seen
/// at one instant (the unaccounted memory; the peaks of the two need not coincide).
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<i64>,
}

impl Sampler {
    fn start(budget: MemoryBudget) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut worst = i64::MIN;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let used = budget.used() as i64;
                worst = worst.max(rss_bytes() as i64 - used);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            worst
        });
        Self { stop, handle }
    }

    fn finish(self) -> i64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().expect("sampler")
    }
}

fn grid(width: usize, height: usize, stride: usize) -> Vec<[i64; 4]> {
    let (nx, ny) = (width.div_ceil(stride), height.div_ceil(stride));
    let mut boxes = Vec::with_capacity(nx * ny);
    for j in 0..ny {
        for i in 0..nx {
            let (x, y) = ((i * stride) as i64, (j * stride) as i64);
            boxes.push([x, y, x + OUT as i64, y + OUT as i64]);
        }
    }
    boxes
}

/// One configuration, as passed to the child.
#[derive(Debug, Clone)]
struct Config {
    size: String,
    budget: u64,
    stride: usize,
    batch: usize,
    capacity: usize,
    out_capacity: usize,
    rows_per_chunk: usize,
}

impl Config {
    fn to_args(&self) -> Vec<String> {
        vec![
            "--child".into(),
            self.size.clone(),
            self.budget.to_string(),
            self.stride.to_string(),
            self.batch.to_string(),
            self.capacity.to_string(),
            self.out_capacity.to_string(),
            self.rows_per_chunk.to_string(),
        ]
    }

    fn from_args(args: &[String]) -> Self {
        let n = |i: usize| -> usize { args[i].parse().expect("number") };
        Self {
            size: args[0].clone(),
            budget: args[1].parse().expect("budget"),
            stride: n(2),
            batch: n(3),
            capacity: n(4),
            out_capacity: n(5),
            rows_per_chunk: n(6),
        }
    }
}

fn child(cfg: &Config) {
    let rss_start = status_kib("VmRSS:");
    let (width, height) = match cfg.size.split_once('x') {
        Some((w, h)) => (w.parse().expect("width"), h.parse().expect("height")),
        None => {
            let s: usize = cfg.size.parse().expect("size");
            (s, s)
        }
    };
    let boxes = grid(width, height, cfg.stride);
    let plan =
        CanvasPlan::without_mask(&boxes, Size2::new(width as u64, height as u64)).expect("plan");
    let budget = MemoryBudget::with_bytes(cfg.budget);
    let heads = vec![
        HeadSpec::new("np", 1),
        HeadSpec::new("hv", 2),
        HeadSpec::new("tp", 1),
    ];
    let params = StitchParams::new(
        plan.clone(),
        Size2::square(OUT as u64),
        heads,
        budget.clone(),
    )
    .expect("params")
    .with_reorder_allowance(cfg.batch)
    .with_rows_per_chunk(cfg.rows_per_chunk);
    let window = params.window_bytes();
    let chunk = params.chunk_bytes();
    // The model's batches in flight (not reserved: inference owns them): the channel's, the one
    // being made and the one being stitched.
    let inflight = (cfg.capacity + 2) as u64 * cfg.batch as u64 * params.patch_bytes();
    let mut stitcher = Stitcher::new(params).expect("window fits the budget");
    let sampler = Sampler::start(budget.clone());
    let (in_tx, in_rx) = bounded::<Vec<PatchPrediction>>(cfg.capacity);
    let started = Instant::now();
    let batch = cfg.batch;
    let producer = std::thread::spawn(move || {
        for (k, chunk) in boxes.chunks(batch).enumerate() {
            let patches = chunk
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    let index = k * batch + j;
                    let v = 1.0 + (index % 251) as f32 / 8.0;
                    PatchPrediction {
                        index,
                        output_box: *b,
                        heads: vec![
                            HeadBlock::new(1, vec![v; OUT * OUT]),
                            HeadBlock::new(2, vec![-v; OUT * OUT * 2]),
                            HeadBlock::new(1, vec![(index % 6) as f32; OUT * OUT]),
                        ],
                    }
                })
                .collect::<Vec<_>>();
            if in_tx.send(patches).is_err() {
                return;
            }
        }
    });
    let (out_tx, out_rx) = bounded::<CanvasRows>(cfg.out_capacity);
    let stage = std::thread::spawn(move || {
        let mut emit = |rows: CanvasRows| out_tx.send(rows).map_err(|_| StitchError::OutputClosed);
        for batch in &in_rx {
            for patch in batch {
                stitcher.push_with(patch, &mut emit)?;
            }
        }
        stitcher.finish_with(&mut emit)
    });
    let mut rows = 0usize;
    let mut checksum = 0.0f64;
    for r in out_rx {
        rows += r.rows;
        checksum += f64::from(r.heads[0][0]);
    }
    let metrics = stage.join().expect("stitch thread").expect("stitch");
    assert_eq!(rows, height);
    assert!(checksum > 0.0);
    let wall = started.elapsed();
    producer.join().expect("producer");
    let sampled = sampler.finish();
    let mpx = (width * height) as f64 / 1e6;
    let peak_rss = status_kib("VmHWM:") * 1024;
    println!(
        "RESULT size={} budget_mib={:.0} canvas_mpx={mpx:.0} wall_s={:.2} \
         mpx_per_s_wall={:.1} mpx_per_s_busy={:.1} waiting_s={:.2} peak_rss_mib={:.1} \
         start_rss_mib={:.1} budget_peak_mib={:.1} unaccounted_mib={:.1} sampled_mib={:.1} \
         inflight_mib={:.1} \
         window_mib={:.1} chunk_mib={:.1}",
        cfg.size,
        cfg.budget as f64 / MIB,
        wall.as_secs_f64(),
        mpx / wall.as_secs_f64(),
        mpx / metrics.busy.as_secs_f64(),
        metrics.waiting.as_secs_f64(),
        peak_rss as f64 / MIB,
        rss_start as f64 / 1024.0,
        budget.peak() as f64 / MIB,
        (peak_rss as f64 - budget.peak() as f64) / MIB,
        sampled as f64 / MIB,
        inflight as f64 / MIB,
        window as f64 / MIB,
        chunk as f64 / MIB,
    );
}

/// `key=value` pairs of a RESULT line.
fn fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&Config::from_args(&args[i + 1..]));
        return;
    }
    let sizes = value("--sizes", "10000,10000x40000,40000");
    let budgets = value("--budgets", &value("--budget", "256MiB,1GiB"));
    let number = |flag: &str, default: &str| -> usize {
        value(flag, default)
            .parse()
            .unwrap_or_else(|_| panic!("{flag}"))
    };
    let base = Config {
        size: String::new(),
        budget: 0,
        stride: number("--stride", "164"),
        batch: number("--batch", "16"),
        capacity: number("--capacity", "4"),
        out_capacity: number("--out-capacity", "1"),
        rows_per_chunk: number("--rows-per-chunk", "0"),
    };
    let malloc_fixed = args.iter().any(|a| a == "--malloc-fixed");
    let exe = std::env::current_exe().expect("own path");
    let mut rows: Vec<Vec<(String, String)>> = Vec::new();
    let mut failures = Vec::new();
    for budget in budgets.split(',') {
        let limit: MemoryLimit = budget.parse().expect("--budgets");
        for size in sizes.split(',') {
            let cfg = Config {
                size: size.to_owned(),
                budget: limit.to_bytes(mtseg_stitch::usable_ram_bytes),
                ..base.clone()
            };
            let mut command = std::process::Command::new(&exe);
            command.args(cfg.to_args());
            if malloc_fixed {
                command.env("MALLOC_MMAP_THRESHOLD_", "1048576");
            }
            let out = command.output().expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().find(|l| l.starts_with("RESULT")) {
                Some(line) => {
                    println!("{line}");
                    rows.push(fields(line));
                }
                None => {
                    let line = format!(
                        "FAILED size={size} budget={budget}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    println!("{line}");
                    failures.push(line);
                }
            }
        }
    }
    let table = summary(&rows, &base, malloc_fixed, &failures);
    println!("\n{table}");
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| "target".into(), std::path::Path::to_path_buf);
    let path = args
        .iter()
        .position(|a| a == "--summary")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| target.join("stitch-bench-summary.txt"), Into::into);
    match std::fs::write(&path, &table) {
        Ok(()) => println!("written to {}", path.display()),
        Err(err) => println!("could not write {}: {err}", path.display()),
    }
}

/// The results as a table, with the largest unaccounted memory.
fn summary(
    rows: &[Vec<(String, String)>],
    base: &Config,
    malloc_fixed: bool,
    failures: &[String],
) -> String {
    let get = |row: &[(String, String)], key: &str| -> String {
        row.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let columns: [(&str, &str); 13] = [
        ("size", "size (WxH)"),
        ("budget_mib", "budget MiB"),
        ("canvas_mpx", "Mpx"),
        ("wall_s", "wall s"),
        ("mpx_per_s_wall", "Mpx/s wall"),
        ("mpx_per_s_busy", "Mpx/s stitch"),
        ("waiting_s", "waited s"),
        ("peak_rss_mib", "peak RSS MiB"),
        ("budget_peak_mib", "reserved peak MiB"),
        ("unaccounted_mib", "peak RSS-reserved MiB"),
        ("sampled_mib", "max(RSS-used) MiB"),
        ("inflight_mib", "model batches MiB"),
        ("window_mib", "window MiB"),
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|(k, _)| get(row, k)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, title))| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mtseg-stitch stitch_throughput: patch output {OUT}, stride {}, 4 float32 channels \
         (np 1, hv 2, tp 1), batch {}, input channel {}, rows channel {}, rows per chunk {}, \
         malloc: {}; {} cores, load average at the end: {}",
        base.stride,
        base.batch,
        base.capacity,
        base.out_capacity,
        if base.rows_per_chunk == 0 {
            "band step".to_owned()
        } else {
            base.rows_per_chunk.to_string()
        },
        if malloc_fixed {
            "MALLOC_MMAP_THRESHOLD_=1048576"
        } else {
            "glibc default"
        },
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let line = |out: &mut String, cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        let _ = writeln!(out, "| {} |", parts.join(" | "));
    };
    line(&mut out, columns.iter().map(|(_, t)| *t).collect());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
    for row in &cells {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    let worst = rows
        .iter()
        .filter_map(|r| get(r, "unaccounted_mib").parse::<f64>().ok())
        .fold(f64::NAN, f64::max);
    let sampled = rows
        .iter()
        .filter_map(|r| get(r, "sampled_mib").parse::<f64>().ok())
        .fold(f64::NAN, f64::max);
    let over = rows
        .iter()
        .filter_map(|r| {
            let rss: f64 = get(r, "peak_rss_mib").parse().ok()?;
            let budget: f64 = get(r, "budget_mib").parse().ok()?;
            Some(rss - budget)
        })
        .fold(f64::NAN, f64::max);
    let _ = writeln!(
        out,
        "largest peak RSS - reserved peak: {worst:.1} MiB; largest RSS - reserved at one \
         instant (1 ms samples): {sampled:.1} MiB; largest peak RSS - budget: {over:.1} MiB"
    );
    for failure in failures {
        let _ = writeln!(out, "{failure}");
    }
    out
}

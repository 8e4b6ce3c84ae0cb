//! Stitch throughput and peak memory on synthetic slides (not a test; a `harness = false` bench).
//!
//! ```text
//! cargo bench -p mtseg-stitch --bench stitch_throughput                      # default set
//! cargo bench -p mtseg-stitch --bench stitch_throughput -- --sizes 10000,10000x40000 \
//!     --budget 512MiB --modes rows,full --stride 164     # sizes: N (square) or WxH
//! ```
//! Each configuration runs in a child process (this binary again) so that its peak RSS
//! (`VmHWM` in `/proc/self/status`) is its own. A producer thread plays the model: HoVer-Net fast
//! shapes (patch output 164 × 164, heads np/hv/tp = 1 + 2 + 1 = 4 float32 channels), each block
//! a constant, sent in batches of 16 over a bounded channel (capacity 4), like inference. The
//! stitch stage runs on its own thread; a consumer drops the rows (rows mode) or the canvas is
//! kept (full mode, spilled to Zarr under the budget).
//!
//! Printed per configuration: canvas Mpx, wall time, throughput (canvas Mpx/s over the wall
//! time, and over the stitcher's busy time), peak RSS, the budget and its peak use, bytes spilled.
#![allow(missing_docs)]

use std::time::Instant;

use crossbeam_channel::bounded;
use mtseg_stitch::{
    CanvasPlan, HeadBlock, HeadSpec, MemoryBudget, MemoryLimit, PatchPrediction, PredictionBatch,
    SpillConfig, StitchParams, Stitcher, run_full_canvas_stage, spawn_rows_stage,
};

const OUT: usize = 164;
const BATCH: usize = 16;
const CAPACITY: usize = 4;

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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

fn child(size: &str, mode: &str, budget_bytes: u64, stride: usize) {
    let rss_start = status_kib("VmRSS:");
    let (width, height) = match size.split_once('x') {
        Some((w, h)) => (w.parse().expect("width"), h.parse().expect("height")),
        None => {
            let s: usize = size.parse().expect("size");
            (s, s)
        }
    };
    let boxes = grid(width, height, stride);
    let plan = CanvasPlan::without_mask(&boxes, [width as u64, height as u64]).expect("plan");
    let budget = MemoryBudget::with_bytes(budget_bytes);
    let heads = vec![
        HeadSpec::new("np", 1),
        HeadSpec::new("hv", 2),
        HeadSpec::new("tp", 1),
    ];
    let params = StitchParams::new(plan.clone(), [OUT, OUT], heads, budget.clone())
        .expect("params")
        .with_reorder_allowance(BATCH);
    let stitcher = Stitcher::new(params).expect("window fits the budget");
    let (in_tx, in_rx) = bounded::<PredictionBatch>(CAPACITY);
    let started = Instant::now();
    let producer = std::thread::spawn(move || {
        for (k, chunk) in boxes.chunks(BATCH).enumerate() {
            let patches = chunk
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    let index = k * BATCH + j;
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
            if in_tx.send(patches.into()).is_err() {
                return;
            }
        }
    });
    let (busy, spilled) = match mode {
        "rows" => {
            let (out_tx, out_rx) = bounded(1);
            let stage = spawn_rows_stage(stitcher, in_rx, out_tx, None).expect("spawn");
            let mut rows = 0usize;
            let mut checksum = 0.0f64;
            for r in out_rx {
                rows += r.rows;
                checksum += f64::from(r.heads[0][0]);
            }
            let report = stage.join().expect("stitch");
            assert_eq!(rows, height);
            assert!(checksum > 0.0);
            (report.metrics.busy, report.spilled_bytes)
        }
        "full" => {
            let spill = SpillConfig {
                dir: std::env::var_os("MTSEG_BENCH_SPILL_DIR")
                    .map_or_else(std::env::temp_dir, Into::into),
                ..SpillConfig::default()
            };
            let (canvas, report) =
                run_full_canvas_stage(stitcher, &in_rx, spill, None).expect("stitch");
            let probe = canvas
                .read_region([width / 2, height / 2, width / 2 + 1, height / 2 + 1])
                .expect("read");
            assert!(probe.heads[0][0] > 0.0);
            (report.metrics.busy, report.spilled_bytes)
        }
        other => panic!("unknown mode {other}"),
    };
    let wall = started.elapsed();
    producer.join().expect("producer");
    let mpx = (width * height) as f64 / 1e6;
    println!(
        "RESULT size={size} stride={stride} mode={mode} canvas_mpx={mpx:.0} wall_s={:.2} \
         mpx_per_s_wall={:.1} mpx_per_s_busy={:.1} peak_rss_mib={:.0} start_rss_mib={:.0} \
         budget_mib={:.0} budget_peak_mib={:.0} spilled_gib={:.2}",
        wall.as_secs_f64(),
        mpx / wall.as_secs_f64(),
        mpx / busy.as_secs_f64(),
        status_kib("VmHWM:") as f64 / 1024.0,
        rss_start as f64 / 1024.0,
        budget_bytes as f64 / 1048576.0,
        budget.peak() as f64 / 1048576.0,
        spilled as f64 / 1073741824.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(
            &args[2],
            &args[3],
            args[4].parse().expect("budget"),
            args[5].parse().expect("stride"),
        );
        return;
    }
    let value = |flag: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let sizes = value("--sizes", "10000,40000");
    let modes = value("--modes", "rows,full");
    let budget: MemoryLimit = value("--budget", "1GiB").parse().expect("--budget");
    let stride: usize = value("--stride", "164").parse().expect("--stride");
    let budget_bytes = budget.resolve_bytes();
    let exe = std::env::current_exe().expect("own path");
    for mode in modes.split(',') {
        for size in sizes.split(',') {
            let out = std::process::Command::new(&exe)
                .args([
                    "--child",
                    size,
                    mode,
                    &budget_bytes.to_string(),
                    &stride.to_string(),
                ])
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().find(|l| l.starts_with("RESULT")) {
                Some(line) => println!("{line}"),
                None => println!(
                    "FAILED size={size} mode={mode}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }
}

//! Post-processing throughput on the 1500 x 1500 `hgsc_nest` maps (HoVer-Net targets rendered from
//! the histolytics instance mask, 1294 nuclei), single thread and all threads, in Mpx/s
//! (criterion's "elements" are pixels).
//!
//! Run: `cargo bench -p mtseg-postproc`. Criterion times `postprocess_nuclei` (fresh buffers per
//! call), `postprocess_nuclei_with` (a reused [`NpHvWorkspace`], as a pipeline worker calls it)
//! and `np_hv_to_instances`. When `tools/fixtures/.venv` exists (see `tools/fixtures/`), the
//! bench then writes the same maps to `data/postproc/bench/` (git-ignored), spawns
//! `tools/fixtures/postproc_bench.py` to time TIAToolbox's `_proc_np_hv` + `get_instance_info` on
//! them (min of 3), times ours the same way (min and median of 11, 1 thread and all threads),
//! prints the ratios, whether the label maps are identical, and the machine's load average.
//! Set `MTSEG_BENCH_SKIP_TIATOOLBOX=1` to skip.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mtseg_postproc::{
    CanvasView, HoverNetTargets, NpHvParams, NpHvWorkspace, np_hv_to_instances, postprocess_nuclei,
    postprocess_nuclei_with, render_hovernet_targets,
};
use mtseg_test_models::npy;

/// This crate's `tests/fixtures` folder.
fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn targets() -> HoverNetTargets {
    let dir = fixtures_dir();
    let mask = npy::read(&dir.join("hgsc_nest_inst_mask_u16.npy.gz")).expect("mask fixture");
    let (h, w) = (mask.shape[0], mask.shape[1]);
    let labels: Vec<i32> = mask.to_i64().into_iter().map(|v| v as i32).collect();
    let types: Vec<u8> = npy::read(&dir.join("hgsc_nest_type_mask_u8.npy.gz"))
        .expect("type fixture")
        .to_i64()
        .into_iter()
        .map(|v| v as u8)
        .collect();
    render_hovernet_targets(&labels, Some(&types), h, w, 1.0).expect("sizes match")
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn bench(c: &mut Criterion, t: &HoverNetTargets) {
    let view = CanvasView::new(t.height, t.width, &t.np, &t.hv)
        .and_then(|v| v.with_types(&t.tp))
        .expect("view");
    let params = NpHvParams::hovernet();
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("hgsc_nest_1500");
    g.throughput(Throughput::Elements((t.height * t.width) as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for threads in [1, all] {
        let p = pool(threads);
        g.bench_with_input(
            BenchmarkId::new("postprocess_nuclei", format!("{threads}_threads")),
            &threads,
            |b, _| b.iter(|| p.install(|| postprocess_nuclei(&view, &params, [0, 0]).expect("ok"))),
        );
        let mut ws = NpHvWorkspace::default();
        g.bench_with_input(
            BenchmarkId::new("postprocess_nuclei_with", format!("{threads}_threads")),
            &threads,
            |b, _| {
                b.iter(|| {
                    p.install(|| postprocess_nuclei_with(&view, &params, [0, 0], &mut ws))
                        .expect("ok")
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("np_hv_to_instances", format!("{threads}_threads")),
            &threads,
            |b, _| b.iter(|| p.install(|| np_hv_to_instances(&view, &params).expect("ok"))),
        );
    }
    g.finish();
}

fn compare_with_tiatoolbox(t: &HoverNetTargets) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("tools/fixtures/.venv/bin/python");
    if std::env::var_os("MTSEG_BENCH_SKIP_TIATOOLBOX").is_some() || !python.exists() {
        println!(
            "TIAToolbox comparison skipped (no tools/fixtures/.venv or MTSEG_BENCH_SKIP_TIATOOLBOX set)"
        );
        return;
    }
    let dir = root.join("data/postproc/bench");
    std::fs::create_dir_all(&dir).expect("create data/postproc/bench");
    let (h, w) = (t.height, t.width);
    npy::write_f32(&dir.join("np.npy"), &[h, w, 1], &t.np).expect("write np");
    npy::write_f32(&dir.join("hv.npy"), &[h, w, 2], &t.hv).expect("write hv");
    npy::write_f32(&dir.join("tp.npy"), &[h, w, 1], &t.tp).expect("write tp");
    let out = Command::new(&python)
        .arg(root.join("tools/fixtures/postproc_bench.py"))
        .arg(&dir)
        .arg("3")
        .output()
        .expect("spawn python");
    if !out.status.success() {
        println!(
            "TIAToolbox timing failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let v: serde_json::Value = serde_json::from_slice(
        out.stdout
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap_or_default(),
    )
    .expect("json from postproc_bench.py");
    let min = |k: &str| {
        v[k].as_array()
            .expect("times")
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .fold(f64::INFINITY, f64::min)
    };
    let tia_total = min("total_s");

    let view = CanvasView::new(h, w, &t.np, &t.hv)
        .and_then(|v| v.with_types(&t.tp))
        .expect("view");
    let params = NpHvParams::hovernet();
    // (min, median) seconds of RUNS calls, and the last output
    const RUNS: usize = 11;
    let time_with = |threads: usize, reuse: bool| {
        let p = pool(threads);
        let mut ws = NpHvWorkspace::default();
        let mut times = Vec::with_capacity(RUNS);
        let mut last = None;
        for _ in 0..RUNS {
            let t0 = Instant::now();
            let r = p.install(|| {
                if reuse {
                    postprocess_nuclei_with(&view, &params, [0, 0], &mut ws)
                } else {
                    postprocess_nuclei(&view, &params, [0, 0])
                }
            });
            times.push(t0.elapsed().as_secs_f64());
            last = Some(r.expect("ok"));
        }
        times.sort_by(f64::total_cmp);
        (times[0], times[RUNS / 2], last.expect("ran"))
    };
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tia_inst: Vec<i32> = npy::read(&dir.join("tia_inst.npy"))
        .expect("tia_inst.npy")
        .to_i64()
        .into_iter()
        .map(|v| v as i32)
        .collect();
    let mpx = (h * w) as f64 / 1e6;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "--- mtseg-postproc vs TIAToolbox 2.1.3, {h} x {w} hgsc_nest maps, {all} hardware threads, load average {} ---",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "TIAToolbox _proc_np_hv + get_instance_info: {:.3} s ({:.2} Mpx/s) [proc {:.3} s, info {:.3} s], {} instances",
        tia_total,
        mpx / tia_total,
        min("proc_np_hv_s"),
        min("instance_info_s"),
        v["n_instances"]
    );
    let mut identical = true;
    for (reuse, name) in [
        (false, "postprocess_nuclei     "),
        (true, "postprocess_nuclei_with"),
    ] {
        for threads in [1, all] {
            let (best, median, out) = time_with(threads, reuse);
            identical &= out.labels == tia_inst;
            println!(
                "mtseg {name} {threads:>2} thread(s): min {:.4} s ({:.1} Mpx/s, {:.1}x), median {:.4} s ({:.1} Mpx/s, {:.1}x), {} nuclei",
                best,
                mpx / best,
                tia_total / best,
                median,
                mpx / median,
                tia_total / median,
                out.instances.len()
            );
        }
    }
    println!("label maps identical to TIAToolbox's: {identical}");
    assert!(identical, "label maps differ from TIAToolbox's");
}

fn main() {
    let t = targets();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &t);
    let test_mode = std::env::args().any(|a| a == "--test" || a == "--list");
    if !test_mode {
        compare_with_tiatoolbox(&t);
    }
    c.final_summary();
}

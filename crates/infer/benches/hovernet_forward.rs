//! HoVer-Net fast (6 types) batch forward on CPU, fp32: ours in several configurations, and
//! TIAToolbox's PyTorch-eager `infer_batch` timed in the same run on the same batch.
//!
//! Run (project venv active, `. scripts/env.sh`; weights from
//! `.venv/bin/python tools/fixtures/make_test_weights.py`):
//!
//!     cargo bench -p mtseg-infer --features torch --bench hovernet_forward
//!
//! Environment: `MTSEG_BENCH_BATCH` (default 2 patches), `MTSEG_BENCH_THREADS` (comma list of
//! intra-op thread counts, default: libtorch's default only), `MTSEG_BENCH_SAMPLES` (default 10).
//! When tools/fixtures/.venv exists, tools/fixtures/bench_tiatoolbox.py is spawned before and
//! after our runs; the summary prints patches/s and the ratio eager / ours.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mtseg_infer::{Architecture, BatchView, ForwardOptions, HoVerNet, Model};
use tch::{Kind, Tensor};

static TIMES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

fn batch_pixels(n: usize) -> Vec<u8> {
    let t = Tensor::read_npy(root().join("crates/infer/tests/fixtures/input_270.npy"))
        .expect("input_270.npy");
    let t = t.narrow(1, 7, 256).narrow(2, 7, 256).contiguous();
    let mut one = vec![0u8; t.numel()];
    t.copy_data(&mut one, t.numel());
    let per = 256 * 256 * 3;
    (0..n)
        .flat_map(|i| one[(i % 2) * per..(i % 2 + 1) * per].to_vec())
        .collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn eager(batch: usize, threads: usize, repeats: usize) -> Option<serde_like::Eager> {
    let py = root().join("tools/fixtures/.venv/bin/python");
    if !py.exists() {
        eprintln!("tools/fixtures/.venv not found: PyTorch eager (TIAToolbox) is not timed");
        return None;
    }
    let out = std::process::Command::new(py)
        .arg(root().join("tools/fixtures/bench_tiatoolbox.py"))
        .args([
            "--batch",
            &batch.to_string(),
            "--repeats",
            &repeats.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "bench_tiatoolbox.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_like::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Just enough JSON reading for bench_tiatoolbox.py's one line (no serde_json dependency).
mod serde_like {
    pub(crate) struct Eager {
        pub(crate) times: Vec<f64>,
    }
    pub(crate) fn parse(s: &str) -> Option<Eager> {
        let start = s.find("\"times_s\": [")? + "\"times_s\": [".len();
        let end = start + s[start..].find(']')?;
        let times = s[start..end]
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        Some(Eager { times })
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    (mean, sd, min)
}

fn main() {
    let n = env_usize("MTSEG_BENCH_BATCH", 2);
    let samples = env_usize("MTSEG_BENCH_SAMPLES", 10);
    let default_threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
    let threads: Vec<usize> = std::env::var("MTSEG_BENCH_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![default_threads]);
    let weights = root().join("target/test-weights/hovernet_fast6.pth");
    assert!(
        weights.is_file(),
        "run `.venv/bin/python tools/fixtures/make_test_weights.py` first"
    );
    let pixels = batch_pixels(n);
    let indices: Vec<u64> = (0..n as u64).collect();
    let arch = Architecture::HoVerNetFast { num_types: Some(6) };
    let nchw = |o: ForwardOptions| ForwardOptions {
        channels_last: false,
        ..o
    };
    let variants = [
        ("tiatoolbox-layers", ForwardOptions::reference()),
        (
            "tiatoolbox-layers+channels-last",
            ForwardOptions {
                channels_last: true,
                ..ForwardOptions::reference()
            },
        ),
        (
            "bn-folded",
            nchw(ForwardOptions {
                merge_head_convs: false,
                ..ForwardOptions::default()
            }),
        ),
        ("bn-folded+merged", nchw(ForwardOptions::default())),
        (
            "bn-folded+merged+channels-last (default)",
            ForwardOptions::default(),
        ),
    ];

    let mut eager_runs: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for &t in &threads {
        if let Some(e) = eager(n, t, samples / 2 + 1) {
            eager_runs.entry(t).or_default().extend(e.times);
        }
    }

    let mut c = Criterion::default()
        .sample_size(samples.max(10))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    {
        let mut group = c.benchmark_group("hovernet_fast6_cpu_fp32");
        group.throughput(Throughput::Elements(n as u64));
        for &t in &threads {
            tch::set_num_threads(i32::try_from(t).unwrap_or(1));
            for (name, options) in &variants {
                let options = ForwardOptions {
                    intra_op_threads: NonZeroUsize::new(t),
                    ..*options
                };
                let mut model =
                    HoVerNet::load(&weights, &arch, tch::Device::Cpu, Kind::Float, &options)
                        .unwrap();
                let label = format!("{name}/threads={t}");
                group.bench_with_input(BenchmarkId::new(label.clone(), n), &n, |b, _| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let view = BatchView::new(&pixels, &indices, 256, 256).unwrap();
                            let t0 = Instant::now();
                            black_box(model.forward(view).unwrap());
                            let e = t0.elapsed();
                            TIMES
                                .lock()
                                .unwrap()
                                .entry(label.clone())
                                .or_default()
                                .push(e.as_secs_f64());
                            total += e;
                        }
                        total
                    });
                });
            }
        }
        group.finish();
    }

    for &t in &threads {
        if let Some(e) = eager(n, t, samples / 2 + 1) {
            eager_runs.entry(t).or_default().extend(e.times);
        }
    }

    println!("\nHoVer-Net fast (6 types), batch of {n} 256x256 patches, CPU fp32");
    println!(
        "{:<44} {:>10} {:>9} {:>9} {:>11} {:>14}",
        "variant", "mean s", "sd s", "min s", "patches/s", "eager/ours"
    );
    let times = TIMES.lock().unwrap();
    for &t in &threads {
        let eager_mean = eager_runs.get(&t).map(|v| stats(v).0);
        if let Some(v) = eager_runs.get(&t) {
            let (m, sd, min) = stats(v);
            let label = format!("pytorch-eager (tiatoolbox)/threads={t}");
            println!(
                "{label:<44} {m:>10.3} {sd:>9.3} {min:>9.3} {:>11.3} {:>14}",
                n as f64 / m,
                "1.00x"
            );
        }
        for (name, _) in &variants {
            let label = format!("{name}/threads={t}");
            let Some(v) = times.get(&label) else { continue };
            // The first call of each variant is criterion's warm-up.
            let v = if v.len() > 1 { &v[1..] } else { &v[..] };
            let (m, sd, min) = stats(v);
            let ratio = eager_mean.map_or_else(|| "n/a".to_owned(), |e| format!("{:.2}x", e / m));
            println!(
                "{label:<44} {m:>10.3} {sd:>9.3} {min:>9.3} {:>11.3} {ratio:>14}",
                n as f64 / m
            );
        }
    }
    c.final_summary();
}

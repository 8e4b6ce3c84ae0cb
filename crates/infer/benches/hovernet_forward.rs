//! HoVer-Net fast (6 types) batch forward on CPU, fp32 and bf16: ours in several
//! configurations, and TIAToolbox's PyTorch-eager `infer_batch` (fp32) timed in the same run on
//! the same batch.
//!
//! Run (project venv active, `. scripts/env.sh`; weights from
//! `.venv/bin/python tools/fixtures/make_test_weights.py`):
//!
//!     cargo bench -p mtseg-infer --features torch --bench hovernet_forward
//!
//! Environment: `MTSEG_BENCH_BATCH` (default 2 patches), `MTSEG_BENCH_THREADS` (comma list of
//! intra-op thread counts, default: libtorch's default only), `MTSEG_BENCH_SAMPLES` (default 10),
//! `MTSEG_BENCH_PRECISIONS` (comma list of fp32, bf16, fp16; default fp32,bf16; fp16 is measured
//! only to show why `load_model` refuses it on a CPU). A criterion filter after `--` picks
//! variants by name (e.g. `-- channels-last`). When tools/fixtures/.venv exists,
//! tools/fixtures/bench_tiatoolbox.py is spawned before and after our runs.
//!
//! The summary prints patches/s, the ratio eager / ours, and the forward's achieved GFLOP/s next
//! to the machine's peak. Work: [`GFLOP_PER_PATCH`] (HoVer-Net fast, 256² input). Peak, per
//! precision: theoretical = threads × 2 FMA units × 16 fp32 lanes × 2 flops × the clock
//! /proc/cpuinfo reports (bf16: ×2, what `vdpbf16ps` would give on both FMA ports), and measured
//! = threads × one core's rate in a register-only loop of independent `vfmadd` (fp32) or
//! `vdpbf16ps` (bf16) on 512-bit registers, timed here (x86-64 with AVX-512 only).

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

/// Floating-point work of one HoVer-Net fast forward on a 256² patch, in GFLOP (2 per
/// multiply-add): 148.93 G conv multiply-adds, counted with forward hooks on every `Conv2d` of
/// tools/fixtures/hovernet_torch.py's `HoVerNet(num_types=6, mode="fast")` (TIAToolbox's layer
/// shapes) on a 1 × 3 × 256 × 256 input: Σ output elements × in_channels / groups × k².
/// BatchNorm, ReLU, additions and upsampling (0.27 G elements of BN) are left out.
const GFLOP_PER_PATCH: f64 = 297.9;

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
    let precisions: Vec<(&str, Kind)> = std::env::var("MTSEG_BENCH_PRECISIONS")
        .unwrap_or_else(|_| "fp32,bf16".into())
        .split(',')
        .filter_map(|p| match p.trim() {
            "fp32" => Some(("fp32", Kind::Float)),
            "bf16" => Some(("bf16", Kind::BFloat16)),
            "fp16" => Some(("fp16", Kind::Half)),
            _ => None,
        })
        .collect();
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

    // The reduced precisions run the two fastest fp32 layouts: is channels-last still the win?
    let reduced_variants = [
        (
            "bn-folded",
            nchw(ForwardOptions {
                merge_head_convs: false,
                ..ForwardOptions::default()
            }),
        ),
        (
            "bn-folded+channels-last (default)",
            ForwardOptions::default(),
        ),
    ];

    let mut c = Criterion::default()
        .sample_size(samples.max(10))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    for &(precision, kind) in &precisions {
        let mut group = c.benchmark_group(format!("hovernet_fast6_cpu_{precision}"));
        group.throughput(Throughput::Elements(n as u64));
        let variants: &[(&str, ForwardOptions)] = if kind == Kind::Float {
            &variants
        } else {
            &reduced_variants
        };
        for &t in &threads {
            tch::set_num_threads(i32::try_from(t).unwrap_or(1));
            for (name, options) in variants {
                let options = ForwardOptions {
                    intra_op_threads: NonZeroUsize::new(t),
                    ..*options
                };
                let mut model =
                    HoVerNet::load(&weights, &arch, tch::Device::Cpu, kind, &options).unwrap();
                let label = format!("{precision}/{name}/threads={t}");
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

    let peaks = Peaks::measure();
    println!(
        "\nHoVer-Net fast (6 types), batch of {n} 256x256 patches, CPU; {GFLOP_PER_PATCH} GFLOP per patch"
    );
    println!("{}", peaks.describe());
    println!(
        "{:<54} {:>8} {:>7} {:>8} {:>9} {:>10} {:>8} {:>16}",
        "variant",
        "mean s",
        "sd s",
        "min s",
        "patches/s",
        "eager/ours",
        "GFLOP/s",
        "% peak th/meas"
    );
    let times = TIMES.lock().unwrap();
    for &t in &threads {
        let eager_mean = eager_runs.get(&t).map(|v| stats(v).0);
        if let Some(v) = eager_runs.get(&t) {
            let (m, sd, min) = stats(v);
            let label = format!("fp32/pytorch-eager (tiatoolbox)/threads={t}");
            println!(
                "{label:<54} {m:>8.3} {sd:>7.3} {min:>8.3} {:>9.3} {:>10} {:>8.1} {:>16}",
                n as f64 / m,
                "1.00x",
                n as f64 * GFLOP_PER_PATCH / m,
                peaks.percent(Kind::Float, t, n as f64 * GFLOP_PER_PATCH / m),
            );
        }
        for &(precision, kind) in &precisions {
            let names: Vec<&str> = if kind == Kind::Float {
                variants.iter().map(|v| v.0).collect()
            } else {
                reduced_variants.iter().map(|v| v.0).collect()
            };
            for name in names {
                let label = format!("{precision}/{name}/threads={t}");
                let Some(v) = times.get(&label) else { continue };
                // The first call of each variant is criterion's warm-up.
                let v = if v.len() > 1 { &v[1..] } else { &v[..] };
                let (m, sd, min) = stats(v);
                let ratio =
                    eager_mean.map_or_else(|| "n/a".to_owned(), |e| format!("{:.2}x", e / m));
                let gflops = n as f64 * GFLOP_PER_PATCH / m;
                println!(
                    "{label:<54} {m:>8.3} {sd:>7.3} {min:>8.3} {:>9.3} {ratio:>10} {gflops:>8.1} {:>16}",
                    n as f64 / m,
                    peaks.percent(kind, t, gflops),
                );
            }
        }
    }
    c.final_summary();
}

/// The machine's peak floating-point rates (see the module docs).
struct Peaks {
    /// Clock from /proc/cpuinfo ("cpu MHz" of the first CPU), GHz.
    ghz: Option<f64>,
    /// Measured GFLOP/s of one core: (fp32 vfmadd, bf16 vdpbf16ps).
    measured: (Option<f64>, Option<f64>),
}

impl Peaks {
    fn measure() -> Self {
        let ghz = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("cpu MHz")?
                        .split(':')
                        .nth(1)?
                        .trim()
                        .parse()
                        .ok()
                })
                .map(|mhz: f64| mhz / 1000.0)
        });
        Self {
            ghz,
            measured: (
                simd_peak::gflops_per_core(false),
                simd_peak::gflops_per_core(true),
            ),
        }
    }

    /// Theoretical GFLOP/s of `threads` cores in fp32 (bf16: twice that).
    fn theoretical(&self, kind: Kind, threads: usize) -> Option<f64> {
        let per_cycle = 2.0 * 16.0 * 2.0 * if kind == Kind::BFloat16 { 2.0 } else { 1.0 };
        self.ghz.map(|g| threads as f64 * per_cycle * g)
    }

    fn measured(&self, kind: Kind, threads: usize) -> Option<f64> {
        let per_core = match kind {
            Kind::Float => self.measured.0,
            Kind::BFloat16 => self.measured.1,
            _ => None,
        };
        per_core.map(|p| threads as f64 * p)
    }

    fn percent(&self, kind: Kind, threads: usize, gflops: f64) -> String {
        let pct = |p: Option<f64>| {
            p.map_or_else(
                || "n/a".to_owned(),
                |p| format!("{:.0}%", 100.0 * gflops / p),
            )
        };
        format!(
            "{}/{}",
            pct(self.theoretical(kind, threads)),
            pct(self.measured(kind, threads))
        )
    }

    fn describe(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"));
        format!(
            "peak GFLOP/s per core: theoretical fp32 {} / bf16 {} (2 FMA units x 16 lanes x 2 x {} GHz \
             from /proc/cpuinfo; bf16 x2); measured fp32 vfmadd {} / bf16 vdpbf16ps {}",
            f(self.theoretical(Kind::Float, 1)),
            f(self.theoretical(Kind::BFloat16, 1)),
            f(self.ghz),
            f(self.measured.0),
            f(self.measured.1),
        )
    }
}

/// One core's peak rate, measured: independent 512-bit multiply-adds on registers only.
#[allow(unsafe_code)]
mod simd_peak {
    /// Multiply-add chains in flight: more than latency × ports, so that throughput binds.
    const CHAINS: usize = 24;
    const ITERS: u64 = 20_000_000;

    /// GFLOP/s of `vfmadd231ps zmm` (fp32) or `vdpbf16ps zmm` (bf16) on this thread, or `None`
    /// when the CPU lacks AVX-512F (AVX512-BF16 for bf16). The best of 3 runs.
    pub(crate) fn gflops_per_core(bf16: bool) -> Option<f64> {
        #[cfg(target_arch = "x86_64")]
        {
            let ok = std::arch::is_x86_feature_detected!("avx512f")
                && (!bf16 || std::arch::is_x86_feature_detected!("avx512bf16"));
            if !ok {
                return None;
            }
            let flops_per_op = if bf16 { 64.0 } else { 32.0 };
            let best = (0..3)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    // SAFETY: the CPU features these functions enable were detected above.
                    let r = unsafe {
                        if bf16 {
                            dpbf16(std::hint::black_box(ITERS))
                        } else {
                            fma(std::hint::black_box(ITERS))
                        }
                    };
                    std::hint::black_box(r);
                    t0.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            Some((ITERS * CHAINS as u64) as f64 * flops_per_op / best / 1e9)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = bf16;
            None
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn fma(iters: u64) -> f32 {
        use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps};
        let mut acc = [_mm512_set1_ps(0.0); CHAINS];
        let (a, b) = std::hint::black_box((_mm512_set1_ps(1.000_001), _mm512_set1_ps(0.999_999)));
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(a, b, *x);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn dpbf16(iters: u64) -> f32 {
        use std::arch::x86_64::{
            _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_reduce_add_ps, _mm512_set1_ps,
        };
        let mut acc = [_mm512_set1_ps(0.0); CHAINS];
        let (a, b) = std::hint::black_box((
            _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0), _mm512_set1_ps(1.0)),
            _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5), _mm512_set1_ps(0.5)),
        ));
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_dpbf16_ps(*x, a, b);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }
}

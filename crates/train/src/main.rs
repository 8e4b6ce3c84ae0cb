//! `mtseg-train`: trains the demo HoVer-Net (fast, width / 8) on the right two thirds of
//! `hgsc_nest.jpg`, writes it as `.safetensors`, and scores a weights file on the held-out left
//! third. Run from the repository root after `scripts/setup` and `. scripts/env.sh`:
//!
//! ```text
//! cargo run --release -p mtseg-train --features torch -- train
//! cargo run --release -p mtseg-train --features torch -- eval
//! cargo run --release -p mtseg-train --features torch -- bench
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mtseg_infer::{Device, ModelParams, load_model};
use mtseg_postproc::NpHvParams;
use mtseg_train::{
    AnnotatedImage, CLASS_NAMES, HELD_OUT_COLUMNS, HeldOutSplit, NATIVE_MPP, TrainConfig,
    architecture, evaluate, save_safetensors, train,
};

/// The demo model's weights, relative to the repository root.
const DEFAULT_WEIGHTS: &str = "models/hovernet_fast_w8-hgsc_nest.safetensors";

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Train and evaluate the small demo HoVer-Net of mtseg-pipeline"
)]
struct Cli {
    /// libtorch intra-op threads.
    #[arg(long, global = true, default_value_t = 2)]
    threads: i32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train from scratch, save the weights, then score them on the held-out third.
    Train(TrainArgs),
    /// Score a weights file on the held-out third.
    Eval(EvalArgs),
    /// Time the inference forward (mtseg_infer's loader) and optionally a training step.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Folder with hgsc_nest.jpg and its two .npz masks (patches are cut from it).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The weights to time.
    #[arg(long, default_value = DEFAULT_WEIGHTS)]
    weights: PathBuf,
    /// Channel divisor of the weights.
    #[arg(long, default_value_t = 8)]
    width_divisor: i64,
    /// Patches per forward.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Also time a training step (forward, losses, backward, Adam) on a fresh network.
    #[arg(long)]
    train_step: bool,
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// Folder with hgsc_nest.jpg and its two .npz masks.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Where to write the weights.
    #[arg(long, default_value = DEFAULT_WEIGHTS)]
    out: PathBuf,
    /// Per-step losses as CSV.
    #[arg(long)]
    log_csv: Option<PathBuf>,
    /// Random seed (weights initialisation, patches, augmentation).
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Optimiser steps.
    #[arg(long, default_value_t = TrainConfig::default().steps)]
    steps: usize,
    /// Patches per step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    lr: f64,
    /// Channel divisor (2, 4 or 8).
    #[arg(long, default_value_t = TrainConfig::default().width_divisor)]
    width_divisor: i64,
}

#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// Folder with hgsc_nest.jpg and its two .npz masks.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The weights to score.
    #[arg(long, default_value = DEFAULT_WEIGHTS)]
    weights: PathBuf,
    /// Channel divisor of the weights.
    #[arg(long, default_value_t = 8)]
    width_divisor: i64,
    /// Post-processing scale factor(s): 1.0 is the pipeline's HoVer-Net default, 0.5 TIAToolbox's
    /// value for HoVer-Net+ at 0.5 mpp.
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.5")]
    scale_factors: Vec<f64>,
    /// Patches per forward.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
}

fn load_split(data: &std::path::Path) -> Result<HeldOutSplit> {
    let image = AnnotatedImage::load_hgsc_nest(data)
        .with_context(|| format!("reading the histolytics data in {}", data.display()))?;
    Ok(HeldOutSplit::new(&image)?)
}

fn eval(args: &EvalArgs) -> Result<()> {
    let split = load_split(&args.data)?;
    let arch = architecture(CLASS_NAMES.len() as i64, args.width_divisor);
    let mut params = ModelParams::new(arch, &args.weights);
    params.device = Device::Cpu;
    let mut model =
        load_model(&params).with_context(|| format!("loading {}", args.weights.display()))?;
    eprintln!(
        "held-out third: columns 0..{HELD_OUT_COLUMNS}, {} true nuclei",
        split.held_out.instance_count()
    );
    for &s in &args.scale_factors {
        let pp = NpHvParams {
            scale_factor: s,
            ..NpHvParams::hovernet()
        };
        let report = evaluate(model.as_mut(), &split.held_out, &pp, args.batch_size)?;
        println!("scale_factor {s}: {report}");
    }
    Ok(())
}

fn run_train(args: &TrainArgs) -> Result<()> {
    let split = load_split(&args.data)?;
    let config = TrainConfig {
        seed: args.seed,
        steps: args.steps,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        width_divisor: args.width_divisor,
        ..TrainConfig::default()
    };
    eprintln!("{config:?}");
    eprintln!(
        "training on columns {HELD_OUT_COLUMNS}..{} ({} nuclei)",
        HELD_OUT_COLUMNS + split.train.width,
        split.train.instance_count()
    );
    let mut csv = match &args.log_csv {
        Some(p) => {
            let mut f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            writeln!(f, "step,lr,np_ce,np_dice,hv_mse,hv_msge,tp_ce,total")?;
            Some(f)
        }
        None => None,
    };
    let start = Instant::now();
    let mut window = Vec::new();
    let trained = train(
        &split.train,
        &config,
        tch::Device::Cpu,
        |&(step, lr, v, total)| {
            if let Some(f) = csv.as_mut() {
                let _ = writeln!(
                    f,
                    "{step},{lr:.3e},{:.5},{:.5},{:.5},{:.5},{:.5},{total:.5}",
                    v[0], v[1], v[2], v[3], v[4]
                );
            }
            window.push(total);
            if (step + 1) % 50 == 0 {
                let mean = window.iter().sum::<f64>() / window.len() as f64;
                window.clear();
                eprintln!(
                    "step {:>5}  lr {lr:.2e}  loss(50) {mean:.4}  np_ce {:.4} np_dice {:.4} hv_mse {:.4} hv_msge {:.4} tp_ce {:.4}  {:.0} s",
                    step + 1,
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    v[4],
                    start.elapsed().as_secs_f64()
                );
            }
        },
    )?;
    let arch = architecture(config.num_types, config.width_divisor);
    let metadata: BTreeMap<String, String> = [
        ("format", "pt".to_owned()),
        ("architecture", "hovernet-fast".to_owned()),
        ("width_divisor", config.width_divisor.to_string()),
        ("num_types", config.num_types.to_string()),
        ("class_names", CLASS_NAMES.join(",")),
        ("mpp", NATIVE_MPP.to_string()),
        (
            "training_data",
            format!(
                "histolytics 0.3.0 hgsc_nest.jpg (BSD-3-Clause), columns {HELD_OUT_COLUMNS}..1500"
            ),
        ),
        ("seed", config.seed.to_string()),
        ("steps", config.steps.to_string()),
        ("batch_size", config.batch_size.to_string()),
        (
            "intended_use",
            "demonstration only; not for diagnosis or research".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    save_safetensors(&trained.vars, &arch, config.steps, &metadata, &args.out)?;
    let size = std::fs::metadata(&args.out)?.len();
    eprintln!(
        "trained in {:.0} s; wrote {} ({size} bytes)",
        trained.seconds,
        args.out.display()
    );
    let n = trained.history.len();
    for (from, to) in [(0, n / 10), (n / 2, n / 2 + n / 10), (n - n / 10, n)] {
        let part = &trained.history[from..to.max(from + 1).min(n)];
        let mean = |i: usize| part.iter().map(|h| h.2[i]).sum::<f64>() / part.len() as f64;
        eprintln!(
            "steps {from}..{to}: total {:.4}  np_ce {:.4} np_dice {:.4} hv_mse {:.4} hv_msge {:.4} tp_ce {:.4}",
            part.iter().map(|h| h.3).sum::<f64>() / part.len() as f64,
            mean(0),
            mean(1),
            mean(2),
            mean(3),
            mean(4)
        );
    }
    eval(&EvalArgs {
        data: args.data.clone(),
        weights: args.out.clone(),
        width_divisor: config.width_divisor,
        scale_factors: vec![1.0, 0.5],
        batch_size: 8,
    })
}

fn bench(args: &BenchArgs) -> Result<()> {
    let arch = architecture(CLASS_NAMES.len() as i64, args.width_divisor);
    let mut params = ModelParams::new(arch, &args.weights);
    params.device = Device::Cpu;
    let mut model =
        load_model(&params).with_context(|| format!("loading {}", args.weights.display()))?;
    let n = args.batch_size;
    let split = load_split(&args.data)?;
    let img = &split.held_out;
    let mut pixels = Vec::with_capacity(n * 256 * 256 * 3);
    for i in 0..n {
        let y0 = (i * 97) % (img.height - 256);
        let x0 = (i * 61) % (img.width - 256);
        for y in y0..y0 + 256 {
            let row = (y * img.width + x0) * 3;
            pixels.extend_from_slice(&img.rgb[row..row + 256 * 3]);
        }
    }
    let indices: Vec<u64> = (0..n as u64).collect();
    let batch = mtseg_infer::BatchView::new(&pixels, &indices, 256, 256)?;
    model.forward(batch)?;
    let mut times = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        let t = Instant::now();
        model.forward(batch)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0 / n as f64);
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "inference ({}, {} threads, batch {n}): {mean:.1} ms per 256² patch (min {:.1}, max {:.1}, {} runs)",
        params.architecture,
        tch::get_num_threads(),
        times[0],
        times[times.len() - 1],
        times.len()
    );
    if args.train_step {
        use tch::nn::OptimizerConfig;
        let vars = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = mtseg_train::TrainableHoVerNet::new(&vars.root(), 4, args.width_divisor);
        let mut sampler = mtseg_train::PatchSampler::new(
            &split.train,
            1,
            mtseg_train::ColourJitter::default(),
            tch::Device::Cpu,
        )?;
        let mut opt = tch::nn::Adam::default().build(&vars, 1e-4)?;
        let mut times = Vec::new();
        for _ in 0..=args.reps {
            let t = Instant::now();
            let (x, targets) = sampler.batch(n);
            let out = net.forward_t(&x, true);
            opt.backward_step(&mtseg_train::hovernet_losses(&out, &targets).total());
            times.push(t.elapsed().as_secs_f64());
        }
        times.remove(0);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "training step (batch {n}): {mean:.2} s ({:.0} ms per patch)",
            mean * 1000.0 / n as f64
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tch::set_num_threads(cli.threads);
    match &cli.command {
        Command::Train(a) => run_train(a),
        Command::Eval(a) => eval(a),
        Command::Bench(a) => bench(a),
    }
}

//! `mtseg-pipeline`: the command-line front of mtseg. It parses flags, reads the run config,
//! hands the work to the `mtseg-pipeline` library crate, prints what happened and sets the exit
//! code. Nothing here is reusable logic.
#![forbid(unsafe_code)]

mod dry_run_report;
mod exit_codes;
mod progress_display;
mod run_report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mtseg_io_config::RunConfig;

use crate::exit_codes::{EXIT_CODES_HELP, Exit};
use crate::progress_display::ProgressMode;

/// Segment and classify every cell nucleus in whole-slide images (HoVer-Net, HoVer-Net+, or a
/// TorchScript model with HoVer-Net's heads), as TIAToolbox's MultiTaskSegmentor does.
#[derive(Debug, Parser)]
#[command(name = "mtseg-pipeline", version, after_help = EXIT_CODES_HELP)]
struct Args {
    /// The TOML run config (model, resolution and shapes, input slides, outputs, memory budget).
    /// See configs/hovernet.toml for every key, with comments.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,

    /// Check the config and every slide, then print per slide: its size at the processing
    /// resolution, patches before and after the tissue mask, the post-processing tiles and the
    /// files a run would write. Runs no model and writes nothing.
    #[arg(long)]
    dry_run: bool,

    /// Replace existing outputs (as `[output] overwrite = true`). Without it, an existing output
    /// is an error before any work starts.
    #[arg(long)]
    overwrite: bool,

    /// Run the model here instead of `[model] device`: "cpu", "auto", "cuda" or "cuda:N".
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,

    /// How progress is shown on stderr: bars on a terminal and log lines otherwise (auto), or
    /// JSON lines, one event per line (json; schema in the README).
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    progress: ProgressMode,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    init_logging();
    let mut cfg = match RunConfig::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage.into();
        }
    };
    if args.overwrite {
        cfg.output.overwrite = true;
    }
    let device = match args
        .device
        .as_deref()
        .map(str::parse::<mtseg_infer::Device>)
    {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            eprintln!("error: --device: {e}");
            return Exit::Usage.into();
        }
    };
    if args.dry_run {
        return dry_run_report::run(&cfg).into();
    }
    run_report::run(&cfg, device, args.progress).into()
}

/// Logs to stderr; `RUST_LOG` overrides the default level (warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

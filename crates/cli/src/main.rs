//! `mtseg-pipeline`: the command-line front of mtseg. It parses flags, reads the run config,
//! hands the work to the `mtseg-pipeline` library crate, prints what happened and sets the exit
//! code. Nothing here is reusable logic.
#![forbid(unsafe_code)]

mod dry_run_report;
mod exit_codes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mtseg_io_config::RunConfig;

use crate::exit_codes::{EXIT_CODES_HELP, Exit};

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
    let cfg = match RunConfig::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage.into();
        }
    };
    if args.dry_run {
        return dry_run_report::run(&cfg).into();
    }
    eprintln!(
        "error: this build of mtseg-pipeline can only plan runs (--dry-run); running the model is not available yet"
    );
    Exit::Internal.into()
}

/// Logs to stderr; `RUST_LOG` overrides the default level (warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

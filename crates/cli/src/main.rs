//! `mtseg-pipeline`: the command-line front of mtseg. It parses flags, reads the run config,
//! hands the work to the `mtseg-pipeline` library crate, prints what happened and sets the exit
//! code. Nothing here is reusable logic.
#![forbid(unsafe_code)]

mod dry_run_report;
mod exit_codes;
mod openmp_wait;
mod progress_display;
mod run_report;
mod status_report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mtseg_io_config::{Device, RunConfig, Shard};

use crate::exit_codes::{EXIT_CODES_HELP, Exit};
use crate::progress_display::ProgressMode;

/// Segment and classify every cell nucleus in whole-slide images (HoVer-Net, HoVer-Net+, or a
/// TorchScript model with HoVer-Net's heads), as TIAToolbox's MultiTaskSegmentor does.
#[derive(Debug, Parser)]
#[command(
    name = "mtseg-pipeline",
    version,
    after_help = EXIT_CODES_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    /// Another command instead of a run.
    #[command(subcommand)]
    command: Option<Command>,

    /// The TOML run config (model, resolution and shapes, input slides, outputs, memory budget).
    /// See configs/hovernet.toml for every key, with comments.
    #[arg(long, short = 'c', value_name = "FILE", required = true)]
    config: Option<PathBuf>,

    /// Check the config and every slide, then print per slide: its size at the processing
    /// resolution, patches before and after the tissue mask, the post-processing tiles and the
    /// files a run would write. Runs no model and writes nothing.
    #[arg(long)]
    dry_run: bool,

    /// Replace existing outputs (as `[output] overwrite = true`). Without it, an existing output
    /// is an error before any work starts.
    #[arg(long)]
    overwrite: bool,

    /// Run the model here instead of `[model] device`: "cpu", "auto", "cuda" or "cuda:N" (the
    /// same grammar as the config: `Device`'s `FromStr`), or a comma list such as
    /// "cuda:0,cuda:1": one model worker per device, taking slides from one queue
    /// (`[pipeline] workers` sets how many in all). "auto" on a node with several GPUs uses
    /// them all.
    #[arg(long, value_name = "DEVICE[,DEVICE...]", value_delimiter = ',')]
    device: Vec<Device>,

    /// Run only this shard of the slides, "i/N" (0 <= i < N): slide k of the list (manifest
    /// rows in order) belongs to shard k mod N. Without it: `[input] shard`, else the Slurm job
    /// array's (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP of
    /// SLURM_ARRAY_TASK_COUNT, else every slide.
    #[arg(long, value_name = "i/N")]
    shard: Option<Shard>,

    /// How progress is shown on stderr: bars on a terminal and log lines otherwise (auto), or
    /// JSON lines, one event per line (json; schema in the README).
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    progress: ProgressMode,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Where every slide of the config stands (all shards), read from its output directory
    /// alone: done, failed (with the error), in progress (locked by a running process) or
    /// pending. Writes nothing.
    Status {
        /// The run config.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// Print JSON on stdout: {"slides": [{"slide", "state", ...}], "counts": {...}}.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    openmp_wait::ensure_passive_wait();
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
    if let Some(Command::Status { config, json }) = &args.command {
        return match RunConfig::from_file(config) {
            Ok(cfg) => status_report::run(&cfg, *json).into(),
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Usage.into()
            }
        };
    }
    let Some(config) = &args.config else {
        eprintln!("error: --config FILE is required");
        return Exit::Usage.into();
    };
    let mut cfg = match RunConfig::from_file(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage.into();
        }
    };
    if args.overwrite {
        cfg.output.overwrite = true;
    }
    let shard = match cfg
        .input
        .choose_shard(args.shard, |name| std::env::var(name).ok())
    {
        Ok(choice) => {
            if let Some(c) = &choice {
                tracing::info!("running shard {} (from {})", c.shard, c.source);
            }
            choice.map(|c| c.shard)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage.into();
        }
    };
    let slides = cfg.input.shard_slides(shard);
    if args.dry_run {
        return dry_run_report::run(&cfg, shard, &slides).into();
    }
    run_report::run(&cfg, &slides, &args.device, args.progress).into()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `--device` as the CLI parses it, through clap.
    fn flag(text: &str) -> Result<Option<Device>, String> {
        Args::try_parse_from(["mtseg-pipeline", "-c", "run.toml", "--device", text])
            .map(|a| a.device.first().copied())
            .map_err(|e| e.to_string())
    }

    /// `[model] device` as the config parses it.
    fn config(text: &str) -> Result<Device, String> {
        RunConfig::from_toml(
            &format!(
                "[model]\npreset = \"hovernet_fast-pannuke\"\ndevice = \"{text}\"\n\
                 [input]\nslides = [\"a.svs\"]\n"
            ),
            std::path::Path::new("run.toml"),
        )
        .map(|c| c.model.device)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn device_flag_and_config_accept_and_reject_the_same_strings() {
        for text in [
            "cpu",
            "auto",
            "cuda",
            "cuda:0",
            "cuda:7",
            "CPU",
            "Cuda:2",
            " auto ",
            "gpu",
            "",
            "cuda:",
            "cuda:-1",
            "cuda:+1",
            "cuda:x",
            "cuda 1",
            "cuda:1.0",
            "cpu:0",
            "mps",
            "cuda:99999999999",
        ] {
            match (flag(text), config(text)) {
                (Ok(f), Ok(c)) => assert_eq!(f, Some(c), "{text:?}"),
                (Err(f), Err(c)) => {
                    // Both name the input and give the same reason (one parser).
                    let reason = text.parse::<Device>().unwrap_err().to_string();
                    assert!(f.contains(&reason), "{text:?}: {f}");
                    assert!(c.contains(&reason), "{text:?}: {c}");
                }
                (f, c) => panic!("{text:?}: --device gives {f:?}, the config {c:?}"),
            }
        }
        assert_eq!(flag("cuda"), Ok(Some(Device::Cuda(0))));
        assert_eq!(flag("gpu").is_err(), config("gpu").is_err());
    }

    #[test]
    fn device_flag_is_optional() {
        let a = Args::try_parse_from(["mtseg-pipeline", "-c", "run.toml"]).unwrap();
        assert!(a.device.is_empty());
    }

    #[test]
    fn device_flag_takes_a_list_of_devices() {
        let a = Args::try_parse_from([
            "mtseg-pipeline",
            "-c",
            "run.toml",
            "--device",
            "cuda:0,cuda:1",
        ])
        .unwrap();
        assert_eq!(a.device, vec![Device::Cuda(0), Device::Cuda(1)]);
        assert!(
            Args::try_parse_from(["mtseg-pipeline", "-c", "r.toml", "--device", "cuda:0,gpu"])
                .is_err()
        );
    }

    #[test]
    fn status_is_a_subcommand_with_its_own_config() {
        let a = Args::try_parse_from(["mtseg-pipeline", "status", "--config", "r.toml", "--json"])
            .unwrap();
        assert!(matches!(
            a.command,
            Some(Command::Status { json: true, ref config }) if config == std::path::Path::new("r.toml")
        ));
        assert!(
            Args::try_parse_from(["mtseg-pipeline"]).is_err(),
            "a run needs --config"
        );
    }
}

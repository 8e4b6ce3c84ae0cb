//! The exit codes of `mtseg-pipeline`, documented in `--help` and the README.

use std::process::ExitCode;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Every slide done.
    Ok,
    /// An unexpected failure (e.g. an output could not be written) or an unavailable feature.
    Internal,
    /// Bad flags or a bad config: nothing was done.
    Usage,
    /// The run finished, but one or more slides failed (they are listed).
    SlidesFailed,
    /// Stopped by Ctrl-C; the slide in progress left no output.
    Interrupted,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Internal => 1,
            Exit::Usage => 2,
            Exit::SlidesFailed => 3,
            Exit::Interrupted => 130,
        })
    }
}

/// The exit-code table shown after `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done: every slide succeeded or was skipped (complete already, or in progress in another process)
  1  unexpected failure (e.g. an output could not be written)
  2  usage or config error (bad flag, unreadable config, unknown key, impossible shapes), or outputs made
     with another config, weights or version (the key is named; --overwrite replaces them); nothing was done
  3  finished, but one or more slides failed (each is listed with its error)
  130  interrupted (Ctrl-C or SIGTERM): the slide in progress left no file under a final name; a rerun
     resumes it from its last checkpoint

Environment:
  RUST_LOG  log level on stderr (default: warn), e.g. RUST_LOG=debug";

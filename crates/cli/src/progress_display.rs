//! How progress is shown: indicatif bars on a terminal, plain log lines otherwise, JSON lines
//! with `--progress json` (schema in `mtseg_pipeline::ProgressEvent`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mtseg_pipeline::{ProgressEvent, ProgressSink, SkipReason};

/// The `--progress` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProgressMode {
    /// Bars on a terminal, log lines otherwise.
    Auto,
    /// Progress bars (one per stage of the current slide).
    Bars,
    /// Plain log lines, at most one per stage every few seconds.
    Log,
    /// JSON lines on stderr, one event per line.
    Json,
    /// Nothing but the summary.
    None,
}

/// Bars for the slides in progress (one pair per slide: several model workers run slides side
/// by side), by slide index.
struct Bars {
    multi: MultiProgress,
    slides: BTreeMap<usize, SlideBars>,
}

/// The patch and tile bars of one slide.
struct SlideBars {
    patches: ProgressBar,
    tiles: ProgressBar,
}

/// Renders events in the chosen mode.
pub(crate) struct ProgressDisplay {
    mode: ProgressMode,
    started: Instant,
    bars: Mutex<Bars>,
    last_log: Mutex<Instant>,
}

impl ProgressDisplay {
    pub(crate) fn new(mode: ProgressMode) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bars,
            ProgressMode::Auto => ProgressMode::Log,
            m => m,
        };
        Self {
            mode,
            started: Instant::now(),
            bars: Mutex::new(Bars {
                multi: MultiProgress::new(),
                slides: BTreeMap::new(),
            }),
            last_log: Mutex::new(Instant::now() - Duration::from_secs(60)),
        }
    }

    fn log(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "[{:>7.1}s] {line}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A log line at most every 5 s (always for `force`).
    fn log_throttled(&self, line: &str, force: bool) {
        let mut last = self
            .last_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if force || last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            drop(last);
            self.log(line);
        }
    }

    fn bar(multi: &MultiProgress, len: u64, what: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>14} [{bar:40.cyan/blue}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let b = multi.add(ProgressBar::new(len).with_style(style));
        b.set_prefix(what.to_string());
        b
    }

    fn bars_event(&self, e: &ProgressEvent) {
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match e {
            ProgressEvent::SlideStarted {
                slide,
                path,
                patches,
                tiles,
            } => {
                let _ = bars.multi.println(format!("{}", path.display()));
                let p = Self::bar(&bars.multi, *patches, "patches");
                let t = Self::bar(&bars.multi, *tiles as u64, "tiles");
                bars.slides.insert(
                    *slide,
                    SlideBars {
                        patches: p,
                        tiles: t,
                    },
                );
            }
            ProgressEvent::PatchesDone { slide, done, .. } => {
                if let Some(b) = bars.slides.get(slide) {
                    b.patches.set_position(*done);
                }
            }
            ProgressEvent::TilesDone {
                slide,
                done,
                nuclei,
                ..
            } => {
                if let Some(b) = bars.slides.get(slide) {
                    b.tiles.set_position(*done as u64);
                    b.tiles.set_message(format!("{nuclei} nuclei"));
                }
            }
            ProgressEvent::SlideFinished { slide, summary } => {
                if let Some(b) = bars.slides.remove(slide) {
                    b.patches.finish();
                    b.tiles.finish();
                }
                let _ = bars.multi.println(format!(
                    "  done: {} nuclei in {:.1} s ({})",
                    summary.nuclei,
                    summary.wall_s,
                    summary.path.display()
                ));
            }
            ProgressEvent::SlideFailed { slide, path, error } => {
                if let Some(b) = bars.slides.remove(slide) {
                    b.patches.abandon();
                    b.tiles.abandon();
                }
                let _ = bars
                    .multi
                    .println(format!("  FAILED {}: {error}", path.display()));
            }
            ProgressEvent::SlideSkipped { path, reason, .. } => {
                let _ = bars.multi.println(format!(
                    "{}: skipped ({})",
                    path.display(),
                    skip_words(*reason)
                ));
            }
            _ => {}
        }
    }

    fn log_event(&self, e: &ProgressEvent) {
        match e {
            ProgressEvent::RunStarted { slides } => {
                self.log(&format!("run started: {slides} slide(s)"))
            }
            ProgressEvent::SlideStarted {
                slide,
                path,
                patches,
                tiles,
            } => self.log(&format!(
                "slide {}: {} ({patches} patches, {tiles} post-processing tiles)",
                slide + 1,
                path.display()
            )),
            ProgressEvent::PatchesDone {
                done, total, eta_s, ..
            } => self.log_throttled(
                &format!(
                    "  patches {done}/{total}{}",
                    eta_s.map_or(String::new(), |s| format!(", inference eta {s:.0} s"))
                ),
                done == total,
            ),
            ProgressEvent::TilesDone {
                done,
                total,
                nuclei,
                ..
            } => self.log_throttled(
                &format!("  tiles {done}/{total}, {nuclei} nuclei so far"),
                done == total,
            ),
            ProgressEvent::SlideFinished { summary, .. } => self.log(&format!(
                "  done: {} nuclei in {:.1} s",
                summary.nuclei, summary.wall_s
            )),
            ProgressEvent::SlideFailed { path, error, .. } => {
                self.log(&format!("  FAILED {}: {error}", path.display()));
            }
            ProgressEvent::SlideSkipped {
                slide,
                path,
                reason,
                ..
            } => self.log(&format!(
                "slide {}: {} skipped ({})",
                slide + 1,
                path.display(),
                skip_words(*reason)
            )),
            ProgressEvent::RunFinished { wall_s, .. } => {
                self.log(&format!("run finished in {wall_s:.1} s"))
            }
            _ => {}
        }
    }
}

/// Why a slide was skipped, in words.
fn skip_words(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::Complete => "complete",
        SkipReason::InProgressElsewhere => "in progress in another process",
        _ => "skipped",
    }
}

impl ProgressSink for ProgressDisplay {
    fn event(&self, e: &ProgressEvent) {
        match self.mode {
            ProgressMode::Json => {
                let line = e.to_json_line(self.started.elapsed());
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
            }
            ProgressMode::Bars => self.bars_event(e),
            ProgressMode::Log | ProgressMode::Auto => self.log_event(e),
            ProgressMode::None => {}
        }
    }
}

//! What a run reports while it works: [`ProgressEvent`]s sent to a [`ProgressSink`] (the CLI
//! draws bars, prints log lines, or writes JSON lines), and the per-slide and per-run
//! summaries.
//!
//! # JSON-lines schema (`--progress json`, one object per line on stderr)
//!
//! Every line has `"event"` (the variant name in snake case) and `"t"` (seconds since the run
//! started). Per event:
//!
//! | event | fields |
//! |---|---|
//! | `run_started` | `slides` |
//! | `slide_started` | `slide` (index), `path`, `patches` (to run), `tiles` (post-processing tiles) |
//! | `patches_done` | `slide`, `done`, `total`, `eta_s` (null until a rate is known) |
//! | `tiles_done` | `slide`, `done`, `total`, `nuclei` (handed to the writers so far) |
//! | `slide_finished` | `slide`, `path`, `nuclei`, `layers`, `patches` (run through the model), `tiles`, `wall_s`, `stages` {`read_s`, `infer_s`, `stitch_s`, `postproc_s`, `export_s`}, `outputs` (paths), `resumed_at_row` (null, or the canvas row a resumed run started at), `checkpoints`, `checkpoint_s` |
//! | `slide_failed` | `slide`, `path`, `error` |
//! | `slide_skipped` | `slide`, `path`, `reason` (`complete` or `in_progress_elsewhere`), `seconds` (spent deciding) |
//! | `run_finished` | `slides_ok`, `slides_skipped`, `slides_failed`, `nuclei`, `wall_s`, `peak_rss_bytes` |
//!
//! Stage seconds are busy time of that stage's thread (waiting on a channel excluded), so
//! their sum exceeds the wall time when the stages overlap.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Busy seconds per stage of one slide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Reading and resampling patches (summed over the reader threads).
    pub read_s: f64,
    /// Model forwards.
    pub infer_s: f64,
    /// Stitching (horizontal merge, vertical normalisation, probability maps).
    pub stitch_s: f64,
    /// Post-processing and the cross-tile merge.
    pub postproc_s: f64,
    /// Writing the outputs.
    pub export_s: f64,
}

impl StageTimes {
    /// The sum of the stage times.
    pub fn total(&self) -> f64 {
        self.read_s + self.infer_s + self.stitch_s + self.postproc_s + self.export_s
    }
}

/// What one slide produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlideSummary {
    /// The slide.
    pub path: PathBuf,
    /// Nuclei written.
    pub nuclei: u64,
    /// Tissue-layer polygons written (HoVer-Net+).
    pub layers: u64,
    /// Patches run through the model.
    pub patches: u64,
    /// Post-processing tiles.
    pub tiles: usize,
    /// Wall time of the slide, seconds.
    pub wall_s: f64,
    /// Busy time per stage.
    pub stages: StageTimes,
    /// The files written.
    pub outputs: Vec<PathBuf>,
    /// The canvas row this run resumed at from a killed run's checkpoint (the rows above it
    /// were not computed again), if it resumed.
    pub resumed_at_row: Option<u64>,
    /// Checkpoints written and the seconds they took (flush, fsync, rename).
    pub checkpoints: u32,
    /// Seconds spent writing checkpoints.
    pub checkpoint_s: f64,
}

/// Why a slide was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// Its outputs are complete, made with the same result keys.
    Complete,
    /// Another process holds the slide's lock.
    InProgressElsewhere,
}

/// One progress report. See the module docs for the JSON form.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The run begins.
    RunStarted {
        /// Slides to process.
        slides: usize,
    },
    /// A slide is planned and its work begins.
    SlideStarted {
        /// Index of the slide in the run.
        slide: usize,
        /// Its path.
        path: PathBuf,
        /// Patches to run.
        patches: u64,
        /// Post-processing tiles.
        tiles: usize,
    },
    /// Patches came out of the model.
    PatchesDone {
        /// Index of the slide.
        slide: usize,
        /// Patches done so far.
        done: u64,
        /// Patches in all.
        total: u64,
        /// Estimated seconds left for inference, once a rate is known.
        eta_s: Option<f64>,
    },
    /// Post-processing tiles were merged.
    TilesDone {
        /// Index of the slide.
        slide: usize,
        /// Tiles done so far.
        done: usize,
        /// Tiles in all.
        total: usize,
        /// Nuclei handed to the writers so far.
        nuclei: u64,
    },
    /// A slide is complete and its outputs are under their final names.
    SlideFinished {
        /// Index of the slide.
        slide: usize,
        /// What it produced.
        #[serde(flatten)]
        summary: SlideSummary,
    },
    /// A slide failed; nothing of it is left under a final name. The run goes on.
    SlideFailed {
        /// Index of the slide.
        slide: usize,
        /// Its path.
        path: PathBuf,
        /// The error, with its causes.
        error: String,
    },
    /// A slide was not processed by this run: it is complete (same result keys, every output
    /// present), or another process works on it now (holds its lock).
    SlideSkipped {
        /// Index of the slide in the run.
        slide: usize,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: SkipReason,
        /// Seconds spent deciding.
        seconds: f64,
    },
    /// The run is over.
    RunFinished {
        /// Slides that completed.
        slides_ok: usize,
        /// Slides skipped (complete, or in progress elsewhere).
        slides_skipped: usize,
        /// Slides that failed.
        slides_failed: usize,
        /// Nuclei written over all slides.
        nuclei: u64,
        /// Wall time, seconds.
        wall_s: f64,
        /// Peak resident memory of the process (Linux `VmHWM`), if known.
        peak_rss_bytes: Option<u64>,
    },
}

impl ProgressEvent {
    /// The event as one JSON line (no newline), with `t` = seconds since the run started.
    pub fn to_json_line(&self, since_start: Duration) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = v.as_object_mut() {
            map.insert(
                "t".into(),
                serde_json::json!((since_start.as_secs_f64() * 1000.0).round() / 1000.0),
            );
        }
        v.to_string()
    }
}

/// Receives progress events, from several threads.
pub trait ProgressSink: Send + Sync {
    /// One event.
    fn event(&self, event: &ProgressEvent);
}

/// A sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _: &ProgressEvent) {}
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), when readable.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_event_name_and_time() {
        let e = ProgressEvent::PatchesDone {
            slide: 0,
            done: 3,
            total: 10,
            eta_s: None,
        };
        let line = e.to_json_line(Duration::from_millis(1500));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "patches_done");
        assert_eq!(v["done"], 3);
        assert_eq!(v["t"], 1.5);
        assert!(v["eta_s"].is_null());
        let s = ProgressEvent::SlideFinished {
            slide: 1,
            summary: SlideSummary {
                path: "a.svs".into(),
                nuclei: 7,
                layers: 0,
                patches: 4,
                tiles: 1,
                wall_s: 2.0,
                stages: StageTimes::default(),
                outputs: vec!["out/a.db".into()],
                resumed_at_row: None,
                checkpoints: 0,
                checkpoint_s: 0.0,
            },
        };
        let v: serde_json::Value = serde_json::from_str(&s.to_json_line(Duration::ZERO)).unwrap();
        assert_eq!(v["event"], "slide_finished");
        assert_eq!(v["nuclei"], 7);
        assert_eq!(v["stages"]["infer_s"], 0.0);
        assert_eq!(v["outputs"][0], "out/a.db");
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        assert!(peak_rss_bytes().is_some_and(|b| b > 1 << 20));
    }
}

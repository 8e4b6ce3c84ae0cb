//! The state of each slide of a cohort, kept in the output directory so that reruns, concurrent
//! processes and `mtseg-pipeline status` agree without any other service:
//!
//! ```text
//! <output dir>/.mtseg/<stem>.lock          held (flock) while a process works on the slide
//! <output dir>/.mtseg/<stem>.started.json  the result keys of the run that works on it
//! <output dir>/.mtseg/<stem>.done.json     written last, once every output is under its final name
//! <output dir>/.mtseg/<stem>.failed.json   the error of the last failed attempt
//! ```
//!
//! A slide is *complete* when its done record exists, every output it lists exists, and the
//! record's result keys ([`ResultKeys`]: the config keys that change results, the weights'
//! sha256 and the engine version) equal this run's. A complete slide is skipped; outputs made
//! with other result keys are an error naming the first key that differs, unless overwrite.
//!
//! The lock is `flock(2)` on the lock file (`File::try_lock`): the kernel drops it when the
//! process exits, killed or not, so a lock never outlives its process. On a file system
//! without lock support the run goes on unlocked, with a warning: two processes could then work
//! on one slide (the outputs stay whole, written under temporary names and renamed).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use mtseg_io_config::{RunConfig, SlideInput};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::output_names::output_paths;

/// The folder of the per-slide state files, inside the output directory.
pub(crate) const STATE_DIR: &str = ".mtseg";

/// The config keys that change results, with the weights' sha256 and the engine version, by
/// name. Two runs with equal keys write the same outputs for a slide; speed and memory settings
/// (threads, memory limit, batch size, device, workers, queues) are not among them, nor is the
/// slide's directory: its file name is (a cohort moved to another mount keeps its outputs; the
/// slide file's size and time also guard resume checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResultKeys(pub BTreeMap<String, Value>);

impl ResultKeys {
    /// The keys of `cfg` for `slide`, with `weights_sha256` (the sha256 of the weights file, if
    /// any).
    pub(crate) fn of(cfg: &RunConfig, slide: &SlideInput, weights_sha256: Option<&str>) -> Self {
        let io = &cfg.io;
        let size = |s: mtseg_io_config::Size2| serde_json::json!([s.width, s.height]);
        let mut k = BTreeMap::new();
        let mut put = |key: &str, v: Value| {
            k.insert(key.to_string(), v);
        };
        put("engine_version", env!("CARGO_PKG_VERSION").into());
        put(
            "slide_file",
            slide
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .into(),
        );
        put(
            "model.architecture",
            format!("{:?}", cfg.model.architecture).into(),
        );
        put("model.preset", cfg.model.preset.clone().into());
        put("model.weights_sha256", weights_sha256.into());
        put(
            "model.precision",
            format!("{:?}", cfg.model.precision).into(),
        );
        put(
            "model.nuclei_classes",
            cfg.model.nuclei_classes.clone().into(),
        );
        put(
            "model.layer_classes",
            cfg.model.layer_classes.clone().into(),
        );
        put("io.resolution", format!("{:?}", io.resolution).into());
        put("io.patch_input", size(io.patch_input));
        put("io.patch_output", size(io.patch_output));
        put("io.stride", size(io.stride));
        put("io.tile_shape", size(io.tile_shape));
        put("io.margin", io.margin.into());
        put(
            "io.interpolation",
            format!("{:?}", cfg.interpolation).into(),
        );
        put("input.mode", format!("{:?}", cfg.input.mode).into());
        put(
            "input.mask",
            format!("{:?}", cfg.input.mask_for(slide)).into(),
        );
        put(
            "input.mask_rule",
            format!("{:?}", cfg.input.mask_rule).into(),
        );
        put("input.mpp", cfg.input.mpp_for(slide).into());
        put(
            "output.formats",
            cfg.output
                .formats
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .into(),
        );
        put(
            "output.save_predictions",
            cfg.output.save_predictions.into(),
        );
        put(
            "output.save_probabilities",
            cfg.output.save_probabilities.into(),
        );
        put("output.gzip_geojson", cfg.output.gzip_geojson.into());
        put("output.overlay", cfg.output.overlay.into());
        Self(k)
    }

    /// The first key (in name order) whose value differs from `other`'s, with both values.
    pub(crate) fn first_difference(&self, other: &Self) -> Option<(String, Value, Value)> {
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(other.0.keys()).collect();
        keys.into_iter().find_map(|key| {
            let a = self.0.get(key).cloned().unwrap_or(Value::Null);
            let b = other.0.get(key).cloned().unwrap_or(Value::Null);
            (a != b).then(|| (key.clone(), a, b))
        })
    }
}

/// The record of a completed slide (`<stem>.done.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneRecord {
    /// The slide.
    pub slide: PathBuf,
    /// What its outputs were made with.
    pub result_keys: ResultKeys,
    /// The files written.
    pub outputs: Vec<PathBuf>,
    /// Nuclei written.
    pub nuclei: u64,
    /// Wall time of the slide, seconds.
    pub wall_s: f64,
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix_s: u64,
}

/// The record of the last failed attempt at a slide (`<stem>.failed.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRecord {
    /// The slide.
    pub slide: PathBuf,
    /// The error, with its causes.
    pub error: String,
    /// When it failed, seconds since the Unix epoch.
    pub failed_unix_s: u64,
}

/// Where a slide's state files are.
#[derive(Debug, Clone)]
pub(crate) struct SlideStatePaths {
    pub(crate) lock: PathBuf,
    pub(crate) started: PathBuf,
    pub(crate) done: PathBuf,
    pub(crate) failed: PathBuf,
    /// The slide's resume checkpoints (a folder).
    pub(crate) checkpoint: PathBuf,
}

impl SlideStatePaths {
    pub(crate) fn of(cfg: &RunConfig, slide: &SlideInput) -> Self {
        let dir = cfg.output.dir.join(STATE_DIR);
        let stem = slide.stem();
        Self {
            lock: dir.join(format!("{stem}.lock")),
            started: dir.join(format!("{stem}.started.json")),
            done: dir.join(format!("{stem}.done.json")),
            failed: dir.join(format!("{stem}.failed.json")),
            checkpoint: dir.join(format!("{stem}.checkpoint")),
        }
    }
}

/// A slide's lock, held until dropped.
#[derive(Debug)]
pub(crate) struct SlideLock {
    _file: Option<File>,
}

/// What trying to lock a slide gave.
#[derive(Debug)]
pub(crate) enum LockAttempt {
    /// This process now works on the slide.
    Held(SlideLock),
    /// Another process holds the lock.
    Busy,
}

fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Tries to take the lock of a slide without waiting.
///
/// # Errors
/// The lock file cannot be created (naming it). A file system that does not support locks is
/// not an error: the slide is processed unlocked, with a warning.
pub(crate) fn try_lock(paths: &SlideStatePaths) -> std::io::Result<LockAttempt> {
    if let Some(dir) = paths.lock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_context(e, "create", dir))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
        .map_err(|e| io_context(e, "open the lock file", &paths.lock))?;
    match file.try_lock() {
        Ok(()) => Ok(LockAttempt::Held(SlideLock { _file: Some(file) })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(LockAttempt::Busy),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(
                lock = %paths.lock.display(),
                "cannot lock ({e}): the file system does not support locks; working on the slide unlocked (another process could work on it too)"
            );
            Ok(LockAttempt::Held(SlideLock { _file: None }))
        }
    }
}

/// Whether another process holds the slide's lock now (for `status`). A missing lock file or
/// a file system without locks reads as "not held".
pub(crate) fn lock_held_elsewhere(paths: &SlideStatePaths) -> bool {
    let Ok(file) = OpenOptions::new().write(true).open(&paths.lock) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// `e` with what was being done to which path in its message.
pub(crate) fn io_context(e: std::io::Error, what: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
}

/// Reads a JSON record; `None` when it does not exist or cannot be parsed (a record cut short
/// by a crash reads as absent; records are written whole with a rename, so that is rare).
fn read_record<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes a JSON record whole and durably ([`write_durably`]).
fn write_record<T: Serialize>(path: &Path, record: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    write_durably(path, &bytes)
}

/// Writes `bytes` under a temporary name in `path`'s folder (created if missing), fsyncs the
/// file, renames it into place and fsyncs the folder: at every moment `path` holds the old
/// content or the new, whole. The temporary file is removed on error.
///
/// # Errors
/// The step that failed, naming the file.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_context(e, "create", dir))?;
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_context(e, "write", path)
    })
}

/// The record of a slide a run has started (`<stem>.started.json`): outputs found later without
/// a done record but with this record's keys were left by a killed run with the same result
/// keys, so they may be replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartedRecord {
    /// The slide.
    pub slide: PathBuf,
    /// The result keys of the run.
    pub result_keys: ResultKeys,
    /// When it started, seconds since the Unix epoch.
    pub started_unix_s: u64,
}

/// Records that this run starts the slide (before any output is created).
pub(crate) fn record_started(
    paths: &SlideStatePaths,
    slide: &Path,
    keys: &ResultKeys,
) -> std::io::Result<()> {
    write_record(
        &paths.started,
        &StartedRecord {
            slide: slide.to_path_buf(),
            result_keys: keys.clone(),
            started_unix_s: now_unix_s(),
        },
    )
}

/// Records a completed slide and clears its failure record.
pub(crate) fn record_done(paths: &SlideStatePaths, record: &DoneRecord) -> std::io::Result<()> {
    write_record(&paths.done, record)?;
    let _ = std::fs::remove_file(&paths.failed);
    Ok(())
}

/// Records a failed attempt (best effort: the failure itself is reported either way).
pub(crate) fn record_failed(paths: &SlideStatePaths, slide: &Path, error: &str) {
    let record = FailedRecord {
        slide: slide.to_path_buf(),
        error: error.to_string(),
        failed_unix_s: now_unix_s(),
    };
    if let Err(e) = write_record(&paths.failed, &record) {
        tracing::warn!("{e}");
    }
}

/// Forgets that a slide was complete (before it is processed again).
pub(crate) fn clear_done(paths: &SlideStatePaths) -> std::io::Result<()> {
    match std::fs::remove_file(&paths.done) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_context(e, "remove", &paths.done))
        }
        _ => Ok(()),
    }
}

/// A new done record for `slide`.
pub(crate) fn done_record(
    slide: &Path,
    keys: &ResultKeys,
    outputs: &[PathBuf],
    nuclei: u64,
    wall_s: f64,
) -> DoneRecord {
    DoneRecord {
        slide: slide.to_path_buf(),
        result_keys: keys.clone(),
        outputs: outputs.to_vec(),
        nuclei,
        wall_s,
        finished_unix_s: now_unix_s(),
    }
}

/// Where a slide stands before this run works on it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Completion {
    /// Done with the same result keys, every output present: skip it.
    Complete,
    /// Nothing of it exists (or only what a crash left behind): process it.
    Absent,
    /// Outputs exist from a run with other result keys.
    Differs {
        /// The record.
        record: PathBuf,
        /// The first differing key, its recorded value and this run's.
        key: String,
        recorded: Value,
        now: Value,
    },
    /// Outputs exist with no record (written by an older version or something else).
    Unrecorded {
        /// The outputs found.
        existing: Vec<PathBuf>,
    },
}

/// Where `slide` stands against this run's `keys`.
pub(crate) fn completion(cfg: &RunConfig, slide: &SlideInput, keys: &ResultKeys) -> Completion {
    let paths = SlideStatePaths::of(cfg, slide);
    let existing: Vec<PathBuf> = output_paths(cfg, slide)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    match read_record::<DoneRecord>(&paths.done) {
        Some(record) => match record.result_keys.first_difference(keys) {
            Some((key, recorded, now)) if !existing.is_empty() => Completion::Differs {
                record: paths.done,
                key,
                recorded,
                now,
            },
            Some(_) => Completion::Absent,
            None if record.outputs.iter().all(|p| p.exists()) && !existing.is_empty() => {
                Completion::Complete
            }
            // a listed output is gone: made again (what is left of it is ours to replace)
            None => Completion::Absent,
        },
        None if existing.is_empty() => Completion::Absent,
        // outputs without a done record: a killed run's (its started record has our keys), or
        // not ours
        None => match read_record::<StartedRecord>(&paths.started) {
            Some(started) => match started.result_keys.first_difference(keys) {
                None => Completion::Absent,
                Some((key, recorded, now)) => Completion::Differs {
                    record: paths.started,
                    key,
                    recorded,
                    now,
                },
            },
            None => Completion::Unrecorded { existing },
        },
    }
}

/// Removes what a killed run of this slide left behind: the temporary outputs
/// (`.<name>.partial-*`, `.<name>.old-*` next to each output). Call with the slide's lock held.
pub(crate) fn remove_leftovers(cfg: &RunConfig, slide: &SlideInput) {
    for out in output_paths(cfg, slide) {
        let (Some(dir), Some(name)) = (out.parent(), out.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy();
        let prefixes = [format!(".{name}.partial-"), format!(".{name}.old-")];
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if prefixes.iter().any(|p| file.starts_with(p.as_str())) {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed a killed run's temporary output")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "cannot remove a killed run's temporary output: {e}")
                    }
                }
            }
        }
    }
}

/// Where one slide of a cohort stands, from the output directory alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SlideState {
    /// Complete: every output under its final name.
    Done {
        /// Nuclei written.
        nuclei: u64,
        /// The files.
        outputs: Vec<PathBuf>,
        /// The key that differs from the config's, when the outputs were made with another
        /// config, weights or engine version (a run would stop on them without overwrite).
        #[serde(skip_serializing_if = "Option::is_none")]
        stale: Option<String>,
    },
    /// The last attempt failed.
    Failed {
        /// Its error.
        error: String,
    },
    /// A process works on it now (holds its lock).
    InProgress,
    /// Not started, or killed without a failure record (a rerun resumes it).
    Pending,
}

/// Where `slide` stands, from its state files (`keys`: this config's result keys, to mark done
/// slides made with another config as stale).
pub(crate) fn slide_state(cfg: &RunConfig, slide: &SlideInput, keys: &ResultKeys) -> SlideState {
    let paths = SlideStatePaths::of(cfg, slide);
    if lock_held_elsewhere(&paths) {
        return SlideState::InProgress;
    }
    if let Some(done) = read_record::<DoneRecord>(&paths.done)
        && done.outputs.iter().all(|p| p.exists())
    {
        return SlideState::Done {
            nuclei: done.nuclei,
            stale: done.result_keys.first_difference(keys).map(|(k, _, _)| k),
            outputs: done.outputs,
        };
    }
    if let Some(failed) = read_record::<FailedRecord>(&paths.failed) {
        return SlideState::Failed {
            error: failed.error,
        };
    }
    SlideState::Pending
}

/// One slide's line of [`cohort_status`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlideStatus {
    /// The slide.
    pub slide: PathBuf,
    /// Where it stands.
    #[serde(flatten)]
    pub state: SlideState,
}

/// Slides per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// Complete.
    pub done: usize,
    /// Last attempt failed.
    pub failed: usize,
    /// Not started (or killed; a rerun resumes them).
    pub pending: usize,
    /// Locked by a running process.
    pub in_progress: usize,
}

/// Where every slide of a config stands (all shards), from its output directory alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortStatus {
    /// Per slide, in config order.
    pub slides: Vec<SlideStatus>,
    /// Slides per state.
    pub counts: StatusCounts,
}

/// Reads where every slide of `cfg` stands from the state files in its output directory
/// (`.mtseg/`): done, failed (with the error), in progress (another process holds its lock) or
/// pending. Reads the weights file once (to mark outputs made with other weights as stale);
/// writes nothing.
pub fn cohort_status(cfg: &RunConfig) -> CohortStatus {
    let weights_sha256 = crate::output_spec::provenance(cfg)
        .ok()
        .and_then(|p| p["weights_sha256"].as_str().map(str::to_owned));
    let mut counts = StatusCounts::default();
    let slides = cfg
        .input
        .slides
        .iter()
        .map(|slide| {
            let keys = ResultKeys::of(cfg, slide, weights_sha256.as_deref());
            let state = slide_state(cfg, slide, &keys);
            match state {
                SlideState::Done { .. } => counts.done += 1,
                SlideState::Failed { .. } => counts.failed += 1,
                SlideState::InProgress => counts.in_progress += 1,
                SlideState::Pending => counts.pending += 1,
            }
            SlideStatus {
                slide: slide.path.clone(),
                state,
            }
        })
        .collect();
    CohortStatus { slides, counts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, extra: &str) -> RunConfig {
        RunConfig::from_toml(
            &format!(
                "[model]\npreset = \"hovernet_fast-pannuke\"\n[input]\nslides = [\"a/s1.svs\"]\n\
                 [output]\ndir = \"{}\"\nformats = [\"qupath\"]\n{extra}",
                dir.display()
            ),
            Path::new("c.toml"),
        )
        .unwrap()
    }

    #[test]
    fn a_second_lock_on_a_slide_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), "");
        let paths = SlideStatePaths::of(&c, &SlideInput::new("a/s1.svs"));
        let first = try_lock(&paths).unwrap();
        assert!(matches!(first, LockAttempt::Held(_)));
        assert!(matches!(try_lock(&paths).unwrap(), LockAttempt::Busy));
        assert!(lock_held_elsewhere(&paths));
        drop(first);
        assert!(!lock_held_elsewhere(&paths));
        assert!(matches!(try_lock(&paths).unwrap(), LockAttempt::Held(_)));
    }

    #[test]
    fn completion_follows_the_record_and_the_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), "");
        let slide = &SlideInput::new("a/s1.svs");
        let keys = ResultKeys::of(&c, slide, Some("abc"));
        assert_eq!(completion(&c, slide, &keys), Completion::Absent);
        let out = dir.path().join("s1.geojson");
        std::fs::write(&out, b"{}").unwrap();
        assert_eq!(
            completion(&c, slide, &keys),
            Completion::Unrecorded {
                existing: vec![out.clone()]
            }
        );
        let paths = SlideStatePaths::of(&c, slide);
        record_done(
            &paths,
            &done_record(&slide.path, &keys, std::slice::from_ref(&out), 3, 1.0),
        )
        .unwrap();
        assert_eq!(completion(&c, slide, &keys), Completion::Complete);
        // other weights: the key is named
        let other = ResultKeys::of(&c, slide, Some("def"));
        match completion(&c, slide, &other) {
            Completion::Differs {
                key, recorded, now, ..
            } => {
                assert_eq!(key, "model.weights_sha256");
                assert_eq!((recorded, now), ("abc".into(), "def".into()));
            }
            c => panic!("{c:?}"),
        }
        // another result-changing config key
        let c2 = cfg(dir.path(), "[io]\nmargin = 8\n");
        let k2 = ResultKeys::of(&c2, slide, Some("abc"));
        assert!(matches!(
            completion(&c2, slide, &k2),
            Completion::Differs { key, .. } if key == "io.margin"
        ));
        // a speed setting is not a result key
        let c3 = cfg(dir.path(), "[pipeline]\nthreads = 1\n");
        assert_eq!(ResultKeys::of(&c3, slide, Some("abc")), keys);
        // a listed output gone: processed again
        std::fs::remove_file(&out).unwrap();
        assert_eq!(completion(&c, slide, &keys), Completion::Absent);
    }

    #[test]
    fn a_slide_moved_to_another_directory_keeps_its_keys_another_file_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), "");
        let keys = |p: &str| ResultKeys::of(&c, &SlideInput::new(p), Some("abc"));
        assert_eq!(keys("/scratch/a/s1.svs"), keys("/project/b/s1.svs"));
        let (key, _, _) = keys("/scratch/a/s1.svs")
            .first_difference(&keys("/scratch/a/s1.tif"))
            .unwrap();
        assert_eq!(key, "slide_file");
    }

    #[test]
    fn outputs_of_a_run_killed_before_its_done_record_are_ours_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), "");
        let slide = &SlideInput::new("a/s1.svs");
        let keys = ResultKeys::of(&c, slide, Some("abc"));
        let paths = SlideStatePaths::of(&c, slide);
        record_started(&paths, &slide.path, &keys).unwrap();
        std::fs::write(dir.path().join("s1.geojson"), b"{}").unwrap();
        assert_eq!(completion(&c, slide, &keys), Completion::Absent);
        let other = ResultKeys::of(&c, slide, Some("def"));
        assert!(matches!(
            completion(&c, slide, &other),
            Completion::Differs { key, record, .. } if key == "model.weights_sha256" && record == paths.started
        ));
    }

    #[test]
    fn state_reads_done_failed_pending_and_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), "");
        let slide = &SlideInput::new("a/s1.svs");
        let keys = ResultKeys::of(&c, slide, None);
        let paths = SlideStatePaths::of(&c, slide);
        assert_eq!(slide_state(&c, slide, &keys), SlideState::Pending);
        record_failed(&paths, &slide.path, "cannot open");
        assert_eq!(
            slide_state(&c, slide, &keys),
            SlideState::Failed {
                error: "cannot open".into()
            }
        );
        let lock = try_lock(&paths).unwrap();
        assert_eq!(slide_state(&c, slide, &keys), SlideState::InProgress);
        let out = dir.path().join("s1.geojson");
        std::fs::write(&out, b"{}").unwrap();
        record_done(
            &paths,
            &done_record(&slide.path, &keys, std::slice::from_ref(&out), 7, 1.0),
        )
        .unwrap();
        drop(lock);
        assert_eq!(
            slide_state(&c, slide, &keys),
            SlideState::Done {
                nuclei: 7,
                outputs: vec![out],
                stale: None
            }
        );
        assert!(!paths.failed.exists(), "done clears the failure record");
    }

    #[test]
    fn leftovers_of_a_killed_run_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), "");
        let slide = &SlideInput::new("a/s1.svs");
        let d = dir.path();
        std::fs::write(d.join(".s1.geojson.partial-123-0"), b"x").unwrap();
        std::fs::create_dir(d.join(".s1.geojson.old-9-1")).unwrap();
        std::fs::write(d.join(".s2.geojson.partial-123-0"), b"x").unwrap();
        std::fs::write(d.join("s1.geojson"), b"x").unwrap();
        remove_leftovers(&c, slide);
        assert!(!d.join(".s1.geojson.partial-123-0").exists());
        assert!(!d.join(".s1.geojson.old-9-1").exists());
        assert!(
            d.join(".s2.geojson.partial-123-0").exists(),
            "another slide's"
        );
        assert!(d.join("s1.geojson").exists());
    }
}

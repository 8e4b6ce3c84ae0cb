//! Resume inside a slide: the post-processing stage checkpoints its progress at band
//! boundaries, so that a run killed at any moment (kill -9, Slurm pre-emption) continues from
//! the last checkpoint instead of from the top of the slide.
//!
//! A checkpoint lives in `<output dir>/.mtseg/<stem>.checkpoint/`:
//!
//! ```text
//! items.jsonl   every final instance handed to the writers so far, one JSON line each, in order
//!               (append-only; bytes past the length recorded in state.json are ignored)
//! state.json    the merge state (instances not final yet, next tile, next id), the canvas row
//!               the run resumes at, the length of items.jsonl it covers, the totals so far, and
//!               what it was made with (result keys, slide size and time, plan fingerprint)
//! ```
//!
//! A commit flushes and fsyncs `items.jsonl`, then writes `state.json` under a temporary name,
//! fsyncs it and renames it into place: whatever moment a kill comes, `state.json` describes a
//! consistent prefix of the log. On resume the writers are opened afresh and given the logged
//! instances again (writing is cheap next to inference), the merge continues from its saved
//! state, and only the canvas rows from the resume row on are inferred and stitched again (the
//! patches reaching them). The outputs equal those of an uninterrupted run.
//!
//! A checkpoint made with other result keys, another slide file or another plan is ignored with
//! a message. The folder is removed when the slide is done.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::slide_state::{ResultKeys, io_context, write_durably};

const ITEMS: &str = "items.jsonl";
const STATE: &str = "state.json";
const FORMAT: u32 = 1;

/// Where a slide's checkpoints go and how often.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointSettings {
    /// The slide's checkpoint folder.
    pub(crate) dir: PathBuf,
    /// The least time between two commits (zero: at every band of tiles).
    pub(crate) every: Duration,
}

/// What a checkpoint was made for: it is used only by a run of the same slide file, result
/// keys and plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckpointIdentity {
    /// The result keys of the run.
    pub(crate) result_keys: ResultKeys,
    /// The slide file's size and modification time (seconds, nanoseconds).
    pub(crate) slide_file: (u64, i64, u32),
    /// Canvas width and height, post-processing tiles, selected patches.
    pub(crate) plan: [u64; 4],
}

impl CheckpointIdentity {
    /// The identity of `slide` under `keys` with this plan.
    pub(crate) fn of(slide: &Path, keys: &ResultKeys, plan: [u64; 4]) -> std::io::Result<Self> {
        let meta = std::fs::metadata(slide)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        Ok(Self {
            result_keys: keys.clone(),
            slide_file: (
                meta.len(),
                i64::try_from(modified.as_secs()).unwrap_or(i64::MAX),
                modified.subsec_nanos(),
            ),
            plan,
        })
    }

    /// Why `self` (a checkpoint's) does not fit `now`, in words.
    fn mismatch(&self, now: &Self) -> Option<String> {
        if let Some((key, recorded, current)) = self.result_keys.first_difference(&now.result_keys)
        {
            return Some(format!(
                "made with another `{key}` ({recorded}, now {current})"
            ));
        }
        if self.slide_file != now.slide_file {
            return Some("the slide file changed since (size or modification time)".into());
        }
        if self.plan != now.plan {
            return Some(format!(
                "made for another plan (canvas, tiles, patches {:?}, now {:?})",
                self.plan, now.plan
            ));
        }
        None
    }
}

/// Counters carried over a resume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckpointTotals {
    pub(crate) nuclei: u64,
    pub(crate) layers: u64,
    pub(crate) tiles: usize,
    /// The last `rows_final` handed to the writers.
    pub(crate) rows_final: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    format: u32,
    identity: CheckpointIdentity,
    /// The merge driver's state (`mtseg_instmerge::MergeCheckpoint`).
    merge: Value,
    /// The canvas row the run resumes at.
    resume_row: u64,
    /// Bytes of `items.jsonl` this state covers.
    items_bytes: u64,
    totals: CheckpointTotals,
}

/// One line of the items log, as written (borrowed: no copy of the instance).
#[derive(Serialize)]
enum LoggedItemRef<'a> {
    /// A final nucleus.
    N(&'a MergedItem<NucleusInstance>),
    /// A final layer polygon.
    L(&'a MergedItem<LayerRegion>),
}

/// One line of the items log, as read back (the same JSON as [`LoggedItemRef`]).
#[derive(Debug, Deserialize)]
enum LoggedItem {
    /// A final nucleus (slide coordinates).
    N(MergedItem<NucleusInstance>),
    /// A final layer polygon (slide coordinates).
    L(MergedItem<LayerRegion>),
}

/// What a run resumes from.
#[derive(Debug)]
pub(crate) struct Resume {
    /// The merge driver's state.
    pub(crate) merge: Value,
    /// The canvas row to resume at.
    pub(crate) resume_row: u64,
    /// The final nuclei handed out before, in order.
    pub(crate) nuclei: Vec<MergedItem<NucleusInstance>>,
    /// The final layer polygons handed out before, in order.
    pub(crate) layers: Vec<MergedItem<LayerRegion>>,
    /// The totals at the checkpoint.
    pub(crate) totals: CheckpointTotals,
    /// Bytes of the items log the checkpoint covers (the log is cut back to them).
    items_bytes: u64,
}

/// Reads the checkpoint in `dir` if it fits `identity`. A missing checkpoint is `None`; one
/// that does not fit (or cannot be read) is `None` with a warning saying why.
pub(crate) fn load(dir: &Path, identity: &CheckpointIdentity) -> Option<Resume> {
    let state_path = dir.join(STATE);
    let bytes = match std::fs::read(&state_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(checkpoint = %state_path.display(), "ignoring the checkpoint: {e}");
            return None;
        }
    };
    let ignore = |why: String| {
        tracing::warn!(checkpoint = %state_path.display(), "ignoring the checkpoint: {why}; the slide starts from the top");
        None
    };
    let state: CheckpointState = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => return ignore(format!("unreadable ({e})")),
    };
    if state.format != FORMAT {
        return ignore(format!(
            "format {} (this version writes {FORMAT})",
            state.format
        ));
    }
    if let Some(why) = state.identity.mismatch(identity) {
        return ignore(why);
    }
    match read_items(&dir.join(ITEMS), state.items_bytes) {
        Ok((nuclei, layers)) => Some(Resume {
            merge: state.merge,
            resume_row: state.resume_row,
            nuclei,
            layers,
            totals: state.totals,
            items_bytes: state.items_bytes,
        }),
        Err(e) => ignore(format!("its items log: {e}")),
    }
}

type Items = (
    Vec<MergedItem<NucleusInstance>>,
    Vec<MergedItem<LayerRegion>>,
);

fn read_items(path: &Path, len: u64) -> std::io::Result<Items> {
    let file = File::open(path)?;
    if file.metadata()?.len() < len {
        return Err(std::io::Error::other(format!(
            "{} is shorter than the {len} bytes the checkpoint covers",
            path.display()
        )));
    }
    let (mut nuclei, mut layers) = (Vec::new(), Vec::new());
    for (i, line) in BufReader::new(file.take(len)).lines().enumerate() {
        let line = line?;
        let item: LoggedItem = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::other(format!("{} line {}: {e}", path.display(), i + 1))
        })?;
        match item {
            LoggedItem::N(n) => nuclei.push(n),
            LoggedItem::L(l) => layers.push(l),
        }
    }
    Ok((nuclei, layers))
}

/// Writes a slide's checkpoints.
pub(crate) struct CheckpointWriter {
    dir: PathBuf,
    identity: CheckpointIdentity,
    items: BufWriter<File>,
    items_bytes: u64,
    every: Duration,
    last: Instant,
    /// Commits made and the time they took.
    pub(crate) commits: u32,
    pub(crate) commit_time: Duration,
}

impl CheckpointWriter {
    /// A writer in `dir` committing at most once per `every` (zero: at every call of
    /// [`CheckpointWriter::due`]). With `resume`, the items log is kept up to the bytes it
    /// covers; without, the folder starts empty.
    ///
    /// # Errors
    /// The folder or the log cannot be created (the message names it).
    pub(crate) fn open(
        dir: &Path,
        identity: CheckpointIdentity,
        every: Duration,
        resume: Option<&Resume>,
    ) -> std::io::Result<Self> {
        let keep = match resume {
            Some(r) => r.items_bytes,
            None => {
                match std::fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_context(e, "remove", dir));
                    }
                    _ => {}
                }
                0
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| io_context(e, "create", dir))?;
        let path = dir.join(ITEMS);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_context(e, "open", &path))?;
        file.set_len(keep)
            .map_err(|e| io_context(e, "truncate", &path))?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io_context(e, "seek", &path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            identity,
            items: BufWriter::with_capacity(1 << 20, file),
            items_bytes: keep,
            every,
            last: Instant::now(),
            commits: 0,
            commit_time: Duration::ZERO,
        })
    }

    /// Appends final items to the log (made durable by the next commit).
    ///
    /// # Errors
    /// A write error naming the log.
    pub(crate) fn log(
        &mut self,
        nuclei: &[MergedItem<NucleusInstance>],
        layers: &[MergedItem<LayerRegion>],
    ) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(512);
        let mut put = |item: &LoggedItemRef<'_>, w: &mut Self| -> std::io::Result<()> {
            line.clear();
            serde_json::to_writer(&mut line, item).map_err(std::io::Error::other)?;
            line.push(b'\n');
            w.items.write_all(&line)?;
            w.items_bytes += line.len() as u64;
            Ok(())
        };
        for n in nuclei {
            put(&LoggedItemRef::N(n), self)?;
        }
        for l in layers {
            put(&LoggedItemRef::L(l), self)?;
        }
        Ok(())
    }

    /// Whether a commit is due.
    pub(crate) fn due(&self) -> bool {
        self.last.elapsed() >= self.every
    }

    /// Makes the log durable and records `merge` (the driver's state after the items logged
    /// so far), the row to resume at and the totals.
    ///
    /// # Errors
    /// A write or fsync error naming the file.
    pub(crate) fn commit(
        &mut self,
        merge: Value,
        resume_row: u64,
        totals: CheckpointTotals,
    ) -> std::io::Result<()> {
        let t = Instant::now();
        let items_path = self.dir.join(ITEMS);
        self.items
            .flush()
            .map_err(|e| io_context(e, "write", &items_path))?;
        self.items
            .get_ref()
            .sync_data()
            .map_err(|e| io_context(e, "fsync", &items_path))?;
        let state = CheckpointState {
            format: FORMAT,
            identity: self.identity.clone(),
            merge,
            resume_row,
            items_bytes: self.items_bytes,
            totals,
        };
        let bytes = serde_json::to_vec(&state).map_err(std::io::Error::other)?;
        write_durably(&self.dir.join(STATE), &bytes)?;
        self.last = Instant::now();
        self.commits += 1;
        self.commit_time += t.elapsed();
        Ok(())
    }
}

/// Removes a slide's checkpoint folder (once the slide is done); a missing one is fine.
pub(crate) fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(checkpoint = %dir.display(), "cannot remove the checkpoint: {e}");
        }
        _ => {}
    }
}

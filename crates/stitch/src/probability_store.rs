//! Saved probability maps: the stitched maps of every head as a Zarr V3 store that zarr-python 3
//! opens (`zarr.open_group(path, mode="r")["probabilities/0"]`).
//!
//! Layout (TIAToolbox's `probabilities/<h>` names, padded back to the slide as its
//! `return_probabilities` output is):
//! ```text
//! <path>/zarr.json                 group; attributes.mtseg_stitch = {slide_size, canvas_origin,
//!                                  canvas_size, mask_padding, heads, ...} + caller attributes
//! <path>/probabilities/zarr.json   group
//! <path>/probabilities/<h>         float32 (slide height, slide width, channels of head h),
//!                                  fill value 0 (pixels outside the canvas are never written),
//!                                  sharded (one shard row = 256 rows), inner chunks zstd
//!                                  (compressed and written by a thread of the store's own);
//!                                  attributes {"head": name}
//! ```
//! The store is written to `<path>.part` and renamed to `<path>` by [`ProbabilityStore::finish`];
//! dropped unfinished (an error upstream), the `.part` directory is removed.
//!
//! **Continuing after a killed run.** A process that is killed (kill -9, pre-emption) runs no
//! destructor and leaves `<path>.part`. While it writes, the store records in
//! `<path>.part/mtseg_stitch_progress.json` the canvas rows whose shard rows are completely
//! written ([`ProbabilityStore::durable_rows`]; the file is replaced by a rename, never torn, and
//! removed at finish). A later run can continue that store with [`ProbabilityStore::reopen`] at
//! any canvas row up to that count, with a stitcher started at the same row
//! ([`crate::StitchParams::first_row`]): the rows already on disk are taken and dropped (a
//! resumed stitcher hands out the same values), the shard rows below them, which the killed run
//! may have left half-written, are erased and written again. "On disk" means written by the
//! store's thread: it survives the process being killed, not an operating-system crash or a
//! power loss (nothing is fsynced).
//!
//! [`ProbabilityStore::create_group`] writes the same maps as one group inside a larger store
//! (the export's Zarr output): `<path>/zarr.json` is then the group with the attributes above and
//! the arrays are `<path>/<h>`, so a store that places it at `<store>/probabilities` reads as
//! `probabilities/<h>`, TIAToolbox's names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtseg_types::Size2;
use serde_json::json;
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::{Group, GroupBuilder};

use crate::canvas_plan::CanvasPlan;
use crate::canvas_rows::CanvasRows;
use crate::memory_budget::MemoryBudget;
use crate::stitch_errors::StitchError;
use crate::stitcher::HeadSpec;
use crate::zarr_row_writer::{
    ArraySpec, PROGRESS_FILE, WriterGeometry, WriterStart, ZarrLayout, ZarrRowWriter,
    create_arrays, read_progress, write_progress,
};

/// Writes the stitched maps, rows top to bottom, into a Zarr V3 store.
#[derive(Debug)]
pub struct ProbabilityStore {
    path: PathBuf,
    part_path: PathBuf,
    writer: Option<ZarrRowWriter>,
}

impl ProbabilityStore {
    /// Create the store at `path` (written to `<path>.part` until finished) for the canvas of
    /// `plan`, with `attributes` added to the root group's attributes (e.g. the resolution).
    ///
    /// # Errors
    /// [`StitchError::OutputExists`] when `path` exists; the buffer of one shard row (at the
    /// canvas width) not fitting `budget`; file system and Zarr errors, with the path.
    pub fn create(
        path: &Path,
        plan: &CanvasPlan,
        heads: &[HeadSpec],
        attributes: serde_json::Map<String, serde_json::Value>,
        layout: ZarrLayout,
        budget: &MemoryBudget,
    ) -> Result<Self, StitchError> {
        Self::create_with(
            path,
            plan,
            heads,
            attributes,
            layout,
            budget,
            "/probabilities",
        )
    }

    /// As [`create`](Self::create), but `path` becomes one group holding the maps directly
    /// (`<path>/<h>`, the group's attributes as the root's of a standalone store), for a caller
    /// that places it inside a store of its own (e.g. at `<store>/probabilities`).
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_group(
        path: &Path,
        plan: &CanvasPlan,
        heads: &[HeadSpec],
        attributes: serde_json::Map<String, serde_json::Value>,
        layout: ZarrLayout,
        budget: &MemoryBudget,
    ) -> Result<Self, StitchError> {
        Self::create_with(path, plan, heads, attributes, layout, budget, "")
    }

    /// Creates the store with the arrays under `group` ("" = the root).
    fn create_with(
        path: &Path,
        plan: &CanvasPlan,
        heads: &[HeadSpec],
        attributes: serde_json::Map<String, serde_json::Value>,
        layout: ZarrLayout,
        budget: &MemoryBudget,
        group: &str,
    ) -> Result<Self, StitchError> {
        if path.exists() {
            return Err(StitchError::OutputExists {
                path: path.to_path_buf(),
            });
        }
        let part_path = part_path(path);
        if part_path.exists() {
            std::fs::remove_dir_all(&part_path).map_err(|source| StitchError::Io {
                action: "remove stale partial output",
                path: part_path.clone(),
                source,
            })?;
        }
        let channels: Vec<usize> = heads.iter().map(|h| h.channels).collect();
        let Size2 {
            width: slide_w,
            height: slide_h,
        } = plan.slide_size();
        let reservation = budget.try_reserve(
            ZarrRowWriter::buffer_bytes(layout, slide_h, plan.width(), &channels),
            "the probability-map writer's shard row buffer",
        )?;
        let store = Arc::new(
            FilesystemStore::new(&part_path)
                .map_err(|e| StitchError::zarr("create store", &part_path, e))?,
        );
        let padding = plan.mask_padding();
        let mut root_attributes = attributes;
        root_attributes.insert(
            "mtseg_stitch".into(),
            json!({
                "slide_size": [slide_w, slide_h],
                "canvas_origin": plan.origin(),
                "canvas_size": plan.canvas_size(),
                "mask_padding": [padding.left, padding.top, padding.right, padding.bottom],
                "heads": heads.iter().map(|h| json!({"name": h.name, "channels": h.channels})).collect::<Vec<_>>(),
                "layout": format!("{}<head index>: (y, x, channel) float32 at the processing resolution", group.strip_prefix('/').map(|g| format!("{g}/")).unwrap_or_default()),
                "version": env!("CARGO_PKG_VERSION"),
            }),
        );
        let mut groups = vec![("/".to_owned(), root_attributes)];
        if !group.is_empty() {
            groups.push((group.to_owned(), serde_json::Map::new()));
        }
        for (group_path, attrs) in groups {
            GroupBuilder::new()
                .attributes(attrs)
                .build(store.clone(), &group_path)
                .map_err(|e| StitchError::zarr("create group", &part_path, e))?
                .store_metadata()
                .map_err(|e| StitchError::zarr("write group metadata", &part_path, e))?;
        }
        let specs: Vec<ArraySpec> = heads
            .iter()
            .enumerate()
            .map(|(i, head)| ArraySpec {
                path: format!("{group}/{i}"),
                channels: head.channels,
                attributes: [("head".to_owned(), json!(head.name))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        let array_size = [slide_h, slide_w];
        let arrays = create_arrays(&store, &part_path, &specs, array_size, layout)?;
        let progress = part_path.join(PROGRESS_FILE);
        write_progress(&progress, 0)?;
        let writer = ZarrRowWriter::new(
            part_path.clone(),
            arrays,
            channels,
            WriterGeometry {
                canvas_size: plan.canvas_size(),
                offset: plan.origin(),
            },
            reservation,
            progress,
            WriterStart::default(),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            part_path,
            writer: Some(writer),
        })
    }

    /// The canvas rows of the partial store that a killed run left at `path` (in
    /// `<path>.part`) whose shard rows are completely written: it can be continued
    /// ([`ProbabilityStore::reopen`]) at any row up to this. `None` when there is no partial
    /// store to continue (none, or one without a progress record); a finished store (at
    /// `path`) holds every row.
    ///
    /// A pipeline resuming a slide starts at `min(the row its other outputs resume at, this)`.
    ///
    /// # Errors
    /// An unreadable or malformed progress record, with its path.
    pub fn durable_rows(path: &Path) -> Result<Option<usize>, StitchError> {
        read_progress(&part_path(path).join(PROGRESS_FILE))
    }

    /// Continue the partial store a killed run left at `path` (made by
    /// [`create`](Self::create) for the same plan and heads): rows are written from canvas row
    /// `first_row` on, as a stitcher started there ([`crate::StitchParams::first_row`]) hands
    /// them out. Rows already on disk are taken and dropped; the shard rows below them are
    /// erased (the killed run may have left them half-written) and written again. The store
    /// keeps its chunking; the attributes are those the first run wrote.
    ///
    /// Dropped unfinished, the continued store is removed as a new one is.
    ///
    /// # Errors
    /// [`StitchError::OutputExists`] when the finished store exists; [`StitchError::Io`] when
    /// there is no partial store with a progress record (see
    /// [`ProbabilityStore::durable_rows`]); [`PlanError::FirstRowPastCanvas`](crate::PlanError)
    /// for a row past the canvas; [`StitchError::StoreBehind`] when fewer than `first_row` rows
    /// are on disk; [`StitchError::StoreMismatch`] when the store was written for another
    /// slide size, canvas or heads; the shard-row buffer not fitting `budget`; Zarr errors.
    pub fn reopen(
        path: &Path,
        plan: &CanvasPlan,
        heads: &[HeadSpec],
        budget: &MemoryBudget,
        first_row: usize,
    ) -> Result<Self, StitchError> {
        Self::reopen_with(path, plan, heads, budget, first_row, "/probabilities")
    }

    /// As [`reopen`](Self::reopen), for a store made by [`create_group`](Self::create_group).
    ///
    /// # Errors
    /// As [`reopen`](Self::reopen).
    pub fn reopen_group(
        path: &Path,
        plan: &CanvasPlan,
        heads: &[HeadSpec],
        budget: &MemoryBudget,
        first_row: usize,
    ) -> Result<Self, StitchError> {
        Self::reopen_with(path, plan, heads, budget, first_row, "")
    }

    /// Continues the store with the arrays under `group` ("" = the root).
    fn reopen_with(
        path: &Path,
        plan: &CanvasPlan,
        heads: &[HeadSpec],
        budget: &MemoryBudget,
        first_row: usize,
        group: &str,
    ) -> Result<Self, StitchError> {
        if path.exists() {
            return Err(StitchError::OutputExists {
                path: path.to_path_buf(),
            });
        }
        let part_path = part_path(path);
        let progress = part_path.join(PROGRESS_FILE);
        let durable_rows = read_progress(&progress)?.ok_or_else(|| StitchError::Io {
            action: "open the partial probability store to continue",
            path: progress.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no progress record: no partial store to continue",
            ),
        })?;
        plan.check_first_row(first_row)?;
        let store = Arc::new(
            FilesystemStore::new(&part_path)
                .map_err(|e| StitchError::zarr("open store", &part_path, e))?,
        );
        check_attributes(&store, &part_path, plan, heads)?;
        let canvas_height = plan.height();
        if durable_rows > canvas_height {
            return Err(StitchError::StoreMismatch {
                path: progress,
                key: "durable_rows".into(),
                expected: format!("at most the canvas height {canvas_height}"),
                found: durable_rows.to_string(),
            });
        }
        if first_row > durable_rows {
            return Err(StitchError::StoreBehind {
                path: path.to_path_buf(),
                first_row,
                durable_rows,
            });
        }
        let Size2 {
            width: slide_w,
            height: slide_h,
        } = plan.slide_size();
        let arrays = heads
            .iter()
            .enumerate()
            .map(|(i, head)| {
                let array_path = format!("{group}/{i}");
                let array = Array::open(store.clone(), &array_path).map_err(|e| {
                    StitchError::zarr("open array", part_path.join(&array_path[1..]), e)
                })?;
                let expected = [slide_h, slide_w, head.channels as u64];
                if array.shape() != expected {
                    return Err(StitchError::StoreMismatch {
                        path: part_path.clone(),
                        key: format!("array {array_path} shape"),
                        expected: format!("{expected:?}"),
                        found: format!("{:?}", array.shape()),
                    });
                }
                Ok(array)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shard_height = arrays
            .first()
            .and_then(|a| a.chunk_shape(&[0, 0, 0]).ok())
            .map_or(1, |shape| shape[0].get());
        let channels: Vec<usize> = heads.iter().map(|h| h.channels).collect();
        let reservation = budget.try_reserve(
            ZarrRowWriter::shard_row_bytes(shard_height, plan.width(), &channels),
            "the probability-map writer's shard row buffer",
        )?;
        // The shard rows from the one holding the first row not on disk to the canvas bottom:
        // the killed run may have left them half-written, and they are written again whole.
        let origin_y = plan.origin()[1];
        if durable_rows < canvas_height {
            let from = (origin_y + durable_rows as u64) / shard_height;
            let to = (origin_y + canvas_height as u64).div_ceil(shard_height);
            for array in &arrays {
                let grid = array.chunk_grid_shape();
                let shards = ArraySubset::new_with_ranges(&[from..to, 0..grid[1], 0..grid[2]]);
                array.erase_chunks(&shards).map_err(|e| {
                    StitchError::zarr(
                        "erase unfinished shards",
                        part_path.join(array.path().as_str().trim_start_matches('/')),
                        e,
                    )
                })?;
            }
        }
        let writer = ZarrRowWriter::new(
            part_path.clone(),
            arrays,
            channels,
            WriterGeometry {
                canvas_size: plan.canvas_size(),
                offset: plan.origin(),
            },
            reservation,
            progress,
            WriterStart {
                first_row,
                on_disk: durable_rows,
            },
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            part_path,
            writer: Some(writer),
        })
    }

    /// Write the next rows (top to bottom, as the stitcher emits them).
    ///
    /// # Errors
    /// Rows out of order or of another shape; Zarr write errors.
    pub fn write_rows(&mut self, rows: &CanvasRows) -> Result<(), StitchError> {
        match &mut self.writer {
            Some(writer) => writer.push(rows),
            None => Err(StitchError::RowsMismatch {
                reason: "rows written after finish".into(),
            }),
        }
    }

    /// Write the last rows and move the store to its final path.
    ///
    /// # Errors
    /// Missing rows; Zarr or rename errors.
    pub fn finish(mut self) -> Result<PathBuf, StitchError> {
        if let Some(writer) = &mut self.writer {
            // On error the store is still unfinished, and dropping `self` removes it.
            writer.finish()?;
            // The progress record (and a temporary one a killed run may have left) goes.
            let progress = self.part_path.join(PROGRESS_FILE);
            let mut temp = progress.as_os_str().to_owned();
            temp.push(".tmp");
            for file in [progress, PathBuf::from(temp)] {
                match std::fs::remove_file(&file) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StitchError::Io {
                            action: "remove the progress record of a finished probability store",
                            path: file,
                            source: err,
                        });
                    }
                    _ => {}
                }
            }
        }
        self.writer = None;
        std::fs::rename(&self.part_path, &self.path).map_err(|source| StitchError::Io {
            action: "rename finished probability store",
            path: self.path.clone(),
            source,
        })?;
        Ok(self.path.clone())
    }
}

impl Drop for ProbabilityStore {
    fn drop(&mut self) {
        if self.writer.is_some() {
            // Unfinished: an error or a panic upstream. Leave nothing half-written behind.
            self.writer = None;
            if let Err(err) = std::fs::remove_dir_all(&self.part_path) {
                tracing::warn!(path = %self.part_path.display(), %err, "could not remove partial probability store");
            }
        }
    }
}

/// `<path>.part`, where a store is written until it is finished.
fn part_path(path: &Path) -> PathBuf {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    PathBuf::from(part)
}

/// Check that the `mtseg_stitch` attributes of the store's root group (written by
/// [`ProbabilityStore::create`]) describe this plan's slide and canvas and these heads.
fn check_attributes(
    store: &Arc<FilesystemStore>,
    part_path: &Path,
    plan: &CanvasPlan,
    heads: &[HeadSpec],
) -> Result<(), StitchError> {
    let root = Group::open(store.clone(), "/")
        .map_err(|e| StitchError::zarr("open group", part_path, e))?;
    let found = root
        .attributes()
        .get("mtseg_stitch")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let Size2 { width, height } = plan.slide_size();
    let expected = [
        ("slide_size", json!([width, height])),
        ("canvas_origin", json!(plan.origin())),
        ("canvas_size", json!(plan.canvas_size())),
        (
            "heads",
            json!(
                heads
                    .iter()
                    .map(|h| json!({"name": h.name, "channels": h.channels}))
                    .collect::<Vec<_>>()
            ),
        ),
    ];
    for (key, value) in expected {
        let stored = found.get(key).cloned().unwrap_or(serde_json::Value::Null);
        if stored != value {
            return Err(StitchError::StoreMismatch {
                path: part_path.to_path_buf(),
                key: format!("mtseg_stitch.{key}"),
                expected: value.to_string(),
                found: stored.to_string(),
            });
        }
    }
    Ok(())
}

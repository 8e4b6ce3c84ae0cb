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
//! [`ProbabilityStore::create_group`] writes the same maps as one group inside a larger store
//! (the export's Zarr output): `<path>/zarr.json` is then the group with the attributes above and
//! the arrays are `<path>/<h>`, so a store that places it at `<store>/probabilities` reads as
//! `probabilities/<h>`, TIAToolbox's names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtseg_types::Size2;
use serde_json::json;
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

use crate::canvas_plan::CanvasPlan;
use crate::canvas_rows::CanvasRows;
use crate::memory_budget::MemoryBudget;
use crate::stitch_errors::StitchError;
use crate::stitcher::HeadSpec;
use crate::zarr_row_writer::{ArraySpec, WriterGeometry, ZarrLayout, ZarrRowWriter, create_arrays};

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
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part_path = PathBuf::from(part);
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
        let writer = ZarrRowWriter::new(
            part_path.clone(),
            arrays,
            channels,
            WriterGeometry {
                canvas_size: plan.canvas_size(),
                offset: plan.origin(),
            },
            reservation,
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

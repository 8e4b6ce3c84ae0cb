//! The temporary canvas spill: final canvas rows kept on disk in a Zarr V3 store (sharded,
//! zstd) when the full canvas does not fit the memory budget. Rows are normalised straight into
//! a reserved shard-row buffer; the writer's own thread compresses and writes full ones.
//!
//! The store lives in a fresh temporary directory (`mtseg-stitch-spill-*`) under the configured
//! spill directory. The directory is removed when the [`SpilledCanvas`] is dropped, on success,
//! on error and on panic (unwinding), so no spill data outlives the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

use crate::canvas_rows::CanvasRows;
use crate::memory_budget::MemoryReservation;
use crate::stitch_errors::StitchError;
use crate::zarr_row_writer::{
    ArraySpec, ProduceRows, WriterGeometry, ZarrLayout, ZarrRowWriter, create_arrays, read_region,
};

/// Where and how to spill.
///
/// Defaults ([`SpillConfig::default`]): the system temporary directory; chunks of 256 × 256,
/// shards of 1 × 8 chunks, zstd level 1 (speed over size: the data is temporary). The chunk
/// height is then aligned to the stitcher's row step (see [`SpillConfig::chunk_height`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillConfig {
    /// Directory in which the temporary store is made.
    pub dir: PathBuf,
    /// Chunking and compression.
    pub layout: ZarrLayout,
}

impl Default for SpillConfig {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir(),
            layout: ZarrLayout {
                zstd_level: 1,
                ..ZarrLayout::default()
            },
        }
    }
}

impl SpillConfig {
    /// The spill chunk (and shard) height for a stitcher that emits rows `row_step` at a time:
    /// the largest multiple of `row_step` not above `layout.chunk[0]` (at least `row_step`). With
    /// one emission per shard row, rows are written without a copy.
    #[must_use]
    pub fn chunk_height(&self, row_step: usize) -> u64 {
        let step = row_step.max(1) as u64;
        step * (self.layout.chunk[0] / step).max(1)
    }

    /// The layout used for a stitcher that emits rows `row_step` at a time.
    #[must_use]
    pub fn aligned_layout(&self, row_step: usize) -> ZarrLayout {
        ZarrLayout {
            chunk: [self.chunk_height(row_step), self.layout.chunk[1]],
            ..self.layout
        }
    }

    /// Bytes of one spill writer buffer (one shard row of the canvas width), for a stitcher that
    /// emits rows `row_step` at a time. When the canvas spills, one buffer is reserved (or the
    /// spill fails with an error naming `[pipeline] memory_limit`); the full-canvas stage adds
    /// a second when the budget has room for it, so that stitching and compression (on the
    /// writer's thread) overlap.
    #[must_use]
    pub fn buffer_bytes(
        &self,
        canvas_size: [usize; 2],
        channels: &[usize],
        row_step: usize,
    ) -> u64 {
        ZarrRowWriter::buffer_bytes(
            self.aligned_layout(row_step),
            canvas_size[1] as u64,
            canvas_size[0],
            channels,
        )
    }
}

/// A canvas on disk: written top to bottom, then read by region.
#[derive(Debug)]
pub(crate) struct SpilledCanvas {
    writer: ZarrRowWriter,
    store_path: PathBuf,
    // Declared last: dropped after the arrays, removing the directory.
    _dir: tempfile::TempDir,
}

impl SpilledCanvas {
    /// Create an empty spill store for a canvas of `[width, height]` with `channels` per head.
    pub(crate) fn create(
        config: &SpillConfig,
        canvas_size: [usize; 2],
        channels: &[usize],
        row_step: usize,
        reservation: MemoryReservation,
    ) -> Result<Self, StitchError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| StitchError::Io {
            action: "create spill directory",
            path: config.dir.clone(),
            source,
        })?;
        let dir = tempfile::Builder::new()
            .prefix("mtseg-stitch-spill-")
            .tempdir_in(&config.dir)
            .map_err(|source| StitchError::Io {
                action: "create temporary spill directory",
                path: config.dir.clone(),
                source,
            })?;
        let store_path = dir.path().join("canvas.zarr");
        let store = Arc::new(
            FilesystemStore::new(&store_path)
                .map_err(|e| StitchError::zarr("open store", &store_path, e))?,
        );
        GroupBuilder::new()
            .build(store.clone(), "/")
            .map_err(|e| StitchError::zarr("create group", &store_path, e))?
            .store_metadata()
            .map_err(|e| StitchError::zarr("write group metadata", &store_path, e))?;
        let [width, height] = canvas_size;
        let specs: Vec<ArraySpec> = channels
            .iter()
            .enumerate()
            .map(|(head, &c)| ArraySpec {
                path: format!("/{head}"),
                channels: c,
                attributes: serde_json::Map::new(),
            })
            .collect();
        let array_size = [height as u64, width as u64];
        let arrays = create_arrays(
            &store,
            &store_path,
            &specs,
            array_size,
            config.aligned_layout(row_step),
        )?;
        let writer = ZarrRowWriter::new(
            store_path.clone(),
            arrays,
            channels.to_vec(),
            WriterGeometry {
                canvas_size,
                offset: [0, 0],
            },
            reservation,
        )?;
        tracing::debug!(path = %store_path.display(), "stitch canvas spilled to zarr");
        Ok(Self {
            writer,
            store_path,
            _dir: dir,
        })
    }

    /// The store's path (inside the temporary directory).
    pub(crate) fn store_path(&self) -> &Path {
        &self.store_path
    }

    /// Add the next rows (copied).
    pub(crate) fn push(&mut self, rows: &CanvasRows) -> Result<(), StitchError> {
        self.writer.push(rows)
    }

    /// Add the next rows `y0 .. y1`, produced straight into the writer's buffer.
    pub(crate) fn write_with(
        &mut self,
        y0: usize,
        y1: usize,
        produce: &mut ProduceRows<'_>,
    ) -> Result<(), StitchError> {
        self.writer.write_with(y0, y1, produce)
    }

    /// Reserve a second writer buffer when the budget has room (and `headroom` more).
    pub(crate) fn try_add_buffer(&mut self, headroom: u64) -> bool {
        self.writer.try_add_buffer(headroom)
    }

    /// Time spent waiting for the writer thread.
    pub(crate) fn waited(&self) -> std::time::Duration {
        self.writer.waited()
    }

    /// All rows are in: write the last shard row, wait for the writer, free the buffers.
    pub(crate) fn finish(&mut self) -> Result<(), StitchError> {
        self.writer.finish()
    }

    /// Uncompressed bytes written.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.writer.bytes_written()
    }

    /// Read `[x0, y0, x1, y1]` (canvas coordinates, checked by the caller) of every head.
    pub(crate) fn read(&self, region: [usize; 4]) -> Result<Vec<Vec<f32>>, StitchError> {
        read_region(
            &self.store_path,
            self.writer.arrays(),
            region.map(|v| v as u64),
        )
    }
}

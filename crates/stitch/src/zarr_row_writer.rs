//! Writes canvas rows, top to bottom, into Zarr V3 arrays (one per head), sharded and zstd
//! compressed, one shard row at a time.
//!
//! Rows are buffered until a whole shard row (all shards at one shard-grid y) is complete, then
//! written with one `store_array_subset` per head. Every shard is therefore written exactly once,
//! by this one writer: never two writers on one chunk, no read-modify-write of a finished shard.
//! Used by the temporary canvas spill ([`crate::zarr_spill`]) and the saved probability maps
//! ([`crate::probability_store`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::codec::ZstdCodec;
use zarrs::array::{Array, ArrayBuilder, ArraySubset, data_type};
use zarrs::filesystem::FilesystemStore;

use crate::canvas_rows::CanvasRows;
use crate::memory_budget::MemoryReservation;
use crate::stitch_errors::StitchError;

/// Chunking and compression of the written arrays.
///
/// Defaults ([`ZarrLayout::default`]): inner chunks of 256 × 256 pixels × all channels, shards of
/// 1 × 8 inner chunks (one shard row is 256 rows high), zstd level 3, no checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZarrLayout {
    /// Inner chunk `[height, width]` in pixels (clipped to the array size).
    pub chunk: [u64; 2],
    /// Inner chunks per shard along x (a shard is one inner chunk high).
    pub shard_chunks_x: u64,
    /// zstd compression level.
    pub zstd_level: i32,
}

impl Default for ZarrLayout {
    fn default() -> Self {
        Self {
            chunk: [256, 256],
            shard_chunks_x: 8,
            zstd_level: 3,
        }
    }
}

/// One array to create.
#[derive(Debug, Clone)]
pub(crate) struct ArraySpec {
    /// Path of the array inside the store, e.g. `/probabilities/0`.
    pub(crate) path: String,
    /// Channels (the array's last dimension).
    pub(crate) channels: usize,
    /// User attributes of the array.
    pub(crate) attributes: serde_json::Map<String, serde_json::Value>,
}

/// Where the canvas sits in the arrays.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterGeometry {
    /// Canvas `[width, height]`.
    pub(crate) canvas_size: [usize; 2],
    /// Array position of canvas pixel (0, 0), `[x, y]`.
    pub(crate) offset: [u64; 2],
}

/// Create the Zarr arrays in `store` (metadata written now; chunks as rows arrive).
pub(crate) fn create_arrays(
    store: &Arc<FilesystemStore>,
    store_path: &Path,
    specs: &[ArraySpec],
    array_size: [u64; 2],
    layout: ZarrLayout,
) -> Result<Vec<Array<FilesystemStore>>, StitchError> {
    let [h, w] = array_size;
    let chunk_h = layout.chunk[0].clamp(1, h.max(1));
    let chunk_w = layout.chunk[1].clamp(1, w.max(1));
    let shard_w = (chunk_w * layout.shard_chunks_x.max(1)).min(w.div_ceil(chunk_w) * chunk_w);
    specs
        .iter()
        .map(|spec| {
            let c = spec.channels as u64;
            let array = ArrayBuilder::new(
                vec![h, w, c],
                vec![chunk_h, shard_w, c],
                data_type::float32(),
                0.0f32,
            )
            .subchunk_shape(vec![chunk_h, chunk_w, c])
            .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(layout.zstd_level, false))])
            .dimension_names(Some(["y", "x", "channel"]))
            .attributes(spec.attributes.clone())
            .build(store.clone(), &spec.path)
            .map_err(|e| StitchError::zarr("create array", store_path.join(&spec.path[1..]), e))?;
            array
                .store_metadata()
                .map_err(|e| StitchError::zarr("write array metadata", store_path, e))?;
            Ok(array)
        })
        .collect()
}

/// Buffers rows into whole shard rows and writes them.
#[derive(Debug)]
pub(crate) struct ZarrRowWriter {
    store_path: PathBuf,
    arrays: Vec<Array<FilesystemStore>>,
    channels: Vec<usize>,
    geometry: WriterGeometry,
    shard_height: u64,
    /// Canvas rows received so far (the next row expected).
    next_y: usize,
    /// Canvas row of buffer row 0.
    buffer_y0: usize,
    /// Per head: buffered rows × canvas width × channels.
    buffer: Vec<Vec<f32>>,
    reservation: MemoryReservation,
    bytes_written: u64,
}

impl ZarrRowWriter {
    /// A writer for `arrays` (as made by [`create_arrays`]) with `reservation` holding at least
    /// [`ZarrRowWriter::buffer_bytes`].
    pub(crate) fn new(
        store_path: PathBuf,
        arrays: Vec<Array<FilesystemStore>>,
        channels: Vec<usize>,
        geometry: WriterGeometry,
        reservation: MemoryReservation,
    ) -> Self {
        let shard_height = arrays
            .first()
            .and_then(|a| a.chunk_shape(&[0, 0, 0]).ok())
            .map_or(1, |shape| shape[0].get());
        Self {
            store_path,
            arrays,
            channels: channels.clone(),
            geometry,
            shard_height,
            next_y: 0,
            buffer_y0: 0,
            buffer: channels.iter().map(|_| Vec::new()).collect(),
            reservation,
            bytes_written: 0,
        }
    }

    /// Bytes the row buffer needs: one shard row of the canvas width.
    pub(crate) fn buffer_bytes(
        layout: ZarrLayout,
        array_height: u64,
        width: usize,
        channels: &[usize],
    ) -> u64 {
        let rows = layout.chunk[0].clamp(1, array_height.max(1));
        rows * (width * channels.iter().sum::<usize>() * 4) as u64
    }

    /// The reservation (to resize once other memory is released).
    pub(crate) fn reservation_mut(&mut self) -> &mut MemoryReservation {
        &mut self.reservation
    }

    /// Uncompressed bytes written so far.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The arrays.
    pub(crate) fn arrays(&self) -> &[Array<FilesystemStore>] {
        &self.arrays
    }

    /// Add the next rows (they must follow the rows before).
    pub(crate) fn push(&mut self, rows: &CanvasRows) -> Result<(), StitchError> {
        let [width, height] = self.geometry.canvas_size;
        if rows.y0 != self.next_y
            || rows.width != width
            || rows.y1() > height
            || rows.channels != self.channels
        {
            return Err(StitchError::RowsMismatch {
                reason: format!(
                    "got rows {}..{} of width {} with channels {:?}; expected rows from {} of \
                     width {width} (canvas height {height}) with channels {:?}",
                    rows.y0,
                    rows.y1(),
                    rows.width,
                    rows.channels,
                    self.next_y,
                    self.channels
                ),
            });
        }
        // Fast path: the rows are exactly one whole shard row and nothing is buffered; write
        // them without a copy (the spill store's shard rows are aligned to the stitcher's bands).
        if self.next_y == self.buffer_y0 && rows.y1() == self.shard_row_end(rows.y0) {
            self.write_rows(rows.y0, rows.rows, &rows.heads)?;
            self.next_y = rows.y1();
            self.buffer_y0 = self.next_y;
            return Ok(());
        }
        let mut y = rows.y0;
        while y < rows.y1() {
            let boundary = self.shard_row_end(y).min(rows.y1());
            for (head, &c) in self.channels.iter().enumerate() {
                let src =
                    &rows.heads[head][(y - rows.y0) * width * c..(boundary - rows.y0) * width * c];
                self.buffer[head].extend_from_slice(src);
            }
            y = boundary;
            self.next_y = y;
            if y == self.shard_row_end(self.buffer_y0) {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Write what is buffered (the last, partial shard row) and check every row arrived.
    pub(crate) fn finish(&mut self) -> Result<(), StitchError> {
        self.flush()?;
        let height = self.geometry.canvas_size[1];
        if self.next_y != height {
            return Err(StitchError::RowsMismatch {
                reason: format!("only {} of {height} canvas rows were written", self.next_y),
            });
        }
        self.buffer = self.channels.iter().map(|_| Vec::new()).collect();
        Ok(())
    }

    /// Canvas row where the shard row holding canvas row `y` ends (clipped to the canvas).
    fn shard_row_end(&self, y: usize) -> usize {
        let array_y = y as u64 + self.geometry.offset[1];
        let end = (array_y / self.shard_height + 1) * self.shard_height;
        ((end - self.geometry.offset[1]) as usize).min(self.geometry.canvas_size[1])
    }

    fn flush(&mut self) -> Result<(), StitchError> {
        let rows = self.next_y - self.buffer_y0;
        if rows == 0 {
            return Ok(());
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        let written = self.write_rows(self.buffer_y0, rows, &buffer);
        buffer.iter_mut().for_each(Vec::clear);
        self.buffer = buffer;
        written?;
        self.buffer_y0 = self.next_y;
        Ok(())
    }

    /// Store canvas rows `y0 .. y0 + rows` (full canvas width) of every head.
    fn write_rows(
        &mut self,
        y0: usize,
        rows: usize,
        heads: &[Vec<f32>],
    ) -> Result<(), StitchError> {
        let [ox, oy] = self.geometry.offset;
        let width = self.geometry.canvas_size[0] as u64;
        let y0 = oy + y0 as u64;
        for ((array, data), &c) in self.arrays.iter().zip(heads).zip(&self.channels) {
            let subset =
                ArraySubset::new_with_ranges(&[y0..y0 + rows as u64, ox..ox + width, 0..c as u64]);
            array
                .store_array_subset(&subset, data.as_slice())
                .map_err(|e| {
                    StitchError::zarr(
                        "write rows",
                        self.store_path
                            .join(array.path().as_str().trim_start_matches('/')),
                        e,
                    )
                })?;
            self.bytes_written += (data.len() * 4) as u64;
        }
        Ok(())
    }
}

/// Read `[x0, y0, x1, y1]` (array coordinates) of each array.
pub(crate) fn read_region(
    store_path: &Path,
    arrays: &[Array<FilesystemStore>],
    region: [u64; 4],
) -> Result<Vec<Vec<f32>>, StitchError> {
    let [x0, y0, x1, y1] = region;
    arrays
        .iter()
        .map(|array| {
            let c = array.shape()[2];
            let subset = ArraySubset::new_with_ranges(&[y0..y1, x0..x1, 0..c]);
            array
                .retrieve_array_subset::<Vec<f32>>(&subset)
                .map_err(|e| StitchError::zarr("read region", store_path, e))
        })
        .collect()
}

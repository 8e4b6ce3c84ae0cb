//! A dense label map (`instance_map` u32 or `layer_map` u8) rasterised from the records and
//! written shard row by shard row, in bounded memory.
//!
//! # Memory
//! The array is sharded: one shard is one inner-chunk row high and `shard_chunks_x` inner chunks
//! wide, so a *shard row* (all shards at one y) is `chunk_h` pixel rows of the whole width. The
//! writer holds only the shard rows that can still change: from the first row not yet declared
//! final ([`LabelMapWriter::rows_final`]) down to the lowest row a record has touched. Within a
//! shard row, an inner-chunk tile (`chunk_h × chunk_w` values) is allocated only when a record
//! touches it, so background costs nothing. When `rows_final(y)` is called, every shard row
//! entirely above `y` is encoded, written (one `store_chunk` per shard that has any tile) and
//! freed. Each shard is written exactly once, by this one writer; an all-background shard is
//! not written at all (readers see the fill value, 0).
//!
//! Held at most: `(rows between the final row and the lowest touched row, rounded out to shard
//! rows) × touched width × size_of::<T>()`, plus one shard being encoded.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::codec::ZstdCodec;
use zarrs::array::{Array, ArrayBuilder, DataType, Element, FillValue};
use zarrs::filesystem::FilesystemStore;

use crate::export_errors::ExportError;

/// Chunking and compression of the Zarr output.
///
/// Defaults ([`ZarrOutputLayout::default`]): map inner chunks 256 × 256 pixels, shards of
/// 1 × 8 inner chunks (a shard row is 256 rows high), per-instance table chunks of 65 536 rows,
/// zstd level 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZarrOutputLayout {
    /// Map inner chunk `[height, width]` in pixels (clipped to the map size).
    pub map_chunk: [u64; 2],
    /// Map inner chunks per shard along x (a shard is one inner chunk high).
    pub shard_chunks_x: u64,
    /// Rows per chunk of the per-instance tables (contour points: points per chunk).
    pub table_chunk_rows: u64,
    /// zstd compression level of every array.
    pub zstd_level: i32,
}

impl Default for ZarrOutputLayout {
    fn default() -> Self {
        Self {
            map_chunk: [256, 256],
            shard_chunks_x: 8,
            table_chunk_rows: 65_536,
            zstd_level: 3,
        }
    }
}

/// One buffered shard row: a tile per inner-chunk column, allocated on first touch.
type ShardRow<T> = Vec<Option<Box<[T]>>>;

/// Writes one label map.
#[derive(Debug)]
pub(crate) struct LabelMapWriter<T: Element + Copy + Default> {
    array: Array<FilesystemStore>,
    path: PathBuf,
    /// `[width, height]`.
    size: [u64; 2],
    /// Inner chunk `[height, width]`.
    chunk: [u64; 2],
    /// Inner chunks per shard along x.
    shard_chunks_x: u64,
    /// Inner-chunk columns.
    chunk_columns: usize,
    /// Shard rows of the array.
    shard_rows: u64,
    /// Index of the first shard row not yet written (`rows[0]`).
    first_row: u64,
    rows: VecDeque<ShardRow<T>>,
    /// Tiles currently allocated.
    tiles: u64,
}

impl<T: Element + Copy + Default> LabelMapWriter<T> {
    /// Create the array `(height, width)` of `(data type, fill value)` at `array_path` and write
    /// its metadata.
    pub(crate) fn create(
        store: &Arc<FilesystemStore>,
        store_path: &Path,
        array_path: &str,
        size: [u64; 2],
        layout: ZarrOutputLayout,
        (data_type, fill_value): (DataType, FillValue),
        attributes: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ExportError> {
        let path = store_path.join(array_path.trim_start_matches('/'));
        let [w, h] = size;
        let chunk_h = layout.map_chunk[0].clamp(1, h.max(1));
        let chunk_w = layout.map_chunk[1].clamp(1, w.max(1));
        let chunks_x = w.div_ceil(chunk_w).max(1);
        let shard_chunks_x = layout.shard_chunks_x.clamp(1, chunks_x);
        let array = ArrayBuilder::new(
            vec![h, w],
            vec![chunk_h, chunk_w * shard_chunks_x],
            data_type,
            fill_value,
        )
        .subchunk_shape(vec![chunk_h, chunk_w])
        .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(layout.zstd_level, false))])
        .dimension_names(Some(["y", "x"]))
        .attributes(attributes)
        .build(store.clone(), array_path)
        .map_err(|e| ExportError::zarr("create array", &path, e))?;
        array
            .store_metadata()
            .map_err(|e| ExportError::zarr("write array metadata", &path, e))?;
        Ok(Self {
            array,
            path,
            size,
            chunk: [chunk_h, chunk_w],
            shard_chunks_x,
            chunk_columns: chunks_x as usize,
            shard_rows: h.div_ceil(chunk_h),
            first_row: 0,
            rows: VecDeque::new(),
            tiles: 0,
        })
    }

    /// Bytes of the tiles held.
    pub(crate) fn buffer_bytes(&self) -> u64 {
        self.tiles * self.chunk[0] * self.chunk[1] * std::mem::size_of::<T>() as u64
    }

    /// First pixel row that can still be written.
    pub(crate) fn first_open_row(&self) -> u64 {
        self.first_row * self.chunk[0]
    }

    /// Toggle pixels `x0..=x1` of row `y` (clipped to the map) between `value` and the
    /// background: a pixel holding `value` becomes 0, any other becomes `value`. Rows of shard
    /// rows already written are an error.
    pub(crate) fn toggle_span(
        &mut self,
        y: i64,
        x0: i64,
        x1: i64,
        value: T,
    ) -> Result<(), ExportError>
    where
        T: PartialEq,
    {
        self.update_span(y, x0, x1, |v| {
            *v = if *v == value { T::default() } else { value };
        })
    }

    /// Set pixels `x0..=x1` of row `y` (clipped to the map) to `value`. Rows of shard rows
    /// already written are an error.
    pub(crate) fn fill_span(
        &mut self,
        y: i64,
        x0: i64,
        x1: i64,
        value: T,
    ) -> Result<(), ExportError> {
        self.update_span(y, x0, x1, |v| *v = value)
    }

    /// Apply `f` to pixels `x0..=x1` of row `y` (clipped to the map), allocating the tiles they
    /// are in (background first). Rows of shard rows already written are an error.
    fn update_span(
        &mut self,
        y: i64,
        x0: i64,
        x1: i64,
        f: impl Fn(&mut T),
    ) -> Result<(), ExportError> {
        let [w, h] = self.size;
        if y < 0 || y as u64 >= h || x1 < 0 || x0 >= w as i64 || x1 < x0 {
            return Ok(());
        }
        let (x0, x1) = (x0.max(0) as u64, (x1 as u64).min(w - 1));
        let y = y as u64;
        let [chunk_h, chunk_w] = self.chunk;
        let shard_row = y / chunk_h;
        if shard_row < self.first_row {
            return Err(ExportError::zarr(
                "write a label",
                &self.path,
                std::io::Error::other(format!(
                    "row {y} is in a shard row that was already written (rows < {})",
                    self.first_open_row()
                )),
            ));
        }
        let k = (shard_row - self.first_row) as usize;
        while self.rows.len() <= k {
            self.rows.push_back(vec![None; self.chunk_columns]);
        }
        let row_in_tile = (y - shard_row * chunk_h) as usize;
        let tile_len = (chunk_h * chunk_w) as usize;
        let mut x = x0;
        while x <= x1 {
            let column = (x / chunk_w) as usize;
            let tile_x0 = column as u64 * chunk_w;
            let end = x1.min(tile_x0 + chunk_w - 1);
            let slot = &mut self.rows[k][column];
            if slot.is_none() {
                *slot = Some(vec![T::default(); tile_len].into_boxed_slice());
                self.tiles += 1;
            }
            let tile = slot.as_mut().expect("allocated above");
            let start = row_in_tile * chunk_w as usize;
            tile[start + (x - tile_x0) as usize..=start + (end - tile_x0) as usize]
                .iter_mut()
                .for_each(&f);
            x = end + 1;
        }
        Ok(())
    }

    /// Write and free every shard row that lies entirely above row `y`.
    pub(crate) fn rows_final(&mut self, y: u64) -> Result<(), ExportError> {
        let [_, h] = self.size;
        let chunk_h = self.chunk[0];
        while self.first_row < self.shard_rows && ((self.first_row + 1) * chunk_h).min(h) <= y {
            let row = self.rows.pop_front().unwrap_or_default();
            self.write_shard_row(self.first_row, row)?;
            self.first_row += 1;
        }
        Ok(())
    }

    /// Write every remaining shard row.
    pub(crate) fn finish(&mut self) -> Result<(), ExportError> {
        self.rows_final(u64::MAX)
    }

    fn write_shard_row(&mut self, index: u64, row: ShardRow<T>) -> Result<(), ExportError> {
        let [chunk_h, chunk_w] = self.chunk;
        let per_shard = self.shard_chunks_x as usize;
        let shard_w = (chunk_w * self.shard_chunks_x) as usize;
        for (shard, tiles) in row.chunks(per_shard).enumerate() {
            if tiles.iter().all(Option::is_none) {
                continue;
            }
            let mut data = vec![T::default(); chunk_h as usize * shard_w];
            for (i, tile) in tiles.iter().enumerate() {
                let Some(tile) = tile else { continue };
                for r in 0..chunk_h as usize {
                    let src = &tile[r * chunk_w as usize..(r + 1) * chunk_w as usize];
                    let dst = r * shard_w + i * chunk_w as usize;
                    data[dst..dst + chunk_w as usize].copy_from_slice(src);
                }
            }
            self.array
                .store_chunk(&[index, shard as u64], data.as_slice())
                .map_err(|e| ExportError::zarr("write a map shard", &self.path, e))?;
        }
        self.tiles -= row.iter().filter(|t| t.is_some()).count() as u64;
        Ok(())
    }
}

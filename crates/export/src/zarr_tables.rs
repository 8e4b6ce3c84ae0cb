//! Append-only per-instance tables in the Zarr store: 1-D `(N,)` or 2-D `(N, C)` arrays that
//! grow as records arrive, written one whole chunk at a time.
//!
//! Only the current chunk is held (`chunk_rows × C` values). When it is full it is stored and
//! the array's shape grows to cover it; the last, partial chunk is padded with the fill value
//! and stored by [`TableArray::finish`], which then writes the final shape `(N, C)` into the
//! array metadata. Every chunk is written once, by this one writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::codec::ZstdCodec;
use zarrs::array::{Array, ArrayBuilder, DataType, Element, FillValue};
use zarrs::filesystem::FilesystemStore;

use crate::export_errors::ExportError;

/// One growing table.
#[derive(Debug)]
pub(crate) struct TableArray<T: Element + Copy> {
    array: Array<FilesystemStore>,
    path: PathBuf,
    columns: u64,
    chunk_rows: u64,
    /// Rows appended (stored and buffered).
    rows: u64,
    /// Index of the chunk being filled.
    chunk: u64,
    buffer: Vec<T>,
    fill: T,
}

/// How to create a [`TableArray`].
#[derive(Debug, Clone)]
pub(crate) struct TableSpec<'a> {
    /// Array path in the store, e.g. `/nuclei_segmentation/box`.
    pub(crate) path: &'a str,
    /// `None` for a 1-D array, `Some(C)` for `(N, C)`.
    pub(crate) columns: Option<u64>,
    /// Dimension names.
    pub(crate) dimension_names: &'a [&'a str],
    /// Rows per chunk.
    pub(crate) chunk_rows: u64,
    /// zstd level.
    pub(crate) zstd_level: i32,
    /// Array attributes (a `description`).
    pub(crate) attributes: serde_json::Map<String, serde_json::Value>,
}

impl<T: Element + Copy> TableArray<T> {
    /// Create the array (shape `(0[, C])`) and write its metadata.
    pub(crate) fn create(
        store: &Arc<FilesystemStore>,
        store_path: &Path,
        spec: TableSpec<'_>,
        data_type: DataType,
        fill: T,
        fill_value: FillValue,
    ) -> Result<Self, ExportError> {
        let path = store_path.join(spec.path.trim_start_matches('/'));
        let chunk_rows = spec.chunk_rows.max(1);
        let (shape, chunk_shape) = match spec.columns {
            None => (vec![0], vec![chunk_rows]),
            Some(c) => (vec![0, c], vec![chunk_rows, c.max(1)]),
        };
        let array = ArrayBuilder::new(shape, chunk_shape, data_type, fill_value)
            .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(spec.zstd_level, false))])
            .dimension_names(Some(spec.dimension_names.iter().copied()))
            .attributes(spec.attributes)
            .build(store.clone(), spec.path)
            .map_err(|e| ExportError::zarr("create array", &path, e))?;
        array
            .store_metadata()
            .map_err(|e| ExportError::zarr("write array metadata", &path, e))?;
        let columns = spec.columns.unwrap_or(1);
        Ok(Self {
            array,
            path,
            columns,
            chunk_rows,
            rows: 0,
            chunk: 0,
            buffer: Vec::with_capacity((chunk_rows * columns) as usize),
            fill,
        })
    }

    /// Rows appended so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Append rows (`values.len()` a multiple of the column count).
    pub(crate) fn push(&mut self, values: &[T]) -> Result<(), ExportError> {
        debug_assert_eq!(values.len() as u64 % self.columns, 0);
        let chunk_len = (self.chunk_rows * self.columns) as usize;
        let mut rest = values;
        while !rest.is_empty() {
            let take = (chunk_len - self.buffer.len()).min(rest.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buffer.len() == chunk_len {
                self.store_chunk()?;
            }
        }
        self.rows += values.len() as u64 / self.columns;
        Ok(())
    }

    /// Store the buffered chunk (padded to a whole chunk) and grow the shape over it.
    fn store_chunk(&mut self) -> Result<(), ExportError> {
        let chunk_len = (self.chunk_rows * self.columns) as usize;
        self.buffer.resize(chunk_len, self.fill);
        let covered = (self.chunk + 1) * self.chunk_rows;
        self.set_rows(covered)?;
        let indices: Vec<u64> = if self.array.shape().len() == 1 {
            vec![self.chunk]
        } else {
            vec![self.chunk, 0]
        };
        self.array
            .store_chunk(&indices, self.buffer.as_slice())
            .map_err(|e| ExportError::zarr("write a table chunk", &self.path, e))?;
        self.buffer.clear();
        self.chunk += 1;
        Ok(())
    }

    fn set_rows(&mut self, rows: u64) -> Result<(), ExportError> {
        let shape = if self.array.shape().len() == 1 {
            vec![rows]
        } else {
            vec![rows, self.columns]
        };
        self.array
            .set_shape(shape)
            .map_err(|e| ExportError::zarr("resize array", &self.path, e))?;
        Ok(())
    }

    /// Store the last chunk and the final shape.
    pub(crate) fn finish(&mut self) -> Result<(), ExportError> {
        if !self.buffer.is_empty() {
            self.store_chunk()?;
        }
        self.set_rows(self.rows)?;
        self.array
            .store_metadata()
            .map_err(|e| ExportError::zarr("write array metadata", &self.path, e))
    }
}

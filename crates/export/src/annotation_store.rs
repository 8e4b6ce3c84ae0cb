//! TIAToolbox's SQLite `AnnotationStore` (`tiatoolbox.annotation.SQLiteStore`), written directly.
//!
//! The schema is TIAToolbox 2.x's (`storage.py`, store version 1.0.1), column for column, so
//! `SQLiteStore(path)` opens the file and appends to it (it inserts positionally):
//!
//! ```sql
//! CREATE TABLE metadata (key TEXT UNIQUE, value TEXT);   -- JSON values
//! CREATE VIRTUAL TABLE rtree USING rtree(id, min_x, max_x, min_y, max_y);
//! CREATE TABLE annotations(id INTEGER PRIMARY KEY, key TEXT UNIQUE, objtype TEXT,
//!     cx FLOAT NOT NULL, cy FLOAT NOT NULL, geometry BLOB, properties TEXT, area FLOAT NOT NULL);
//! ```
//!
//! Metadata rows: `version = "1.0.1"`, `compression = "zlib"`, `compression_level = 9` (what
//! `SQLiteStore()` writes), plus `mtseg_provenance` (the spec's provenance JSON):
//! `SQLiteMetadata` is a key-value table read key by key, so an extra row is ignored by
//! TIAToolbox. Each annotation: `geometry` = zlib (level 9) of little-endian ISO WKB, `objtype` /
//! `cx` / `cy` / `area` / rtree bounds as shapely reports them, `properties` as Python's compact
//! `json.dumps`, `key` = [`crate::annotation_key`]. Rows get ids 1, 2, ... in arrival order, as
//! TIAToolbox's `INSERT ... VALUES(NULL, ...)` gives them.
//!
//! The file is written in one transaction with the journal off (it is a temporary file, removed
//! on failure), then committed, closed, synced and renamed by the caller.

use std::cell::RefCell;
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress, Status};
use rusqlite::{Connection, params};

use crate::atomic_file::{TempOutput, sync_path};
use crate::export_errors::ExportError;
use crate::polygon_geometry::ValidGeometry;

/// Page cache of the writing connection, in KiB (SQLite's `cache_size` takes `-KiB`).
const CACHE_KIB: i64 = 64 * 1024;

/// Writes one `.db` file.
#[derive(Debug)]
pub(crate) struct AnnotationStoreWriter {
    /// Declared before `temp`: closed before the temporary file is removed on drop.
    conn: Option<Connection>,
    temp: TempOutput,
    records: u64,
}

/// One annotation row, computed away from the connection (any thread): everything
/// [`AnnotationStoreWriter::append`] inserts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoreRow {
    key: String,
    objtype: &'static str,
    centroid: [f64; 2],
    /// zlib of the ISO WKB.
    blob: Vec<u8>,
    properties: String,
    area: f64,
    /// `[min_x, min_y, max_x, max_y]`.
    bounds: [f64; 4],
}

thread_local! {
    /// One zlib compressor and WKB buffer per thread, reset for each geometry (creating a
    /// compressor costs ~300 KiB of tables).
    static ZLIB: RefCell<(Compress, Vec<u8>)> =
        RefCell::new((Compress::new(Compression::new(9), true), Vec::with_capacity(4096)));
}

impl StoreRow {
    /// The row of `geometry` with annotation key `key` and `properties` (Python's compact
    /// JSON).
    ///
    /// # Errors
    /// A compression error (none is expected for in-memory data).
    pub(crate) fn new(
        key: String,
        geometry: &ValidGeometry,
        properties: String,
    ) -> std::io::Result<Self> {
        let blob = ZLIB.with(|cell| {
            let (zlib, wkb) = &mut *cell.borrow_mut();
            wkb.clear();
            geometry.write_wkb(wkb);
            zlib_compress(zlib, wkb)
        })?;
        Ok(Self {
            key,
            objtype: geometry.geom_type(),
            centroid: geometry.centroid(),
            blob,
            properties,
            area: geometry.area(),
            bounds: geometry.bounds(),
        })
    }
}

impl AnnotationStoreWriter {
    /// Create the temporary database with the schema and metadata, and open the transaction.
    pub(crate) fn create(
        final_path: &Path,
        provenance: &serde_json::Value,
    ) -> Result<Self, ExportError> {
        let temp = TempOutput::new(final_path)?;
        let path = temp.temp_path().to_path_buf();
        let err = |action: &'static str| {
            let path = path.clone();
            move |e| ExportError::sqlite(action, path, e)
        };
        let conn = Connection::open(temp.temp_path()).map_err(err("create"))?;
        conn.query_row("PRAGMA journal_mode = OFF", [], |_| Ok(()))
            .map_err(err("configure"))?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = OFF; PRAGMA cache_size = -{CACHE_KIB};"
        ))
        .map_err(err("configure"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS metadata (key TEXT UNIQUE, value TEXT);
             REPLACE INTO metadata (key, value) VALUES ('version', '\"1.0.1\"');
             REPLACE INTO metadata (key, value) VALUES ('compression', '\"zlib\"');
             REPLACE INTO metadata (key, value) VALUES ('compression_level', '9');
             CREATE VIRTUAL TABLE rtree USING rtree(
                 id,                      -- Integer primary key
                 min_x, max_x,            -- 1st dimension min, max
                 min_y, max_y             -- 2nd dimension min, max
             );
             CREATE TABLE annotations(
                 id INTEGER PRIMARY KEY,  -- Integer primary key
                 key TEXT UNIQUE,         -- Unique identifier (UUID)
                 objtype TEXT,            -- Object type
                 cx FLOAT NOT NULL,       -- X of centroid/representative point
                 cy FLOAT NOT NULL,       -- Y of centroid/representative point
                 geometry BLOB,           -- Detailed geometry
                 properties TEXT,         -- JSON properties
                 area FLOAT NOT NULL      -- Area (for ordering)
             );",
        )
        .map_err(err("create the schema of"))?;
        conn.execute(
            "REPLACE INTO metadata (key, value) VALUES ('mtseg_provenance', ?1)",
            [provenance.to_string()],
        )
        .map_err(err("write metadata to"))?;
        conn.execute_batch("BEGIN")
            .map_err(err("begin a transaction in"))?;
        Ok(Self {
            conn: Some(conn),
            temp,
            records: 0,
        })
    }

    /// Annotations written so far.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The final path.
    pub(crate) fn final_path(&self) -> &Path {
        self.temp.final_path()
    }

    /// The temporary path (named in errors).
    pub(crate) fn temp_path(&self) -> &Path {
        self.temp.temp_path()
    }

    /// Insert one annotation and its rtree row.
    pub(crate) fn append(&mut self, row: &StoreRow) -> Result<(), ExportError> {
        let path = self.temp.temp_path();
        let conn = self.conn.as_ref().ok_or_else(|| finished(path))?;
        let [cx, cy] = row.centroid;
        let [min_x, min_y, max_x, max_y] = row.bounds;
        let err = |e| ExportError::sqlite("insert an annotation into", path, e);
        conn.prepare_cached("INSERT INTO annotations VALUES(NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .and_then(|mut s| {
                s.execute(params![
                    row.key,
                    row.objtype,
                    cx,
                    cy,
                    row.blob,
                    row.properties,
                    row.area
                ])
            })
            .map_err(err)?;
        let row_id = conn.last_insert_rowid();
        conn.prepare_cached("INSERT INTO rtree VALUES(?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(params![row_id, min_x, max_x, min_y, max_y]))
            .map_err(err)?;
        self.records += 1;
        Ok(())
    }

    /// Commit, close and fsync the temporary file.
    pub(crate) fn finalize(&mut self) -> Result<(), ExportError> {
        let path = self.temp.temp_path().to_path_buf();
        let conn = self.conn.take().ok_or_else(|| finished(&path))?;
        conn.execute_batch("COMMIT")
            .map_err(|e| ExportError::sqlite("commit", &path, e))?;
        conn.close()
            .map_err(|(_, e)| ExportError::sqlite("close", &path, e))?;
        sync_path(&path)
    }

    /// Rename the finalised file into place.
    pub(crate) fn commit(&mut self, overwrite: bool) -> Result<(), ExportError> {
        self.temp.commit(overwrite)
    }
}

/// zlib stream (header, deflate, Adler-32) of `data`, as Python's `zlib.compress(data, 9)`
/// produces (same format; the deflate bytes may differ).
fn zlib_compress(zlib: &mut Compress, data: &[u8]) -> std::io::Result<Vec<u8>> {
    zlib.reset();
    // Deflate never grows data by more than ~0.1% + a few bytes per block.
    let mut out = Vec::with_capacity(data.len() + data.len() / 100 + 64);
    loop {
        let status = zlib
            .compress_vec(
                &data[zlib.total_in() as usize..],
                &mut out,
                FlushCompress::Finish,
            )
            .map_err(std::io::Error::other)?;
        match status {
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::BufError => out.reserve(out.capacity().max(64)),
        }
    }
}

fn finished(path: &Path) -> ExportError {
    ExportError::io(
        "write to",
        path,
        std::io::Error::other("the store was already finalised"),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn reused_compressor_gives_valid_zlib_streams() {
        let mut zlib = Compress::new(Compression::new(9), true);
        for n in [0usize, 1, 300, 100_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let packed = zlib_compress(&mut zlib, &data).unwrap();
            assert_eq!(packed[0], 0x78, "zlib header");
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(packed.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }
}

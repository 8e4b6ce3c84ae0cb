//! Readers of the pipeline's output files for end-to-end tests: a TIAToolbox `AnnotationStore`
//! `.db` read back row by row (geometry decoded from zlib WKB), and a `u8` / `u32` Zarr V3 map.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

/// A polygon as rings of `[x, y]` points (the exterior first, then holes), each ring closed as
/// WKB stores it (last point = first).
pub type WkbPolygon = Vec<Vec<[f64; 2]>>;

/// An output file could not be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputReadError {
    /// SQLite could not open or query the `.db`.
    #[error("cannot read annotation store {path}: {source}")]
    Sqlite {
        /// The `.db`.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The Zarr store or array could not be opened or read.
    #[error("cannot read Zarr array {array} of {path}: {detail}")]
    Zarr {
        /// The store.
        path: PathBuf,
        /// The array path inside it.
        array: String,
        /// The zarrs error.
        detail: String,
    },
    /// The content is not what the format says (bad WKB, bad zlib, unknown geometry type).
    #[error("{path} is malformed: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// One row of the `annotations` table of a TIAToolbox `SQLiteStore`, its geometry decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnnotation {
    /// `id` (the rowid, equal to the R-tree id).
    pub id: i64,
    /// `key` (a UUID string).
    pub key: String,
    /// `objtype`: `"Polygon"`, `"MultiPolygon"`, `"Point"`, ...
    pub objtype: String,
    /// `cx`, `cy`: the geometry's centroid.
    pub centroid: [f64; 2],
    /// The polygons of the geometry (one for a Polygon, several for a MultiPolygon, none for a
    /// Point, whose geometry is NULL).
    pub polygons: Vec<WkbPolygon>,
    /// `properties`, the JSON text as stored.
    pub properties: String,
    /// `area`.
    pub area: f64,
}

/// Everything in a `.db`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotationStoreContents {
    /// `(name, sql)` of every table in `sqlite_master`, by name.
    pub tables: Vec<(String, String)>,
    /// The `metadata` rows `(key, value)`, values as the JSON text stored.
    pub metadata: Vec<(String, String)>,
    /// The annotations, by id.
    pub annotations: Vec<StoredAnnotation>,
    /// The R-tree rows `(id, [min_x, min_y, max_x, max_y])`, by id.
    pub rtree: Vec<(i64, [f64; 4])>,
}

/// Reads a whole TIAToolbox `AnnotationStore` `.db` (schema, metadata, annotations, R-tree),
/// inflating the geometry when the metadata says `"zlib"`.
///
/// # Errors
/// [`OutputReadError::Sqlite`] for SQLite errors (missing file or table), `Format` for a
/// geometry that is not zlib-compressed 2-D little- or big-endian WKB (Point, Polygon or
/// MultiPolygon).
pub fn read_annotation_store(path: &Path) -> Result<AnnotationStoreContents, OutputReadError> {
    let sql = |source| OutputReadError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let c = rusqlite::Connection::open_with_flags(path, flags).map_err(sql)?;
    let rows = |query: &str| -> Result<Vec<(String, String)>, rusqlite::Error> {
        let mut st = c.prepare(query)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
    };
    let tables = rows(
        "SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'table' ORDER BY name",
    )
    .map_err(sql)?;
    let metadata = rows("SELECT key, value FROM metadata ORDER BY rowid").map_err(sql)?;
    let zlib = metadata
        .iter()
        .any(|(k, v)| k == "compression" && v == "\"zlib\"");
    let mut st = c
        .prepare(
            "SELECT id, key, objtype, cx, cy, geometry, properties, area FROM annotations \
             ORDER BY id",
        )
        .map_err(sql)?;
    type Row = (i64, String, String, f64, f64, Option<Vec<u8>>, String, f64);
    let raw: Vec<Row> = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .and_then(Iterator::collect)
        .map_err(sql)?;
    let mut annotations = Vec::with_capacity(raw.len());
    for (id, key, objtype, cx, cy, blob, properties, area) in raw {
        let polygons = match blob {
            None => Vec::new(),
            Some(b) => {
                let wkb = if zlib { inflate(&b, path)? } else { b };
                parse_wkb(&wkb).map_err(|detail| OutputReadError::Format {
                    path: path.to_path_buf(),
                    detail: format!("annotation {id}: {detail}"),
                })?
            }
        };
        annotations.push(StoredAnnotation {
            id,
            key,
            objtype,
            centroid: [cx, cy],
            polygons,
            properties,
            area,
        });
    }
    let mut st = c
        .prepare("SELECT id, min_x, min_y, max_x, max_y FROM rtree ORDER BY id")
        .map_err(sql)?;
    let rtree = st
        .query_map([], |r| {
            Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?]))
        })
        .and_then(Iterator::collect)
        .map_err(sql)?;
    Ok(AnnotationStoreContents {
        tables,
        metadata,
        annotations,
        rtree,
    })
}

fn inflate(data: &[u8], path: &Path) -> Result<Vec<u8>, OutputReadError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| OutputReadError::Format {
            path: path.to_path_buf(),
            detail: format!("geometry is not zlib data: {e}"),
        })?;
    Ok(out)
}

/// A little cursor over WKB bytes.
struct Wkb<'a> {
    data: &'a [u8],
    at: usize,
    little: bool,
}

impl Wkb<'_> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let b = self
            .data
            .get(self.at..self.at + N)
            .ok_or_else(|| format!("WKB ends at byte {}", self.data.len()))?;
        self.at += N;
        Ok(b.try_into().expect("N bytes"))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes::<4>()?;
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn f64(&mut self) -> Result<f64, String> {
        let b = self.bytes::<8>()?;
        Ok(if self.little {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }
    /// Byte order and geometry type of the next geometry.
    fn header(&mut self) -> Result<u32, String> {
        self.little = match self.bytes::<1>()?[0] {
            0 => false,
            1 => true,
            b => return Err(format!("bad WKB byte order {b}")),
        };
        self.u32()
    }
    fn polygon_body(&mut self) -> Result<WkbPolygon, String> {
        let rings = self.u32()?;
        (0..rings)
            .map(|_| {
                let n = self.u32()?;
                (0..n).map(|_| Ok([self.f64()?, self.f64()?])).collect()
            })
            .collect()
    }
}

/// The polygons of a 2-D WKB Point (none), Polygon or MultiPolygon.
fn parse_wkb(data: &[u8]) -> Result<Vec<WkbPolygon>, String> {
    let mut w = Wkb {
        data,
        at: 0,
        little: true,
    };
    let polygons = match w.header()? {
        1 => Vec::new(),
        3 => vec![w.polygon_body()?],
        6 => {
            let n = w.u32()?;
            (0..n)
                .map(|_| match w.header()? {
                    3 => w.polygon_body(),
                    t => Err(format!("MultiPolygon member of WKB type {t}")),
                })
                .collect::<Result<_, _>>()?
        }
        t => return Err(format!("unsupported WKB geometry type {t}")),
    };
    Ok(polygons)
}

/// Reads the whole 2-D array `array` (e.g. `/layer_segmentation/layer_map`) of the Zarr V3
/// store at `store`: its values row-major and its shape `[height, width]`.
///
/// # Errors
/// [`OutputReadError::Zarr`] when the store or array cannot be opened or decoded, or the array
/// is not of `T`.
pub fn read_zarr_array<T: zarrs::array::ElementOwned>(
    store: &Path,
    array: &str,
) -> Result<(Vec<T>, Vec<u64>), OutputReadError> {
    let err = |detail: String| OutputReadError::Zarr {
        path: store.to_path_buf(),
        array: array.to_string(),
        detail,
    };
    let fs = FilesystemStore::new(store).map_err(|e| err(e.to_string()))?;
    let a = Array::open(Arc::new(fs), array).map_err(|e| err(e.to_string()))?;
    let shape = a.shape().to_vec();
    let subset = ArraySubset::new_with_shape(shape.clone());
    let values = a
        .retrieve_array_subset::<Vec<T>>(&subset)
        .map_err(|e| err(e.to_string()))?;
    Ok((values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le_polygon(rings: &[&[[f64; 2]]]) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend(3u32.to_le_bytes());
        b.extend((rings.len() as u32).to_le_bytes());
        for r in rings {
            b.extend((r.len() as u32).to_le_bytes());
            for p in *r {
                b.extend(p[0].to_le_bytes());
                b.extend(p[1].to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn parses_polygons_and_multipolygons() {
        let ring: &[[f64; 2]] = &[[0.0, 0.0], [2.0, 0.0], [2.0, 1.5], [0.0, 0.0]];
        let p = le_polygon(&[ring]);
        assert_eq!(parse_wkb(&p).unwrap(), vec![vec![ring.to_vec()]]);
        let mut m = vec![0u8];
        m.extend(6u32.to_be_bytes());
        m.extend(2u32.to_be_bytes());
        m.extend(&p);
        m.extend(&p);
        assert_eq!(parse_wkb(&m).unwrap().len(), 2);
        assert!(
            parse_wkb(&p[..p.len() - 3])
                .unwrap_err()
                .contains("WKB ends")
        );
        let mut point = vec![1u8];
        point.extend(1u32.to_le_bytes());
        assert!(parse_wkb(&point).unwrap().is_empty());
        assert!(parse_wkb(&[7]).is_err());
    }
}

//! Numpy arrays on disk, for every crate's tests and benches: `.npy`, gzipped `.npy.gz` and members
//! of `.npz` archives (read through the `zip` crate: stored or deflated, zip64, CRC-32 checked);
//! C order, little-endian, no pickled objects. Also writes float32 / int32 `.npy`.
//!
//! ```
//! use mtseg_test_models::npy;
//!
//! let dir = std::env::temp_dir().join(format!("mtseg-npy-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("a.npy");
//! npy::write_f32(&path, &[2, 2], &[0.5, 1.0, -2.0, 3.0])?;
//! let a = npy::read(&path)?;
//! assert_eq!((a.dtype, a.shape.as_slice()), (npy::Dtype::F32, &[2, 2][..]));
//! assert_eq!(a.to_f64(), [0.5, 1.0, -2.0, 3.0]);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A numpy array file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be opened, read or written.
    #[error("cannot access numpy file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a numpy array of a supported kind.
    #[error("numpy file {path} is not usable: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the values found.
        detail: String,
    },
}

/// The element types read: numpy's little-endian (or single-byte) integer, bool and float dtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dtype {
    /// `|b1`
    Bool,
    /// `|u1`
    U8,
    /// `|i1`
    I8,
    /// `<u2`
    U16,
    /// `<i2`
    I16,
    /// `<u4`
    U32,
    /// `<i4`
    I32,
    /// `<u8`
    U64,
    /// `<i8`
    I64,
    /// `<f4`
    F32,
    /// `<f8`
    F64,
}

impl Dtype {
    /// The dtype of a numpy descriptor such as `<f4` or `|u1`.
    fn from_descr(descr: &str) -> Option<Self> {
        Some(match descr {
            "|b1" => Self::Bool,
            "|u1" => Self::U8,
            "|i1" => Self::I8,
            "<u2" => Self::U16,
            "<i2" => Self::I16,
            "<u4" => Self::U32,
            "<i4" => Self::I32,
            "<u8" => Self::U64,
            "<i8" => Self::I64,
            "<f4" => Self::F32,
            "<f8" => Self::F64,
            _ => return None,
        })
    }

    /// Bytes per element.
    #[must_use]
    pub fn width(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
        }
    }

    fn is_integer(self) -> bool {
        !matches!(self, Self::F32 | Self::F64)
    }
}

/// A decoded array: dtype, shape and exactly `len() * dtype.width()` little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyArray {
    /// Element type.
    pub dtype: Dtype,
    /// Shape, C order.
    pub shape: Vec<usize>,
    data: Vec<u8>,
}

impl NpyArray {
    /// Number of elements (the product of the shape).
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.width()
    }

    /// Whether the array has no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn chunks(&self) -> std::slice::ChunksExact<'_, u8> {
        self.data.chunks_exact(self.dtype.width())
    }

    /// Values as `f64`: exact for every dtype but 64-bit integers beyond 2^53.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn to_f64(&self) -> Vec<f64> {
        match self.dtype {
            Dtype::F32 => self.to_f32().into_iter().map(f64::from).collect(),
            Dtype::F64 => self
                .chunks()
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            _ => self.to_i64().into_iter().map(|v| v as f64).collect(),
        }
    }

    /// Values as `f32`.
    ///
    /// # Panics
    /// When the dtype is not [`Dtype::F32`] (a fixture of another type than the test expects).
    #[must_use]
    pub fn to_f32(&self) -> Vec<f32> {
        assert_eq!(self.dtype, Dtype::F32, "expected a float32 array");
        self.chunks()
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    }

    /// Values as `i64`: exact for integer dtypes (`u64` values above `i64::MAX` wrap), truncated
    /// towards zero (saturating) for floats.
    #[must_use]
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    pub fn to_i64(&self) -> Vec<i64> {
        self.chunks()
            .map(|c| match self.dtype {
                Dtype::Bool | Dtype::U8 => i64::from(c[0]),
                Dtype::I8 => i64::from(c[0].cast_signed()),
                Dtype::U16 => i64::from(u16::from_le_bytes([c[0], c[1]])),
                Dtype::I16 => i64::from(i16::from_le_bytes([c[0], c[1]])),
                Dtype::U32 => i64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))),
                Dtype::I32 => i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))),
                Dtype::U64 => u64::from_le_bytes(c.try_into().expect("8 bytes")) as i64,
                Dtype::I64 => i64::from_le_bytes(c.try_into().expect("8 bytes")),
                Dtype::F32 => f32::from_le_bytes(c.try_into().expect("4 bytes")) as i64,
                Dtype::F64 => f64::from_le_bytes(c.try_into().expect("8 bytes")) as i64,
            })
            .collect()
    }

    /// Values of an integer (or bool) array as `i32` labels.
    ///
    /// # Errors
    /// The dtype is a float, or a value does not fit in an `i32` (the text says which).
    pub fn to_i32_labels(&self) -> Result<Vec<i32>, String> {
        if !self.dtype.is_integer() {
            return Err(format!(
                "dtype {:?} is not supported (integers or bool only)",
                self.dtype
            ));
        }
        if self.dtype == Dtype::U64 {
            // values above i64::MAX would wrap in to_i64
            if let Some(v) = self
                .chunks()
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .find(|&v| i32::try_from(v).is_err())
            {
                return Err(format!("value {v} does not fit in an i32 label"));
            }
        }
        self.to_i64()
            .into_iter()
            .map(|v| {
                i32::try_from(v).map_err(|_| format!("value {v} does not fit in an i32 label"))
            })
            .collect()
    }
}

/// Reads a `.npy` file, or a gzipped one when its name ends in `.gz`.
///
/// # Errors
/// [`NpyError::Io`] when the file cannot be read, [`NpyError::Format`] when it is not a supported
/// array (bad gzip stream, bad header, Fortran order, big-endian or other dtype, cut short).
pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
    let mut raw = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |detail: String| NpyError::Format {
        path: path.to_path_buf(),
        detail,
    };
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("bad gzip stream: {e}")))?;
        raw = out;
    }
    parse(&raw).map_err(bad)
}

/// Reads array `key` (the member `key.npy`) of the `.npz` archive `path`; when the archive has no
/// such member but exactly one, that one.
///
/// # Errors
/// [`NpyError::Io`] when the file cannot be read, [`NpyError::Format`] when it is not a zip
/// archive, has no such array, or the member is damaged (CRC-32) or not a supported array.
pub fn read_npz(path: &Path, key: &str) -> Result<NpyArray, NpyError> {
    let raw = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |detail: String| NpyError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&raw[..]))
        .map_err(|e| bad(format!("not a zip archive ({e})")))?;
    let wanted = format!("{key}.npy");
    let name = if zip.file_names().any(|n| n == wanted) {
        wanted
    } else if zip.len() == 1 {
        zip.file_names().next().expect("one member").to_owned()
    } else {
        let mut names: Vec<&str> = zip.file_names().collect();
        names.sort_unstable();
        return Err(bad(format!(
            "no array '{key}' in the archive (members: {names:?})"
        )));
    };
    let mut member = zip
        .by_name(&name)
        .map_err(|e| bad(format!("member {name}: {e}")))?;
    let mut npy = Vec::with_capacity(usize::try_from(member.size()).map_or(0, |s| s.min(1 << 30)));
    member
        .read_to_end(&mut npy)
        .map_err(|e| bad(format!("member {name}: {e}")))?;
    parse(&npy).map_err(|d| bad(format!("member {name}: {d}")))
}

/// Parses the bytes of a `.npy` file.
fn parse(raw: &[u8]) -> Result<NpyArray, String> {
    if raw.len() < 10 || &raw[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (bad magic)".into());
    }
    let (hlen, start): (usize, usize) = match raw[6] {
        1 => (usize::from(u16::from_le_bytes([raw[8], raw[9]])), 10),
        2 | 3 => {
            let b = raw.get(8..12).ok_or("truncated .npy header")?;
            (
                usize::try_from(u32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .map_err(|_| "header too large")?,
                12,
            )
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = raw
        .get(start..start.saturating_add(hlen))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-UTF-8 .npy header")?;
    let descr = header_field(header, "descr")?.trim().trim_matches('\'');
    let dtype = Dtype::from_descr(descr).ok_or_else(|| {
        format!("dtype '{descr}' is not supported (little-endian integers, bool, f4, f8)")
    })?;
    if header_field(header, "fortran_order")?.trim() != "False" {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape: Vec<usize> = header_field(header, "shape")?
        .trim()
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|e| format!("bad shape '{s}': {e}"))
        })
        .collect::<Result<_, _>>()?;
    let need = shape
        .iter()
        .try_fold(dtype.width(), |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    let data = &raw[start + hlen..];
    let data = data.get(..need).ok_or_else(|| {
        format!(
            "array data is truncated: {} bytes for shape {shape:?} of {descr}",
            data.len()
        )
    })?;
    Ok(NpyArray {
        dtype,
        shape,
        data: data.to_vec(),
    })
}

/// The text of `'key': value` in a numpy header dict, up to the next top-level comma.
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str, String> {
    let k = format!("'{key}':");
    let at = header
        .find(&k)
        .ok_or_else(|| format!(".npy header has no '{key}': {header}"))?;
    let rest = &header[at + k.len()..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(&rest[..i]),
            _ => {}
        }
    }
    Ok(rest)
}

/// Writes a float32 `.npy` (uncompressed).
///
/// # Errors
/// [`NpyError::Io`] when the file cannot be written.
///
/// # Panics
/// When `data` does not hold the product of `shape` values.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(path, "<f4", shape, &bytes, data.len())
}

/// Writes an int32 `.npy` (uncompressed).
///
/// # Errors
/// [`NpyError::Io`] when the file cannot be written.
///
/// # Panics
/// When `data` does not hold the product of `shape` values.
pub fn write_i32(path: &Path, shape: &[usize], data: &[i32]) -> Result<(), NpyError> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(path, "<i4", shape, &bytes, data.len())
}

fn write_raw(
    path: &Path,
    descr: &str,
    shape: &[usize],
    bytes: &[u8],
    count: usize,
) -> Result<(), NpyError> {
    assert_eq!(
        shape.iter().product::<usize>(),
        count,
        "shape {shape:?} does not match {count} values"
    );
    let mut out = header(descr, shape);
    out.extend_from_slice(bytes);
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .map_err(io)
}

/// Magic, version 1.0, header length and the header dict padded to 64 bytes.
fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let len = u16::try_from(dict.len()).expect("header under 64 KiB");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let mut out = header(descr, shape);
        out.extend_from_slice(data);
        out
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mtseg-npy-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A zip archive of `members`, deflated or stored.
    fn zip_of(members: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, content) in members {
            w.start_file(
                *name,
                zip::write::FileOptions::default().compression_method(method),
            )
            .unwrap();
            w.write_all(content).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_stored_and_deflated_npz_members() {
        let data: Vec<u8> = [1i32, -2, 3, 70000, 0, 5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let arr = npy("<i4", &[2, 3], &data);
        let dir = temp_dir("npz");
        for deflate in [false, true] {
            let p = dir.join(format!("a{deflate}.npz"));
            std::fs::write(&p, zip_of(&[("arr.npy", &arr)], deflate)).unwrap();
            let a = read_npz(&p, "arr").unwrap();
            assert_eq!(a.shape, [2, 3]);
            assert_eq!(a.to_i32_labels().unwrap(), [1, -2, 3, 70000, 0, 5]);
            // the only member is taken when the key is not there
            assert_eq!(read_npz(&p, "other").unwrap(), a);
        }
        let p = dir.join("two.npz");
        std::fs::write(&p, zip_of(&[("x.npy", &arr), ("y.npy", &arr)], true)).unwrap();
        let e = read_npz(&p, "arr").unwrap_err().to_string();
        assert!(e.contains("no array 'arr'") && e.contains("two.npz"), "{e}");
        // a damaged stored member fails its CRC-32
        let mut bytes = zip_of(&[("arr.npy", &arr)], false);
        let at = bytes.windows(data.len()).position(|s| s == data).unwrap();
        bytes[at] ^= 0x01;
        let p = dir.join("damaged.npz");
        std::fs::write(&p, bytes).unwrap();
        let e = read_npz(&p, "arr").unwrap_err().to_string();
        assert!(
            e.contains("member arr.npy") && e.contains("damaged.npz"),
            "{e}"
        );
        let p = dir.join("bad.npz");
        std::fs::write(&p, b"not a zip").unwrap();
        let e = read_npz(&p, "arr").unwrap_err().to_string();
        assert!(
            e.contains("not a zip archive") && e.contains("bad.npz"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_gzipped_npy_and_writes_what_it_reads() {
        let dir = temp_dir("gz");
        let p = dir.join("i.npy");
        write_i32(&p, &[3], &[7, -8, 9]).unwrap();
        let raw = std::fs::read(&p).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        let pgz = dir.join("i.npy.gz");
        std::fs::write(&pgz, gz.finish().unwrap()).unwrap();
        for path in [&p, &pgz] {
            let a = read(path).unwrap();
            assert_eq!((a.dtype, a.shape.clone()), (Dtype::I32, vec![3]));
            assert_eq!(a.to_i64(), [7, -8, 9]);
            assert_eq!(a.to_f64(), [7.0, -8.0, 9.0]);
        }
        // a plain .npy named .gz is not a gzip stream
        let fake = dir.join("fake.npy.gz");
        std::fs::copy(&p, &fake).unwrap();
        let e = read(&fake).unwrap_err().to_string();
        assert!(e.contains("gzip") && e.contains("fake.npy.gz"), "{e}");
        let e = read(&dir.join("absent.npy")).unwrap_err();
        assert!(matches!(e, NpyError::Io { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn decodes_dtypes_and_refuses_others() {
        let a = parse(&npy("|u1", &[3], &[0, 200, 7])).unwrap();
        assert_eq!((a.shape.clone(), a.to_i64()), (vec![3], vec![0, 200, 7]));
        let a = parse(&npy("<u2", &[1, 2], &[1, 1, 255, 255])).unwrap();
        assert_eq!(a.to_i32_labels().unwrap(), [257, 65535]);
        let a = parse(&npy("|i1", &[1], &[0xFF])).unwrap();
        assert_eq!(a.to_f64(), [-1.0]);
        let a = parse(&npy("<f8", &[1], &(-2.5f64).to_le_bytes())).unwrap();
        assert_eq!((a.to_f64(), a.to_i64()), (vec![-2.5], vec![-2]));
        let a = parse(&npy("<f4", &[1], &1.5f32.to_le_bytes())).unwrap();
        assert_eq!(a.to_f32(), [1.5]);
        let e = a.to_i32_labels().unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let big = (1i64 << 40).to_le_bytes();
        let e = parse(&npy("<i8", &[1], &big))
            .unwrap()
            .to_i32_labels()
            .unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        let e = parse(&npy("<u8", &[1], &u64::MAX.to_le_bytes()))
            .unwrap()
            .to_i32_labels()
            .unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        let e = parse(&npy(">f4", &[1], &[0; 4])).unwrap_err();
        assert!(e.contains("'>f4' is not supported"), "{e}");
        let e = parse(&npy("<i4", &[2], &[0; 4])).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = parse(b"\x93NUMPX\x01\x00\x00\x00").unwrap_err();
        assert!(e.contains("bad magic"), "{e}");
    }
}

//! A small reader/writer for the `.npy` / `.npy.gz` fixtures (C order, little-endian, no pickle).
//!
//! Copied from `mtseg-postproc`'s tests; shared through `#[path = "support/npy.rs"]`.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

/// A decoded array: shape plus values widened to f64 / i64 as asked.
#[derive(Debug, Clone)]
pub struct Npy {
    /// Numpy dtype descriptor, e.g. `<f4`, `|u1`.
    pub descr: String,
    /// Shape, C order.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub data: Vec<u8>,
}

/// The crate's `tests/fixtures` folder.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// `mtseg-postproc`'s `tests/fixtures` folder (the hgsc_nest masks live there, once).
pub fn postproc_fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../postproc/tests/fixtures")
}

/// Reads a `.npy` or `.npy.gz` file.
pub fn read(path: &Path) -> Result<Npy> {
    let mut raw = Vec::new();
    File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .read_to_end(&mut raw)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        raw = out;
    }
    parse(&raw).with_context(|| format!("parsing {}", path.display()))
}

fn parse(raw: &[u8]) -> Result<Npy> {
    if raw.len() < 10 || &raw[..6] != b"\x93NUMPY" {
        bail!("not an npy file");
    }
    let (hlen, start) = if raw[6] == 1 {
        (u16::from_le_bytes([raw[8], raw[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&raw[start..start + hlen])?;
    let descr = field(header, "descr")?
        .trim_matches(|c| c == '\'' || c == ' ')
        .to_string();
    if field(header, "fortran_order")?.trim() != "False" {
        bail!("fortran order not supported");
    }
    let shape_s = field(header, "shape")?;
    let shape: Vec<usize> = shape_s
        .trim_matches(|c| c == '(' || c == ')' || c == ' ')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()?;
    Ok(Npy {
        descr,
        shape,
        data: raw[start + hlen..].to_vec(),
    })
}

fn field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let k = format!("'{key}':");
    let at = header
        .find(&k)
        .ok_or_else(|| anyhow!("no {key} in header"))?
        + k.len();
    let rest = &header[at..];
    let end = if rest.trim_start().starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find(',')
    }
    .ok_or_else(|| anyhow!("bad header"))?;
    Ok(&rest[..end])
}

impl Npy {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn item(&self) -> usize {
        match &self.descr[1..] {
            "f8" | "i8" | "u8" => 8,
            "f4" | "i4" | "u4" => 4,
            "i2" | "u2" | "f2" => 2,
            "u1" | "i1" | "b1" => 1,
            d => panic!("unsupported dtype {d}"),
        }
    }

    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.data[..self.len() * self.item()].chunks_exact(self.item())
    }

    /// Values as f64 (exact for every stored dtype).
    pub fn to_f64(&self) -> Vec<f64> {
        let d = &self.descr[1..];
        self.chunks()
            .map(|c| match d {
                "f8" => f64::from_le_bytes(c.try_into().expect("8 bytes")),
                "f4" => f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64,
                "i4" => i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64,
                "i8" => i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64,
                "u2" => u16::from_le_bytes(c.try_into().expect("2 bytes")) as f64,
                "i2" => i16::from_le_bytes(c.try_into().expect("2 bytes")) as f64,
                "u1" | "b1" => c[0] as f64,
                "i1" => c[0] as i8 as f64,
                other => panic!("unsupported dtype {other}"),
            })
            .collect()
    }

    /// Values as f32 (for `<f4` arrays).
    pub fn to_f32(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4", "expected float32");
        self.chunks()
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    }

    /// Integer values as i64.
    pub fn to_i64(&self) -> Vec<i64> {
        self.to_f64().into_iter().map(|v| v as i64).collect()
    }
}

/// Writes a float32 `.npy` (uncompressed).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_raw(
        path,
        "<f4",
        shape,
        &data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    )
}

/// Writes an int32 `.npy` (uncompressed).
pub fn write_i32(path: &Path, shape: &[usize], data: &[i32]) -> Result<()> {
    write_raw(
        path,
        "<i4",
        shape,
        &data
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    )
}

fn write_raw(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) -> Result<()> {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(bytes)?;
    Ok(())
}

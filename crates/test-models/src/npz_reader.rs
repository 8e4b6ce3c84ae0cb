//! A minimal reader of numpy `.npz` archives (zip, stored or deflated, zip64 aware) holding C-order
//! little-endian integer `.npy` arrays: all that is needed for label rasters.

use std::io::Read;
use std::path::Path;

use crate::LabelError;

/// An integer array read from an `.npy` member, widened to `i32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IntArray {
    /// Shape, C order.
    pub(crate) shape: Vec<usize>,
    /// Values, row-major.
    pub(crate) values: Vec<i32>,
}

/// Reads array `key` (the member `key.npy`) of the `.npz` file `path`; when the archive has no
/// such member but exactly one array, that one.
pub(crate) fn read_npz_array(path: &Path, key: &str) -> Result<IntArray, LabelError> {
    let raw = std::fs::read(path).map_err(|source| LabelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |detail: String| LabelError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let entries = central_directory(&raw).map_err(bad)?;
    let wanted = format!("{key}.npy");
    let entry = match entries.iter().find(|e| e.name == wanted) {
        Some(e) => e,
        None if entries.len() == 1 => &entries[0],
        None => {
            let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            return Err(bad(format!(
                "no array '{key}' in the archive (members: {names:?})"
            )));
        }
    };
    let npy = entry_bytes(&raw, entry).map_err(bad)?;
    parse_npy(&npy).map_err(|d| bad(format!("member {}: {d}", entry.name)))
}

/// One member of the archive, as its central directory entry states it.
#[derive(Debug)]
struct ZipEntry {
    name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    local_offset: u64,
}

fn le16(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| "truncated zip structure".to_string())
}

fn le32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| "truncated zip structure".to_string())
}

fn le64(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| "truncated zip structure".to_string())
}

fn central_directory(raw: &[u8]) -> Result<Vec<ZipEntry>, String> {
    // end of central directory: 22 bytes + a comment of up to 64 KiB, searched from the end
    let lowest = raw.len().saturating_sub(22 + 0xFFFF);
    let eocd = (lowest..=raw.len().saturating_sub(22))
        .rev()
        .find(|&i| raw[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("not a zip archive (no end-of-central-directory record)")?;
    let mut count = u64::from(le16(raw, eocd + 10)?);
    let mut cd_offset = u64::from(le32(raw, eocd + 16)?);
    if (count == 0xFFFF || cd_offset == 0xFFFF_FFFF) && eocd >= 20 {
        // zip64 locator right before the record points at the zip64 end record
        let loc = eocd - 20;
        if le32(raw, loc)? == 0x0706_4b50 {
            let rec = le64(raw, loc + 8)? as usize;
            if le32(raw, rec)? != 0x0606_4b50 {
                return Err("bad zip64 end-of-central-directory record".into());
            }
            count = le64(raw, rec + 32)?;
            cd_offset = le64(raw, rec + 48)?;
        }
    }
    let mut entries = Vec::new();
    let mut at = usize::try_from(cd_offset).map_err(|_| "central directory offset too large")?;
    for _ in 0..count {
        if le32(raw, at)? != 0x0201_4b50 {
            return Err(format!("bad central directory entry at byte {at}"));
        }
        let method = le16(raw, at + 10)?;
        let crc = le32(raw, at + 16)?;
        let mut compressed = u64::from(le32(raw, at + 20)?);
        let mut uncompressed = u64::from(le32(raw, at + 24)?);
        let name_len = usize::from(le16(raw, at + 28)?);
        let extra_len = usize::from(le16(raw, at + 30)?);
        let comment_len = usize::from(le16(raw, at + 32)?);
        let mut local_offset = u64::from(le32(raw, at + 42)?);
        let name_bytes = raw
            .get(at + 46..at + 46 + name_len)
            .ok_or("truncated zip entry name")?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        // zip64 extended information: the 0xFFFFFFFF fields, in this order, as 8-byte values
        let extra = raw
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or("truncated zip extra field")?;
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = le16(extra, e)?;
            let len = usize::from(le16(extra, e + 2)?);
            if id == 0x0001 {
                let mut f = e + 4;
                for v in [&mut uncompressed, &mut compressed, &mut local_offset] {
                    if *v == 0xFFFF_FFFF {
                        *v = le64(extra, f)?;
                        f += 8;
                    }
                }
            }
            e += 4 + len;
        }
        entries.push(ZipEntry {
            name,
            method,
            crc,
            compressed,
            uncompressed,
            local_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

fn entry_bytes(raw: &[u8], e: &ZipEntry) -> Result<Vec<u8>, String> {
    let at = usize::try_from(e.local_offset).map_err(|_| "member offset too large")?;
    if le32(raw, at)? != 0x0403_4b50 {
        return Err(format!("bad local header of member {}", e.name));
    }
    let start = at + 30 + usize::from(le16(raw, at + 26)?) + usize::from(le16(raw, at + 28)?);
    let len = usize::try_from(e.compressed).map_err(|_| "member too large")?;
    let data = raw
        .get(start..start.saturating_add(len))
        .ok_or_else(|| format!("member {} is truncated", e.name))?;
    let cap = usize::try_from(e.uncompressed).map_err(|_| "member too large")?;
    let out = match e.method {
        0 => data.to_vec(),
        8 => {
            let mut out = Vec::with_capacity(cap);
            flate2::read::DeflateDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|err| format!("member {}: {err}", e.name))?;
            out
        }
        m => {
            return Err(format!(
                "member {} uses zip compression method {m}; only stored (0) and deflate (8) are read",
                e.name
            ));
        }
    };
    if out.len() != cap {
        return Err(format!(
            "member {} inflates to {} bytes, its header says {cap}",
            e.name,
            out.len()
        ));
    }
    let mut crc = flate2::Crc::new();
    crc.update(&out);
    if crc.sum() != e.crc {
        return Err(format!("member {} fails its CRC-32 check", e.name));
    }
    Ok(out)
}

/// Parses an `.npy` byte string holding a C-order little-endian integer array.
fn parse_npy(raw: &[u8]) -> Result<IntArray, String> {
    if raw.len() < 10 || &raw[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (bad magic)".into());
    }
    let (hlen, start) = match raw[6] {
        1 => (usize::from(le16(raw, 8)?), 10),
        2 | 3 => (le32(raw, 8)? as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = raw
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-UTF-8 .npy header")?;
    let descr = header_field(header, "descr")?
        .trim()
        .trim_matches('\'')
        .to_string();
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
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape too large")?;
    let data = &raw[start + hlen..];
    let values = decode_ints(&descr, data, count)?;
    Ok(IntArray { shape, values })
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

fn decode_ints(descr: &str, data: &[u8], count: usize) -> Result<Vec<i32>, String> {
    let width = match descr {
        "|u1" | "|i1" | "|b1" => 1,
        "<u2" | "<i2" => 2,
        "<u4" | "<i4" => 4,
        "<u8" | "<i8" => 8,
        d => {
            return Err(format!(
                "dtype '{d}' is not supported (little-endian integers or bool only)"
            ));
        }
    };
    let need = count.checked_mul(width).ok_or("array too large")?;
    let data = data.get(..need).ok_or_else(|| {
        format!(
            "array data is truncated: {} bytes for {count} values of {width} bytes",
            data.len()
        )
    })?;
    let out_of_range = |v: i128| format!("value {v} does not fit in an i32 label");
    let mut out = Vec::with_capacity(count);
    for c in data.chunks_exact(width) {
        let v: i128 = match descr {
            "|u1" | "|b1" => i128::from(c[0]),
            "|i1" => i128::from(c[0] as i8),
            "<u2" => i128::from(u16::from_le_bytes([c[0], c[1]])),
            "<i2" => i128::from(i16::from_le_bytes([c[0], c[1]])),
            "<u4" => i128::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))),
            "<i4" => i128::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))),
            "<u8" => i128::from(u64::from_le_bytes(c.try_into().expect("8 bytes"))),
            _ => i128::from(i64::from_le_bytes(c.try_into().expect("8 bytes"))),
        };
        out.push(i32::try_from(v).map_err(|_| out_of_range(v))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A one-member zip archive, deflated or stored.
    fn zip(name: &str, content: &[u8], deflate: bool) -> Vec<u8> {
        use std::io::Write;
        let body = if deflate {
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(content).unwrap();
            enc.finish().unwrap()
        } else {
            content.to_vec()
        };
        let mut crc = flate2::Crc::new();
        crc.update(content);
        let method: u16 = if deflate { 8 } else { 0 };
        let mut out = Vec::new();
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0]);
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&body);
        let cd = out.len();
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        let cd_len = out.len() - cd;
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
        out.extend_from_slice(&(cd_len as u32).to_le_bytes());
        out.extend_from_slice(&(cd as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn reads_stored_and_deflated_members() {
        let data: Vec<u8> = [1i32, -2, 3, 70000, 0, 5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let dir = std::env::temp_dir().join(format!("mtseg-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for deflate in [false, true] {
            let p = dir.join(format!("a{deflate}.npz"));
            std::fs::write(&p, zip("arr.npy", &npy("<i4", "(2, 3)", &data), deflate)).unwrap();
            let a = read_npz_array(&p, "arr").unwrap();
            assert_eq!(a.shape, [2, 3]);
            assert_eq!(a.values, [1, -2, 3, 70000, 0, 5]);
            // the only member is taken when the key is not there
            assert_eq!(read_npz_array(&p, "other").unwrap(), a);
        }
        let p = dir.join("bad.npz");
        std::fs::write(&p, b"not a zip").unwrap();
        let e = read_npz_array(&p, "arr").unwrap_err().to_string();
        assert!(e.contains("not a zip archive"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn decodes_integer_dtypes_and_refuses_others() {
        let a = parse_npy(&npy("|u1", "(3,)", &[0, 200, 7])).unwrap();
        assert_eq!((a.shape, a.values), (vec![3], vec![0, 200, 7]));
        let a = parse_npy(&npy("<u2", "(1, 2)", &[1, 1, 255, 255])).unwrap();
        assert_eq!(a.values, [257, 65535]);
        let big = (1i64 << 40).to_le_bytes();
        let e = parse_npy(&npy("<i8", "(1,)", &big)).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        let e = parse_npy(&npy("<f4", "(1,)", &[0; 4])).unwrap_err();
        assert!(e.contains("'<f4' is not supported"), "{e}");
        let e = parse_npy(&npy("<i4", "(2,)", &[0; 4])).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }
}

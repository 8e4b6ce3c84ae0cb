//! TIAToolbox `.pth` files: the zip archive that `torch.save` writes (PyTorch ≥ 1.6), read without
//! libtorch. The `zip` crate reads the archive (stored entries, as PyTorch writes them) and a pickle
//! machine that knows just enough (protocols 2–5, `_rebuild_tensor_v2`, `_rebuild_parameter`,
//! `OrderedDict`, persistent storage ids) to pull the state dict out, wherever it is nested.
//!
//! Limitation: pickle memo entries are copies, so an object that the pickle references twice is
//! seen as it was when first stored. State dicts never depend on that.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use zip::CompressionMethod;
use zip::result::ZipError;

use crate::errors::LoadError;
use crate::raw_tensor::{Dtype, RawTensor, gather};

/// All tensors of the state dict in the `.pth` archive `bytes`, in pickle order.
pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<Vec<(String, RawTensor)>, LoadError> {
    let mut zip = Archive::open(path, bytes)?;
    let pkl = zip
        .names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_owned)
        .ok_or_else(|| {
            unsupported(
                path,
                "zip archive without <name>/data.pkl: not a torch.save file",
            )
        })?;
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    if let Some(order) = zip.entry(&format!("{prefix}byteorder"))?
        && order != b"little"
    {
        return Err(unsupported(path, "big-endian torch.save archive"));
    }
    let is_script = zip
        .names()
        .any(|n| n.starts_with(&format!("{prefix}code/")));
    let data = zip.entry(&pkl)?.unwrap_or_default();
    let root = Unpickler {
        path,
        data: &data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()?;
    let Some(dict) = find_state_dict(&root, 0) else {
        let detail = if is_script {
            "this is a TorchScript module, not a state dict: use the torchscript architecture for it"
        } else {
            "no dict of tensors (state dict) found in the pickle"
        };
        return Err(unsupported(path, detail));
    };
    let mut out = Vec::new();
    for (k, v) in dict {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        let storage = zip
            .entry(&format!("{prefix}data/{}", t.key))?
            .ok_or_else(|| LoadError::Corrupt {
                path: path.to_owned(),
                detail: format!(
                    "storage '{}' of tensor '{name}' is missing from the archive",
                    t.key
                ),
            })?;
        out.push((
            name.clone(),
            gather(
                path, name, &storage, t.dtype, &t.shape, &t.strides, t.offset,
            )?,
        ));
    }
    Ok(out)
}

fn unsupported(path: &Path, detail: &str) -> LoadError {
    LoadError::UnsupportedFormat {
        path: path.to_owned(),
        detail: detail.to_owned(),
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// The first dict (breadth-first from the root, preferring common checkpoint keys) whose values
/// include tensors.
fn find_state_dict(v: &Value, depth: usize) -> Option<&Vec<(Value, Value)>> {
    let Value::Dict(items) = v else { return None };
    if items
        .iter()
        .any(|(k, v)| matches!((k, v), (Value::Str(_), Value::Tensor(_))))
    {
        return Some(items);
    }
    if depth >= 4 {
        return None;
    }
    const PREFERRED: [&str; 5] = ["state_dict", "model_state_dict", "model", "net", "weights"];
    let key = |k: &Value| match k {
        Value::Str(s) => PREFERRED
            .iter()
            .position(|p| p == s)
            .unwrap_or(PREFERRED.len()),
        _ => PREFERRED.len() + 1,
    };
    let mut children: Vec<&(Value, Value)> = items.iter().collect();
    children.sort_by_key(|(k, _)| key(k));
    children
        .into_iter()
        .find_map(|(_, v)| find_state_dict(v, depth + 1))
}

// ---- zip ---------------------------------------------------------------------------------------

/// The `torch.save` zip archive, read through the `zip` crate (zip64 aware, CRC-32 checked).
struct Archive<'a> {
    path: &'a Path,
    /// Size of the whole file: no entry can hold more (bounds the buffer of a corrupt size field).
    file_len: usize,
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
}

impl<'a> Archive<'a> {
    fn open(path: &'a Path, bytes: &'a [u8]) -> Result<Self, LoadError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| match e {
            ZipError::UnsupportedArchive(_) => unsupported(path, &format!("zip archive: {e}")),
            e => corrupt(path, format!("zip archive: {e} (is the file cut short?)")),
        })?;
        Ok(Self {
            path,
            file_len: bytes.len(),
            zip,
        })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.zip.file_names()
    }

    /// The bytes of entry `name`, `None` when the archive has no such entry.
    fn entry(&mut self, name: &str) -> Result<Option<Vec<u8>>, LoadError> {
        let path = self.path;
        let mut file = match self.zip.by_name(name) {
            Ok(f) => f,
            Err(ZipError::FileNotFound) => return Ok(None),
            Err(ZipError::UnsupportedArchive(e)) => {
                return Err(unsupported(path, &format!("zip entry '{name}': {e}")));
            }
            Err(e) => return Err(corrupt(path, format!("zip entry '{name}': {e}"))),
        };
        let method = file.compression();
        if method != CompressionMethod::Stored {
            return Err(unsupported(
                path,
                &format!(
                    "zip entry '{name}' is compressed ({method}); torch.save writes stored entries"
                ),
            ));
        }
        let size = file.size();
        let mut out = Vec::with_capacity(usize::try_from(size).map_or(0, |s| s.min(self.file_len)));
        file.read_to_end(&mut out)
            .map_err(|e| corrupt(path, format!("zip entry '{name}': {e}")))?;
        if out.len() as u64 != size {
            return Err(corrupt(
                path,
                format!("zip entry '{name}' reaches past the end of the file"),
            ));
        }
        Ok(Some(out))
    }
}

// ---- pickle ------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TensorRef {
    key: String,
    dtype: Dtype,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(String, Dtype),
    Tensor(TensorRef),
    /// Anything else (the result of calling an unknown global).
    Object,
}

struct Unpickler<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl Unpickler<'_> {
    fn err(&self, what: impl std::fmt::Display) -> LoadError {
        corrupt(self.path, format!("data.pkl at byte {}: {what}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], LoadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.err("ends early"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, LoadError> {
        let mut v = 0u64;
        for (i, b) in self.take(n)?.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        Ok(v)
    }

    fn len(&mut self, n: usize) -> Result<usize, LoadError> {
        let v = self.uint(n)?;
        usize::try_from(v).map_err(|_| self.err("length out of range"))
    }

    fn line(&mut self) -> Result<String, LoadError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated line"))?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value, LoadError> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, LoadError> {
        let m = self.marks.pop().ok_or_else(|| self.err("no mark"))?;
        if m > self.stack.len() {
            return Err(self.err("mark past the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn top(&mut self) -> Result<&mut Value, LoadError> {
        if self.stack.is_empty() {
            return Err(self.err("stack underflow"));
        }
        let i = self.stack.len() - 1;
        Ok(&mut self.stack[i])
    }

    fn str(&mut self, n: usize) -> Result<Value, LoadError> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    #[allow(clippy::too_many_lines)]
    fn run(mut self) -> Result<Value, LoadError> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' | 0x8f => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Bool),
                b'K' => {
                    let v = self.uint(1)?;
                    self.stack.push(Value::Int(v.cast_signed()));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.stack.push(Value::Int(v.cast_signed()));
                }
                b'J' => {
                    let v = self.uint(4)?;
                    #[allow(clippy::cast_possible_truncation)]
                    self.stack.push(Value::Int(i64::from(v as u32 as i32)));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.len(1)?
                    } else {
                        self.len(4)?
                    };
                    let b = self.take(n)?;
                    if n > 8 {
                        self.stack.push(Value::Object);
                    } else {
                        let mut v: i64 = 0;
                        for (i, x) in b.iter().enumerate() {
                            v |= i64::from(*x) << (8 * i);
                        }
                        if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                            v -= 1i64 << (8 * n);
                        }
                        self.stack.push(Value::Int(v));
                    }
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Float);
                }
                b'X' => {
                    let n = self.len(4)?;
                    let v = self.str(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.len(1)?;
                    let v = self.str(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len(8)?;
                    let v = self.str(n)?;
                    self.stack.push(v);
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len(4)?,
                        b'C' => self.len(1)?,
                        _ => self.len(8)?,
                    };
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(self.err("STACK_GLOBAL without strings")),
                    }
                }
                b'q' => {
                    let k = self.uint(1)?;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'r' => {
                    let k = self.uint(4)?;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'h' | b'j' => {
                    let k = if op == b'h' {
                        self.uint(1)?
                    } else {
                        self.uint(4)?
                    };
                    let v = self
                        .memo
                        .get(&k)
                        .cloned()
                        .ok_or_else(|| self.err(format!("memo {k} missing")))?;
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = pairs(items);
                    self.stack.push(Value::Dict(dict));
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top()? {
                        l.push(v);
                    }
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top()? {
                        l.extend(items);
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top()? {
                        d.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let new = pairs(items);
                    if let Value::Dict(d) = self.top()? {
                        d.extend(new);
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let _cls = self.pop()?;
                    self.stack.push(Value::Object);
                }
                b'b' => {
                    // BUILD: set state on the object below; state dicts carry only `_metadata`.
                    self.pop()?;
                }
                other => return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}"))),
            }
        }
    }

    fn persistent(&self, pid: Value) -> Result<Value, LoadError> {
        let Value::Tuple(t) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match t.as_slice() {
            [Value::Str(kind), Value::Global(_, ty), Value::Str(key), ..] if kind == "storage" => {
                let dtype = match ty.as_str() {
                    "FloatStorage" => Dtype::F32,
                    "DoubleStorage" => Dtype::F64,
                    "HalfStorage" => Dtype::F16,
                    "BFloat16Storage" => Dtype::Bf16,
                    "LongStorage" => Dtype::I64,
                    "IntStorage" => Dtype::I32,
                    "ShortStorage" => Dtype::I16,
                    "CharStorage" => Dtype::I8,
                    "ByteStorage" | "UntypedStorage" => Dtype::U8,
                    "BoolStorage" => Dtype::Bool,
                    other => {
                        return Err(LoadError::UnsupportedDtype {
                            path: self.path.to_owned(),
                            tensor: format!("storage {key}"),
                            dtype: other.to_owned(),
                        });
                    }
                };
                Ok(Value::Storage(key.clone(), dtype))
            }
            _ => Err(self.err("unknown persistent id")),
        }
    }

    fn reduce(&self, func: Value, args: Value) -> Result<Value, LoadError> {
        let Value::Global(module, name) = &func else {
            return Ok(Value::Object);
        };
        let Value::Tuple(args) = args else {
            return Ok(Value::Object);
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                let (
                    Some(Value::Storage(key, dtype)),
                    Some(Value::Int(offset)),
                    Some(size),
                    Some(stride),
                ) = (args.first(), args.get(1), args.get(2), args.get(3))
                else {
                    return Err(self.err("unexpected _rebuild_tensor_v2 arguments"));
                };
                let dims = |v: &Value| -> Result<Vec<usize>, LoadError> {
                    let Value::Tuple(items) = v else {
                        return Err(self.err("tensor size is not a tuple"));
                    };
                    items
                        .iter()
                        .map(|i| match i {
                            Value::Int(x) => {
                                usize::try_from(*x).map_err(|_| self.err("negative dimension"))
                            }
                            _ => Err(self.err("non-integer dimension")),
                        })
                        .collect()
                };
                let offset =
                    usize::try_from(*offset).map_err(|_| self.err("negative storage offset"))?;
                let (shape, strides) = (dims(size)?, dims(stride)?);
                if shape.len() != strides.len() {
                    return Err(self.err("tensor size and stride differ in length"));
                }
                Ok(Value::Tensor(TensorRef {
                    key: key.clone(),
                    dtype: *dtype,
                    offset,
                    shape,
                    strides,
                }))
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                Ok(args.into_iter().next().unwrap_or(Value::None))
            }
            _ => Ok(Value::Object),
        }
    }
}

fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_zip_and_truncation() {
        let p = Path::new("w.pth");
        let e = read(p, b"PK\x03\x04 and then nothing")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("truncated") && e.contains("w.pth"), "{e}");
    }

    #[test]
    fn damaged_entry_fails_its_checksum() {
        use std::io::Write;
        // {} in protocol 2: a pickle without tensors
        let pk: &[u8] = b"\x80\x02}q\x00.";
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored =
            zip::write::FileOptions::default().compression_method(CompressionMethod::Stored);
        w.start_file("archive/data.pkl", stored).unwrap();
        w.write_all(pk).unwrap();
        let mut bytes = w.finish().unwrap().into_inner();
        let p = Path::new("w.pth");
        let e = read(p, &bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("no dict of tensors") && e.contains("w.pth"),
            "{e}"
        );
        // flip the '}' (EMPTY_DICT) of the stored pickle: the CRC-32 no longer matches
        let at = bytes.windows(pk.len()).position(|s| s == pk).unwrap() + 2;
        bytes[at] ^= 0xFF;
        let e = read(p, &bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("truncated or corrupt")
                && e.contains("archive/data.pkl")
                && e.contains("w.pth"),
            "{e}"
        );
    }

    #[test]
    fn pickle_basics() {
        // {'a': [1, 2.5, 'x'], 'b': (True, None)} in protocol 2
        let pk: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04\x88N\x86q\x05u.";
        let u = Unpickler {
            path: Path::new("t"),
            data: pk,
            pos: 0,
            stack: vec![],
            marks: vec![],
            memo: HashMap::new(),
        };
        let v = u.run().unwrap();
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        assert_eq!(d.len(), 2);
        assert!(matches!(&d[0].1, Value::List(l) if l.len() == 3));
        assert!(matches!(&d[1].1, Value::Tuple(t) if matches!(t[0], Value::Bool)));
    }
}

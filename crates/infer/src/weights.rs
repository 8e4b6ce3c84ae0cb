//! Weight files as named float32 tensors, read without libtorch, and checked against an
//! architecture's state-dict layout before any model is built.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::errors::LoadError;
use crate::hovernet_spec::{expected_tensors, guess_architecture};
use crate::params::Architecture;
use crate::{weights_pth, weights_safetensors};

/// One tensor read from a weights file, converted to float32.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values, row-major, `shape.iter().product()` of them.
    pub values: Vec<f32>,
}

/// The tensors of a weights file, by state-dict name, in file order.
#[derive(Debug, Clone, Default)]
pub struct WeightSet {
    path: PathBuf,
    names: Vec<String>,
    tensors: HashMap<String, RawTensor>,
}

impl WeightSet {
    /// Reads a TIAToolbox `.pth` (a `torch.save`d state dict, possibly nested under a key such as
    /// `"state_dict"`) or a `.safetensors` file. The format is told by the file's first bytes, not
    /// its name. A `module.` prefix on every name (DataParallel) is removed.
    ///
    /// # Errors
    /// [`LoadError::Io`], [`LoadError::Corrupt`] (truncated file), [`LoadError::UnsupportedFormat`],
    /// [`LoadError::UnsupportedDtype`].
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let list = if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            weights_pth::read(path, &bytes)?
        } else if bytes.starts_with(&[0x80]) && bytes.len() > 2 && bytes[1] <= 5 {
            return Err(LoadError::UnsupportedFormat {
                path: path.to_owned(),
                detail: "legacy (pre-1.6, non-zip) torch.save format; re-save it with torch.save(torch.load(f), f) \
                         in torch >= 1.6, or convert it to .safetensors"
                    .into(),
            });
        } else if bytes.len() >= 9 && bytes[8] == b'{' {
            weights_safetensors::read(path, &bytes)?
        } else {
            return Err(LoadError::UnsupportedFormat {
                path: path.to_owned(),
                detail: "neither a torch.save zip archive (.pth) nor a safetensors file".into(),
            });
        };
        Ok(Self::from_list(path, list))
    }

    /// A set from (name, tensor) pairs, as if read from `path`.
    #[must_use]
    pub fn from_list(path: &Path, mut list: Vec<(String, RawTensor)>) -> Self {
        if !list.is_empty() && list.iter().all(|(n, _)| n.starts_with("module.")) {
            for (n, _) in &mut list {
                n.replace_range(.."module.".len(), "");
            }
        }
        let names = list.iter().map(|(n, _)| n.clone()).collect();
        Self {
            path: path.to_owned(),
            names,
            tensors: list.into_iter().collect(),
        }
    }

    /// The file the tensors came from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in file order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The tensor called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.get(name)
    }

    /// Removes and returns the tensor called `name`.
    pub fn take(&mut self, name: &str) -> Option<RawTensor> {
        self.tensors.remove(name)
    }

    /// Number of tensors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Checks that the set holds exactly the tensors of `arch` (TIAToolbox's `strict=True`): the
    /// first missing or mis-shaped tensor in state-dict order is reported, then any extra one.
    /// When the file matches another native architecture the error says which.
    ///
    /// # Errors
    /// [`LoadError::MissingTensor`], [`LoadError::ShapeMismatch`], [`LoadError::UnexpectedTensor`].
    pub fn check(&self, arch: &Architecture) -> Result<(), LoadError> {
        let spec = expected_tensors(arch);
        let looks_like = || {
            guess_architecture(
                |n| self.tensors.get(n).map(|t| t.shape.as_slice()),
                self.len(),
            )
            .filter(|a| a != arch)
            .map(|a| a.to_string().into_boxed_str())
        };
        for t in &spec {
            match self.tensors.get(&t.name) {
                None => {
                    return Err(LoadError::MissingTensor {
                        path: self.path.clone(),
                        tensor: t.name.clone(),
                        expected: t.shape.clone().into(),
                        architecture: arch.to_string().into(),
                        looks_like: looks_like(),
                    });
                }
                Some(found) if found.shape != t.shape => {
                    return Err(LoadError::ShapeMismatch {
                        path: self.path.clone(),
                        tensor: t.name.clone(),
                        expected: t.shape.clone().into(),
                        found: found.shape.clone().into(),
                        architecture: arch.to_string().into(),
                        looks_like: looks_like(),
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self
            .names
            .iter()
            .find(|n| !spec.iter().any(|t| &t.name == *n))
        {
            return Err(LoadError::UnexpectedTensor {
                path: self.path.clone(),
                tensor: extra.clone(),
                architecture: arch.to_string().into(),
                looks_like: looks_like(),
            });
        }
        Ok(())
    }
}

/// Element types a weights file may hold, all converted to float32 on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    F64,
    F16,
    Bf16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::Bf16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// Converts the little-endian element at the start of `b` (at least `size()` bytes).
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    pub(crate) fn to_f32(self, b: &[u8]) -> f32 {
        let a = |n: usize| -> [u8; 8] {
            let mut out = [0u8; 8];
            out[..n].copy_from_slice(&b[..n]);
            out
        };
        match self {
            Self::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Self::F64 => f64::from_le_bytes(a(8)) as f32,
            Self::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Self::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            Self::I64 => i64::from_le_bytes(a(8)) as f32,
            Self::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Self::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            Self::I8 => f32::from(i8::from_le_bytes([b[0]])),
            Self::U8 | Self::Bool => f32::from(b[0]),
        }
    }
}

/// Gathers a (possibly strided) tensor from `data` (`storage_offset` and `strides` in elements).
pub(crate) fn gather(
    path: &Path,
    name: &str,
    data: &[u8],
    dtype: Dtype,
    shape: &[usize],
    strides: &[usize],
    storage_offset: usize,
) -> Result<RawTensor, LoadError> {
    let numel: usize = shape.iter().product();
    let es = dtype.size();
    let corrupt = || LoadError::Corrupt {
        path: path.to_owned(),
        detail: format!(
            "tensor '{name}' (shape {shape:?}) reaches past the end of its {} byte storage",
            data.len()
        ),
    };
    let mut values = Vec::with_capacity(numel);
    if numel > 0 {
        let last: usize = storage_offset
            + shape
                .iter()
                .zip(strides)
                .map(|(s, st)| (s - 1) * st)
                .sum::<usize>();
        if (last + 1)
            .checked_mul(es)
            .is_none_or(|end| end > data.len())
        {
            return Err(corrupt());
        }
        let contiguous = {
            let mut expect = 1;
            shape.iter().zip(strides).rev().all(|(s, st)| {
                let ok = *s == 1 || *st == expect;
                expect *= s;
                ok
            })
        };
        if contiguous {
            let bytes = &data[storage_offset * es..(storage_offset + numel) * es];
            values.extend(bytes.chunks_exact(es).map(|c| dtype.to_f32(c)));
        } else {
            let mut idx = vec![0usize; shape.len()];
            for _ in 0..numel {
                let off =
                    storage_offset + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
                values.push(dtype.to_f32(&data[off * es..]));
                for d in (0..shape.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
    }
    Ok(RawTensor {
        shape: shape.to_vec(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_strided() {
        // 2x3 row-major storage read as its transpose (3x2, strides [1, 3]).
        let data: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let t = gather(Path::new("x"), "t", &data, Dtype::F32, &[3, 2], &[1, 3], 0).unwrap();
        assert_eq!(t.values, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(gather(Path::new("x"), "t", &data, Dtype::F32, &[3, 3], &[3, 1], 0).is_err());
    }

    #[test]
    fn strips_module_prefix() {
        let t = RawTensor {
            shape: vec![1],
            values: vec![1.0],
        };
        let w = WeightSet::from_list(
            Path::new("x"),
            vec![("module.a".into(), t.clone()), ("module.b".into(), t)],
        );
        assert_eq!(w.names(), ["a", "b"]);
        assert!(w.get("a").is_some());
    }
}

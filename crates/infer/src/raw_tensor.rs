//! The tensor a weights file holds once read ([`RawTensor`], float32) and the element types and
//! strided gather the `.pth` and `.safetensors` readers share. Its own module so that the
//! readers (`weights_pth`, `weights_safetensors`) and the set they fill (`weights`) depend on it,
//! not on each other.

use std::path::Path;

use crate::errors::LoadError;

/// One tensor read from a weights file, converted to float32.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values, row-major, `shape.iter().product()` of them.
    pub values: Vec<f32>,
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
}

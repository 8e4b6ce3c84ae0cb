//! `.safetensors` reading (the `safetensors` crate), converted to float32 [`RawTensor`]s.

use std::path::Path;

use safetensors::{Dtype as StDtype, SafeTensors};

use crate::errors::LoadError;
use crate::raw_tensor::{Dtype, RawTensor, gather};

/// All tensors of the safetensors file `bytes` (read from `path`), in header order.
pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<Vec<(String, RawTensor)>, LoadError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| LoadError::Corrupt {
        path: path.to_owned(),
        detail: format!("safetensors: {e}"),
    })?;
    let mut list: Vec<(usize, String, RawTensor)> = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            StDtype::F32 => Dtype::F32,
            StDtype::F64 => Dtype::F64,
            StDtype::F16 => Dtype::F16,
            StDtype::BF16 => Dtype::Bf16,
            StDtype::I64 => Dtype::I64,
            StDtype::I32 => Dtype::I32,
            StDtype::I16 => Dtype::I16,
            StDtype::I8 => Dtype::I8,
            StDtype::U8 => Dtype::U8,
            StDtype::BOOL => Dtype::Bool,
            other => {
                return Err(LoadError::UnsupportedDtype {
                    path: path.to_owned(),
                    tensor: name,
                    dtype: format!("{other:?}"),
                });
            }
        };
        let shape = view.shape().to_vec();
        let mut strides = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        let t = gather(path, &name, view.data(), dtype, &shape, &strides, 0)?;
        // File order = data offset order (the header is a JSON object without order guarantees).
        let offset = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
        list.push((offset, name, t));
    }
    list.sort_by_key(|(o, _, _)| *o);
    Ok(list.into_iter().map(|(_, n, t)| (n, t)).collect())
}

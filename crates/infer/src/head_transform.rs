//! Batch in, head outputs out: u8 NHWC patches to the network's input tensor, and raw logits to
//! TIAToolbox's `infer_batch` values (np softmax channel 1, hv raw, tp/ls argmax of softmax).

use tch::{Kind, Tensor};

use crate::errors::InferError;
use crate::heads::{HeadKind, HeadOutputs, HeadSpec, HeadTensor};
use crate::model::BatchView;

/// The batch as an NCHW tensor of element type `kind` on `device`, divided by 255 when `scale`
/// (TIAToolbox's `forward` does `input / 255.0`; TorchScript modules do it themselves).
pub(crate) fn input_tensor(
    batch: &BatchView<'_>,
    device: tch::Device,
    kind: Kind,
    scale: bool,
) -> Result<Tensor, InferError> {
    let (n, h, w) = (
        batch.len() as i64,
        batch.height() as i64,
        batch.width() as i64,
    );
    // u8 to the device first (a quarter of the bytes), NHWC -> NCHW on u8, then float: the same
    // values as TIAToolbox's float-then-permute, 3-4x cheaper on a CPU.
    let x = Tensor::f_from_slice(batch.pixels())?
        .f_view([n, h, w, 3])?
        .f_to_device(device)?
        .f_permute([0, 3, 1, 2])?
        .f_contiguous()?
        .f_to_kind(Kind::Float)?;
    let x = if scale { x.f_div_scalar(255.0)? } else { x };
    Ok(if kind == Kind::Float {
        x
    } else {
        x.f_to_kind(kind)?
    })
}

/// An NCHW tensor as NHWC float32 values on the CPU, with the NHWC shape.
pub(crate) fn to_nhwc_vec(t: &Tensor) -> Result<(Vec<f32>, [usize; 4]), InferError> {
    let t = t.f_permute([0, 2, 3, 1])?.f_contiguous()?;
    nhwc_vec(&t)
}

/// A contiguous NHWC float32 tensor as values on the CPU, with its shape.
fn nhwc_vec(t: &Tensor) -> Result<(Vec<f32>, [usize; 4]), InferError> {
    let t = t
        .f_to_kind(Kind::Float)?
        .f_to_device(tch::Device::Cpu)?
        .f_contiguous()?;
    let s = t.size();
    let [n, h, w, c] = <[i64; 4]>::try_from(s.as_slice()).map_err(|_| InferError::Torch {
        detail: format!("expected a 4-d tensor, got shape {s:?}"),
    })?;
    let shape = [n, h, w, c].map(|d| usize::try_from(d).unwrap_or(0));
    let numel = shape.iter().product();
    let mut data = vec![0f32; numel];
    t.f_copy_data(&mut data, numel)?;
    Ok((data, shape))
}

/// TIAToolbox `infer_batch` on raw NCHW logits (one per head, in `heads` order): its permute to
/// NHWC then np = softmax(-1)[..., 1:], hv as is, tp / ls = argmax(softmax(-1), keepdim) as
/// float32 (computed over the channel axis before the permute: the same values).
/// Checks each head's shape against `[n, raw_channels, out, out]`.
pub(crate) fn logits_to_outputs(
    batch: &BatchView<'_>,
    heads: &[HeadSpec],
    raw: Vec<Tensor>,
    out: usize,
) -> Result<HeadOutputs, InferError> {
    let n = batch.len();
    if raw.is_empty() && n == 0 {
        let heads = heads
            .iter()
            .map(|h| HeadTensor {
                kind: h.kind,
                shape: [0, out, out, h.kind.output_channels()],
                data: Vec::new(),
            })
            .collect();
        return Ok(HeadOutputs {
            indices: Vec::new(),
            heads,
        });
    }
    let mut tensors = Vec::with_capacity(heads.len());
    for (h, t) in heads.iter().zip(raw) {
        let expected = vec![n as i64, i64::from(h.raw_channels), out as i64, out as i64];
        if t.size() != expected {
            return Err(InferError::WrongOutputShape {
                head: h.kind.to_string(),
                expected,
                found: t.size(),
            });
        }
        // Softmax / argmax over the channel axis of the NCHW logits, then NHWC: the values of
        // TIAToolbox's permute-then-softmax(-1) (np within float rounding, ~3e-8; argmax
        // identical), with the softmax on contiguous channel planes (~1.5x cheaper on a CPU)
        // and only the kept channel permuted.
        let t = t.f_to_kind(Kind::Float)?;
        let t = match h.kind {
            HeadKind::Np => t.f_softmax(1, Kind::Float)?.f_narrow(1, 1, 1)?,
            HeadKind::Hv => t,
            HeadKind::Tp | HeadKind::Ls => t
                .f_softmax(1, Kind::Float)?
                .f_argmax(1, true)?
                .f_to_kind(Kind::Float)?,
        };
        let t = t.f_permute([0, 2, 3, 1])?.f_contiguous()?;
        let (data, shape) = nhwc_vec(&t)?;
        tensors.push(HeadTensor {
            kind: h.kind,
            shape,
            data,
        });
    }
    Ok(HeadOutputs {
        indices: batch.indices().to_vec(),
        heads: tensors,
    })
}

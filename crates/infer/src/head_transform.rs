//! Batch in, head outputs out: u8 NHWC patches to the network's input tensor, and raw logits to
//! TIAToolbox's `infer_batch` values (np softmax channel 1, hv raw, tp/ls argmax of softmax).

use tch::{Kind, Tensor};

use mtseg_types::{HeadKind, HeadSpec};

use crate::errors::InferError;
use crate::heads::{HeadTensor, PendingHead, PendingOutputs};
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
    values_4d(&t)
}

/// A 4-d tensor's values as float32 on the CPU, in its memory order (NHWC or NCHW as it is),
/// with its shape.
fn values_4d(t: &Tensor) -> Result<(Vec<f32>, [usize; 4]), InferError> {
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
/// float32. Checks each head's shape against `[n, raw_channels, out, out]`.
///
/// On a CPU only the logits are copied out here; the per-pixel values are computed by
/// [`PendingOutputs::finish`] (see [`crate::head_values::nchw_logits_to_nhwc`] for how it
/// reproduces libtorch's softmax), which the inference thread runs on its transform thread, so
/// that the forward's thread does nothing else. On an accelerator the transform runs there.
pub(crate) fn logits_to_pending(
    batch: &BatchView<'_>,
    heads: &[HeadSpec],
    raw: Vec<Tensor>,
    out: usize,
) -> Result<PendingOutputs, InferError> {
    let n = batch.len();
    if raw.is_empty() && n == 0 {
        let heads = heads
            .iter()
            .map(|h| {
                PendingHead::Ready(HeadTensor {
                    kind: h.kind,
                    shape: [0, out, out, h.kind.output_channels()],
                    data: Vec::new(),
                })
            })
            .collect();
        return Ok(PendingOutputs::new(Vec::new(), heads));
    }
    let mut pending = Vec::with_capacity(heads.len());
    for (h, t) in heads.iter().zip(raw) {
        let expected = vec![n as i64, i64::from(h.raw_channels), out as i64, out as i64];
        if t.size() != expected {
            return Err(InferError::WrongOutputShape {
                head: h.kind.to_string(),
                expected,
                found: t.size(),
            });
        }
        pending.push(if t.device() == tch::Device::Cpu {
            // On a CPU: the logits out as they are (one copy); TIAToolbox's values are computed
            // later, off this thread (one pass, no temporaries; ~3x cheaper than libtorch's
            // softmax / argmax / permute on one thread).
            let (logits, nchw) = values_4d(&t)?;
            PendingHead::Logits {
                kind: h.kind,
                nchw,
                logits,
            }
        } else {
            // On an accelerator: softmax / argmax there, over the channel axis before the
            // permute (the same values), only the kept channels come back.
            let t = t.f_to_kind(Kind::Float)?;
            let t = match h.kind {
                HeadKind::Np => t.f_softmax(1, Kind::Float)?.f_narrow(1, 1, 1)?,
                HeadKind::Hv => t,
                HeadKind::Tp | HeadKind::Ls => t
                    .f_softmax(1, Kind::Float)?
                    .f_argmax(1, true)?
                    .f_to_kind(Kind::Float)?,
            };
            let (data, shape) = values_4d(&t.f_permute([0, 2, 3, 1])?.f_contiguous()?)?;
            PendingHead::Ready(HeadTensor {
                kind: h.kind,
                shape,
                data,
            })
        });
    }
    Ok(PendingOutputs::new(batch.indices().to_vec(), pending))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head_values::nchw_logits_to_nhwc;

    /// Deterministic logits in about [-6, 6], some pixels with tied channels.
    fn logits(n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut v: Vec<f32> = (0..n * c * h * w)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 12.0
            })
            .collect();
        // exact ties between channels 0 and 1 on every 7th pixel of image 0
        let hw = h * w;
        for i in (0..hw).step_by(7) {
            v[hw + i] = v[i];
        }
        // near ties (a lead below, at and above the argmax shortcut's 1e-4) between channels 0
        // and 2 of image 0, on other pixels
        if c > 2 {
            for (j, i) in (3..hw).step_by(11).enumerate() {
                let lead = [3e-5, 1e-4, 1.2e-4, 1e-6][j % 4];
                v[i] = v[i].abs() + 7.0;
                v[2 * hw + i] = v[i] - lead;
            }
        }
        v
    }

    /// libtorch's values, as TIAToolbox computes them: NHWC, softmax(-1), argmax(-1).
    fn torch_reference(kind: HeadKind, x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
        let t = Tensor::from_slice(x)
            .view([n as i64, c as i64, h as i64, w as i64])
            .permute([0, 2, 3, 1])
            .contiguous();
        let t = match kind {
            HeadKind::Np => t.softmax(-1, Kind::Float).narrow(3, 1, 1),
            HeadKind::Hv => t,
            HeadKind::Tp | HeadKind::Ls => t
                .softmax(-1, Kind::Float)
                .argmax(-1, true)
                .to_kind(Kind::Float),
        }
        .contiguous();
        let mut out = vec![0f32; t.numel()];
        t.copy_data(&mut out, t.numel());
        out
    }

    #[test]
    fn cpu_head_values_match_libtorch_softmax_and_argmax() {
        let (n, h, w) = (3, 37, 41);
        for (kind, c) in [
            (HeadKind::Np, 2),
            (HeadKind::Hv, 2),
            (HeadKind::Tp, 6),
            (HeadKind::Ls, 4),
        ] {
            let x = logits(n, c, h, w);
            let ours = nchw_logits_to_nhwc(kind, &x, [n, c, h, w]);
            let theirs = torch_reference(kind, &x, [n, c, h, w]);
            assert_eq!(ours.len(), theirs.len(), "{kind}");
            let max = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            match kind {
                HeadKind::Np => assert!(max <= 5e-7, "np: {max}"),
                // transposition and argmax (ties included: first channel wins) are exact
                _ => assert_eq!(max, 0.0, "{kind}"),
            }
        }
    }
}

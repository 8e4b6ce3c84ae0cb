//! What a batch of head outputs looks like. Which heads a model has is
//! [`mtseg_types::HeadKind`] / [`mtseg_types::HeadSpec`].
//!
//! The values are exactly those of TIAToolbox's `HoVerNet.infer_batch` /
//! `HoVerNetPlus.infer_batch`: NHWC float32, `np` = softmax over the 2 channels, channel 1 kept
//! (nucleus probability); `hv` = the raw 2 channels (horizontal, vertical); `tp` and `ls` =
//! argmax class id as a float (one channel).

use mtseg_types::{HeadKind, HeadSpec};

/// One head of one batch: NHWC float32, contiguous.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadTensor {
    /// Which head.
    pub kind: HeadKind,
    /// `[n, height, width, channels]`.
    pub shape: [usize; 4],
    /// `n * height * width * channels` values, row-major NHWC.
    pub data: Vec<f32>,
}

impl HeadTensor {
    /// The values of patch `i` of the batch (`height * width * channels` values), if it exists.
    #[must_use]
    pub fn patch(&self, i: usize) -> Option<&[f32]> {
        let per = self.shape[1] * self.shape[2] * self.shape[3];
        self.data.get(i * per..(i + 1) * per)
    }
}

/// The outputs of one forward: the per-batch item that the `stitch` crate receives.
///
/// `heads` are in the model's head order (HoVer-Net: np, hv[, tp]; HoVer-Net+: np, hv, tp, ls, as
/// TIAToolbox's `infer_batch` returns them); `indices` are the patch indices of the input batch,
/// in batch order, passed through unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOutputs {
    /// Patch indices, one per patch, as given with the input batch.
    pub indices: Vec<u64>,
    /// One tensor per head.
    pub heads: Vec<HeadTensor>,
}

impl HeadOutputs {
    /// The tensor of head `kind`, if the model has it.
    #[must_use]
    pub fn head(&self, kind: HeadKind) -> Option<&HeadTensor> {
        self.heads.iter().find(|h| h.kind == kind)
    }

    /// Number of patches in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Checks that these outputs are what a model with `heads` and output side `output_size`
    /// owes the batch with patch `indices`: the same indices, every head in order, each of shape
    /// `[n, output_size, output_size, channels]` with as many values. The inference thread checks
    /// every forward, so a consumer can take [`HeadTensor::patch`] for each index.
    ///
    /// # Errors
    /// [`crate::InferError::BadOutput`] naming the head and the first patch without its values.
    pub fn check(
        &self,
        heads: &[HeadSpec],
        indices: &[u64],
        output_size: usize,
    ) -> Result<(), crate::InferError> {
        let bad = |head: &str, at: usize, detail: String| crate::InferError::BadOutput {
            head: head.to_owned(),
            patch: indices.get(at).or(indices.last()).copied().unwrap_or(0),
            detail,
        };
        if self.indices != indices {
            let at = self
                .indices
                .iter()
                .zip(indices)
                .position(|(a, b)| a != b)
                .unwrap_or(self.indices.len().min(indices.len()));
            return Err(bad(
                "indices",
                at,
                format!(
                    "{} patch indices came back for a batch of {}",
                    self.indices.len(),
                    indices.len()
                ),
            ));
        }
        let n = indices.len();
        for (k, spec) in heads.iter().enumerate() {
            let name = spec.kind.name();
            let Some(t) = self.heads.get(k) else {
                return Err(bad(name, 0, "the head is missing".into()));
            };
            if t.kind != spec.kind {
                return Err(bad(
                    name,
                    0,
                    format!("found `{}` in its place", t.kind.name()),
                ));
            }
            let want = [n, output_size, output_size, spec.kind.output_channels()];
            let values = want.iter().product::<usize>();
            if t.shape != want || t.data.len() != values {
                let per = want[1] * want[2] * want[3];
                let at = if t.shape[1..] == want[1..] {
                    (t.data.len() / per.max(1)).min(t.shape[0])
                } else {
                    0
                };
                return Err(bad(
                    name,
                    at,
                    format!(
                        "shape {:?} with {} values, the batch needs {want:?} ({values} values)",
                        t.shape,
                        t.data.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the batch is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// One forward's outputs, possibly before the per-pixel head transform: what
/// [`crate::Model::forward_pending`] returns. A CPU forward hands over its raw logits, and
/// [`PendingOutputs::finish`] computes TIAToolbox's values from them (softmax, argmax, NCHW to
/// NHWC) on whichever thread calls it; the inference thread calls it on a thread of its own, so
/// that the model's thread runs forwards back to back.
#[derive(Debug)]
pub struct PendingOutputs {
    indices: Vec<u64>,
    heads: Vec<PendingHead>,
}

/// One head of [`PendingOutputs`].
#[derive(Debug)]
pub(crate) enum PendingHead {
    /// Already TIAToolbox's values.
    Ready(HeadTensor),
    /// Raw NCHW logits, contiguous, `nchw` = `[n, raw channels, height, width]`.
    #[cfg_attr(not(feature = "torch"), allow(dead_code))]
    Logits {
        kind: HeadKind,
        nchw: [usize; 4],
        logits: Vec<f32>,
    },
}

impl PendingOutputs {
    /// Outputs of the batch with patch `indices`, head by head in the model's order.
    #[cfg_attr(not(feature = "torch"), allow(dead_code))]
    pub(crate) fn new(indices: Vec<u64>, heads: Vec<PendingHead>) -> Self {
        Self { indices, heads }
    }

    /// Number of patches in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The head outputs, with the per-pixel transform done where it was left to do.
    #[must_use]
    pub fn finish(self) -> HeadOutputs {
        let heads = self
            .heads
            .into_iter()
            .map(|h| match h {
                PendingHead::Ready(t) => t,
                PendingHead::Logits { kind, nchw, logits } => {
                    let [n, _, y, x] = nchw;
                    HeadTensor {
                        kind,
                        shape: [n, y, x, kind.output_channels()],
                        data: crate::head_values::nchw_logits_to_nhwc(kind, &logits, nchw),
                    }
                }
            })
            .collect();
        HeadOutputs {
            indices: self.indices,
            heads,
        }
    }
}

impl From<HeadOutputs> for PendingOutputs {
    /// Outputs that need no more work.
    fn from(outputs: HeadOutputs) -> Self {
        Self {
            indices: outputs.indices,
            heads: outputs.heads.into_iter().map(PendingHead::Ready).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_head_and_the_first_patch_without_values() {
        let specs = [
            HeadSpec::new(HeadKind::Np, 2),
            HeadSpec::new(HeadKind::Hv, 2),
        ];
        let tensor = |kind, n: usize, c: usize, len: usize| HeadTensor {
            kind,
            shape: [n, 2, 2, c],
            data: vec![0.0; len],
        };
        let ok = HeadOutputs {
            indices: vec![10, 11, 12],
            heads: vec![
                tensor(HeadKind::Np, 3, 1, 12),
                tensor(HeadKind::Hv, 3, 2, 24),
            ],
        };
        assert!(ok.check(&specs, &[10, 11, 12], 2).is_ok());
        // hv holds two patches of three: patch 12 has no values
        let mut short = ok.clone();
        short.heads[1] = tensor(HeadKind::Hv, 2, 2, 16);
        let e = short
            .check(&specs, &[10, 11, 12], 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`hv`, patch 12"), "{e}");
        // a shape that claims three patches but lacks the values
        short.heads[1] = tensor(HeadKind::Hv, 3, 2, 20);
        let e = short
            .check(&specs, &[10, 11, 12], 2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`hv`, patch 12") && e.contains("20 values"),
            "{e}"
        );
        let mut missing = ok.clone();
        missing.heads.pop();
        let e = missing
            .check(&specs, &[10, 11, 12], 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`hv`") && e.contains("missing"), "{e}");
        let e = ok.check(&specs, &[10, 11, 13], 2).unwrap_err().to_string();
        assert!(e.contains("`indices`, patch 13"), "{e}");
        let e = ok.check(&specs, &[10, 11, 12], 3).unwrap_err().to_string();
        assert!(e.contains("`np`, patch 10"), "{e}");
    }

    #[test]
    fn patch_slices() {
        let t = HeadTensor {
            kind: HeadKind::Hv,
            shape: [2, 1, 2, 2],
            data: (0..8).map(|v| v as f32).collect(),
        };
        assert_eq!(t.patch(1), Some(&[4.0, 5.0, 6.0, 7.0][..]));
        assert_eq!(t.patch(2), None);
    }
}

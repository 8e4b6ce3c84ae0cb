//! What a batch of head outputs looks like. Which heads a model has is
//! [`mtseg_types::HeadKind`] / [`mtseg_types::HeadSpec`].
//!
//! The values are exactly those of TIAToolbox's `HoVerNet.infer_batch` /
//! `HoVerNetPlus.infer_batch`: NHWC float32, `np` = softmax over the 2 channels, channel 1 kept
//! (nucleus probability); `hv` = the raw 2 channels (horizontal, vertical); `tp` and `ls` =
//! argmax class id as a float (one channel).

use mtseg_types::HeadKind;

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

    /// Whether the batch is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! The `Model` trait and the input batch types.

use mtseg_types::HeadSpec;

use mtseg_types::{PatchBatch, PatchBox};

use crate::errors::InferError;
use crate::heads::{HeadOutputs, PendingOutputs};

/// A borrowed batch of RGB patches: `n` patches of `height` × `width` × 3 bytes, NHWC, contiguous.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    pixels: &'a [u8],
    indices: &'a [u64],
    boxes: &'a [PatchBox],
    n: usize,
    height: usize,
    width: usize,
}

impl<'a> BatchView<'a> {
    /// A view of `pixels` as `indices.len()` patches of `height` × `width` RGB.
    ///
    /// # Errors
    /// [`InferError::BadBufferLength`] when `pixels.len() != n * height * width * 3`.
    pub fn new(
        pixels: &'a [u8],
        indices: &'a [u64],
        height: usize,
        width: usize,
    ) -> Result<Self, InferError> {
        let n = indices.len();
        let expected = n
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .and_then(|v| v.checked_mul(3));
        if expected != Some(pixels.len()) {
            return Err(InferError::BadBufferLength {
                n,
                height,
                width,
                expected: expected.unwrap_or(usize::MAX),
                found: pixels.len(),
            });
        }
        Ok(Self {
            pixels,
            indices,
            boxes: &[],
            n,
            height,
            width,
        })
    }

    /// A view of a reader's batch, with the places its patches come from when it says so.
    ///
    /// # Errors
    /// [`InferError::BadBufferLength`] when the pixels do not match the patches;
    /// [`InferError::BadOrigins`] when the batch has boxes, but not one per patch.
    pub fn of(batch: &'a PatchBatch) -> Result<Self, InferError> {
        let view = Self::new(
            &batch.pixels,
            &batch.indices,
            batch.patch.height as usize,
            batch.patch.width as usize,
        )?;
        if batch.boxes.is_empty() {
            Ok(view)
        } else {
            view.with_boxes(&batch.boxes)
        }
    }

    /// The same view with the places the patches come from: `boxes[i]` holds patch `i`'s input
    /// and output box on the slide, in pixels at the processing resolution.
    ///
    /// # Errors
    /// [`InferError::BadOrigins`] when there is not exactly one box per patch.
    pub fn with_boxes(mut self, boxes: &'a [PatchBox]) -> Result<Self, InferError> {
        if boxes.len() != self.n {
            return Err(InferError::BadOrigins {
                n: self.n,
                found: boxes.len(),
            });
        }
        self.boxes = boxes;
        Ok(self)
    }

    /// The bytes, NHWC.
    #[must_use]
    pub fn pixels(&self) -> &'a [u8] {
        self.pixels
    }

    /// The patch indices, one per patch.
    #[must_use]
    pub fn indices(&self) -> &'a [u64] {
        self.indices
    }

    /// Where each patch comes from (its input and output box on the slide at the processing
    /// resolution), when the producer said so ([`BatchView::with_boxes`]); empty otherwise. A
    /// real model ignores it; test models that render known labels need it.
    #[must_use]
    pub fn boxes(&self) -> &'a [PatchBox] {
        self.boxes
    }

    /// Number of patches.
    #[must_use]
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no patches.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Patch height.
    #[must_use]
    pub fn height(&self) -> usize {
        self.height
    }

    /// Patch width.
    #[must_use]
    pub fn width(&self) -> usize {
        self.width
    }
}

/// A loaded model that turns a batch of RGB patches into head outputs.
///
/// Implementations: the native HoVer-Net / HoVer-Net+ and the TorchScript backend (feature
/// `torch`), and any test double. A model lives on one thread (the inference thread builds it
/// there), so the trait asks for neither `Send` nor `Sync`.
pub trait Model {
    /// The heads, in the order of [`HeadOutputs::heads`].
    fn heads(&self) -> &[HeadSpec];

    /// Input patch side in pixels.
    fn input_size(&self) -> usize;

    /// Output side in pixels.
    fn output_size(&self) -> usize;

    /// Runs one batch (no gradients). An empty batch gives empty outputs.
    ///
    /// # Errors
    /// [`InferError::WrongPatchSize`] for patches of another size; [`InferError::Torch`] when
    /// libtorch fails (e.g. out of memory).
    fn forward(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError>;

    /// Runs one batch like [`Model::forward`] but may leave the per-pixel head transform to
    /// [`PendingOutputs::finish`], which the caller can run on another thread (the inference
    /// thread does: the model's thread then only runs forwards). The default does the whole
    /// forward; the libtorch models hand over their CPU logits.
    ///
    /// # Errors
    /// As [`Model::forward`].
    fn forward_pending(&mut self, batch: BatchView<'_>) -> Result<PendingOutputs, InferError> {
        self.forward(batch).map(PendingOutputs::from)
    }
}

/// Checks the patch size of `batch` against `model`'s input size.
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
pub(crate) fn check_patch_size(expected: usize, batch: &BatchView<'_>) -> Result<(), InferError> {
    if batch.height() == expected && batch.width() == expected {
        Ok(())
    } else {
        Err(InferError::WrongPatchSize {
            expected,
            height: batch.height(),
            width: batch.width(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtseg_types::Size2;

    #[test]
    fn view_checks_length() {
        let px = vec![0u8; 2 * 4 * 4 * 3];
        assert!(BatchView::new(&px, &[1, 2], 4, 4).is_ok());
        let e = BatchView::new(&px, &[1], 4, 4).unwrap_err();
        assert!(e.to_string().contains("needs 48 bytes, got 96"), "{e}");
    }

    #[test]
    fn boxes_are_one_per_patch_or_none() {
        let px = vec![0u8; 2 * 4 * 4 * 3];
        let v = BatchView::new(&px, &[1, 2], 4, 4).unwrap();
        assert!(v.boxes().is_empty());
        let boxes = [
            PatchBox {
                input: [0, 0, 4, 4],
                output: [1, 1, 3, 3],
            },
            PatchBox {
                input: [4, 0, 8, 4],
                output: [5, 1, 7, 3],
            },
        ];
        let v = v.with_boxes(&boxes).unwrap();
        assert_eq!(v.boxes()[1].input, [4, 0, 8, 4]);
        let e = v.with_boxes(&boxes[..1]).unwrap_err();
        assert!(e.to_string().contains("1 origins for 2 patches"), "{e}");
        let mut batch = PatchBatch {
            indices: vec![1, 2],
            boxes: boxes[..1].to_vec(),
            patch: Size2::new(4, 4),
            pixels: px,
        };
        assert!(BatchView::of(&batch).is_err());
        batch.boxes = boxes.to_vec();
        assert_eq!(BatchView::of(&batch).unwrap().boxes(), boxes);
    }
}

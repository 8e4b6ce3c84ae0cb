//! The `Model` trait and the input batch types.

use mtseg_types::HeadSpec;

use crate::errors::InferError;
use crate::heads::HeadOutputs;

/// A borrowed batch of RGB patches: `n` patches of `height` × `width` × 3 bytes, NHWC, contiguous.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    pixels: &'a [u8],
    indices: &'a [u64],
    origins: &'a [[i64; 2]],
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
            origins: &[],
            n,
            height,
            width,
        })
    }

    /// The same view with the places the patches come from: `origins[i]` is the top-left
    /// `[x, y]` of patch `i`'s input box on the slide, in pixels at the processing resolution.
    ///
    /// # Errors
    /// [`InferError::BadOrigins`] when there is not exactly one origin per patch.
    pub fn with_origins(mut self, origins: &'a [[i64; 2]]) -> Result<Self, InferError> {
        if origins.len() != self.n {
            return Err(InferError::BadOrigins {
                n: self.n,
                found: origins.len(),
            });
        }
        self.origins = origins;
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

    /// Where each patch comes from (top-left `[x, y]` of its input box on the slide at the
    /// processing resolution), when the producer said so ([`BatchView::with_origins`]); empty
    /// otherwise. A real model ignores it; test models that render known labels need it.
    #[must_use]
    pub fn origins(&self) -> &'a [[i64; 2]] {
        self.origins
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

/// An owned batch, as sent to an [`crate::InferenceThread`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputBatch {
    /// Patch indices, one per patch (passed through to [`HeadOutputs::indices`]).
    pub indices: Vec<u64>,
    /// Top-left `[x, y]` of each patch's input box on the slide (processing resolution), one
    /// per patch, or empty when the places are not known (see [`BatchView::origins`]).
    pub origins: Vec<[i64; 2]>,
    /// `indices.len() * height * width * 3` bytes, NHWC RGB.
    pub pixels: Vec<u8>,
    /// Patch height.
    pub height: usize,
    /// Patch width.
    pub width: usize,
}

impl InputBatch {
    /// A borrowed view, checking the buffer length.
    ///
    /// # Errors
    /// [`InferError::BadBufferLength`] when the lengths do not agree.
    pub fn view(&self) -> Result<BatchView<'_>, InferError> {
        let view = BatchView::new(&self.pixels, &self.indices, self.height, self.width)?;
        if self.origins.is_empty() {
            Ok(view)
        } else {
            view.with_origins(&self.origins)
        }
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

    #[test]
    fn view_checks_length() {
        let px = vec![0u8; 2 * 4 * 4 * 3];
        assert!(BatchView::new(&px, &[1, 2], 4, 4).is_ok());
        let e = BatchView::new(&px, &[1], 4, 4).unwrap_err();
        assert!(e.to_string().contains("needs 48 bytes, got 96"), "{e}");
    }

    #[test]
    fn origins_are_one_per_patch_or_none() {
        let px = vec![0u8; 2 * 4 * 4 * 3];
        let v = BatchView::new(&px, &[1, 2], 4, 4).unwrap();
        assert!(v.origins().is_empty());
        let v = v.with_origins(&[[0, 0], [4, 0]]).unwrap();
        assert_eq!(v.origins(), [[0, 0], [4, 0]]);
        let e = v.with_origins(&[[0, 0]]).unwrap_err();
        assert!(e.to_string().contains("1 origins for 2 patches"), "{e}");
        let batch = InputBatch {
            indices: vec![1, 2],
            origins: vec![[0, 0]],
            pixels: px,
            height: 4,
            width: 4,
        };
        assert!(batch.view().is_err());
    }
}

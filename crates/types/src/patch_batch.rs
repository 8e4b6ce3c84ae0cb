//! [`PatchBatch`]: the batch of RGB patches the reader (`tiling`) produces and the model
//! (`infer`) takes, as it is.

use crate::Size2;

/// One patch: what the model reads and what it predicts, in slide pixels at the processing
/// resolution, `[x0, y0, x1, y1]` with exclusive ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatchBox {
    /// The box read from the slide (model input).
    pub input: [i64; 4],
    /// The centre box the model predicts (model output).
    pub output: [i64; 4],
}

/// A batch of patches, the contract between `tiling` and `infer`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchBatch {
    /// Grid indices (row-major) of the patches, increasing; passed through the model to its
    /// outputs.
    pub indices: Vec<u64>,
    /// Their boxes, one per patch, or none when the places are not known (e.g. a test batch).
    pub boxes: Vec<PatchBox>,
    /// Patch size (input box size).
    pub patch: Size2,
    /// RGB pixels, NHWC: `indices.len() * patch.height * patch.width * 3` bytes.
    pub pixels: Vec<u8>,
}

impl PatchBatch {
    /// Number of patches.
    #[must_use]
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The RGB bytes of patch `i` of the batch (empty past the end).
    #[must_use]
    pub fn patch_pixels(&self, i: usize) -> &[u8] {
        let n = (self.patch.width * self.patch.height * 3) as usize;
        self.pixels.get(i * n..(i + 1) * n).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_pixels_are_nhwc_slices() {
        let b = PatchBatch {
            indices: vec![4, 9],
            boxes: Vec::new(),
            patch: Size2::new(2, 1),
            pixels: (0..12).collect(),
        };
        assert_eq!((b.len(), b.is_empty()), (2, false));
        assert_eq!(b.patch_pixels(1), [6, 7, 8, 9, 10, 11]);
        assert!(b.patch_pixels(2).is_empty());
    }
}

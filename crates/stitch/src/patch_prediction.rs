//! The stitcher's input: one patch's head outputs ([`PatchPrediction`]).

/// One head's output for one patch: `height × width × channels` float32 values, row-major,
/// channels last (NHWC without the N), as TIAToolbox's `infer_batch` returns per head.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadBlock {
    /// Number of channels of this head.
    pub channels: usize,
    /// `height × width × channels` values.
    pub data: Vec<f32>,
}

impl HeadBlock {
    /// A block from its channel count and data.
    #[must_use]
    pub fn new(channels: usize, data: Vec<f32>) -> Self {
        Self { channels, data }
    }

    /// Whether every value is `0.0` (`-0.0` included; NaN is not zero). Such a block does not
    /// count towards the mean (TIAToolbox QUIRK, see the crate docs).
    #[must_use]
    pub fn is_all_zero(&self) -> bool {
        self.data.iter().all(|&v| v == 0.0)
    }

    /// Bytes of data held.
    #[must_use]
    pub fn byte_size(&self) -> u64 {
        (self.data.len() * std::mem::size_of::<f32>()) as u64
    }
}

/// The model's outputs for one patch, all heads.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPrediction {
    /// The patch's index in the full grid (the `tiling` crate's output-box list).
    pub index: usize,
    /// Its output box `[x0, y0, x1, y1]` (exclusive max) in slide pixels at the processing
    /// resolution; checked against the grid.
    pub output_box: [i64; 4],
    /// One block per head, in the model's head order (`np`, `hv`, `tp`[, `ls`] for HoVer-Net).
    pub heads: Vec<HeadBlock>,
}

impl PatchPrediction {
    /// Bytes of head data held.
    #[must_use]
    pub fn byte_size(&self) -> u64 {
        self.heads.iter().map(HeadBlock::byte_size).sum()
    }
}

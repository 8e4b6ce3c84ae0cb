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

/// One head's output for one patch, borrowed, e.g. a slice of a model's batch output
/// (`mtseg_infer::HeadTensor::patch`): the stitcher merges it without a copy when the patch
/// comes in merge order, and copies it only when it has to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadSlice<'a> {
    /// Number of channels of this head.
    pub channels: usize,
    /// `height × width × channels` values, row-major, channels last.
    pub data: &'a [f32],
}

/// [`PatchPrediction`] with borrowed head data ([`crate::Stitcher::push_view_with`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchView<'a> {
    /// The patch's index in the full grid.
    pub index: usize,
    /// Its output box `[x0, y0, x1, y1]` in slide pixels at the processing resolution.
    pub output_box: [i64; 4],
    /// One slice per head, in the model's head order.
    pub heads: Vec<HeadSlice<'a>>,
}

/// What the stitcher reads of an incoming patch, owned or borrowed.
pub(crate) trait PatchData {
    /// Grid index.
    fn index(&self) -> usize;
    /// Output box on the slide.
    fn output_box(&self) -> [i64; 4];
    /// Heads.
    fn head_count(&self) -> usize;
    /// Channels and values of head `k` (`k < head_count`).
    fn head(&self, k: usize) -> (usize, &[f32]);
    /// The patch as an owned prediction (to wait for its turn).
    fn into_owned(self) -> PatchPrediction;
    /// Bytes of head data.
    fn byte_size(&self) -> u64 {
        (0..self.head_count())
            .map(|k| std::mem::size_of_val(self.head(k).1) as u64)
            .sum()
    }
}

impl PatchData for PatchPrediction {
    fn index(&self) -> usize {
        self.index
    }
    fn output_box(&self) -> [i64; 4] {
        self.output_box
    }
    fn head_count(&self) -> usize {
        self.heads.len()
    }
    fn head(&self, k: usize) -> (usize, &[f32]) {
        (self.heads[k].channels, &self.heads[k].data)
    }
    fn into_owned(self) -> PatchPrediction {
        self
    }
}

impl PatchData for PatchView<'_> {
    fn index(&self) -> usize {
        self.index
    }
    fn output_box(&self) -> [i64; 4] {
        self.output_box
    }
    fn head_count(&self) -> usize {
        self.heads.len()
    }
    fn head(&self, k: usize) -> (usize, &[f32]) {
        (self.heads[k].channels, self.heads[k].data)
    }
    fn into_owned(self) -> PatchPrediction {
        PatchPrediction {
            index: self.index,
            output_box: self.output_box,
            heads: self
                .heads
                .iter()
                .map(|h| HeadBlock::new(h.channels, h.data.to_vec()))
                .collect(),
        }
    }
}

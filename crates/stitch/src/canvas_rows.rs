//! The stitcher's output: final canvas rows ([`CanvasRows`]).

use crate::memory_budget::HeldMemory;

/// Final (normalised) canvas rows `y0 .. y0 + rows`, full canvas width, every head.
///
/// Values are `sum / max(count, 1)` in float32; pixels no patch covered are 0. Coordinates are
/// canvas pixels; add [`CanvasRows::origin`] to get slide pixels at the processing resolution.
///
/// Rows from [`crate::Stitcher::push`] and [`crate::Stitcher::push_with`] hold their bytes of
/// the memory budget ([`CanvasRows::memory`]) until they are dropped: a consumer that keeps rows
/// keeps them accounted, and the stitcher waits for rows to be dropped before it hands out rows
/// that would not fit. Clones hold nothing; equality ignores it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanvasRows {
    /// First canvas row.
    pub y0: usize,
    /// Number of rows.
    pub rows: usize,
    /// Canvas width.
    pub width: usize,
    /// Canvas origin in the slide, `[x, y]` (TIAToolbox's `mask_padding` left and top).
    pub origin: [u64; 2],
    /// Channels per head.
    pub channels: Vec<usize>,
    /// Per head: `rows × width × channels` values, row-major, channels last.
    pub heads: Vec<Vec<f32>>,
    /// The budget bytes these rows hold (given back when they are dropped); none for rows made
    /// with [`CanvasRows::new`] or cloned.
    pub memory: HeldMemory,
}

impl CanvasRows {
    /// Rows `y0 .. y0 + rows` of a canvas of `width` at `origin`, holding no budget bytes.
    #[must_use]
    pub fn new(
        y0: usize,
        rows: usize,
        width: usize,
        origin: [u64; 2],
        channels: Vec<usize>,
        heads: Vec<Vec<f32>>,
    ) -> Self {
        Self {
            y0,
            rows,
            width,
            origin,
            channels,
            heads,
            memory: HeldMemory::none(),
        }
    }

    /// One past the last row.
    #[must_use]
    pub fn y1(&self) -> usize {
        self.y0 + self.rows
    }

    /// Bytes of values held.
    #[must_use]
    pub fn byte_size(&self) -> u64 {
        self.heads
            .iter()
            .map(|h| (h.len() * std::mem::size_of::<f32>()) as u64)
            .sum()
    }

    /// The value at canvas pixel `(x, y)`, head `head`, channel `channel`; `None` outside.
    #[must_use]
    pub fn get(&self, head: usize, x: usize, y: usize, channel: usize) -> Option<f32> {
        let c = *self.channels.get(head)?;
        if x >= self.width || y < self.y0 || y >= self.y1() || channel >= c {
            return None;
        }
        self.heads
            .get(head)?
            .get(((y - self.y0) * self.width + x) * c + channel)
            .copied()
    }
}

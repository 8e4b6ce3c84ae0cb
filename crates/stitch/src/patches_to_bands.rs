//! Horizontal merge: the patches of one grid row become a row band (TIAToolbox
//! `merge_horizontal` + `merge_batch_to_canvas`).
//!
//! A band is `band_height` rows by the canvas width. Each patch block is added into it in merge
//! order (left to right): `band[y, x0..x1] += block[y, 0..x1-x0]`, with `x1` clipped to the canvas
//! width, starting from a band of zeros. Every block covers all rows of its band, so the count of
//! a band is one number per column (`count[x]`), not per pixel.
//!
//! Where the band overlaps rows still open from earlier bands (the top `band_height - stride`
//! rows), it is summed in a buffer of its own and added to those rows when it is done, so that
//! sums are `(band_a) + (band_b)` exactly as in TIAToolbox. Its other rows hold nothing yet (they
//! are zero in the accumulator), so the band is summed in place there: `0 + block + block ...` is
//! the same float as summing in a zeroed band and adding it to zero. With stride == output size
//! (the TIAToolbox default) no band overlaps and there is no copy at all.
//!
//! **QUIRK (TIAToolbox 9.4, reproduced):** a block whose values are all zero (per head, over the
//! whole unclipped block) is skipped: it adds nothing and does not increment the count, so it
//! does not pull the mean of its overlap towards 0.

/// The band being built: its overlap rows, per-head column counts.
#[derive(Debug)]
pub(crate) struct BandBuilder {
    width: usize,
    channels: Vec<usize>,
    /// Per head: `overlap_rows × width × channels` sums of the rows that overlap open rows.
    overlap: Vec<Vec<f32>>,
    /// Per head: `width` counts (the same for every row of the band).
    counts: Vec<Vec<u32>>,
    /// Rows `0..overlap_rows` go to `overlap`, rows `overlap_rows..rows` to the accumulator.
    overlap_rows: usize,
    /// Band rows inside the canvas.
    rows: usize,
    touched: bool,
}

impl BandBuilder {
    /// An empty builder for bands of the canvas `width`.
    pub(crate) fn new(width: usize, channels: &[usize]) -> Self {
        Self {
            width,
            channels: channels.to_vec(),
            overlap: channels.iter().map(|_| Vec::new()).collect(),
            counts: channels.iter().map(|_| vec![0; width]).collect(),
            overlap_rows: 0,
            rows: 0,
            touched: false,
        }
    }

    /// Bytes a builder holds at most, with `overlap_rows` overlapping rows.
    pub(crate) fn byte_size(width: usize, overlap_rows: usize, channels: &[usize]) -> u64 {
        let values: usize = channels.iter().map(|&c| overlap_rows * width * c).sum();
        ((values + width * channels.len()) * 4) as u64
    }

    /// Start a band with `rows` rows inside the canvas, the first `overlap_rows` of which overlap
    /// rows still open in the accumulator. The previous band must have been taken.
    pub(crate) fn begin(&mut self, overlap_rows: usize, rows: usize) {
        debug_assert!(!self.touched, "the previous band was folded");
        self.overlap_rows = overlap_rows.min(rows);
        self.rows = rows;
        for (buffer, &c) in self.overlap.iter_mut().zip(&self.channels) {
            let needed = self.overlap_rows * self.width * c;
            if buffer.len() < needed {
                buffer.resize(needed, 0.0);
            }
        }
    }

    /// Whether any block counted since [`BandBuilder::begin`].
    pub(crate) fn touched(&self) -> bool {
        self.touched
    }

    /// Rows `0..overlap_rows` of each head (to add into the accumulator).
    pub(crate) fn overlap(&self) -> (&[Vec<f32>], usize) {
        (&self.overlap, self.overlap_rows)
    }

    /// Per-head column counts.
    pub(crate) fn counts(&self) -> &[Vec<u32>] {
        &self.counts
    }

    /// Band rows inside the canvas.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Zero the overlap rows and swap the counts with `spare` (zeroed here) after the band was
    /// folded, leaving the builder empty; `spare` receives the band's counts.
    pub(crate) fn take(&mut self, spare: &mut Vec<Vec<u32>>) {
        for (buffer, &c) in self.overlap.iter_mut().zip(&self.channels) {
            buffer[..self.overlap_rows * self.width * c].fill(0.0);
        }
        for counts in spare.iter_mut() {
            counts.clear();
            counts.resize(self.width, 0);
        }
        std::mem::swap(&mut self.counts, spare);
        self.touched = false;
    }

    /// Add one head's block (`block_height × block_width × channels`, checked by the caller)
    /// whose left edge is canvas column `x0`; rows below the overlap go into `acc` (per-head
    /// accumulator rows starting at the band's top row). Returns whether it counted (false for
    /// an all-zero block, which is skipped).
    pub(crate) fn add_block(
        &mut self,
        acc: &mut [Vec<f32>],
        head: usize,
        block: &[f32],
        block_width: usize,
        x0: i64,
    ) -> bool {
        if block.iter().all(|&v| v == 0.0) {
            return false;
        }
        let c = self.channels[head];
        let block_height = block.len() / (block_width * c).max(1);
        let rows = block_height.min(self.rows);
        // Clip to the canvas: columns x0.max(0) .. min(x0 + block_width, width).
        let start = x0.max(0) as usize;
        let end = (x0 + block_width as i64).clamp(0, self.width as i64) as usize;
        self.touched = true;
        if start >= end {
            return true;
        }
        let skip = (start as i64 - x0) as usize;
        let n = (end - start) * c;
        let row_len = self.width * c;
        for y in 0..rows {
            let dst = if y < self.overlap_rows {
                &mut self.overlap[head][y * row_len + start * c..][..n]
            } else {
                &mut acc[head][y * row_len + start * c..][..n]
            };
            let src = &block[(y * block_width + skip) * c..][..n];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += *s;
            }
        }
        for count in &mut self.counts[head][start..end] {
            *count += 1;
        }
        true
    }
}

/// A port of TIAToolbox's `merge_batch_to_canvas` for one head, kept for its fixtures: add
/// `blocks` (each `block_height × block_width × channels`) at `output_locations` (canvas
/// `[x0, y0, x1, y1]` with `y0` ignored, as TIAToolbox ignores it) into a canvas of
/// `merged_height × merged_width × channels`. Returns the canvas and the per-pixel count.
///
/// A block with fewer values than `block_height × block_width × channels` contributes its
/// complete rows only (no panic).
#[must_use]
pub fn merge_batch_to_canvas(
    blocks: &[&[f32]],
    block_shape: [usize; 2],
    output_locations: &[[i64; 4]],
    merged_shape: [usize; 3],
) -> (Vec<f32>, Vec<u32>) {
    let [merged_height, merged_width, channels] = merged_shape;
    let [block_height, block_width] = block_shape;
    let rows = block_height.min(merged_height);
    let mut band = BandBuilder::new(merged_width, &[channels]);
    band.begin(0, rows);
    let mut canvas = vec![vec![0.0f32; merged_height * merged_width * channels]];
    for (block, location) in blocks.iter().zip(output_locations) {
        let block = &block[..block.len().min(block_height * block_width * channels)];
        band.add_block(&mut canvas, 0, block, block_width, location[0]);
    }
    let mut count = vec![0u32; merged_height * merged_width];
    for y in 0..rows {
        count[y * merged_width..][..merged_width].copy_from_slice(&band.counts()[0]);
    }
    (canvas.swap_remove(0), count)
}

#[cfg(test)]
mod tests {
    //! TIAToolbox `tests/engines/test_semantic_segmentor.py` fixtures for
    //! `merge_batch_to_canvas` (reference section 6.4).
    use super::*;

    #[test]
    fn non_overlapping_blocks() {
        let a = [1.0f32; 4];
        let b = [2.0f32; 4];
        let (canvas, count) =
            merge_batch_to_canvas(&[&a, &b], [2, 2], &[[0, 0, 2, 2], [2, 0, 4, 2]], [2, 4, 1]);
        assert_eq!(canvas, [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(count, [1; 8]);
    }

    #[test]
    fn overlapping_blocks() {
        let a = [1.0f32; 4];
        let b = [3.0f32; 4];
        let (canvas, count) =
            merge_batch_to_canvas(&[&a, &b], [2, 2], &[[0, 0, 2, 2], [1, 0, 3, 2]], [2, 3, 1]);
        assert_eq!(canvas, [1.0, 4.0, 3.0, 1.0, 4.0, 3.0]);
        assert_eq!(count, [1, 2, 1, 1, 2, 1]);
    }

    #[test]
    fn zero_block_does_not_count() {
        let a = [0.0f32; 4];
        let b = [1.0f32; 4];
        let (canvas, count) =
            merge_batch_to_canvas(&[&a, &b], [2, 2], &[[0, 0, 2, 2], [2, 0, 4, 2]], [2, 4, 1]);
        assert_eq!(canvas, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(count, [0, 0, 1, 1, 0, 0, 1, 1]);
    }

    #[test]
    fn empty_input_gives_zeros() {
        let (canvas, count) = merge_batch_to_canvas(&[], [2, 2], &[], [2, 2, 1]);
        assert_eq!(canvas, [0.0; 4]);
        assert_eq!(count, [0; 4]);
    }

    #[test]
    fn blocks_past_the_right_edge_are_clipped() {
        // TIAToolbox clips x1 to the merged width: only the first column of the second block lands.
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [5.0f32, 6.0, 7.0, 8.0];
        let (canvas, count) =
            merge_batch_to_canvas(&[&a, &b], [2, 2], &[[0, 0, 2, 2], [2, 0, 4, 2]], [2, 3, 1]);
        assert_eq!(canvas, [1.0, 2.0, 5.0, 3.0, 4.0, 7.0]);
        assert_eq!(count, [1; 6]);
    }

    #[test]
    fn multi_channel_and_negative_zero() {
        // -0.0 and NaN: -0.0 is zero (skipped), NaN is not.
        let zero = [-0.0f32; 8];
        let nan = [f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let (canvas, count) = merge_batch_to_canvas(
            &[&zero, &nan],
            [2, 2],
            &[[0, 0, 2, 2], [0, 0, 2, 2]],
            [2, 2, 2],
        );
        assert!(canvas[0].is_nan());
        assert_eq!(canvas[1].to_bits(), 0.0f32.to_bits());
        assert_eq!(count, [1; 4]);
    }
}

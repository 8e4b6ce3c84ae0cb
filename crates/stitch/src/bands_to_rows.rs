//! Vertical normalisation: finished row bands are folded, top to bottom, into an accumulator of
//! open rows; rows no later band can touch are normalised (`sum / max(count, 1)`, float32) and
//! handed out (TIAToolbox `merge_vertical_chunkwise`).
//!
//! Summation order matches TIAToolbox: each band is summed on its own (left to right), then the
//! bands covering a row are added top to bottom (`(band_a + band_b) + band_c`). With
//! `out/2 <= stride <= out` this is exactly TIAToolbox's `cur[-ov:] += next[:ov]`; smaller strides
//! (which break TIAToolbox, its issue #1071) extend it the natural way.
//!
//! Counts are kept per open band and column (a band's count is the same on all its rows): the
//! count of a pixel is the sum of the column counts of the open bands covering its row. Rows
//! covered by the same bands share one divisor row, computed once.

use std::collections::VecDeque;

#[cfg(test)]
use crate::canvas_rows::CanvasRows;
use crate::patches_to_bands::BandBuilder;

/// A folded band whose rows are not all emitted: its rows and per-head column counts.
#[derive(Debug)]
struct OpenBand {
    y0: usize,
    y1: usize,
    counts: Vec<Vec<u32>>,
}

/// The open rows: canvas rows `base .. base + capacity` (per-head sums) and the open bands.
#[derive(Debug)]
pub(crate) struct RowAccumulator {
    width: usize,
    capacity: usize,
    canvas_height: usize,
    origin: [u64; 2],
    channels: Vec<usize>,
    /// Canvas row of accumulator row 0; every row above it has been emitted.
    base: usize,
    /// Rows `0..filled` may hold non-zero values; rows from `filled` on are zero.
    filled: usize,
    sums: Vec<Vec<f32>>,
    open: VecDeque<OpenBand>,
    /// Count vectors of closed bands, for reuse.
    spare_counts: Vec<Vec<Vec<u32>>>,
    /// Per head: one divisor row (`width × channels`), reused.
    divisors: Vec<Vec<f32>>,
    /// One row of summed counts (`width`), reused.
    count_row: Vec<u32>,
}

impl RowAccumulator {
    /// An empty accumulator of `capacity` rows (the tallest band) at canvas row 0.
    pub(crate) fn new(
        width: usize,
        capacity: usize,
        canvas_height: usize,
        origin: [u64; 2],
        channels: &[usize],
    ) -> Self {
        Self {
            width,
            capacity,
            canvas_height,
            origin,
            channels: channels.to_vec(),
            base: 0,
            filled: 0,
            sums: channels
                .iter()
                .map(|&c| vec![0.0; capacity * width * c])
                .collect(),
            open: VecDeque::new(),
            spare_counts: Vec::new(),
            divisors: channels.iter().map(|&c| vec![1.0; width * c]).collect(),
            count_row: vec![0; width],
        }
    }

    /// The accumulator started at canvas row `base` instead of 0 (a stitch resumed below the
    /// top): the first band folded must start there.
    pub(crate) fn starting_at(mut self, base: usize) -> Self {
        debug_assert!(
            self.open.is_empty() && self.filled == 0,
            "a fresh accumulator"
        );
        self.base = base;
        self
    }

    /// Bytes the accumulator holds for these sizes, with at most `open_bands` open bands.
    pub(crate) fn byte_size(
        width: usize,
        capacity: usize,
        open_bands: usize,
        channels: &[usize],
    ) -> u64 {
        let sums: usize = channels.iter().map(|&c| capacity * width * c).sum();
        let divisors: usize = channels.iter().map(|&c| width * c).sum();
        let counts = (open_bands + 1) * width * channels.len() + width;
        ((sums + divisors + counts) * 4) as u64
    }

    /// Rows (from the base) that hold values of earlier bands.
    pub(crate) fn filled(&self) -> usize {
        self.filled
    }

    /// Rows of a band starting at the base that lie inside the canvas.
    pub(crate) fn rows_in_canvas(&self, band_height: usize) -> usize {
        band_height
            .min(self.canvas_height.saturating_sub(self.base))
            .min(self.capacity)
    }

    /// The per-head sums, rows from the base (where a band writes its non-overlapping rows).
    pub(crate) fn sums_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.sums
    }

    /// Fold the band built in `band`, whose top is canvas row `y0` (= the base: every row above
    /// was emitted when the previous band finished) and bottom `y1`; empties `band`.
    pub(crate) fn fold(&mut self, band: &mut BandBuilder, y0: usize, y1: usize) {
        debug_assert_eq!(y0, self.base, "bands are folded top to bottom");
        if !band.touched() {
            return;
        }
        let w = self.width;
        let (overlap, overlap_rows) = band.overlap();
        for (head, &c) in self.channels.iter().enumerate() {
            let n = overlap_rows * w * c;
            for (d, s) in self.sums[head][..n].iter_mut().zip(&overlap[head][..n]) {
                *d += *s;
            }
        }
        self.filled = self.filled.max(band.rows());
        let mut counts = self
            .spare_counts
            .pop()
            .unwrap_or_else(|| self.channels.iter().map(|_| Vec::new()).collect());
        band.take(&mut counts);
        self.open.push_back(OpenBand {
            y0,
            y1: y1.min(self.canvas_height),
            counts,
        });
    }

    /// The end of the rows that are final when the next band starts at canvas row `next_top`:
    /// `next_top` clipped to the canvas (rows `base .. final_end` can be handed out).
    pub(crate) fn final_end(&self, next_top: usize) -> usize {
        next_top.min(self.canvas_height).max(self.base)
    }

    /// Bytes of one canvas row, every head.
    pub(crate) fn row_bytes(&self) -> u64 {
        (self.width * self.channels.iter().sum::<usize>() * 4) as u64
    }

    /// Append canvas rows `y_from .. y_to`, normalised, to `out` (one vector per head, `width ×
    /// channels` values per row). The rows must be final: `base <= y_from <= y_to` and no band
    /// still to come touches them.
    pub(crate) fn normalise_into(&mut self, y_from: usize, y_to: usize, out: &mut [Vec<f32>]) {
        debug_assert!(self.base <= y_from && y_from <= y_to && y_to <= self.canvas_height);
        let w = self.width;
        // Segments of rows covered by the same open bands share a divisor row.
        let mut y = y_from;
        while y < y_to {
            let mut segment_end = y_to;
            for band in &self.open {
                for edge in [band.y0, band.y1] {
                    if edge > y && edge < segment_end {
                        segment_end = edge;
                    }
                }
            }
            self.compute_divisors(y);
            for row in y..segment_end {
                let r = row - self.base;
                for (head, &c) in self.channels.iter().enumerate() {
                    let dest = &mut out[head];
                    if r < self.filled {
                        let sums = &self.sums[head][r * w * c..][..w * c];
                        dest.extend(sums.iter().zip(&self.divisors[head]).map(|(s, d)| s / d));
                    } else {
                        dest.resize(dest.len() + w * c, 0.0);
                    }
                }
            }
            y = segment_end;
        }
    }

    /// Forget canvas rows `base .. end` (handed out): move the rows still open to the front,
    /// zero what they leave behind, close the bands that end there and move the base to `end`.
    pub(crate) fn release_until(&mut self, end: usize) {
        let end = end.min(self.canvas_height);
        if end <= self.base {
            return;
        }
        let n = end - self.base;
        let w = self.width;
        let emitted = n.min(self.filled);
        let keep = self.filled - emitted;
        for (head, &c) in self.channels.iter().enumerate() {
            let sums = &mut self.sums[head];
            sums.copy_within(emitted * w * c..self.filled * w * c, 0);
            sums[keep * w * c..self.filled * w * c].fill(0.0);
        }
        self.filled = keep;
        while self.open.front().is_some_and(|band| band.y1 <= end) {
            if let Some(band) = self.open.pop_front() {
                self.spare_counts.push(band.counts);
            }
        }
        self.base = end;
    }

    /// Canvas row of the first row not yet handed out.
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// Canvas width.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// Canvas origin in the slide.
    pub(crate) fn origin(&self) -> [u64; 2] {
        self.origin
    }

    /// Channels per head.
    pub(crate) fn channels(&self) -> &[usize] {
        &self.channels
    }

    /// Emit canvas rows `base .. end` (clipped to the canvas) as one [`CanvasRows`] holding no
    /// budget bytes, and move the base to `end`. `None` when there is nothing to emit.
    #[cfg(test)]
    pub(crate) fn emit_until(&mut self, end: usize) -> Option<CanvasRows> {
        let end = self.final_end(end);
        if end <= self.base {
            return None;
        }
        let y0 = self.base;
        let mut heads: Vec<Vec<f32>> = self.channels.iter().map(|_| Vec::new()).collect();
        self.normalise_into(y0, end, &mut heads);
        self.release_until(end);
        Some(CanvasRows::new(
            y0,
            end - y0,
            self.width,
            self.origin,
            self.channels.clone(),
            heads,
        ))
    }

    /// `divisors[head][x * c + k] = max(count(x, y), 1)` for the open bands covering row `y`.
    fn compute_divisors(&mut self, y: usize) {
        let mut count_row = std::mem::take(&mut self.count_row);
        count_row.resize(self.width, 0);
        for (head, &c) in self.channels.iter().enumerate() {
            count_row.fill(0);
            for band in self.open.iter().filter(|b| b.y0 <= y && y < b.y1) {
                for (total, &n) in count_row.iter_mut().zip(&band.counts[head]) {
                    *total += n;
                }
            }
            for (d, &count) in self.divisors[head].chunks_exact_mut(c).zip(&count_row) {
                d.fill(count.max(1) as f32);
            }
        }
        self.count_row = count_row;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a one-head band of `value` over columns `x0 .. x0 + bw` and fold it at the base.
    fn fold_band(acc: &mut RowAccumulator, height: usize, value: f32, x0: i64, bw: usize) {
        let mut band = BandBuilder::new(acc.width, &[1]);
        let y0 = acc.base;
        band.begin(acc.filled(), acc.rows_in_canvas(height));
        band.add_block(acc.sums_mut(), 0, &vec![value; height * bw], bw, x0);
        acc.fold(&mut band, y0, y0 + height);
    }

    #[test]
    fn overlapping_bands_average() {
        // Canvas 2 wide, 3 high; bands of height 2 at rows 0 and 1 (stride 1).
        let mut acc = RowAccumulator::new(2, 2, 3, [0, 0], &[1]);
        fold_band(&mut acc, 2, 1.0, 0, 2);
        let rows = acc.emit_until(1).unwrap();
        assert_eq!((rows.y0, rows.rows), (0, 1));
        assert_eq!(rows.heads[0], [1.0, 1.0]);
        fold_band(&mut acc, 2, 4.0, 0, 2);
        let rows = acc.emit_until(usize::MAX).unwrap();
        assert_eq!((rows.y0, rows.rows), (1, 2));
        assert_eq!(rows.heads[0], [2.5, 2.5, 4.0, 4.0]);
        assert!(acc.emit_until(usize::MAX).is_none());
    }

    #[test]
    fn three_bands_on_one_row() {
        // Height 3, stride 1: row 2 is covered by three bands.
        let mut acc = RowAccumulator::new(1, 3, 3, [0, 0], &[1]);
        fold_band(&mut acc, 3, 3.0, 0, 1);
        acc.emit_until(1).unwrap();
        fold_band(&mut acc, 3, 6.0, 0, 1);
        acc.emit_until(2).unwrap();
        fold_band(&mut acc, 3, 9.0, 0, 1);
        let rows = acc.emit_until(usize::MAX).unwrap();
        assert_eq!(rows.heads[0], [6.0]);
    }

    #[test]
    fn uncovered_pixels_are_zero_and_gaps_are_emitted() {
        let mut acc = RowAccumulator::new(3, 2, 6, [5, 7], &[1]);
        fold_band(&mut acc, 2, 2.0, 1, 1);
        // The next band starts at row 4 (stride > band height): rows 2 and 3 are a gap.
        let rows = acc.emit_until(4).unwrap();
        assert_eq!(rows.origin, [5, 7]);
        assert_eq!(
            rows.heads[0],
            [0.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(acc.base(), 4);
    }
}

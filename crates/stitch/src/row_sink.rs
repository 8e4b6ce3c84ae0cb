//! Where final rows go. The stitcher hands each range of rows that became final to a
//! [`ReservingSink`], which cuts it into items, reserves each item's bytes from the budget
//! (waiting for the consumer to give bytes back when they do not fit), normalises the rows
//! straight into new [`CanvasRows`] that hold that reservation, and hands them to the caller's
//! `emit`. Nothing width-sized is allocated outside a reservation on the way.

use std::time::{Duration, Instant};

use crate::bands_to_rows::RowAccumulator;
use crate::canvas_rows::CanvasRows;
use crate::memory_budget::{HeldMemory, MemoryBudget};
use crate::stitch_errors::StitchError;

/// Canvas rows `y0 .. y1` that no later patch can touch, still in the accumulator.
pub(crate) struct FinalRows<'a> {
    acc: &'a mut RowAccumulator,
    y0: usize,
    y1: usize,
}

impl<'a> FinalRows<'a> {
    /// Rows `y0 .. y1` (`y0` at or below the accumulator's base, `y1` clipped by the caller).
    pub(crate) fn new(acc: &'a mut RowAccumulator, y0: usize, y1: usize) -> Self {
        debug_assert!(acc.base() <= y0, "rows above the base were handed out");
        Self { acc, y0, y1 }
    }

    /// First final row to hand out.
    pub(crate) fn y0(&self) -> usize {
        self.y0
    }

    /// One past the last final row.
    pub(crate) fn y1(&self) -> usize {
        self.y1
    }

    /// Bytes of one canvas row, every head.
    pub(crate) fn row_bytes(&self) -> u64 {
        self.acc.row_bytes()
    }

    /// Canvas width.
    pub(crate) fn width(&self) -> usize {
        self.acc.width()
    }

    /// Channels of all heads.
    pub(crate) fn total_channels(&self) -> usize {
        self.acc.channels().iter().sum()
    }

    /// Append rows `y_from .. y_to` (inside `y0 .. y1`), normalised, to `out` (one vector per
    /// head).
    fn normalise_into(&mut self, y_from: usize, y_to: usize, out: &mut [Vec<f32>]) {
        assert!(
            self.y0() <= y_from && y_from <= y_to && y_to <= self.y1,
            "rows {y_from}..{y_to} are not final"
        );
        self.acc.normalise_into(y_from, y_to, out);
    }

    /// Rows `y_from .. y_to` as [`CanvasRows`] holding `memory` (exactly sized vectors).
    fn canvas_rows(&mut self, y_from: usize, y_to: usize, memory: HeldMemory) -> CanvasRows {
        let n = y_to - y_from;
        let width = self.acc.width();
        let mut heads: Vec<Vec<f32>> = self
            .acc
            .channels()
            .iter()
            .map(|&c| Vec::with_capacity(n * width * c))
            .collect();
        self.normalise_into(y_from, y_to, &mut heads);
        CanvasRows {
            y0: y_from,
            rows: n,
            width,
            origin: self.acc.origin(),
            channels: self.acc.channels().to_vec(),
            heads,
            memory,
        }
    }
}

/// What the sink did with one range of final rows.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Taken {
    /// Time spent blocked on downstream (memory held by earlier rows, the caller's `emit`: a
    /// full channel, a probability-store write).
    pub(crate) waited: Duration,
    /// [`CanvasRows`] items made.
    pub(crate) items: u64,
}

/// `y0 .. y1` cut into consecutive ranges of at most `max_rows` rows (`0`: one range).
pub(crate) fn row_chunks(
    y0: usize,
    y1: usize,
    max_rows: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let step = if max_rows == 0 { usize::MAX } else { max_rows };
    std::iter::successors(Some(y0), move |&y| Some(y.saturating_add(step)))
        .take_while(move |&y| y < y1)
        .map(move |y| (y, y.saturating_add(step).min(y1)))
}

/// A short description of rows for reservation errors.
pub(crate) fn describe_rows(rows: usize, width: usize, channels: usize) -> String {
    format!("{rows} canvas rows x {width} px x {channels} channels")
}

/// Hands each item of final rows to the caller (a channel, a `Vec`, a probability store).
pub(crate) type Emit<'a> = dyn FnMut(CanvasRows) -> Result<(), StitchError> + 'a;

/// Cuts final rows into [`CanvasRows`] items that hold their bytes of the budget, and hands them
/// to `emit` one by one (behind [`crate::Stitcher::push_with`] and [`crate::Stitcher::push`]).
///
/// An item has at most `max_rows` rows, and never more than fit next to what is held for good
/// (`fixed`: the stitch window, waiting patches, [`crate::StitchParams::consumer_held`]), so
/// that waiting can always succeed once the rows handed out before are dropped. Its reservation
/// waits for bytes to be given back for up to `wait` without any (see
/// [`MemoryBudget::reserve_waiting`]); when not even one row fits, it fails at once.
pub(crate) struct ReservingSink<'e, 'f> {
    budget: MemoryBudget,
    max_rows: usize,
    fixed: u64,
    wait: Duration,
    emit: &'e mut Emit<'f>,
}

impl<'e, 'f> ReservingSink<'e, 'f> {
    /// A sink for items of at most `max_rows` rows, next to `fixed` bytes held for good,
    /// waiting up to `wait` for bytes to come back.
    pub(crate) fn new(
        budget: MemoryBudget,
        max_rows: usize,
        fixed: u64,
        wait: Duration,
        emit: &'e mut Emit<'f>,
    ) -> Self {
        Self {
            budget,
            max_rows: max_rows.max(1),
            fixed,
            wait,
            emit,
        }
    }

    /// Take rows `rows.y0() .. rows.y1()`: normalised into reserved items, handed to `emit`
    /// before returning (the rows are released from the accumulator afterwards).
    pub(crate) fn take(&mut self, rows: &mut FinalRows<'_>) -> Result<Taken, StitchError> {
        let mut taken = Taken::default();
        let row_bytes = rows.row_bytes().max(1);
        let fit_rows = self.budget.limit().saturating_sub(self.fixed) / row_bytes;
        let max_rows = self
            .max_rows
            .min(usize::try_from(fit_rows.max(1)).unwrap_or(usize::MAX));
        for (a, b) in row_chunks(rows.y0(), rows.y1(), max_rows) {
            let bytes = (b - a) as u64 * row_bytes;
            let what = describe_rows(b - a, rows.width(), rows.total_channels());
            let started = Instant::now();
            let reservation = if fit_rows == 0 {
                // Not even one row fits next to the window: waiting cannot help.
                self.budget.try_reserve(
                    bytes,
                    &format!(
                        "canvas rows handed out by the stitcher ({what}) next to the stitch window"
                    ),
                )
            } else {
                self.budget.reserve_waiting(
                    bytes,
                    &format!(
                        "canvas rows handed out by the stitcher ({what}; waited {:.1} s without \
                         any memory given back, e.g. by the consumer dropping earlier rows)",
                        self.wait.as_secs_f64()
                    ),
                    self.wait,
                )
            }?;
            let reserved = Instant::now();
            taken.waited += reserved - started;
            let item = rows.canvas_rows(a, b, HeldMemory::new(reservation));
            let made = Instant::now();
            (self.emit)(item)?;
            taken.waited += made.elapsed();
            taken.items += 1;
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range() {
        let c: Vec<_> = row_chunks(3, 10, 3).collect();
        assert_eq!(c, [(3, 6), (6, 9), (9, 10)]);
        let c: Vec<_> = row_chunks(3, 10, 0).collect();
        assert_eq!(c, [(3, 10)]);
        assert_eq!(row_chunks(5, 5, 2).count(), 0);
    }
}

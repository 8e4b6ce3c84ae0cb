//! The stitcher's parameters ([`StitchParams`]) and running state ([`Stitcher`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mtseg_types::Size2;

use crate::bands_to_rows::RowAccumulator;
use crate::canvas_plan::CanvasPlan;
use crate::canvas_rows::CanvasRows;
use crate::memory_budget::{MemoryBudget, MemoryReservation};
use crate::patch_prediction::{PatchData, PatchPrediction, PatchView};
use crate::patches_to_bands::BandBuilder;
use crate::row_sink::{Emit, FinalRows, ReservingSink};
use crate::stitch_errors::{PlanError, StitchError};

/// One model head: its name (used for the saved probability arrays) and channel count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSpec {
    /// Head name, e.g. `np`, `hv`, `tp`, `ls`.
    pub name: String,
    /// Channels of the head's output.
    pub channels: usize,
}

impl HeadSpec {
    /// A head from its name and channel count.
    #[must_use]
    pub fn new(name: impl Into<String>, channels: usize) -> Self {
        Self {
            name: name.into(),
            channels,
        }
    }
}

/// What the stitcher needs to know, fixed for one slide.
///
/// [`StitchParams::new`] takes the plan, the patch output size, the heads and the budget, and
/// checks that every planned box has the patch output size and that every head has at least one
/// channel. The other fields have defaults: `reorder_allowance` 0, `rows_per_chunk` 0 (one
/// [`CanvasRows`] per band step), `memory_wait` 60 s, `consumer_held` 0, `first_row` 0.
#[derive(Debug, Clone)]
pub struct StitchParams {
    /// The canvas and the merge order (from the grid, the mask selection and the slide size).
    pub plan: CanvasPlan,
    /// Patch output size (TIAToolbox `patch_output_shape`).
    pub patch_output: Size2,
    /// The model's heads, in order.
    pub heads: Vec<HeadSpec>,
    /// The budget the stitch window and waiting out-of-order patches reserve from.
    pub budget: MemoryBudget,
    /// Out-of-order patches to reserve room for up front (default 0): set it to the most
    /// patches upstream can reorder (workers × batch size), so that reservations made later
    /// (rows handed out, the consumer's buffers) cannot take that room. More patches may wait;
    /// they reserve as they come.
    pub reorder_allowance: usize,
    /// The most rows in one [`CanvasRows`] handed out (default 0: no limit, one item per band
    /// step, i.e. the rows between two band tops, [`CanvasPlan::row_step`] in a regular grid).
    /// Every item holds its bytes of the budget until dropped; smaller items let rows flow in
    /// finer steps under a tight budget. See [`StitchParams::chunk_bytes`].
    pub rows_per_chunk: usize,
    /// How long the stitcher waits, before it hands out rows that do not fit the budget, for
    /// memory held by rows handed out earlier (or anywhere else in the budget) to be given back
    /// before it fails with an error naming `[pipeline] memory_limit` (default 60 s). The wait starts again whenever some bytes are given back, so a slow
    /// consumer is waited for; only a consumer that keeps its rows while it waits for more (it
    /// needs more rows than the budget holds) makes it fail. Zero fails at once.
    pub memory_wait: Duration,
    /// Bytes of the budget that the consumer of the rows holds for good while the stitcher runs
    /// (default 0), e.g. the post-processing window the rows are copied into. Rows are handed
    /// out in items small enough to fit next to it and the stitcher's own window, so a tight
    /// budget makes rows flow in finer steps instead of waiting for memory that never comes.
    pub consumer_held: u64,
    /// The first canvas row to hand out (default 0: every row), to resume a slide whose rows
    /// above it were handled by an earlier run. Checked by [`Stitcher::new`]: at most the
    /// canvas height (the height itself hands out nothing).
    ///
    /// The rows from `first_row` on are the ones a stitcher started at 0 hands out, bit for bit
    /// (the same values in the same summation order; the first item starts at `first_row`, so
    /// items may be cut differently there); rows above it are never handed out nor reserved.
    /// The caller must push every selected patch whose output box's bottom is below
    /// `first_row` (canvas `y1 > first_row`), in the usual way (any order, merge order is
    /// cheapest): [`CanvasPlan::selected_reaching`] lists them, and
    /// [`CanvasPlan::first_rank_reaching`] is the first merge rank among them; none when
    /// `first_row` is the canvas height. Selected patches that end at or above `first_row` may
    /// be pushed too: they are ignored (not checked beyond their index, counted in
    /// [`StitchMetrics::patches_skipped`]), so whole model batches can be pushed again.
    /// A patch that straddles `first_row` contributes its rows from `first_row` on.
    pub first_row: usize,
}

impl StitchParams {
    /// Check and bundle the parameters.
    ///
    /// # Errors
    /// [`PlanError::InvalidParams`] when a planned box is not `patch_output` in size, a size is
    /// zero, or there are no heads or a head has no channels.
    pub fn new(
        plan: CanvasPlan,
        patch_output: Size2,
        heads: Vec<HeadSpec>,
        budget: MemoryBudget,
    ) -> Result<Self, PlanError> {
        if patch_output.is_empty() {
            return Err(PlanError::InvalidParams {
                reason: format!("patch output size {patch_output} has a zero"),
            });
        }
        let [w, h] = patch_output.to_usize();
        if heads.is_empty() {
            return Err(PlanError::InvalidParams {
                reason: "the model has no heads".into(),
            });
        }
        if let Some(head) = heads.iter().find(|head| head.channels == 0) {
            return Err(PlanError::InvalidParams {
                reason: format!("head {:?} has 0 channels", head.name),
            });
        }
        if let Some(p) = plan.patches().iter().find(|p| {
            let b = p.canvas_box;
            (b[2] - b[0]) as usize != w || (b[3] - b[1]) as usize != h
        }) {
            let b = p.canvas_box;
            return Err(PlanError::InvalidParams {
                reason: format!(
                    "output box of grid patch {} is {}x{} (height x width), but the patch output \
                     size is {h}x{w}",
                    p.grid_index,
                    b[3] - b[1],
                    b[2] - b[0]
                ),
            });
        }
        Ok(Self {
            plan,
            patch_output,
            heads,
            budget,
            reorder_allowance: 0,
            rows_per_chunk: 0,
            memory_wait: Duration::from_secs(60),
            consumer_held: 0,
            first_row: 0,
        })
    }

    /// Set [`StitchParams::consumer_held`].
    #[must_use]
    pub fn with_consumer_held(mut self, bytes: u64) -> Self {
        self.consumer_held = bytes;
        self
    }

    /// Set [`StitchParams::first_row`] (checked by [`Stitcher::new`]).
    #[must_use]
    pub fn with_first_row(mut self, row: usize) -> Self {
        self.first_row = row;
        self
    }

    /// Set [`StitchParams::rows_per_chunk`].
    #[must_use]
    pub fn with_rows_per_chunk(mut self, rows: usize) -> Self {
        self.rows_per_chunk = rows;
        self
    }

    /// Set [`StitchParams::memory_wait`].
    #[must_use]
    pub fn with_memory_wait(mut self, wait: Duration) -> Self {
        self.memory_wait = wait;
        self
    }

    /// Bytes of one canvas row, every head: `canvas width × ΣC × 4`.
    #[must_use]
    pub fn row_bytes(&self) -> u64 {
        (self.plan.width() * self.channels().iter().sum::<usize>() * 4) as u64
    }

    /// The most rows in one [`CanvasRows`]: [`StitchParams::rows_per_chunk`] when set, and never
    /// more than the most rows one band step makes final (the largest gap between band tops, or
    /// the last band's rows in the canvas).
    #[must_use]
    pub fn max_chunk_rows(&self) -> usize {
        let plan = &self.plan;
        let bands = plan.bands();
        let gaps = bands.windows(2).map(|w| (w[1].y0 - w[0].y0) as usize);
        let last = bands
            .last()
            .map_or(0, |b| plan.height().saturating_sub(b.y0 as usize));
        let step = gaps.chain([last]).max().unwrap_or(0).min(plan.height());
        match self.rows_per_chunk {
            0 => step,
            rows => rows.min(step),
        }
    }

    /// Bytes of the largest [`CanvasRows`] handed out:
    /// [`StitchParams::max_chunk_rows`] × [`StitchParams::row_bytes`]. A bounded channel of
    /// capacity `n` holds at most `n` times this, all of it reserved.
    #[must_use]
    pub fn chunk_bytes(&self) -> u64 {
        self.max_chunk_rows() as u64 * self.row_bytes()
    }

    /// Set [`StitchParams::reorder_allowance`].
    #[must_use]
    pub fn with_reorder_allowance(mut self, patches: usize) -> Self {
        self.reorder_allowance = patches;
        self
    }

    /// Channels per head.
    #[must_use]
    pub fn channels(&self) -> Vec<usize> {
        self.heads.iter().map(|h| h.channels).collect()
    }

    /// Bytes of the stitch window (the open rows, a band's overlap rows, open bands' column
    /// counts), reserved for the whole run.
    #[must_use]
    pub fn window_bytes(&self) -> u64 {
        let channels = self.channels();
        let plan = &self.plan;
        BandBuilder::byte_size(plan.width(), plan.max_band_overlap(), &channels)
            + RowAccumulator::byte_size(
                plan.width(),
                plan.max_band_height(),
                plan.max_bands_per_row(),
                &channels,
            )
    }

    /// Bytes of one patch's head outputs.
    #[must_use]
    pub fn patch_bytes(&self) -> u64 {
        let [w, h] = self.patch_output.to_usize();
        self.heads
            .iter()
            .map(|head| (h * w * head.channels * 4) as u64)
            .sum()
    }
}

/// What the stitcher did, for progress, the run summary and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StitchMetrics {
    /// Patches received and merged (or waiting to be), not counting skipped ones.
    pub patches_in: u64,
    /// Patches received that end at or above [`StitchParams::first_row`] and were ignored.
    pub patches_skipped: u64,
    /// Head blocks skipped because all their values were zero (TIAToolbox QUIRK 9.4).
    pub zero_blocks: u64,
    /// Canvas rows emitted (from [`StitchParams::first_row`] on).
    pub rows_out: u64,
    /// [`CanvasRows`] items emitted.
    pub row_chunks_out: u64,
    /// The most patches waiting at once for an earlier patch.
    pub peak_pending_patches: u64,
    /// Time spent merging and normalising (waiting for downstream excluded).
    pub busy: Duration,
    /// Time spent waiting for downstream: memory held by rows handed out, and the time the
    /// caller's `emit` took (a full output channel, a probability-store write).
    pub waiting: Duration,
}

/// The running stitch: push patches in any order, receive final rows as soon as they are final.
///
/// See the crate docs for the algorithm and the memory story.
#[derive(Debug)]
pub struct Stitcher {
    // PROPERTIES
    params: StitchParams,
    channels: Vec<usize>,
    /// Merge ranks below this end at or above `params.first_row`: their patches are ignored.
    first_rank: usize,

    // STATE BUFFERS
    /// Merge rank of the next patch to merge.
    next_rank: usize,
    /// Patches that arrived before their turn, by merge rank.
    pending: BTreeMap<usize, PatchPrediction>,
    /// The band being built.
    band_index: usize,
    /// Selected patches merged into it so far.
    band_merged: usize,
    band: BandBuilder,
    rows: RowAccumulator,
    /// An error from a row sink left the stitcher between two steps: it cannot go on.
    interrupted: bool,

    // EXECUTION RESOURCES
    _window: MemoryReservation,
    /// Holds max(reorder allowance, pending bytes).
    pending_reservation: MemoryReservation,
    pending_bytes: u64,
    metrics: StitchMetrics,
}

impl Stitcher {
    /// Start stitching (at [`StitchParams::first_row`]): reserves the window (one band and the
    /// open rows) from the budget.
    ///
    /// # Errors
    /// [`StitchError::Plan`] with [`PlanError::FirstRowPastCanvas`] when the first row is past
    /// the canvas height; [`StitchError::Memory`] when the window does not fit the budget.
    pub fn new(params: StitchParams) -> Result<Self, StitchError> {
        // The first band whose rows reach the first row, and the first patch it needs: bands
        // above end at or above the first row and are never built.
        let first_band = params.plan.first_band_reaching(params.first_row)?;
        let first_rank = params.plan.first_rank_reaching(params.first_row)?;
        let channels = params.channels();
        let window = params.budget.try_reserve(
            params.window_bytes(),
            &format!(
                "the stitch window ({} rows x {} px x {} channels)",
                params.plan.max_band_height(),
                params.plan.width(),
                channels.iter().sum::<usize>()
            ),
        )?;
        let pending_reservation = params.budget.try_reserve(
            params.reorder_allowance as u64 * params.patch_bytes(),
            "out-of-order patches waiting to be stitched",
        )?;
        let plan = &params.plan;
        let band = BandBuilder::new(plan.width(), &channels);
        // The accumulator starts at the first band's top (0 for a first row of 0): rows between
        // it and the first row are summed (without the bands above) but never handed out. When
        // the first row lies in a gap between bands (a stride larger than the patch), it starts
        // at the first row: the gap's rows, covered by no band, are handed out first.
        let base = Self::band_top(plan, first_band).min(params.first_row);
        let rows = RowAccumulator::new(
            plan.width(),
            plan.max_band_height(),
            plan.height(),
            plan.origin(),
            &channels,
        )
        .starting_at(base);
        let mut stitcher = Self {
            params,
            channels,
            first_rank,
            next_rank: first_rank,
            pending: BTreeMap::new(),
            band_index: first_band,
            band_merged: 0,
            band,
            rows,
            interrupted: false,
            _window: window,
            pending_reservation,
            pending_bytes: 0,
            metrics: StitchMetrics::default(),
        };
        if base == Self::band_top(&stitcher.params.plan, first_band) {
            stitcher.begin_band();
        }
        Ok(stitcher)
    }

    /// The top row of band `index`, clipped to the canvas (the canvas height past the last).
    fn band_top(plan: &CanvasPlan, index: usize) -> usize {
        plan.bands()
            .get(index)
            .map_or(plan.height(), |band| band.y0 as usize)
            .min(plan.height())
    }

    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &StitchParams {
        &self.params
    }

    /// The plan.
    #[must_use]
    pub fn plan(&self) -> &CanvasPlan {
        &self.params.plan
    }

    /// Counters so far.
    #[must_use]
    pub fn metrics(&self) -> &StitchMetrics {
        &self.metrics
    }

    /// Patches waiting for an earlier patch.
    #[must_use]
    pub fn pending_patches(&self) -> usize {
        self.pending.len()
    }

    /// Bytes this stitcher holds of the budget now (the window and waiting patches).
    fn held_bytes(&self) -> u64 {
        self._window.size() + self.pending_reservation.size()
    }

    /// Merge one patch (any order) and return the rows that became final, top to bottom.
    ///
    /// Each item holds its bytes of the budget until dropped (see [`Stitcher::push_with`],
    /// which hands items out one by one and is the bounded way to stream rows).
    ///
    /// # Errors
    /// A patch that is not selected in the plan, arrives twice, has another output box or
    /// wrong block shapes; a refused reservation for a patch that must wait. The stitcher is
    /// unchanged by a refused patch. Rows that cannot be reserved (as in
    /// [`Stitcher::push_with`]) leave it interrupted: later calls fail with
    /// [`StitchError::Interrupted`].
    pub fn push(&mut self, patch: PatchPrediction) -> Result<Vec<CanvasRows>, StitchError> {
        let mut out = Vec::new();
        self.push_with(patch, |rows| {
            out.push(rows);
            Ok(())
        })?;
        Ok(out)
    }

    /// Merge several patches; the rows that became final, top to bottom.
    ///
    /// # Errors
    /// As [`Stitcher::push`]; patches before the bad one stay merged.
    pub fn push_all(
        &mut self,
        patches: impl IntoIterator<Item = PatchPrediction>,
    ) -> Result<Vec<CanvasRows>, StitchError> {
        let mut out = Vec::new();
        for patch in patches {
            self.push_with(patch, |rows| {
                out.push(rows);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Merge one patch (any order) and hand each item of rows that became final to `emit`, top
    /// to bottom, as soon as it is made (e.g. send it on a bounded channel).
    ///
    /// Items have at most [`StitchParams::max_chunk_rows`] rows, fewer when the budget could
    /// never hold that many next to the window, and each holds its bytes of the budget
    /// ([`CanvasRows::memory`]) until dropped. When the next item does not fit, this waits for
    /// bytes to be given back (the consumer dropping earlier rows), for up to
    /// [`StitchParams::memory_wait`] without any. So the rows handed out and not yet dropped
    /// never exceed the budget, wherever they are.
    ///
    /// # Errors
    /// As [`Stitcher::push`]; [`StitchError::Memory`] when not even one row fits next to the
    /// window, or nothing was given back for `memory_wait`; the error `emit` returns. Both leave
    /// the stitcher interrupted.
    pub fn push_with(
        &mut self,
        patch: PatchPrediction,
        mut emit: impl FnMut(CanvasRows) -> Result<(), StitchError>,
    ) -> Result<(), StitchError> {
        let mut sink = self.reserving_sink(&mut emit);
        self.push_into(patch, &mut sink)
    }

    /// [`Stitcher::push_with`] for a patch whose head data is borrowed (e.g. from the model's
    /// batch output): merged straight from the slices when it is the next patch in merge order,
    /// copied only when it has to wait for earlier ones.
    ///
    /// # Errors
    /// As [`Stitcher::push_with`].
    pub fn push_view_with(
        &mut self,
        patch: PatchView<'_>,
        mut emit: impl FnMut(CanvasRows) -> Result<(), StitchError>,
    ) -> Result<(), StitchError> {
        let mut sink = self.reserving_sink(&mut emit);
        self.push_into(patch, &mut sink)
    }

    /// Where final rows go: items reserved from the budget, next to what this stitcher and the
    /// consumer ([`StitchParams::consumer_held`]) hold for good, handed to `emit`.
    fn reserving_sink<'e, 'f>(&self, emit: &'e mut Emit<'f>) -> ReservingSink<'e, 'f> {
        ReservingSink::new(
            self.params.budget.clone(),
            self.params.max_chunk_rows(),
            self.held_bytes() + self.params.consumer_held,
            self.params.memory_wait,
            emit,
        )
    }

    /// Merge one patch (any order); rows that become final go to `sink` at once.
    fn push_into(
        &mut self,
        patch: impl PatchData,
        sink: &mut ReservingSink<'_, '_>,
    ) -> Result<(), StitchError> {
        if self.interrupted {
            return Err(StitchError::Interrupted);
        }
        if self
            .params
            .plan
            .merge_rank(patch.index())
            .is_some_and(|rank| rank < self.first_rank)
        {
            // Ends at or above the first row: not needed (see `StitchParams::first_row`).
            self.metrics.patches_skipped += 1;
            return Ok(());
        }
        let rank = self.check(&patch)?;
        if rank == self.next_rank {
            let started = Instant::now();
            let waited_before = self.metrics.waiting;
            self.metrics.patches_in += 1;
            let merged = self.merge_in_order(patch, sink);
            let waited = self.metrics.waiting.saturating_sub(waited_before);
            self.metrics.busy += started.elapsed().saturating_sub(waited);
            if merged.is_err() {
                self.interrupted = true;
            }
            merged
        } else {
            let needed = self.pending_bytes + patch.byte_size();
            if needed > self.pending_reservation.size() {
                self.pending_reservation
                    .try_grow(needed - self.pending_reservation.size())?;
            }
            self.pending_bytes = needed;
            self.pending.insert(rank, patch.into_owned());
            self.metrics.patches_in += 1;
            self.metrics.peak_pending_patches = self
                .metrics
                .peak_pending_patches
                .max(self.pending.len() as u64);
            Ok(())
        }
    }

    /// Merge `patch` (of rank `next_rank`) and every waiting patch that follows it.
    fn merge_in_order(
        &mut self,
        patch: impl PatchData,
        sink: &mut ReservingSink<'_, '_>,
    ) -> Result<(), StitchError> {
        // Bands that need no patch (a ring band above the tissue) are done before the first.
        self.complete_finished_bands(sink)?;
        self.merge(&patch, sink)?;
        drop(patch);
        while let Some(next) = self.pending.remove(&self.next_rank) {
            self.merge(&next, sink)?;
            self.pending_bytes -= next.byte_size();
            drop(next);
            self.shrink_pending();
        }
        self.shrink_pending();
        Ok(())
    }

    /// Give back pending-patch bytes above max(allowance, bytes waiting).
    fn shrink_pending(&mut self) {
        let allowance = self.params.reorder_allowance as u64 * self.params.patch_bytes();
        let keep = allowance.max(self.pending_bytes);
        if self.pending_reservation.size() > keep {
            self.pending_reservation
                .shrink(self.pending_reservation.size() - keep);
        }
    }

    /// End of input: every selected patch must have arrived. Returns the last rows (usually
    /// none: rows are handed out as soon as the last patch of their band is merged) and the
    /// counters; frees the window.
    ///
    /// # Errors
    /// [`StitchError::MissingPatches`] when some selected patch never arrived; rows that cannot
    /// be reserved.
    pub fn finish(self) -> Result<(Vec<CanvasRows>, StitchMetrics), StitchError> {
        let mut out = Vec::new();
        let metrics = self.finish_with(|rows| {
            out.push(rows);
            Ok(())
        })?;
        Ok((out, metrics))
    }

    /// End of input; the last rows go to `emit` as in [`Stitcher::push_with`]. Returns the
    /// counters.
    ///
    /// # Errors
    /// As [`Stitcher::finish`], and the error `emit` returns.
    pub fn finish_with(
        self,
        mut emit: impl FnMut(CanvasRows) -> Result<(), StitchError>,
    ) -> Result<StitchMetrics, StitchError> {
        let mut sink = self.reserving_sink(&mut emit);
        self.finish_into(&mut sink)
    }

    /// End of input; the last rows go to `sink`.
    fn finish_into(
        mut self,
        sink: &mut ReservingSink<'_, '_>,
    ) -> Result<StitchMetrics, StitchError> {
        if self.interrupted {
            return Err(StitchError::Interrupted);
        }
        let selected = self.params.plan.selected_count();
        if self.next_rank < selected {
            let first_missing = self
                .params
                .plan
                .patch_at_rank(self.next_rank)
                .map_or(0, |p| p.grid_index);
            return Err(StitchError::MissingPatches {
                missing: selected - self.next_rank - self.pending.len(),
                selected,
                first_missing,
            });
        }
        self.complete_finished_bands(sink)?;
        Ok(self.metrics)
    }

    /// Validate a patch and return its merge rank.
    fn check(&self, patch: &impl PatchData) -> Result<usize, StitchError> {
        let plan = &self.params.plan;
        let index = patch.index();
        let rank = plan.merge_rank(index).ok_or(StitchError::UnknownPatch {
            index,
            selected: plan.selected_count(),
            grid_len: plan.grid_len(),
        })?;
        if rank < self.next_rank || self.pending.contains_key(&rank) {
            return Err(StitchError::DuplicatePatch { index });
        }
        let planned = plan
            .patch_at_rank(rank)
            .expect("a merge rank from the plan has a planned patch");
        let [ox, oy] = plan.origin();
        let b = planned.canvas_box;
        let expected = [
            b[0] + ox as i64,
            b[1] + oy as i64,
            b[2] + ox as i64,
            b[3] + oy as i64,
        ];
        if patch.output_box() != expected {
            return Err(StitchError::BoxMismatch {
                index,
                expected,
                found: patch.output_box(),
            });
        }
        if patch.head_count() != self.channels.len() {
            return Err(StitchError::HeadCount {
                index,
                expected: self.channels.len(),
                found: patch.head_count(),
            });
        }
        let [w, h] = self.params.patch_output.to_usize();
        for (head, &c) in self.channels.iter().enumerate() {
            let (channels, data) = patch.head(head);
            if channels != c || data.len() != h * w * c {
                return Err(StitchError::BlockShape {
                    index,
                    head,
                    expected_channels: c,
                    found_channels: channels,
                    expected_len: h * w * c,
                    found_len: data.len(),
                    height: h,
                    width: w,
                });
            }
        }
        Ok(rank)
    }

    /// Merge the patch of rank `next_rank` into its band.
    fn merge(
        &mut self,
        patch: &impl PatchData,
        sink: &mut ReservingSink<'_, '_>,
    ) -> Result<(), StitchError> {
        let planned = *self
            .params
            .plan
            .patch_at_rank(self.next_rank)
            .expect("next_rank < selected_count while patches arrive");
        debug_assert_eq!(planned.grid_index, patch.index());
        // Bands before this one are complete: their last patch was merged, or they have none.
        debug_assert_eq!(self.band_index, planned.band);
        let width = self.params.patch_output.to_usize()[0];
        for head in 0..patch.head_count() {
            let acc = self.rows.sums_mut();
            if !self
                .band
                .add_block(acc, head, patch.head(head).1, width, planned.canvas_box[0])
            {
                self.metrics.zero_blocks += 1;
            }
        }
        self.next_rank += 1;
        self.band_merged += 1;
        self.complete_finished_bands(sink)
    }

    /// Fold every band whose selected patches are all merged, and hand the rows above the next
    /// band's top edge to `sink`.
    fn complete_finished_bands(
        &mut self,
        sink: &mut ReservingSink<'_, '_>,
    ) -> Result<(), StitchError> {
        let top = Self::band_top(&self.params.plan, self.band_index);
        if self.rows.base() < top {
            // Only at the start of a stitch resumed in a gap between bands: the rows from the
            // first row to the first band's top are covered by no band (zeros), and final.
            let first_row = self.params.first_row;
            hand_out(&mut self.rows, &mut self.metrics, first_row, top, sink)?;
            self.begin_band();
        }
        let bands = self.params.plan.bands();
        while let Some(band) = bands.get(self.band_index) {
            if self.band_merged < band.selected {
                break;
            }
            self.rows
                .fold(&mut self.band, band.y0 as usize, band.y1 as usize);
            let next_top = bands
                .get(self.band_index + 1)
                .map_or(usize::MAX, |b| b.y0 as usize);
            let end = self.rows.final_end(next_top);
            let first_row = self.params.first_row;
            hand_out(&mut self.rows, &mut self.metrics, first_row, end, sink)?;
            self.band_index += 1;
            self.band_merged = 0;
            if let Some(next) = bands.get(self.band_index) {
                let height = (next.y1 - next.y0) as usize;
                self.band
                    .begin(self.rows.filled(), self.rows.rows_in_canvas(height));
            }
        }
        Ok(())
    }

    /// Prepare the builder for the band at `band_index` (whose top is the accumulator base).
    fn begin_band(&mut self) {
        if let Some(band) = self.params.plan.bands().get(self.band_index) {
            let height = (band.y1 - band.y0) as usize;
            self.band
                .begin(self.rows.filled(), self.rows.rows_in_canvas(height));
        }
    }
}

/// Hand the final rows from the accumulator's base to `end` to `sink`, but those above
/// `first_row` (dropped), and release them from the accumulator.
fn hand_out(
    rows: &mut RowAccumulator,
    metrics: &mut StitchMetrics,
    first_row: usize,
    end: usize,
    sink: &mut ReservingSink<'_, '_>,
) -> Result<(), StitchError> {
    let y0 = rows.base().max(first_row);
    if end > y0 {
        let taken = sink.take(&mut FinalRows::new(rows, y0, end))?;
        metrics.waiting += taken.waited;
        metrics.rows_out += (end - y0) as u64;
        metrics.row_chunks_out += taken.items;
    }
    rows.release_until(end);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas_plan::tests::grid;
    use crate::patch_prediction::{HeadBlock, HeadSlice};

    fn params(boxes: &[[i64; 4]], sel: &[usize], size: Size2, out: usize) -> StitchParams {
        let plan = CanvasPlan::new(boxes, sel, size).unwrap();
        StitchParams::new(
            plan,
            Size2::square(out as u64),
            vec![HeadSpec::new("a", 1), HeadSpec::new("b", 2)],
            MemoryBudget::unlimited(),
        )
        .unwrap()
    }

    fn patch(boxes: &[[i64; 4]], index: usize, out: usize, value: f32) -> PatchPrediction {
        PatchPrediction {
            index,
            output_box: boxes[index],
            heads: vec![
                HeadBlock::new(1, vec![value; out * out]),
                HeadBlock::new(2, vec![value; out * out * 2]),
            ],
        }
    }

    #[test]
    fn borrowed_patches_stitch_as_owned_ones_in_any_order() {
        // 4x4 slide, out 2, stride 1, distinct values per patch; one order with waits
        let boxes = grid(4, 4, 2, 1);
        let all: Vec<usize> = (0..boxes.len()).collect();
        let order = [1usize, 0, 2, 3, 6, 4, 5, 7, 8, 9, 10, 11, 15, 14, 13, 12];
        let run = |borrowed: bool| {
            let mut s = Stitcher::new(params(&boxes, &all, Size2::new(4, 4), 2)).unwrap();
            let mut rows = Vec::new();
            for &i in &order {
                let p = patch(&boxes, i, 2, i as f32 + 0.5);
                let mut emit = |r: CanvasRows| {
                    rows.push((r.y0, r.rows, r.heads.clone()));
                    Ok(())
                };
                if borrowed {
                    let view = PatchView {
                        index: p.index,
                        output_box: p.output_box,
                        heads: p
                            .heads
                            .iter()
                            .map(|h| HeadSlice {
                                channels: h.channels,
                                data: &h.data,
                            })
                            .collect(),
                    };
                    s.push_view_with(view, &mut emit).unwrap();
                } else {
                    s.push_with(p, &mut emit).unwrap();
                }
            }
            s.finish_with(|r: CanvasRows| {
                rows.push((r.y0, r.rows, r.heads.clone()));
                Ok(())
            })
            .unwrap();
            rows
        };
        let owned = run(false);
        assert_eq!(owned.iter().map(|r| r.1).sum::<usize>(), 4);
        assert_eq!(run(true), owned);
    }

    #[test]
    fn rows_are_emitted_as_soon_as_final() {
        // 4x4 slide, out 2, stride 1: bands at rows 0,1,2,3.
        let boxes = grid(4, 4, 2, 1);
        let all: Vec<usize> = (0..boxes.len()).collect();
        let mut s = Stitcher::new(params(&boxes, &all, Size2::new(4, 4), 2)).unwrap();
        let mut emitted = Vec::new();
        for i in 0..4 {
            let rows = s.push(patch(&boxes, i, 2, 1.0)).unwrap();
            // Row 0 is final once the first band (patches 0..4) is merged.
            if i < 3 {
                assert!(rows.is_empty());
            } else {
                assert_eq!(rows.len(), 1);
                assert_eq!((rows[0].y0, rows[0].rows), (0, 1));
            }
            emitted.extend(rows);
        }
        for i in 4..16 {
            emitted.extend(s.push(patch(&boxes, i, 2, 1.0)).unwrap());
        }
        let (rest, metrics) = s.finish().unwrap();
        assert!(rest.is_empty());
        assert_eq!(metrics.rows_out, 4);
        let ys: Vec<usize> = emitted.iter().map(|r| r.y0).collect();
        assert_eq!(ys, [0, 1, 2, 3]);
        assert!(emitted.iter().all(|r| r.heads[1].iter().all(|&v| v == 1.0)));
    }

    #[test]
    fn out_of_order_patches_wait() {
        let boxes = grid(4, 4, 2, 2);
        let all: Vec<usize> = (0..boxes.len()).collect();
        let budget = MemoryBudget::unlimited();
        let mut p = params(&boxes, &all, Size2::new(4, 4), 2);
        p.budget = budget.clone();
        let window = p.window_bytes();
        let mut s = Stitcher::new(p).unwrap();
        assert!(s.push(patch(&boxes, 3, 2, 1.0)).unwrap().is_empty());
        assert!(s.push(patch(&boxes, 1, 2, 1.0)).unwrap().is_empty());
        assert_eq!(s.pending_patches(), 2);
        assert_eq!(budget.used(), window + 2 * 48);
        let rows = s.push(patch(&boxes, 0, 2, 1.0)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(s.pending_patches(), 1);
        // The rows hold their bytes until dropped.
        assert_eq!(rows[0].memory.bytes(), rows[0].byte_size());
        assert_eq!(budget.used(), window + 48 + rows[0].byte_size());
        drop(rows);
        assert!(matches!(
            s.push(patch(&boxes, 0, 2, 1.0)),
            Err(StitchError::DuplicatePatch { index: 0 })
        ));
        assert!(matches!(
            s.push(patch(&boxes, 3, 2, 1.0)),
            Err(StitchError::DuplicatePatch { index: 3 })
        ));
        let err = s.finish().unwrap_err();
        assert!(
            matches!(
                err,
                StitchError::MissingPatches {
                    missing: 1,
                    selected: 4,
                    first_missing: 2
                }
            ),
            "{err}"
        );
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn bad_patches_are_errors() {
        let boxes = grid(4, 4, 2, 2);
        let mut s = Stitcher::new(params(&boxes, &[0, 1, 2], Size2::new(4, 4), 2)).unwrap();
        assert!(matches!(
            s.push(patch(&boxes, 3, 2, 1.0)),
            Err(StitchError::UnknownPatch { index: 3, .. })
        ));
        let mut p = patch(&boxes, 0, 2, 1.0);
        p.index = 99;
        assert!(matches!(
            s.push(p),
            Err(StitchError::UnknownPatch { index: 99, .. })
        ));
        let mut p = patch(&boxes, 0, 2, 1.0);
        p.output_box = [0, 0, 3, 3];
        assert!(matches!(s.push(p), Err(StitchError::BoxMismatch { .. })));
        let mut p = patch(&boxes, 0, 2, 1.0);
        p.heads.pop();
        assert!(matches!(s.push(p), Err(StitchError::HeadCount { .. })));
        let mut p = patch(&boxes, 0, 2, 1.0);
        p.heads[1].data.pop();
        let err = s.push(p).unwrap_err();
        assert!(err.to_string().contains("head 1"), "{err}");
        let mut p = patch(&boxes, 0, 2, 1.0);
        p.heads[1].channels = 3;
        assert!(matches!(s.push(p), Err(StitchError::BlockShape { .. })));
        // Nothing was merged by the bad pushes.
        assert_eq!(s.metrics().patches_in, 0);
    }

    #[test]
    fn window_refused_names_the_config_key() {
        let boxes = grid(4, 4, 2, 2);
        let mut p = params(&boxes, &[0], Size2::new(4, 4), 2);
        p.budget = MemoryBudget::with_bytes(10);
        let err = Stitcher::new(p).unwrap_err();
        assert!(err.to_string().contains("[pipeline] memory_limit"), "{err}");
    }

    #[test]
    fn wrong_patch_size_is_an_error() {
        let boxes = grid(4, 4, 2, 2);
        let plan = CanvasPlan::new(&boxes, &[0], Size2::new(4, 4)).unwrap();
        let err = StitchParams::new(
            plan,
            Size2::square(3),
            vec![HeadSpec::new("a", 1)],
            MemoryBudget::unlimited(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("3x3"), "{err}");
    }
}

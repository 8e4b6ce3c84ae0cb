//! The stitch stage as a thread body: patches in from a bounded channel, rows (or the full
//! canvas) out.
//!
//! Back-pressure: the stage blocks on `send` when the downstream channel is full, and waits for
//! memory when the rows handed out fill the budget, so it stops reading its input, whose
//! bounded channel then blocks inference. Errors end the stage: it
//! returns the error and drops both channel ends, so the producer's next `send` and the
//! consumer's next `recv` fail and they stop too.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::canvas_rows::CanvasRows;
use crate::full_canvas::{FullCanvas, FullCanvasBuilder};
use crate::patch_prediction::PredictionBatch;
use crate::probability_store::ProbabilityStore;
use crate::row_sink::{FinalRows, RowSink, Taken};
use crate::stitch_errors::StitchError;
use crate::stitcher::{StitchMetrics, Stitcher};
use crate::zarr_spill::SpillConfig;

/// What a finished stage reports.
#[derive(Debug)]
pub struct StitchReport {
    /// The stitcher's counters.
    pub metrics: StitchMetrics,
    /// Where the probability maps were saved, when asked.
    pub probabilities: Option<PathBuf>,
    /// Uncompressed bytes spilled to the temporary Zarr store (full-canvas mode).
    pub spilled_bytes: u64,
}

/// Full-canvas mode: rows go straight into the canvas (reserved) or the spill writer's
/// buffers (reserved), and into the probability store's buffers.
struct CanvasSink<'a> {
    canvas: &'a mut FullCanvasBuilder,
    store: Option<&'a mut ProbabilityStore>,
}

impl RowSink for CanvasSink<'_> {
    fn take(&mut self, rows: &mut FinalRows<'_>) -> Result<Taken, StitchError> {
        let waited = |sink: &Self| {
            sink.canvas.waited() + sink.store.as_ref().map_or(Duration::ZERO, |s| s.waited())
        };
        let before = waited(self);
        self.canvas.push_final(rows)?;
        if let Some(store) = &mut self.store {
            store.write_final(rows)?;
        }
        Ok(Taken {
            waited: waited(self).saturating_sub(before),
            items: 0,
        })
    }
}

/// Rows-streaming mode: stitch every batch from `input` and send final rows to `output` as soon
/// as they are final; save them to `probabilities` too when given. Returns when `input` is
/// closed (all senders dropped) and every row was sent.
///
/// Every [`CanvasRows`] sent holds its bytes of the budget until the consumer drops it. When the
/// next item does not fit, the stage waits for bytes to be given back (for up to
/// [`crate::StitchParams::memory_wait`] without any), so that the rows in flight stay within
/// the budget: the channel holds at most `capacity × chunk_bytes`
/// ([`crate::StitchParams::chunk_bytes`]), the consumer what it keeps, all of it reserved.
///
/// # Errors
/// Any [`Stitcher::push`] / [`Stitcher::finish`] error, a probability-store error,
/// [`StitchError::Memory`] when rows cannot be reserved (not even one row next to the window,
/// or nothing given back for `memory_wait`), or [`StitchError::OutputClosed`] when the receiver
/// of `output` hung up.
pub fn run_rows_stage(
    mut stitcher: Stitcher,
    input: &Receiver<PredictionBatch>,
    output: &Sender<CanvasRows>,
    mut probabilities: Option<ProbabilityStore>,
) -> Result<StitchReport, StitchError> {
    if let Some(store) = &mut probabilities {
        // A second store buffer only where it leaves room for the rows in flight: the channel's
        // items, one in the consumer's hands and one being made.
        let in_flight = output.capacity().unwrap_or(1) as u64 + 2;
        store.try_add_buffer(in_flight * stitcher.params().chunk_bytes());
    }
    let store_bytes = probabilities
        .as_ref()
        .map_or(0, ProbabilityStore::reserved_bytes);
    let mut emit = |rows: CanvasRows| -> Result<(), StitchError> {
        if let Some(store) = &mut probabilities {
            store.write_rows(&rows)?;
        }
        output.send(rows).map_err(|_| StitchError::OutputClosed)
    };
    for batch in input {
        tracing::trace!(patches = batch.patches.len(), "stitch batch");
        for patch in batch.patches {
            stitcher.push_reserving(patch, store_bytes, &mut emit)?;
        }
    }
    let metrics = stitcher.finish_reserving(store_bytes, &mut emit)?;
    let probabilities = probabilities.map(ProbabilityStore::finish).transpose()?;
    Ok(StitchReport {
        metrics,
        probabilities,
        spilled_bytes: 0,
    })
}

/// Full-canvas mode: stitch everything from `input` into one [`FullCanvas`] (in RAM, or spilled
/// to Zarr under `spill` when over the budget); save the maps to `probabilities` when given.
/// Rows are normalised straight into the reserved canvas or the spill writer's reserved
/// buffers; compression and writes run on the writers' own threads.
///
/// # Errors
/// As [`run_rows_stage`], plus spill errors.
pub fn run_full_canvas_stage(
    mut stitcher: Stitcher,
    input: &Receiver<PredictionBatch>,
    spill: SpillConfig,
    mut probabilities: Option<ProbabilityStore>,
) -> Result<(FullCanvas, StitchReport), StitchError> {
    let channels = stitcher.params().channels();
    let mut canvas = FullCanvasBuilder::new(
        stitcher.plan(),
        &channels,
        &stitcher.params().budget,
        &spill,
    )?;
    // Second buffers (stitching overlaps compression) where the budget has room for them.
    canvas.try_add_buffer(0);
    if let Some(store) = &mut probabilities {
        store.try_add_buffer(0);
    }
    let mut sink = CanvasSink {
        canvas: &mut canvas,
        store: probabilities.as_mut(),
    };
    for batch in input {
        tracing::trace!(patches = batch.patches.len(), "stitch batch");
        for patch in batch.patches {
            stitcher.push_into(patch, &mut sink)?;
        }
    }
    let metrics = stitcher.finish_into(&mut sink)?;
    let canvas = canvas.finish()?;
    let probabilities = probabilities.map(ProbabilityStore::finish).transpose()?;
    let report = StitchReport {
        metrics,
        probabilities,
        spilled_bytes: canvas.spilled_bytes(),
    };
    Ok((canvas, report))
}

/// A running stitch thread.
#[derive(Debug)]
pub struct StageHandle<T> {
    handle: JoinHandle<Result<T, StitchError>>,
}

impl<T> StageHandle<T> {
    /// Wait for the stage; a panic becomes [`StitchError::StagePanicked`].
    ///
    /// # Errors
    /// The stage's error, or its panic.
    pub fn join(self) -> Result<T, StitchError> {
        self.handle.join().unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StitchError::StagePanicked { message })
        })
    }
}

/// Run [`run_rows_stage`] on a thread named `mtseg-stitch`; the channel ends are owned by the
/// thread and dropped when it ends.
///
/// # Errors
/// [`StitchError::Io`] when the thread cannot be spawned.
pub fn spawn_rows_stage(
    stitcher: Stitcher,
    input: Receiver<PredictionBatch>,
    output: Sender<CanvasRows>,
    probabilities: Option<ProbabilityStore>,
) -> Result<StageHandle<StitchReport>, StitchError> {
    std::thread::Builder::new()
        .name("mtseg-stitch".into())
        .spawn(move || run_rows_stage(stitcher, &input, &output, probabilities))
        .map(|handle| StageHandle { handle })
        .map_err(|source| StitchError::Io {
            action: "spawn the stitch thread",
            path: PathBuf::new(),
            source,
        })
}

/// Run [`run_full_canvas_stage`] on a thread named `mtseg-stitch`.
///
/// # Errors
/// [`StitchError::Io`] when the thread cannot be spawned.
pub fn spawn_full_canvas_stage(
    stitcher: Stitcher,
    input: Receiver<PredictionBatch>,
    spill: SpillConfig,
    probabilities: Option<ProbabilityStore>,
) -> Result<StageHandle<(FullCanvas, StitchReport)>, StitchError> {
    std::thread::Builder::new()
        .name("mtseg-stitch".into())
        .spawn(move || run_full_canvas_stage(stitcher, &input, spill, probabilities))
        .map(|handle| StageHandle { handle })
        .map_err(|source| StitchError::Io {
            action: "spawn the stitch thread",
            path: PathBuf::new(),
            source,
        })
}

//! The stitch stage as a thread body: patches in from a bounded channel, rows (or the full
//! canvas) out.
//!
//! Back-pressure: the stage blocks on `send` when the downstream channel is full, so it stops
//! reading its input, whose bounded channel then blocks inference. Errors end the stage: it
//! returns the error and drops both channel ends, so the producer's next `send` and the
//! consumer's next `recv` fail and they stop too.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::canvas_rows::CanvasRows;
use crate::full_canvas::{FullCanvas, FullCanvasBuilder};
use crate::patch_prediction::PredictionBatch;
use crate::probability_store::ProbabilityStore;
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

/// Rows-streaming mode: stitch every batch from `input` and send final rows to `output` as soon
/// as they are final; save them to `probabilities` too when given. Returns when `input` is
/// closed (all senders dropped) and every row was sent.
///
/// # Errors
/// Any [`Stitcher::push`] / [`Stitcher::finish`] error, a probability-store error, or
/// [`StitchError::OutputClosed`] when the receiver of `output` hung up.
pub fn run_rows_stage(
    mut stitcher: Stitcher,
    input: &Receiver<PredictionBatch>,
    output: &Sender<CanvasRows>,
    mut probabilities: Option<ProbabilityStore>,
) -> Result<StitchReport, StitchError> {
    let mut emit = |rows: Vec<CanvasRows>| -> Result<(), StitchError> {
        for r in rows {
            if let Some(store) = &mut probabilities {
                store.write_rows(&r)?;
            }
            output.send(r).map_err(|_| StitchError::OutputClosed)?;
        }
        Ok(())
    };
    for batch in input {
        tracing::trace!(patches = batch.patches.len(), "stitch batch");
        emit(stitcher.push_all(batch.patches)?)?;
    }
    let (rows, metrics) = stitcher.finish()?;
    emit(rows)?;
    let probabilities = probabilities.map(ProbabilityStore::finish).transpose()?;
    Ok(StitchReport {
        metrics,
        probabilities,
        spilled_bytes: 0,
    })
}

/// Full-canvas mode: stitch everything from `input` into one [`FullCanvas`] (in RAM, or spilled
/// to Zarr under `spill` when over the budget); save the maps to `probabilities` when given.
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
    let mut keep = |rows: Vec<CanvasRows>| -> Result<(), StitchError> {
        for r in rows {
            if let Some(store) = &mut probabilities {
                store.write_rows(&r)?;
            }
            canvas.push(r)?;
        }
        Ok(())
    };
    for batch in input {
        keep(stitcher.push_all(batch.patches)?)?;
    }
    let (rows, metrics) = stitcher.finish()?;
    keep(rows)?;
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

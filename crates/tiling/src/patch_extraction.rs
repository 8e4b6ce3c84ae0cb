//! The patch-extraction stage: reads the selected patches of a slide in parallel (rayon) and sends
//! them, in grid order, as [`PatchBatch`]es on a bounded crossbeam channel. A full channel blocks
//! the reader (back-pressure from inference); a dropped receiver stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mtseg_slide::{Interpolation, ReadError, Resolution, SlideReader};
use mtseg_types::Size2;
use rayon::prelude::*;

use mtseg_types::{PatchBatch, PatchBox};

/// How patches are read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtractParams {
    /// Resolution the grid is defined at.
    pub resolution: Resolution,
    /// Resampling choice.
    pub interpolation: Interpolation,
    /// Patches per batch (at least 1).
    pub batch_size: usize,
}

/// What the stage did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExtractStats {
    /// Patches read and sent.
    pub patches: u64,
    /// Batches sent.
    pub batches: u64,
    /// Time spent reading (wall, summed over batches).
    pub busy: Duration,
}

/// Why extraction stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A patch could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The consumer hung up (it failed or was cancelled); not an error of this stage.
    #[error("the patch consumer stopped")]
    Disconnected,
}

/// Reads `patches` (grid index and box, in increasing index order) from `slide` and sends them
/// in batches of `params.batch_size`. Patches of a batch are read in parallel on the current
/// rayon pool. Returns when all are sent, the first read fails, or the receiver is dropped.
pub fn extract_patches(
    slide: &Arc<dyn SlideReader>,
    patches: &[(u64, PatchBox)],
    params: ExtractParams,
    tx: &Sender<PatchBatch>,
) -> Result<ExtractStats, ExtractError> {
    let mut stats = ExtractStats::default();
    for chunk in patches.chunks(params.batch_size.max(1)) {
        let started = Instant::now();
        let batch = read_batch(slide.as_ref(), chunk, params)?;
        stats.busy += started.elapsed();
        stats.patches += batch.len() as u64;
        stats.batches += 1;
        tracing::debug!(
            first = batch.indices[0],
            n = batch.len(),
            "patch batch read"
        );
        tx.send(batch).map_err(|_| ExtractError::Disconnected)?;
    }
    Ok(stats)
}

/// Reads one batch of patches in parallel.
pub fn read_batch(
    slide: &dyn SlideReader,
    chunk: &[(u64, PatchBox)],
    params: ExtractParams,
) -> Result<PatchBatch, ReadError> {
    let Some((_, first)) = chunk.first() else {
        return Ok(PatchBatch {
            indices: Vec::new(),
            boxes: Vec::new(),
            patch: Size2::new(0, 0),
            pixels: Vec::new(),
        });
    };
    let patch = Size2::new(
        (first.input[2] - first.input[0]) as u64,
        (first.input[3] - first.input[1]) as u64,
    );
    let images: Vec<_> = chunk
        .par_iter()
        .map(|(_, b)| slide.read_region(b.input, params.resolution, params.interpolation))
        .collect::<Result<_, _>>()?;
    let mut pixels = Vec::with_capacity(images.len() * (patch.width * patch.height * 3) as usize);
    for img in &images {
        pixels.extend_from_slice(img.as_raw());
    }
    Ok(PatchBatch {
        indices: chunk.iter().map(|(i, _)| *i).collect(),
        boxes: chunk.iter().map(|(_, b)| *b).collect(),
        patch,
        pixels,
    })
}

//! Patch reads: one batch of selected patches read from a slide in parallel (rayon), as a
//! [`PatchBatch`]. The stage loop that calls it (batches in grid order on a bounded channel, with
//! cancellation and timing) is the pipeline's reader stage.

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
    /// Patches per batch (at least 1): how the caller cuts the selected patches into the
    /// chunks it passes to [`read_batch`].
    pub batch_size: usize,
}

/// Reads the patches of `chunk` (grid index and box, in increasing index order) from `slide`,
/// in parallel on the current rayon pool, at `params.resolution` with `params.interpolation`;
/// the batch keeps the order of `chunk`. An empty chunk gives an empty batch.
///
/// # Errors
/// The first patch that cannot be read.
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

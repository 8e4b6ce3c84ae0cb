//! Patch reads: one batch of selected patches read from a slide as a [`PatchBatch`], with one
//! read of the slide data the batch's patches share ([`SlideReader::read_regions`]: patches of a
//! grid row overlap by `patch - stride` px, so reading each alone read a batch's pixels ~1.5
//! times for 8 patches of 256 px every 164 px), in parallel (rayon). The stage loop that calls it
//! (batches in grid order on a bounded channel, with cancellation and timing) is the pipeline's
//! reader stage.

use mtseg_slide::{Interpolation, ReadError, Resolution, SlideReader};
use mtseg_types::Size2;

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

/// Reads the patches of `chunk` (grid index and box, in increasing index order) from `slide`
/// at `params.resolution` with `params.interpolation`, each exactly as
/// [`SlideReader::read_region`] reads it: neighbouring patches (a grid row's) are read as their
/// union once, in pieces along the slide's tiles in parallel on the current rayon pool, then cut
/// and resampled in parallel ([`SlideReader::read_regions`]). The batch keeps the order of
/// `chunk`. An empty chunk gives an empty batch.
///
/// # Errors
/// The first patch box that is invalid, or a read that failed (naming the slide).
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
    let boxes: Vec<[i64; 4]> = chunk.iter().map(|(_, b)| b.input).collect();
    let images = slide.read_regions(&boxes, params.resolution, params.interpolation)?;
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

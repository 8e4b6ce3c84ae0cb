//! Full-canvas mode: keep every final row until the end (TIAToolbox's full post-processing mode
//! needs the whole canvas), in RAM when the budget allows, else in a temporary Zarr store.
//!
//! The choice is made once, up front, from the canvas size: the whole canvas
//! (`H × W × ΣC × 4` bytes) is reserved at [`FullCanvasBuilder::new`]; when that is refused the
//! canvas goes to Zarr from its first row, through one or two reserved shard-row buffers that
//! the stitcher normalises into and a writer thread compresses and writes.
//! ```text
//! canvas fits:        rows -> [RAM chunks, reserved up front] -> FullCanvas::read_region
//! canvas does not:    rows -> [shard row buffers, reserved] -> writer thread -> Zarr
//!                                                           -> FullCanvas::read_region
//! ```
//! Deciding up front means the canvas never competes with the stitch window or waiting patches
//! for the budget half-way through a slide. Reads return the same bytes either way (float32 values
//! are stored losslessly).

use std::time::Duration;

use crate::canvas_plan::CanvasPlan;
use crate::canvas_rows::CanvasRows;
use crate::memory_budget::{HeldMemory, MemoryBudget, MemoryReservation};
use crate::row_sink::FinalRows;
use crate::stitch_errors::StitchError;
use crate::zarr_spill::{SpillConfig, SpilledCanvas};

/// A rectangle of the canvas, every head.
#[derive(Debug, Clone, PartialEq)]
pub struct CanvasRegion {
    /// Canvas `[x0, y0, x1, y1]` (exclusive max).
    pub region: [usize; 4],
    /// Channels per head.
    pub channels: Vec<usize>,
    /// Per head: `height × width × channels` values, row-major, channels last.
    pub heads: Vec<Vec<f32>>,
}

#[derive(Debug)]
enum Storage {
    Ram(Vec<CanvasRows>),
    Zarr(Box<SpilledCanvas>),
}

/// Collects final rows into the whole canvas, in RAM or spilled to Zarr.
#[derive(Debug)]
pub struct FullCanvasBuilder {
    canvas_size: [usize; 2],
    origin: [u64; 2],
    channels: Vec<usize>,
    next_y: usize,
    storage: Storage,
    /// The whole canvas in RAM mode; none when spilled (the writer holds its buffer's).
    reservation: Option<MemoryReservation>,
}

impl FullCanvasBuilder {
    /// A builder for the canvas of `plan` with `channels` per head: in RAM when the whole canvas
    /// fits `budget`, else in a new temporary Zarr store under `spill.dir`.
    ///
    /// # Errors
    /// The spill store cannot be made, or its one-shard-row buffer does not fit `budget`.
    pub fn new(
        plan: &CanvasPlan,
        channels: &[usize],
        budget: &MemoryBudget,
        spill: &SpillConfig,
    ) -> Result<Self, StitchError> {
        let canvas_size = plan.canvas_size();
        let [width, height] = canvas_size;
        let canvas_bytes = (width * height * channels.iter().sum::<usize>() * 4) as u64;
        let (storage, reservation) =
            match budget.try_reserve(canvas_bytes, "the full stitched canvas") {
                Ok(reservation) => (Storage::Ram(Vec::new()), Some(reservation)),
                Err(refused) => {
                    let row_step = plan.row_step();
                    let buffer = budget.try_reserve(
                        spill.buffer_bytes(canvas_size, channels, row_step),
                        "the canvas spill writer's shard row buffer",
                    )?;
                    let spilled =
                        SpilledCanvas::create(spill, canvas_size, channels, row_step, buffer)?;
                    tracing::debug!(
                        path = %spilled.store_path().display(),
                        canvas_bytes,
                        limit = refused.limit,
                        "full canvas over the memory budget: spilling to zarr"
                    );
                    (Storage::Zarr(Box::new(spilled)), None)
                }
            };
        Ok(Self {
            canvas_size,
            origin: plan.origin(),
            channels: channels.to_vec(),
            next_y: 0,
            storage,
            reservation,
        })
    }

    /// Whether the canvas goes to disk.
    #[must_use]
    pub fn is_spilled(&self) -> bool {
        matches!(self.storage, Storage::Zarr(_))
    }

    /// Add the next rows (top to bottom, as the stitcher emits them). Their budget bytes
    /// ([`CanvasRows::memory`]) are given back: the canvas reservation (or the spill buffer)
    /// holds them from now on.
    ///
    /// # Errors
    /// Rows out of order or of another shape; a failing spill write.
    pub fn push(&mut self, mut rows: CanvasRows) -> Result<(), StitchError> {
        let [width, height] = self.canvas_size;
        if rows.y0 != self.next_y
            || rows.width != width
            || rows.y1() > height
            || rows.channels != self.channels
        {
            return Err(StitchError::RowsMismatch {
                reason: format!(
                    "got rows {}..{} of width {}; expected rows from {} of width {width}",
                    rows.y0,
                    rows.y1(),
                    rows.width,
                    self.next_y
                ),
            });
        }
        self.next_y = rows.y1();
        match &mut self.storage {
            Storage::Zarr(spilled) => spilled.push(&rows),
            Storage::Ram(chunks) => {
                drop(rows.memory.take());
                chunks.push(rows);
                Ok(())
            }
        }
    }

    /// Add the next final rows straight from the stitcher: into the reserved canvas, or
    /// normalised into the spill writer's reserved buffer (no row copy is made).
    pub(crate) fn push_final(&mut self, rows: &mut FinalRows<'_>) -> Result<(), StitchError> {
        let (y0, y1) = (rows.y0(), rows.y1());
        if y0 != self.next_y || y1 > self.canvas_size[1] {
            return Err(StitchError::RowsMismatch {
                reason: format!(
                    "got rows {y0}..{y1}; expected rows from {} (canvas height {})",
                    self.next_y, self.canvas_size[1]
                ),
            });
        }
        match &mut self.storage {
            Storage::Zarr(spilled) => {
                spilled.write_with(y0, y1, &mut |a, b, out| rows.normalise_into(a, b, out))?;
            }
            Storage::Ram(chunks) => chunks.push(rows.canvas_rows(y0, y1, HeldMemory::none())),
        }
        self.next_y = y1;
        Ok(())
    }

    /// Give the spill writer a second buffer when the budget has room for it and `headroom`
    /// bytes more (see `ZarrRowWriter::try_add_buffer`).
    pub(crate) fn try_add_buffer(&mut self, headroom: u64) -> bool {
        match &mut self.storage {
            Storage::Zarr(spilled) => spilled.try_add_buffer(headroom),
            Storage::Ram(_) => false,
        }
    }

    /// Time spent waiting for the spill writer thread.
    pub(crate) fn waited(&self) -> Duration {
        match &self.storage {
            Storage::Zarr(spilled) => spilled.waited(),
            Storage::Ram(_) => Duration::ZERO,
        }
    }

    /// All rows are in.
    ///
    /// # Errors
    /// Rows missing; the last spill write failing.
    pub fn finish(mut self) -> Result<FullCanvas, StitchError> {
        if self.next_y != self.canvas_size[1] {
            return Err(StitchError::RowsMismatch {
                reason: format!(
                    "only {} of {} canvas rows arrived",
                    self.next_y, self.canvas_size[1]
                ),
            });
        }
        if let Storage::Zarr(spilled) = &mut self.storage {
            spilled.finish()?;
        }
        Ok(FullCanvas {
            canvas_size: self.canvas_size,
            origin: self.origin,
            channels: self.channels,
            storage: self.storage,
            _reservation: self.reservation,
        })
    }
}

/// The whole stitched canvas, in RAM or spilled to a temporary Zarr store (removed on drop).
#[derive(Debug)]
pub struct FullCanvas {
    canvas_size: [usize; 2],
    origin: [u64; 2],
    channels: Vec<usize>,
    storage: Storage,
    _reservation: Option<MemoryReservation>,
}

impl FullCanvas {
    /// `[width, height]`.
    #[must_use]
    pub fn canvas_size(&self) -> [usize; 2] {
        self.canvas_size
    }

    /// Canvas origin in the slide, `[x, y]`.
    #[must_use]
    pub fn origin(&self) -> [u64; 2] {
        self.origin
    }

    /// Channels per head.
    #[must_use]
    pub fn channels(&self) -> &[usize] {
        &self.channels
    }

    /// Whether the canvas is on disk.
    #[must_use]
    pub fn is_spilled(&self) -> bool {
        matches!(self.storage, Storage::Zarr(_))
    }

    /// Uncompressed bytes written to the spill store (0 when in RAM).
    #[must_use]
    pub fn spilled_bytes(&self) -> u64 {
        match &self.storage {
            Storage::Ram(_) => 0,
            Storage::Zarr(spilled) => spilled.bytes_written(),
        }
    }

    /// Read canvas `[x0, y0, x1, y1]` (exclusive max) of every head.
    ///
    /// # Errors
    /// [`StitchError::RegionOutOfBounds`]; a failing Zarr read.
    pub fn read_region(&self, region: [usize; 4]) -> Result<CanvasRegion, StitchError> {
        let [x0, y0, x1, y1] = region;
        let [width, height] = self.canvas_size;
        if x0 > x1 || y0 > y1 || x1 > width || y1 > height {
            return Err(StitchError::RegionOutOfBounds {
                region,
                canvas_size: self.canvas_size,
            });
        }
        let heads = match &self.storage {
            Storage::Zarr(spilled) => spilled.read(region)?,
            Storage::Ram(chunks) => {
                let w = x1 - x0;
                let mut heads: Vec<Vec<f32>> = self
                    .channels
                    .iter()
                    .map(|&c| vec![0.0; (y1 - y0) * w * c])
                    .collect();
                let first = chunks.partition_point(|rows| rows.y1() <= y0);
                for rows in chunks[first..].iter().take_while(|rows| rows.y0 < y1) {
                    for y in rows.y0.max(y0)..rows.y1().min(y1) {
                        for (head, &c) in self.channels.iter().enumerate() {
                            let src =
                                &rows.heads[head][((y - rows.y0) * width + x0) * c..][..w * c];
                            heads[head][(y - y0) * w * c..][..w * c].copy_from_slice(src);
                        }
                    }
                }
                heads
            }
        };
        Ok(CanvasRegion {
            region,
            channels: self.channels.clone(),
            heads,
        })
    }
}

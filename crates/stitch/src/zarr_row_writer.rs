//! Writes canvas rows, top to bottom, into Zarr V3 arrays (one per head), sharded and zstd
//! compressed, one shard row at a time.
//!
//! Rows are gathered in a reserved buffer until a whole shard row (all shards at one shard-grid
//! y) is complete, then handed to the writer's own thread, which compresses and writes it with
//! one `store_array_subset` per head. Every shard is therefore written exactly once, by that one
//! thread: never two writers on one chunk, no read-modify-write of a finished shard.
//! The saved probability maps (`ProbabilityStore`) write through it.
//!
//! After each shard row is written, the thread records how many canvas rows are on disk in a
//! small progress file (`PROGRESS_FILE`, replaced by a rename, so it is never torn): a run
//! that is killed leaves a store whose rows up to that count are complete, and a later run can
//! continue it from there (`WriterStart`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use zarrs::array::codec::ZstdCodec;
use zarrs::array::{Array, ArrayBuilder, ArraySubset, data_type};
use zarrs::filesystem::FilesystemStore;

use crate::canvas_rows::CanvasRows;
use crate::memory_budget::MemoryReservation;
use crate::stitch_errors::StitchError;

/// Chunking and compression of the written arrays.
///
/// Defaults ([`ZarrLayout::default`]): inner chunks of 256 × 256 pixels × all channels, shards of
/// 1 × 8 inner chunks (one shard row is 256 rows high), zstd level 3, no checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZarrLayout {
    /// Inner chunk `[height, width]` in pixels (clipped to the array size).
    pub chunk: [u64; 2],
    /// Inner chunks per shard along x (a shard is one inner chunk high).
    pub shard_chunks_x: u64,
    /// zstd compression level.
    pub zstd_level: i32,
}

impl Default for ZarrLayout {
    fn default() -> Self {
        Self {
            chunk: [256, 256],
            shard_chunks_x: 8,
            zstd_level: 3,
        }
    }
}

/// One array to create.
#[derive(Debug, Clone)]
pub(crate) struct ArraySpec {
    /// Path of the array inside the store, e.g. `/probabilities/0`.
    pub(crate) path: String,
    /// Channels (the array's last dimension).
    pub(crate) channels: usize,
    /// User attributes of the array.
    pub(crate) attributes: serde_json::Map<String, serde_json::Value>,
}

/// The progress file in the store's directory: `{"durable_rows": n}`, the canvas rows whose
/// shard rows were written completely (removed when the store is finished).
pub(crate) const PROGRESS_FILE: &str = "mtseg_stitch_progress.json";

/// Record that canvas rows `0 .. rows` are on disk: write the progress file `path` through a
/// temporary file and a rename (atomic: a killed writer leaves the old or the new count).
pub(crate) fn write_progress(path: &Path, rows: usize) -> Result<(), StitchError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let io = |source| StitchError::Io {
        action: "record the probability-map rows written",
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(
        &temp,
        serde_json::json!({ "durable_rows": rows }).to_string(),
    )
    .map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

/// The rows recorded in the progress file `path`; `None` when there is none.
pub(crate) fn read_progress(path: &Path) -> Result<Option<usize>, StitchError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StitchError::Io {
                action: "read the probability-map rows written",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let rows = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("durable_rows").and_then(serde_json::Value::as_u64))
        .and_then(|rows| usize::try_from(rows).ok());
    match rows {
        Some(rows) => Ok(Some(rows)),
        None => Err(StitchError::Io {
            action: "read the probability-map rows written",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "expected {{\"durable_rows\": <rows>}}, found {:?}",
                    String::from_utf8_lossy(&text)
                ),
            ),
        }),
    }
}

/// Where a writer starts: canvas row 0 for a new store; for a store continued after a killed
/// run, the first row it will be given and the rows already on disk (a shard-row boundary, at
/// least the first row), which it takes and drops.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WriterStart {
    /// The first canvas row pushed.
    pub(crate) first_row: usize,
    /// Canvas rows `0 .. on_disk` are in the arrays already.
    pub(crate) on_disk: usize,
}

/// Where the canvas sits in the arrays.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterGeometry {
    /// Canvas `[width, height]`.
    pub(crate) canvas_size: [usize; 2],
    /// Array position of canvas pixel (0, 0), `[x, y]`.
    pub(crate) offset: [u64; 2],
}

/// Create the Zarr arrays in `store` (metadata written now; chunks as rows arrive).
pub(crate) fn create_arrays(
    store: &Arc<FilesystemStore>,
    store_path: &Path,
    specs: &[ArraySpec],
    array_size: [u64; 2],
    layout: ZarrLayout,
) -> Result<Vec<Array<FilesystemStore>>, StitchError> {
    let [h, w] = array_size;
    let chunk_h = layout.chunk[0].clamp(1, h.max(1));
    let chunk_w = layout.chunk[1].clamp(1, w.max(1));
    let shard_w = (chunk_w * layout.shard_chunks_x.max(1)).min(w.div_ceil(chunk_w) * chunk_w);
    specs
        .iter()
        .map(|spec| {
            let c = spec.channels as u64;
            let array = ArrayBuilder::new(
                vec![h, w, c],
                vec![chunk_h, shard_w, c],
                data_type::float32(),
                0.0f32,
            )
            .subchunk_shape(vec![chunk_h, chunk_w, c])
            .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(layout.zstd_level, false))])
            .dimension_names(Some(["y", "x", "channel"]))
            .attributes(spec.attributes.clone())
            .build(store.clone(), &spec.path)
            .map_err(|e| StitchError::zarr("create array", store_path.join(&spec.path[1..]), e))?;
            array
                .store_metadata()
                .map_err(|e| StitchError::zarr("write array metadata", store_path, e))?;
            Ok(array)
        })
        .collect()
}

/// The most shard-row buffers a writer uses: one being filled by the caller while the other is
/// compressed and written by the writer thread.
const MAX_BLOCKS: usize = 2;

/// Canvas rows of one shard row (or fewer), full canvas width, every head: what the caller fills
/// and the writer thread writes.
#[derive(Debug)]
struct RowBlock {
    /// Canvas row of the block's first row.
    y0: usize,
    /// Per head: rows × canvas width × channels.
    heads: Vec<Vec<f32>>,
}

/// What the writer thread shares with the writer.
#[derive(Debug)]
struct WriterShared {
    store_path: PathBuf,
    arrays: Vec<Array<FilesystemStore>>,
    channels: Vec<usize>,
    geometry: WriterGeometry,
    /// The progress file, updated after each block.
    progress: PathBuf,
}

impl WriterShared {
    /// Store the block's rows (full canvas width) of every head; the canvas row after them.
    fn write_block(&self, block: &RowBlock) -> Result<usize, StitchError> {
        let [ox, oy] = self.geometry.offset;
        let width = self.geometry.canvas_size[0];
        let rows = match (block.heads.first(), self.channels.first()) {
            (Some(head), Some(&c)) => head.len() / (width * c),
            _ => 0,
        };
        let y0 = oy + block.y0 as u64;
        for ((array, data), &c) in self.arrays.iter().zip(&block.heads).zip(&self.channels) {
            let subset = ArraySubset::new_with_ranges(&[
                y0..y0 + rows as u64,
                ox..ox + width as u64,
                0..c as u64,
            ]);
            array
                .store_array_subset(&subset, data.as_slice())
                .map_err(|e| {
                    StitchError::zarr(
                        "write rows",
                        self.store_path
                            .join(array.path().as_str().trim_start_matches('/')),
                        e,
                    )
                })?;
        }
        Ok(block.y0 + rows)
    }
}

/// The writer thread: write each block, hand its buffer back.
fn run_writer(
    shared: &WriterShared,
    jobs: &Receiver<RowBlock>,
    free: &Sender<RowBlock>,
) -> Result<(), StitchError> {
    for mut block in jobs {
        let end = shared.write_block(&block)?;
        write_progress(&shared.progress, end)?;
        block.heads.iter_mut().for_each(Vec::clear);
        // The writer may have been dropped meanwhile; the buffer is then simply freed.
        let _ = free.send(block);
    }
    Ok(())
}

/// Gathers rows into whole shard rows and has a thread of its own compress and write them.
///
/// The caller's rows are copied into a reserved shard-row buffer (a [`RowBlock`]); a full buffer
/// goes to the writer thread over a bounded channel and comes back empty once written. The
/// reservation pays for the buffers: with one ([`ZarrRowWriter::buffer_bytes`], what
/// `ProbabilityStore` reserves) the caller waits for each write; with two, filling and
/// compression overlap. One thread writes, every shard row once: never two writers on one chunk
/// or shard, no read-modify-write of a finished shard.
#[derive(Debug)]
pub(crate) struct ZarrRowWriter {
    shared: Arc<WriterShared>,
    shard_height: u64,
    /// Canvas rows received so far (the next row expected).
    next_y: usize,
    /// Rows above this are on disk already (a continued store): taken and dropped.
    on_disk: usize,
    /// The block being filled.
    current: Option<RowBlock>,
    /// Blocks allocated so far, at most `slots`.
    made: usize,
    slots: usize,
    jobs: Option<Sender<RowBlock>>,
    free: Receiver<RowBlock>,
    thread: Option<JoinHandle<Result<(), StitchError>>>,
    /// Holds the buffers (given back at [`ZarrRowWriter::finish`] or on drop).
    reservation: MemoryReservation,
}

impl ZarrRowWriter {
    /// A writer for `arrays` (as made by [`create_arrays`]) starting at `start`, recording its
    /// progress in `progress`; `reservation` holds one [`ZarrRowWriter::buffer_bytes`] or more
    /// (as many buffers as it pays for are used, at most two).
    pub(crate) fn new(
        store_path: PathBuf,
        arrays: Vec<Array<FilesystemStore>>,
        channels: Vec<usize>,
        geometry: WriterGeometry,
        reservation: MemoryReservation,
        progress: PathBuf,
        start: WriterStart,
    ) -> Result<Self, StitchError> {
        let shard_height = arrays
            .first()
            .and_then(|a| a.chunk_shape(&[0, 0, 0]).ok())
            .map_or(1, |shape| shape[0].get());
        let block_bytes =
            shard_height * (geometry.canvas_size[0] * channels.iter().sum::<usize>() * 4) as u64;
        let slots = ((reservation.size() / block_bytes.max(1)) as usize).clamp(1, MAX_BLOCKS);
        let shared = Arc::new(WriterShared {
            store_path: store_path.clone(),
            arrays,
            channels,
            geometry,
            progress,
        });
        let (jobs_tx, jobs_rx) = bounded::<RowBlock>(MAX_BLOCKS);
        let (free_tx, free_rx) = bounded::<RowBlock>(MAX_BLOCKS);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("mtseg-stitch-zarr".into())
            .spawn(move || run_writer(&thread_shared, &jobs_rx, &free_tx))
            .map_err(|source| StitchError::Io {
                action: "spawn the zarr writer thread",
                path: store_path,
                source,
            })?;
        Ok(Self {
            shared,
            shard_height,
            next_y: start.first_row,
            on_disk: start.on_disk,
            current: None,
            made: 0,
            slots,
            jobs: Some(jobs_tx),
            free: free_rx,
            thread: Some(thread),
            reservation,
        })
    }

    /// Bytes of one row buffer: one shard row of the canvas width.
    pub(crate) fn buffer_bytes(
        layout: ZarrLayout,
        array_height: u64,
        width: usize,
        channels: &[usize],
    ) -> u64 {
        let rows = layout.chunk[0].clamp(1, array_height.max(1));
        Self::shard_row_bytes(rows, width, channels)
    }

    /// Bytes of one row buffer for shards `shard_height` rows high.
    pub(crate) fn shard_row_bytes(shard_height: u64, width: usize, channels: &[usize]) -> u64 {
        shard_height * (width * channels.iter().sum::<usize>() * 4) as u64
    }

    /// Add the next rows (they must follow the rows before), copying them.
    pub(crate) fn push(&mut self, rows: &CanvasRows) -> Result<(), StitchError> {
        let [width, height] = self.shared.geometry.canvas_size;
        if rows.y0 != self.next_y
            || rows.width != width
            || rows.y1() > height
            || rows.channels != self.shared.channels
        {
            return Err(StitchError::RowsMismatch {
                reason: format!(
                    "got rows {}..{} of width {} with channels {:?}; expected rows from {} of \
                     width {width} (canvas height {height}) with channels {:?}",
                    rows.y0,
                    rows.y1(),
                    rows.width,
                    rows.channels,
                    self.next_y,
                    self.shared.channels
                ),
            });
        }
        // Rows of a continued store that are on disk already are not written again.
        let mut y = rows.y0.max(self.on_disk.min(rows.y1()));
        self.next_y = y;
        while y < rows.y1() {
            let mut block = match self.current.take() {
                Some(block) => block,
                None => {
                    let mut block = self.take_block()?;
                    block.y0 = y;
                    block
                }
            };
            let shard_end = self.shard_row_end(block.y0);
            let end = shard_end.min(rows.y1());
            for ((out, src), &c) in block.heads.iter_mut().zip(&rows.heads).zip(&rows.channels) {
                out.extend_from_slice(&src[(y - rows.y0) * width * c..(end - rows.y0) * width * c]);
            }
            y = end;
            self.next_y = y;
            if y == shard_end {
                self.submit(block)?;
            } else {
                self.current = Some(block);
            }
        }
        Ok(())
    }

    /// Write what is buffered (the last, partial shard row), wait for the writer thread, check
    /// every row arrived, and give the buffers back.
    pub(crate) fn finish(&mut self) -> Result<(), StitchError> {
        if let Some(block) = self.current.take() {
            self.submit(block)?;
        }
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            join_writer(thread)?;
        }
        let height = self.shared.geometry.canvas_size[1];
        if self.next_y != height {
            return Err(StitchError::RowsMismatch {
                reason: format!("only {} of {height} canvas rows were written", self.next_y),
            });
        }
        while self.free.try_recv().is_ok() {}
        self.reservation.shrink(u64::MAX);
        Ok(())
    }

    /// An empty buffer: a returned one, a new one while fewer than `slots` exist, else wait
    /// for the writer thread to return one.
    fn take_block(&mut self) -> Result<RowBlock, StitchError> {
        if let Ok(block) = self.free.try_recv() {
            return Ok(block);
        }
        if self.made < self.slots {
            self.made += 1;
            let width = self.shared.geometry.canvas_size[0];
            let rows = self.shard_height as usize;
            return Ok(RowBlock {
                y0: 0,
                heads: self
                    .shared
                    .channels
                    .iter()
                    .map(|&c| Vec::with_capacity(rows * width * c))
                    .collect(),
            });
        }
        match self.free.recv() {
            Ok(block) => Ok(block),
            Err(_) => Err(self.writer_failure()),
        }
    }

    /// Hand a filled buffer to the writer thread.
    fn submit(&mut self, block: RowBlock) -> Result<(), StitchError> {
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(block).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.writer_failure())
        }
    }

    /// The writer thread stopped early: its error.
    fn writer_failure(&mut self) -> StitchError {
        self.jobs = None;
        let result = match self.thread.take() {
            Some(thread) => join_writer(thread),
            None => Ok(()),
        };
        result.err().unwrap_or_else(|| StitchError::RowsMismatch {
            reason: "rows written after the writer finished".into(),
        })
    }

    /// Canvas row where the shard row holding canvas row `y` ends (clipped to the canvas).
    fn shard_row_end(&self, y: usize) -> usize {
        let geometry = &self.shared.geometry;
        let array_y = y as u64 + geometry.offset[1];
        let end = (array_y / self.shard_height + 1) * self.shard_height;
        ((end - geometry.offset[1]) as usize).min(geometry.canvas_size[1])
    }
}

impl Drop for ZarrRowWriter {
    fn drop(&mut self) {
        // Unfinished (an error upstream): stop the thread before the store may be removed.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Wait for the writer thread; a panic becomes [`StitchError::WriterPanicked`].
fn join_writer(thread: JoinHandle<Result<(), StitchError>>) -> Result<(), StitchError> {
    thread.join().unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(StitchError::WriterPanicked { message })
    })
}

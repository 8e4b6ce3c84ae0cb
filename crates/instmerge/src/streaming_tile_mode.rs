//! The streaming tile-mode driver: stitched canvas rows in (top to bottom, any chunking), final
//! instances out as soon as their tiles are post-processed and merged. It holds a window of
//! rows, not the canvas: the rows from the top of the first tile still to process to the last
//! row received.
//!
//! Checkpoint and resume: [`StreamingTileMode::checkpoint`] / [`StreamingTileMode::resume`],
//! documented on the type.

use mtseg_postproc::{LayerRegion, NpHvParams, NucleusInstance};
use mtseg_tiling::{PostprocTile, Size2};
use mtseg_types::HeadKind;

use crate::merge_checkpoint::{FORMAT, MergeCheckpoint, RunFingerprint};
use crate::merge_errors::MergeError;
use crate::tiatoolbox_compat::TiaToolboxCompat;
use crate::tile_merge::{MergeStats, MergedItem, TileMerger};
use crate::tile_mode::{CanvasMaps, LayerCut, TileMaps, process_tile_chunk};

/// Consecutive canvas rows of every map, row-major (the layout of [`CanvasMaps`]).
#[derive(Debug, Clone, Copy)]
pub struct RowChunk<'a> {
    /// First canvas row.
    pub y0: usize,
    /// Number of rows.
    pub rows: usize,
    /// Nucleus probability, `rows * width`.
    pub np: &'a [f32],
    /// Interleaved `(h, v)`, `rows * width * 2`.
    pub hv: &'a [f32],
    /// Averaged class ids, `rows * width`, when the model has a type head.
    pub tp: Option<&'a [f32]>,
    /// Averaged layer ids, `rows * width`, for HoVer-Net+.
    pub ls: Option<&'a [f32]>,
}

impl<'a> RowChunk<'a> {
    /// The chunk of `rows` canvas rows from row `y0` whose maps are `heads`, keyed by head in
    /// any order (np and hv required, tp and ls optional), as the stitcher hands them out.
    /// The map lengths are checked by [`StreamingTileMode::push_rows`].
    ///
    /// # Errors
    /// [`MergeError::MissingHead`] naming np or hv when it is absent;
    /// [`MergeError::HeadTwice`] when a head is given twice.
    pub fn from_heads(
        y0: usize,
        rows: usize,
        heads: &[(HeadKind, &'a [f32])],
    ) -> Result<Self, MergeError> {
        let mut maps: [Option<&'a [f32]>; 4] = [None; 4];
        for &(head, map) in heads {
            let slot = match head {
                HeadKind::Np => &mut maps[0],
                HeadKind::Hv => &mut maps[1],
                HeadKind::Tp => &mut maps[2],
                HeadKind::Ls => &mut maps[3],
            };
            if slot.replace(map).is_some() {
                return Err(MergeError::HeadTwice { head, y0 });
            }
        }
        let [np, hv, tp, ls] = maps;
        let required = |head: HeadKind, map: Option<&'a [f32]>| {
            map.ok_or(MergeError::MissingHead { head, y0 })
        };
        Ok(Self {
            y0,
            rows,
            np: required(HeadKind::Np, np)?,
            hv: required(HeadKind::Hv, hv)?,
            tp,
            ls,
        })
    }
}

/// What one call of [`StreamingTileMode::push_rows`] (or `finish`) hands out.
#[derive(Debug, Default)]
pub struct StreamedInstances {
    /// Final nuclei, ascending id, canvas coordinates.
    pub nuclei: Vec<MergedItem<NucleusInstance>>,
    /// Final layer polygons, ascending id (HoVer-Net+).
    pub layers: Vec<MergedItem<LayerRegion>>,
    /// No instance handed out later touches a canvas row above this one.
    pub first_open_row: usize,
    /// Tiles post-processed by this call.
    pub tiles_done: usize,
}

/// Post-processes the tiles of a layout as the canvas rows they need arrive, and merges them.
///
/// The instances and ids are exactly those of [`crate::tile_mode`] on the whole canvas with the
/// same layout, whatever the row chunking (`tests/streaming_tile_mode.rs`).
///
/// # Checkpoint and resume
///
/// Between two `push_rows` calls, [`checkpoint`](Self::checkpoint) copies the driver's state
/// into a [`MergeCheckpoint`]: how many tiles (in the driver's order, by end row) are
/// post-processed, the state of each merger (which tiles are in and whether they had
/// instances, the instances still held, the next id, the counters) and the window's first row
/// ([`MergeCheckpoint::resume_row`], the smallest top of the tiles still to process). The
/// window's rows are left out: every tile that needs them is still to process, so the resumed
/// driver reads them again. [`resume`](Self::resume) builds a driver from the same
/// arguments as `new`, checks that the checkpoint's fingerprint of those arguments matches
/// ([`MergeError::CheckpointMismatch`] otherwise) and that its state is one the driver could
/// have reached ([`MergeError::CheckpointInvalid`]), and puts the state back; its `push_rows`
/// then starts at `resume_row`. Whatever the chunking of the rows from there on, what it hands
/// out (instances, ids, `first_open_row`, `tiles_done`) continues exactly what the
/// uninterrupted driver hands out after the checkpoint; fed the rows up to the last one the
/// uninterrupted driver had received in one chunk (it hands out nothing for them), then the
/// same chunks, it gives the same results call by call.
///
/// Cost: taking a checkpoint clones the instances held, one tile row of them plus those on
/// the margin lines of crosses still to come (what [`MergeStats::peak_held`] bounds), and
/// writes one character per tile per merger. No map rows: as JSON a checkpoint is a few
/// hundred bytes per instance held plus about two bytes per tile, against
/// [`row_bytes`](Self::row_bytes) per window row for the rows it leaves out. The
/// price of resuming is reading the window's rows again (at most
/// [`max_window_rows`](Self::max_window_rows)) and post-processing nothing twice:
/// the tiles done before the checkpoint are not redone. Instances handed out before the
/// checkpoint are not in it; the caller keeps (or has written) them.
#[derive(Debug)]
pub struct StreamingTileMode {
    width: usize,
    height: usize,
    tiles: Vec<PostprocTile>,
    /// Tile indices in the order their last row arrives.
    order: Vec<usize>,
    next: usize,
    window_y0: usize,
    rows_in: usize,
    np: Vec<f32>,
    hv: Vec<f32>,
    tp: Option<Vec<f32>>,
    ls: Option<Vec<f32>>,
    np_hv: NpHvParams,
    nuclei: TileMerger<NucleusInstance>,
    layer_cut: LayerCut,
    layers: Option<TileMerger<LayerRegion>>,
    peak_window_rows: usize,
    /// The arguments of `new`, as a checkpoint records and `resume` checks them.
    run: RunFingerprint,
}

impl StreamingTileMode {
    /// A driver for a `canvas` of that size and the `tiles` of its layout (as
    /// [`mtseg_tiling::tile_layout`] gives them, or one tile covering the canvas for TIAToolbox's
    /// full-canvas mode), with or without type (`tp`) and layer (`ls`) maps.
    ///
    /// # Errors
    /// As [`TileMerger::new`].
    pub fn new(
        canvas: Size2,
        tiles: Vec<PostprocTile>,
        margin: u64,
        np_hv: NpHvParams,
        compat: TiaToolboxCompat,
        maps: [bool; 2],
    ) -> Result<Self, MergeError> {
        let run = RunFingerprint::new(canvas, &tiles, margin, &np_hv, compat, maps);
        let [width, height] = canvas.to_usize();
        let [has_tp, has_ls] = maps;
        let end_row = |t: &PostprocTile| t.bounds[3].clamp(0, height as i64) as usize;
        let mut order: Vec<usize> = (0..tiles.len()).collect();
        order.sort_by_key(|&i| (end_row(&tiles[i]), i));
        let nuclei = TileMerger::new(tiles.clone(), margin, compat)?;
        let layer_cut = LayerCut::new(has_ls, compat);
        let layers = layer_cut.merger(&tiles, margin, compat)?;
        Ok(Self {
            width,
            height,
            tiles,
            order,
            next: 0,
            window_y0: 0,
            rows_in: 0,
            np: Vec::new(),
            hv: Vec::new(),
            tp: has_tp.then(Vec::new),
            ls: has_ls.then(Vec::new),
            np_hv,
            nuclei,
            layer_cut,
            layers,
            peak_window_rows: 0,
            run,
        })
    }

    /// A driver that continues where the one that took `checkpoint` stopped. The arguments
    /// are those of [`new`](Self::new) and must be the ones that driver was built with.
    /// Feed it rows from [`MergeCheckpoint::resume_row`] on, in any chunking; what it hands
    /// out continues exactly what the first driver handed out up to the checkpoint (see
    /// [`StreamingTileMode`]).
    ///
    /// # Errors
    /// As [`new`](Self::new); [`MergeError::CheckpointMismatch`] naming what differs when the
    /// checkpoint was taken with another canvas size, tile layout, margin, maps, compat or
    /// np/hv parameters (or in another checkpoint format); [`MergeError::CheckpointInvalid`]
    /// when its state is not one the driver could have reached (an edited or damaged
    /// checkpoint).
    pub fn resume(
        canvas: Size2,
        tiles: Vec<PostprocTile>,
        margin: u64,
        np_hv: NpHvParams,
        compat: TiaToolboxCompat,
        maps: [bool; 2],
        checkpoint: MergeCheckpoint,
    ) -> Result<Self, MergeError> {
        let mut d = Self::new(canvas, tiles, margin, np_hv, compat, maps)?;
        checkpoint.check_fits(&d.run)?;
        let MergeCheckpoint {
            tiles_done,
            resume_row,
            peak_window_rows,
            nuclei,
            layers,
            ..
        } = checkpoint;
        let invalid = |what: String| MergeError::CheckpointInvalid { what };
        if tiles_done > d.tiles.len() {
            return Err(invalid(format!(
                "{tiles_done} tiles done of a layout of {}",
                d.tiles.len()
            )));
        }
        if resume_row > d.height {
            return Err(invalid(format!(
                "resume row {resume_row} is past the canvas height {}",
                d.height
            )));
        }
        if let Some(&i) = d.order[tiles_done..]
            .iter()
            .find(|&&i| d.top_row(i) < resume_row)
        {
            return Err(invalid(format!(
                "resume row {resume_row} is below the top of tile {i} at {:?}, still to process",
                d.tiles[i].bounds
            )));
        }
        d.nuclei.restore(nuclei, "nuclei")?;
        match (&mut d.layers, layers) {
            (Some(m), Some(state)) => m.restore(state, "layers")?,
            (None, None) => {}
            (Some(_), None) => {
                return Err(invalid(
                    "the layer merger state is missing but this run has layers".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "a layer merger state is present but this run has no layers".into(),
                ));
            }
        }
        let mut done = vec![false; d.tiles.len()];
        for &i in &d.order[..tiles_done] {
            done[i] = true;
        }
        let out_of_step = |i: usize| {
            d.nuclei.has_arrived(i) != done[i]
                || d.layers
                    .as_ref()
                    .is_some_and(|m| m.has_arrived(i) != done[i])
        };
        if let Some(i) = (0..d.tiles.len()).find(|&i| out_of_step(i)) {
            return Err(invalid(format!(
                "tile {i} is {} in the mergers but {} by the driver ({tiles_done} tiles done)",
                if done[i] { "not merged" } else { "merged" },
                if done[i] { "done" } else { "still to do" },
            )));
        }
        d.next = tiles_done;
        d.window_y0 = resume_row;
        d.rows_in = resume_row;
        d.peak_window_rows = peak_window_rows;
        Ok(d)
    }

    /// The driver's state now, without the rows of its window, to continue with
    /// [`resume`](Self::resume) after the process is gone (see [`StreamingTileMode`] for what
    /// it holds and costs). Take it between `push_rows` calls; rows from
    /// [`MergeCheckpoint::resume_row`] on must be fed again to the resumed driver.
    pub fn checkpoint(&self) -> MergeCheckpoint {
        MergeCheckpoint {
            format: FORMAT,
            run: self.run.clone(),
            tiles_done: self.next,
            resume_row: self.window_y0,
            peak_window_rows: self.peak_window_rows,
            nuclei: self.nuclei.state(),
            layers: self.layers.as_ref().map(TileMerger::state),
        }
    }

    /// The number of tiles of the layout.
    pub fn tile_count(&self) -> usize {
        self.tiles.len()
    }

    /// Bytes one canvas row takes in the window (all maps).
    pub fn row_bytes(&self) -> usize {
        let channels = 3 + usize::from(self.tp.is_some()) + usize::from(self.ls.is_some());
        self.width * channels * std::mem::size_of::<f32>()
    }

    /// The most rows the window can hold at once when rows arrive in chunks of at most
    /// `chunk_rows`: the tallest span from a tile's top to the end row of the last tile that
    /// must wait for it, plus one chunk. Multiply by [`row_bytes`](Self::row_bytes) to plan
    /// memory.
    pub fn max_window_rows(&self, chunk_rows: usize) -> usize {
        let clamp = |v: i64| v.clamp(0, self.height as i64) as usize;
        let mut min_top_after = usize::MAX;
        let mut span = 0;
        // walking the order backwards: the window at tile k's turn starts at the smallest top
        // among tiles k.. and ends at tile k's end row
        for &i in self.order.iter().rev() {
            let b = self.tiles[i].bounds;
            min_top_after = min_top_after.min(clamp(b[1]));
            span = span.max(clamp(b[3]).saturating_sub(min_top_after));
        }
        (span + chunk_rows).min(self.height.max(1))
    }

    /// The most rows held at once so far.
    pub fn peak_window_rows(&self) -> usize {
        self.peak_window_rows
    }

    /// Merge counters of the nuclei and (HoVer-Net+) layers.
    pub fn stats(&self) -> (MergeStats, Option<MergeStats>) {
        (
            self.nuclei.stats(),
            self.layers.as_ref().map(TileMerger::stats),
        )
    }

    /// Appends the next rows, post-processes every tile whose rows are all in (rayon, a few tiles
    /// per thread at a time), merges them and hands out what is final.
    ///
    /// # Errors
    /// [`MergeError::RowsOutOfOrder`] when `chunk.y0` is not the next row or a map has the wrong
    /// length; post-processing and merge errors naming the tile.
    pub fn push_rows(&mut self, chunk: RowChunk<'_>) -> Result<StreamedInstances, MergeError> {
        let w = self.width;
        let n = chunk.rows * w;
        let lens_ok = chunk.np.len() == n
            && chunk.hv.len() == 2 * n
            && chunk.tp.map(<[f32]>::len) == self.tp.as_ref().map(|_| n)
            && chunk.ls.map(<[f32]>::len) == self.ls.as_ref().map(|_| n);
        if chunk.y0 != self.rows_in || self.rows_in + chunk.rows > self.height || !lens_ok {
            return Err(MergeError::RowsOutOfOrder {
                expected: self.rows_in,
                got: chunk.y0,
                rows: chunk.rows,
                height: self.height,
            });
        }
        self.np.extend_from_slice(chunk.np);
        self.hv.extend_from_slice(chunk.hv);
        if let (Some(dst), Some(src)) = (&mut self.tp, chunk.tp) {
            dst.extend_from_slice(src);
        }
        if let (Some(dst), Some(src)) = (&mut self.ls, chunk.ls) {
            dst.extend_from_slice(src);
        }
        self.rows_in += chunk.rows;
        self.peak_window_rows = self.peak_window_rows.max(self.rows_in - self.window_y0);
        self.process_ready()
    }

    /// Processes the remaining tiles (all rows must be in) and hands out the last instances.
    ///
    /// # Errors
    /// [`MergeError::RowsOutOfOrder`] when rows are missing; as [`push_rows`](Self::push_rows).
    pub fn finish(mut self) -> Result<StreamedInstances, MergeError> {
        if self.rows_in != self.height {
            return Err(MergeError::RowsOutOfOrder {
                expected: self.rows_in,
                got: self.height,
                rows: 0,
                height: self.height,
            });
        }
        let mut out = self.process_ready()?;
        out.nuclei.extend(self.nuclei.finish()?);
        if let Some(layers) = self.layers {
            out.layers.extend(layers.finish()?);
        }
        out.first_open_row = self.height;
        Ok(out)
    }

    fn end_row(&self, tile: usize) -> usize {
        self.tiles[tile].bounds[3].clamp(0, self.height as i64) as usize
    }

    fn top_row(&self, tile: usize) -> usize {
        self.tiles[tile].bounds[1].clamp(0, self.height as i64) as usize
    }

    fn process_ready(&mut self) -> Result<StreamedInstances, MergeError> {
        let mut out = StreamedInstances::default();
        let ready_end = self.order[self.next..]
            .iter()
            .position(|&i| self.end_row(i) > self.rows_in)
            .map_or(self.order.len(), |p| self.next + p);
        let ready: Vec<usize> = self.order[self.next..ready_end].to_vec();
        let chunk = (2 * rayon::current_num_threads()).max(1);
        for part in ready.chunks(chunk) {
            let window = CanvasMaps {
                height: self.rows_in - self.window_y0,
                width: self.width,
                np: &self.np,
                hv: &self.hv,
                tp: self.tp.as_deref(),
                ls: self.ls.as_deref(),
            };
            let maps: Vec<TileMaps> = part
                .iter()
                .map(|&i| {
                    let b = self.tiles[i].bounds;
                    let shift = self.window_y0 as i64;
                    let mut m = TileMaps::crop(&window, [b[0], b[1] - shift, b[2], b[3] - shift]);
                    m.shift_y(self.window_y0);
                    m
                })
                .collect();
            let results =
                process_tile_chunk(&maps, part, &self.tiles, &self.np_hv, self.layer_cut)?;
            for (&i, (nuclei, layers)) in part.iter().zip(results) {
                self.nuclei.push(i, nuclei)?;
                if let Some(m) = &mut self.layers {
                    m.push(i, layers)?;
                }
            }
            out.tiles_done += part.len();
            // per part: after an error in a later part, the driver (and a checkpoint of it)
            // still records exactly the tiles merged
            self.next += part.len();
        }
        debug_assert_eq!(self.next, ready_end);
        out.nuclei = self.nuclei.drain_final();
        if let Some(m) = &mut self.layers {
            out.layers = m.drain_final();
        }
        // drop the rows no tile still to come needs
        let keep_from = self.order[self.next..]
            .iter()
            .map(|&i| self.top_row(i))
            .min()
            .unwrap_or(self.rows_in)
            .max(self.window_y0);
        let drop = keep_from.min(self.rows_in) - self.window_y0;
        if drop > 0 {
            let w = self.width;
            self.np.drain(..drop * w);
            self.hv.drain(..drop * w * 2);
            if let Some(tp) = &mut self.tp {
                tp.drain(..drop * w);
            }
            if let Some(ls) = &mut self.ls {
                ls.drain(..drop * w);
            }
            self.window_y0 += drop;
        }
        let open = [
            self.nuclei.first_open_row(),
            self.layers.as_ref().and_then(TileMerger::first_open_row),
        ]
        .into_iter()
        .flatten()
        .min()
        .map_or(self.height, |r| r.clamp(0, self.height as i64) as usize);
        out.first_open_row = open;
        Ok(out)
    }
}

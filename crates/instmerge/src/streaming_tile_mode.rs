//! The streaming tile-mode driver: stitched canvas rows in (top to bottom, any chunking), final
//! instances out as soon as their tiles are post-processed and merged. It holds a window of
//! rows, not the canvas: the rows from the top of the first tile still to process to the last
//! row received.

use mtseg_postproc::{LayerRegion, NpHvParams, NucleusInstance};
use mtseg_tiling::{PostprocTile, Size2};

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
        })
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
        }
        self.next = ready_end;
        out.nuclei = self.nuclei.drain_final();
        if let Some(m) = &mut self.layers {
            out.layers = m.drain_final();
        }
        // drop the rows no tile still to come needs
        let keep_from = self.order[self.next..]
            .iter()
            .map(|&i| self.tiles[i].bounds[1].clamp(0, self.height as i64) as usize)
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

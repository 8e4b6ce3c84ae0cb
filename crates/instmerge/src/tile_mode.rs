//! The tile-mode driver: a whole stitched canvas -> post-processing of every tile of the layout
//! (rayon, through `mtseg_postproc::postprocess_tiles`) -> [`TileMerger`]; and the full-canvas
//! mode (one post-processing call) it is compared with.

use mtseg_postproc::{
    CanvasView, LayerRegion, NpHvParams, NucleusInstance, TileInput, layer_info,
    postprocess_layers, postprocess_tiles, proc_layers,
};
use mtseg_tiling::{PostprocTile, SideFlags, Size2, TileSet, tile_layout};
use rayon::prelude::*;

use crate::{MergeError, MergeStats, MergedItem, TiaToolboxCompat, TileMerger};

/// The stitched head outputs of one whole canvas, row-major (the layout of
/// [`mtseg_postproc::CanvasView`]): `np` is `height * width`, `hv` interleaved
/// `height * width * 2`, `tp` and `ls` (HoVer-Net+ layers) optional `height * width`.
#[derive(Debug, Clone, Copy)]
pub struct CanvasMaps<'a> {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Nucleus probability.
    pub np: &'a [f32],
    /// Horizontal / vertical distance maps, interleaved.
    pub hv: &'a [f32],
    /// Averaged nucleus class ids, if the model has a type head.
    pub tp: Option<&'a [f32]>,
    /// Averaged layer ids, for HoVer-Net+.
    pub ls: Option<&'a [f32]>,
}

impl CanvasMaps<'_> {
    fn check(&self) -> Result<(), MergeError> {
        let (h, w) = (self.height, self.width);
        let maps = [
            ("np", Some(self.np.len()), 1),
            ("hv", Some(self.hv.len()), 2),
            ("tp", self.tp.map(<[f32]>::len), 1),
            ("ls", self.ls.map(<[f32]>::len), 1),
        ];
        for (map, found, channels) in maps {
            let expected = h.saturating_mul(w).saturating_mul(channels);
            if let Some(found) = found.filter(|&f| f != expected) {
                return Err(MergeError::CanvasBuffer {
                    map,
                    found,
                    expected,
                    height: h,
                    width: w,
                    channels,
                });
            }
        }
        Ok(())
    }
}

/// Parameters of a tile-mode run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileModeParams {
    /// Tile side in pixels, already rounded down to a multiple of the patch output
    /// (TIAToolbox: `floor(tile_shape / patch_output) * patch_output`, e.g. 984).
    pub tile: u64,
    /// Margin in pixels (TIAToolbox's default 128).
    pub margin: u64,
    /// HoVer-Net post-processing constants.
    pub np_hv: NpHvParams,
    /// Which TIAToolbox defects to reproduce (default: none).
    pub compat: TiaToolboxCompat,
}

impl TileModeParams {
    /// `tile` and `margin` with HoVer-Net's constants and both fixes on.
    pub fn new(tile: u64, margin: u64) -> Self {
        Self {
            tile,
            margin,
            np_hv: NpHvParams::hovernet(),
            compat: TiaToolboxCompat::OFF,
        }
    }
}

/// Final instances of one canvas, in canvas coordinates, ids in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct CanvasInstances {
    /// Nuclei (`nuclei_segmentation`).
    pub nuclei: Vec<MergedItem<NucleusInstance>>,
    /// Layer polygons (`layer_segmentation`, HoVer-Net+ only): per-tile fragments, each of the
    /// part of the canvas its tile owns (see [`TiaToolboxCompat`]`::layer_margin_rules`).
    pub layers: Vec<MergedItem<LayerRegion>>,
    /// The tiles post-processed.
    pub tiles: Vec<PostprocTile>,
    /// Merge counters for the nuclei.
    pub nuclei_stats: MergeStats,
    /// Merge counters for the layers.
    pub layer_stats: MergeStats,
}

/// The part of `bounds` inside a `width x height` canvas, `[x0, y0, x1, y1]` (may be empty).
fn clip(bounds: [i64; 4], width: usize, height: usize) -> [usize; 4] {
    let c = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    [
        c(bounds[0], width),
        c(bounds[1], height),
        c(bounds[2], width),
        c(bounds[3], height),
    ]
}

/// One tile's maps, copied out of the canvas (or out of a window of its rows).
pub(crate) struct TileMaps {
    region: [usize; 4],
    /// Rows above the canvas the maps were cropped from (a window's first row).
    y_shift: usize,
    np: Vec<f32>,
    hv: Vec<f32>,
    tp: Option<Vec<f32>>,
    ls: Option<Vec<f32>>,
}

impl TileMaps {
    pub(crate) fn crop(canvas: &CanvasMaps<'_>, bounds: [i64; 4]) -> Self {
        let region = clip(bounds, canvas.width, canvas.height);
        let [x0, y0, x1, y1] = region;
        let w = canvas.width;
        let rows = |map: &[f32], ch: usize| -> Vec<f32> {
            (y0..y1.max(y0))
                .flat_map(|y| &map[(y * w + x0) * ch..(y * w + x1.max(x0)) * ch])
                .copied()
                .collect()
        };
        Self {
            region,
            y_shift: 0,
            np: rows(canvas.np, 1),
            hv: rows(canvas.hv, 2),
            tp: canvas.tp.map(|m| rows(m, 1)),
            ls: canvas.ls.map(|m| rows(m, 1)),
        }
    }

    /// Marks the maps as cropped from a window whose first row is canvas row `y`.
    pub(crate) fn shift_y(&mut self, y: usize) {
        self.y_shift = y;
    }

    fn is_empty(&self) -> bool {
        self.region[2] <= self.region[0] || self.region[3] <= self.region[1]
    }

    fn view(&self) -> Result<CanvasView<'_>, mtseg_postproc::PostprocError> {
        let [x0, y0, x1, y1] = self.region;
        let mut v = CanvasView::new(y1 - y0, x1 - x0, &self.np, &self.hv)?;
        if let Some(tp) = &self.tp {
            v = v.with_types(tp)?;
        }
        if let Some(ls) = &self.ls {
            v = v.with_layers(ls)?;
        }
        Ok(v)
    }

    fn offset(&self) -> [i32; 2] {
        [
            self.region[0] as i32,
            (self.region[1] + self.y_shift) as i32,
        ]
    }
}

/// One tile's nuclei and layer polygons.
pub(crate) type TileInstances = (Vec<NucleusInstance>, Vec<LayerRegion>);

/// How a tile's layer polygons are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerCut {
    /// No layers (no `ls` map).
    None,
    /// TIAToolbox: the polygons of the whole tile, for the nucleus margin rules to filter.
    MarginRules,
    /// Ours: the polygons of the part of the canvas the tile owns in TIAToolbox's dense
    /// tile-mode layer map (its bounds less those of every later tile), kept as they are.
    Owned,
}

impl LayerCut {
    /// The cut for a canvas with (`has_ls`) or without a layer map.
    pub(crate) fn new(has_ls: bool, compat: TiaToolboxCompat) -> Self {
        match (has_ls, compat.layer_margin_rules) {
            (false, _) => Self::None,
            (true, true) => Self::MarginRules,
            (true, false) => Self::Owned,
        }
    }

    /// The merger of the layer polygons of `tiles`, if there are layers.
    pub(crate) fn merger(
        self,
        tiles: &[PostprocTile],
        margin: u64,
        compat: TiaToolboxCompat,
    ) -> Result<Option<TileMerger<LayerRegion>>, MergeError> {
        Ok(match self {
            Self::None => None,
            Self::MarginRules => Some(TileMerger::new(tiles.to_vec(), margin, compat)?),
            Self::Owned => Some(TileMerger::without_rules(tiles.to_vec())?),
        })
    }
}

/// The boxes of the tiles that come after tile `i` in TIAToolbox's merge order (tile set, then
/// index) and overlap it: in the dense tile-mode layer map, their pixels overwrite tile `i`'s.
pub(crate) fn later_overlaps(tiles: &[PostprocTile], i: usize) -> Vec<[i64; 4]> {
    let b = tiles[i].bounds;
    tiles
        .iter()
        .enumerate()
        .filter(|&(j, t)| {
            let o = t.bounds;
            (t.set, j) > (tiles[i].set, i)
                && o[0] < b[2]
                && b[0] < o[2]
                && o[1] < b[3]
                && b[1] < o[3]
        })
        .map(|(_, t)| t.bounds)
        .collect()
}

/// The layer polygons of the part of the tile map `m` (tile `i`) that the tile owns.
fn owned_layers(
    m: &TileMaps,
    tiles: &[PostprocTile],
    i: usize,
) -> Result<Vec<LayerRegion>, mtseg_postproc::PostprocError> {
    let [x0, y0, x1, y1] = m.region;
    let (h, w) = (y1 - y0, x1 - x0);
    let ls = m.ls.as_deref().unwrap_or_default();
    let mut map = proc_layers(ls, h, w)?;
    let [ox, oy] = m.offset().map(i64::from);
    for r in later_overlaps(tiles, i) {
        // in tile-map coordinates, clipped to the map
        let cx = |v: i64| (v - ox).clamp(0, w as i64) as usize;
        let cy = |v: i64| (v - oy).clamp(0, h as i64) as usize;
        let (ax, bx) = (cx(r[0]), cx(r[2]));
        for row in cy(r[1])..cy(r[3]) {
            map[row * w + ax..row * w + bx].fill(0);
        }
    }
    layer_info(&map, h, w, m.offset())
}

/// Post-processes the cropped `maps` of the tiles `part` (indices into `tiles`) on the rayon
/// pool: per tile its nuclei and its layer polygons (none with [`LayerCut::None`]), in canvas
/// coordinates.
pub(crate) fn process_tile_chunk(
    maps: &[TileMaps],
    part: &[usize],
    tiles: &[PostprocTile],
    np_hv: &NpHvParams,
    layers: LayerCut,
) -> Result<Vec<TileInstances>, MergeError> {
    let postproc_err = |k: usize| {
        let bounds = tiles[part[k]].bounds;
        move |source| MergeError::Postproc { bounds, source }
    };
    let mut inputs = Vec::new();
    let mut slot = Vec::new();
    for (k, m) in maps.iter().enumerate() {
        if !m.is_empty() {
            slot.push(k);
            inputs.push(TileInput {
                view: m.view().map_err(postproc_err(k))?,
                offset: m.offset(),
            });
        }
    }
    let mut outs: Vec<TileInstances> = vec![(Vec::new(), Vec::new()); part.len()];
    for (k, r) in slot.iter().zip(postproc_tiles_checked(&inputs, np_hv)) {
        outs[*k].0 = r.map_err(postproc_err(*k))?.instances;
    }
    if layers != LayerCut::None {
        let regions: Vec<Result<Vec<LayerRegion>, MergeError>> = maps
            .par_iter()
            .enumerate()
            .map(|(k, m)| {
                if m.is_empty() {
                    return Ok(Vec::new());
                }
                if layers == LayerCut::Owned {
                    return owned_layers(m, tiles, part[k]).map_err(postproc_err(k));
                }
                let v = m.view().map_err(postproc_err(k))?;
                Ok(postprocess_layers(&v, m.offset())
                    .map_err(postproc_err(k))?
                    .regions)
            })
            .collect();
        for (out, r) in outs.iter_mut().zip(regions) {
            out.1 = r?;
        }
    }
    Ok(outs)
}

/// Post-processes `tiles` of `canvas` in chunks of a few tiles per rayon thread and merges them.
fn run_tiles(
    canvas: &CanvasMaps<'_>,
    tiles: Vec<PostprocTile>,
    margin: u64,
    np_hv: &NpHvParams,
    compat: TiaToolboxCompat,
) -> Result<CanvasInstances, MergeError> {
    canvas.check()?;
    let _span = tracing::debug_span!("tile_mode", tiles = tiles.len()).entered();
    let mut nuclei_merger = TileMerger::new(tiles.clone(), margin, compat)?;
    let cut = LayerCut::new(canvas.ls.is_some(), compat);
    let mut layer_merger = cut.merger(&tiles, margin, compat)?;
    let mut nuclei = Vec::new();
    let mut layers = Vec::new();
    let chunk = (2 * rayon::current_num_threads()).max(1);
    let indices: Vec<usize> = (0..tiles.len()).collect();
    for part in indices.chunks(chunk) {
        // memory: one chunk of tile copies at a time
        let maps: Vec<TileMaps> = part
            .par_iter()
            .map(|&i| TileMaps::crop(canvas, tiles[i].bounds))
            .collect();
        let outs = process_tile_chunk(&maps, part, &tiles, np_hv, cut)?;
        for (&i, (inst, regions)) in part.iter().zip(outs) {
            nuclei_merger.push(i, inst)?;
            if let Some(m) = &mut layer_merger {
                m.push(i, regions)?;
            }
        }
        nuclei.extend(nuclei_merger.drain_final());
        if let Some(m) = &mut layer_merger {
            layers.extend(m.drain_final());
        }
    }
    let nuclei_stats = nuclei_merger.stats();
    nuclei.extend(nuclei_merger.finish()?);
    let mut layer_stats = MergeStats::default();
    if let Some(m) = layer_merger {
        layer_stats = m.stats();
        layers.extend(m.finish()?);
    }
    Ok(CanvasInstances {
        nuclei,
        layers,
        tiles,
        nuclei_stats,
        layer_stats,
    })
}

fn postproc_tiles_checked(
    inputs: &[TileInput<'_>],
    np_hv: &NpHvParams,
) -> Vec<Result<mtseg_postproc::NucleiOutput, mtseg_postproc::PostprocError>> {
    if inputs.is_empty() {
        return Vec::new();
    }
    postprocess_tiles(inputs, np_hv)
}

/// TIAToolbox's tile mode on a whole stitched canvas: the tiles of
/// [`tile_layout`] over the canvas (or over `params.compat.grid_extent`), each post-processed on
/// the rayon pool, merged by [`TileMerger`]. When the canvas has an `ls` map, each tile's layer
/// polygons are those of the part of the canvas it owns in TIAToolbox's dense tile-mode layer
/// map (or, with `compat.layer_margin_rules`, TIAToolbox's whole-tile polygons through the
/// margin rules).
///
/// # Errors
/// [`MergeError::ZeroTile`], [`MergeError::CanvasBuffer`] for a map of the wrong length,
/// [`MergeError::Layout`], [`MergeError::Postproc`] naming the tile that failed.
pub fn tile_mode(
    canvas: &CanvasMaps<'_>,
    params: &TileModeParams,
) -> Result<CanvasInstances, MergeError> {
    if params.tile == 0 {
        return Err(MergeError::ZeroTile);
    }
    let extent = params
        .compat
        .grid_extent
        .unwrap_or(Size2::new(canvas.width as u64, canvas.height as u64));
    let tiles = tile_layout(extent, params.tile, params.margin, |_| true)?;
    run_tiles(canvas, tiles, params.margin, &params.np_hv, params.compat)
}

/// The full-canvas mode: one post-processing call on the whole canvas, ids in the same
/// row-major order as [`tile_mode`]'s.
///
/// # Errors
/// [`MergeError::CanvasBuffer`], [`MergeError::Postproc`].
pub fn full_canvas_mode(
    canvas: &CanvasMaps<'_>,
    np_hv: &NpHvParams,
) -> Result<CanvasInstances, MergeError> {
    let tiles = if canvas.width == 0 || canvas.height == 0 {
        Vec::new()
    } else {
        vec![PostprocTile {
            set: TileSet::Full,
            bounds: [0, 0, canvas.width as i64, canvas.height as i64],
            flags: SideFlags::NONE,
        }]
    };
    run_tiles(canvas, tiles, 0, np_hv, TiaToolboxCompat::OFF)
}

/// TIAToolbox's dense tile-mode layer map (the semantic task's `predictions` as
/// `_update_tile_based_predictions_array` fills it): each tile of the layout of a
/// `canvas`-sized map (tile side `tile`, margin `margin`, every tile kept) cleans its crop
/// of `ls` with [`proc_layers`] and overwrites its bounds, in layout order (full tiles, then
/// strips, then crosses). The tile-mode layer polygons partition exactly this map (see
/// [`TiaToolboxCompat`]`::layer_margin_rules`); tests and tools use it as the reference. One
/// `u8` class per pixel, row-major.
///
/// # Errors
/// [`MergeError::Layout`] for an impossible layout; [`MergeError::Postproc`] when a tile's
/// layer post-processing fails (e.g. `ls` shorter than the canvas).
pub fn dense_tile_layer_map(
    ls: &[f32],
    canvas: Size2,
    tile: u64,
    margin: u64,
) -> Result<Vec<u8>, MergeError> {
    let [w_all, h_all] = canvas.to_usize();
    let mut out = vec![0u8; w_all * h_all];
    for t in tile_layout(canvas, tile, margin, |_| true)? {
        let c = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
        let [x0, y0, x1, y1] = [
            c(t.bounds[0], w_all),
            c(t.bounds[1], h_all),
            c(t.bounds[2], w_all),
            c(t.bounds[3], h_all),
        ];
        let (w, h) = (x1 - x0, y1 - y0);
        let crop: Vec<f32> = (y0..y1)
            .flat_map(|y| ls.get(y * w_all + x0..y * w_all + x1).unwrap_or_default())
            .copied()
            .collect();
        let map = proc_layers(&crop, h, w).map_err(|source| MergeError::Postproc {
            bounds: t.bounds,
            source,
        })?;
        for y in 0..h {
            out[(y0 + y) * w_all + x0..(y0 + y) * w_all + x1]
                .copy_from_slice(&map[y * w..(y + 1) * w]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_clip_at_the_canvas_edge() {
        let np: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let hv: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let c = CanvasMaps {
            height: 3,
            width: 4,
            np: &np,
            hv: &hv,
            tp: None,
            ls: None,
        };
        let t = TileMaps::crop(&c, [2, 1, 6, 5]);
        assert_eq!(t.region, [2, 1, 4, 3]);
        assert_eq!(t.np, vec![6.0, 7.0, 10.0, 11.0]);
        assert_eq!(t.hv, vec![12.0, 13.0, 14.0, 15.0, 20.0, 21.0, 22.0, 23.0]);
        assert_eq!(t.offset(), [2, 1]);
        assert!(TileMaps::crop(&c, [5, 0, 9, 3]).is_empty());
    }

    #[test]
    fn wrong_buffers_and_zero_tiles_are_errors() {
        let c = CanvasMaps {
            height: 2,
            width: 2,
            np: &[0.0; 4],
            hv: &[0.0; 7],
            tp: None,
            ls: None,
        };
        assert_eq!(
            tile_mode(&c, &TileModeParams::new(1, 0))
                .unwrap_err()
                .to_string(),
            "the canvas hv map has 7 values, expected 8 (2 x 2 x 2)"
        );
        assert!(matches!(
            tile_mode(&c, &TileModeParams::new(0, 0)),
            Err(MergeError::ZeroTile)
        ));
    }

    #[test]
    fn an_empty_canvas_has_no_instances() {
        let c = CanvasMaps {
            height: 0,
            width: 0,
            np: &[],
            hv: &[],
            tp: None,
            ls: None,
        };
        let out = full_canvas_mode(&c, &NpHvParams::hovernet()).unwrap();
        assert!(out.nuclei.is_empty() && out.tiles.is_empty());
    }
}

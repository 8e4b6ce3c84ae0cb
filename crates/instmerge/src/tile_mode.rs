//! The tile-mode driver: a whole stitched canvas -> post-processing of every tile of the layout
//! (rayon, through `mtseg_postproc::postprocess_tiles`) -> [`TileMerger`]; and the full-canvas
//! mode (one post-processing call) it is compared with.

use mtseg_postproc::{
    CanvasView, LayerRegion, NpHvParams, NucleusInstance, TileInput, postprocess_layers,
    postprocess_tiles,
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
    /// Layer polygons (`layer_segmentation`, HoVer-Net+ only; per-tile fragments).
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

/// Post-processes the cropped `maps` of the tiles `part` (indices into `tiles`) on the rayon
/// pool: per tile its nuclei and, when `layers`, its layer polygons, in canvas coordinates.
pub(crate) fn process_tile_chunk(
    maps: &[TileMaps],
    part: &[usize],
    tiles: &[PostprocTile],
    np_hv: &NpHvParams,
    layers: bool,
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
    if layers {
        let regions: Vec<Result<Vec<LayerRegion>, MergeError>> = maps
            .par_iter()
            .enumerate()
            .map(|(k, m)| {
                if m.is_empty() {
                    return Ok(Vec::new());
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
    let mut layer_merger = TileMerger::new(tiles.clone(), margin, compat)?;
    let mut nuclei = Vec::new();
    let mut layers = Vec::new();
    let chunk = (2 * rayon::current_num_threads()).max(1);
    let indices: Vec<usize> = (0..tiles.len()).collect();
    let with_layers = canvas.ls.is_some();
    for part in indices.chunks(chunk) {
        // memory: one chunk of tile copies at a time
        let maps: Vec<TileMaps> = part
            .par_iter()
            .map(|&i| TileMaps::crop(canvas, tiles[i].bounds))
            .collect();
        let outs = process_tile_chunk(&maps, part, &tiles, np_hv, with_layers)?;
        for (&i, (inst, regions)) in part.iter().zip(outs) {
            nuclei_merger.push(i, inst)?;
            if with_layers {
                layer_merger.push(i, regions)?;
            }
        }
        nuclei.extend(nuclei_merger.drain_final());
        if with_layers {
            layers.extend(layer_merger.drain_final());
        }
    }
    let nuclei_stats = nuclei_merger.stats();
    nuclei.extend(nuclei_merger.finish()?);
    let mut layer_stats = MergeStats::default();
    if with_layers {
        layer_stats = layer_merger.stats();
        layers.extend(layer_merger.finish()?);
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
/// the rayon pool, merged by [`TileMerger`]. Layers are post-processed and merged the same way
/// when the canvas has an `ls` map.
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

//! The plan of one slide, made once and used by everything that needs it: `--dry-run` prints
//! it, the run executes it, and the progress events count from it, so they always agree.
//!
//! Open the slide -> patch grid at the processing resolution -> tissue mask -> selected patches
//! -> stitched canvas (the selected output boxes plus one ring) -> post-processing tiles.
//!
//! Post-processing tiles are **not** filtered by the tissue mask: every tile of the canvas is
//! post-processed. The canvas already covers only the selected patches (and their ring), a tile
//! with no tissue in the coarse thumbnail mask can still hold nuclei predicted by a neighbouring
//! patch, and an empty tile costs one threshold of its `np` map. TIAToolbox (>= 2.0.1) drops the
//! tiles whose box has no mask pixel (README, differences).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtseg_io_config::{InputMode, MaskSpec, RunConfig, SlideInput};
use mtseg_slide::{SlideReader, TissueMask, open_slide};
use mtseg_stitch::CanvasPlan;
use mtseg_tiling::{
    PatchBox, PatchGrid, PostprocTile, SideFlags, Size2, TileSet, select_patches, tile_layout,
};

use crate::output_names::output_paths;
use crate::pipeline_errors::SlideError;
use crate::stage_params;

/// How the stitched canvas is post-processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostprocPlan {
    /// The whole canvas at once (it fits in `tile_shape`).
    FullCanvas,
    /// In tiles of `tile` px plus seam tiles.
    Tiles {
        /// Tile side (tile_shape rounded down to a multiple of the output patch).
        tile: u64,
        /// Full tiles.
        full: usize,
        /// Vertical and horizontal seam strips.
        strips: usize,
        /// Cross sections.
        crosses: usize,
    },
}

/// One output of a slide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOutput {
    /// The path.
    pub path: PathBuf,
    /// Whether something is already there.
    pub exists: bool,
}

/// What a run does with one slide: the figures `--dry-run` prints and, for a whole-slide run,
/// the layout the run executes.
#[derive(Clone)]
pub struct SlidePlan {
    /// The slide.
    pub path: PathBuf,
    /// Backend and format.
    pub format: String,
    /// Level-0 size (w, h).
    pub level0: (u64, u64),
    /// Level-0 microns per pixel, if known.
    pub mpp: Option<[f64; 2]>,
    /// Objective power, if known.
    pub objective_power: Option<f64>,
    /// Size at the processing resolution (w, h).
    pub processing: (u64, u64),
    /// Which mask, in words.
    pub mask: String,
    /// Patches in the grid.
    pub patches_total: u64,
    /// Patches that will be run.
    pub patches_selected: u64,
    /// Stitched canvas (w, h) and its origin on the slide at the processing resolution.
    pub canvas: (u64, u64, u64, u64),
    /// Post-processing.
    pub postproc: PostprocPlan,
    /// Files it would write.
    pub outputs: Vec<PlannedOutput>,
    /// What the run executes (whole-slide mode only).
    layout: Option<SlideLayout>,
}

impl std::fmt::Debug for SlidePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidePlan")
            .field("path", &self.path)
            .field("processing", &self.processing)
            .field("patches_total", &self.patches_total)
            .field("patches_selected", &self.patches_selected)
            .field("canvas", &self.canvas)
            .field("postproc", &self.postproc)
            .finish_non_exhaustive()
    }
}

impl SlidePlan {
    /// Post-processing calls the run will make (what its progress events count to): the tiles
    /// of the layout, or one per image in patch mode.
    pub fn postproc_tiles(&self) -> usize {
        self.layout.as_ref().map_or(1, |l| l.tiles.len())
    }

    /// The layout of a whole-slide run (None in patch mode).
    pub(crate) fn layout(&self) -> Option<&SlideLayout> {
        self.layout.as_ref()
    }
}

/// The opened slide, its grid, the selected patches, the canvas and the tiles.
#[derive(Clone)]
pub(crate) struct SlideLayout {
    pub(crate) slide: Arc<dyn SlideReader>,
    pub(crate) grid: PatchGrid,
    pub(crate) selected: Vec<(u64, PatchBox)>,
    pub(crate) canvas: CanvasPlan,
    pub(crate) tiles: Vec<PostprocTile>,
}

/// The tissue mask of a slide (`input`, opened as `slide`), as its manifest row or else the
/// config asks (None = no mask).
///
/// # Errors
/// [`SlideError::Mask`] when a mask file cannot be used; the slide's read errors for `auto`.
pub fn tissue_mask(
    cfg: &RunConfig,
    input: &SlideInput,
    slide: &dyn SlideReader,
) -> Result<Option<TissueMask>, SlideError> {
    match cfg.input.mask_for(input) {
        MaskSpec::None => Ok(None),
        MaskSpec::Auto => Ok(Some(TissueMask::otsu(slide)?)),
        MaskSpec::Path(pattern) => {
            let path = PathBuf::from(pattern.replace("{stem}", &input.stem()));
            TissueMask::from_image_file(&path)
                .map(Some)
                .map_err(|e| SlideError::Mask {
                    slide: slide.path().to_path_buf(),
                    mask: path,
                    reason: e.to_string(),
                })
        }
    }
}

/// Plans one slide (`input`, with its manifest's mask, mpp and stem): opens it and reads its
/// thumbnail (for the mask), nothing more.
///
/// # Errors
/// [`SlideError`] when the slide cannot be opened or read, the mask cannot be used, or the grid
/// or canvas cannot be laid out (e.g. a patch-mode image of the wrong size).
pub fn plan_slide(cfg: &RunConfig, input: &SlideInput) -> Result<SlidePlan, SlideError> {
    let path = input.path.as_path();
    let slide: Arc<dyn SlideReader> = Arc::from(open_slide(
        path,
        stage_params::slide_open_options(cfg, input),
    )?);
    let info = slide.info().clone();
    let (w, h) = slide.dimensions_at(stage_params::resolution(cfg))?;
    let outputs = output_paths(cfg, input)
        .into_iter()
        .map(|p| PlannedOutput {
            exists: p.exists(),
            path: p,
        })
        .collect();
    let base = SlidePlan {
        path: path.to_path_buf(),
        format: info.format.clone(),
        level0: info.dimensions(),
        mpp: info.mpp,
        objective_power: info.objective_power,
        processing: (w, h),
        mask: String::new(),
        patches_total: 1,
        patches_selected: 1,
        canvas: (w, h, 0, 0),
        postproc: PostprocPlan::FullCanvas,
        outputs,
        layout: None,
    };
    if cfg.input.mode == InputMode::Patch {
        check_patch_size(cfg, path, (w, h))?;
        return Ok(SlidePlan {
            mask: "none (patch mode)".into(),
            ..base
        });
    }
    let grid_err = |source| SlideError::Grid {
        slide: path.to_path_buf(),
        source,
    };
    let grid = stage_params::patch_grid(cfg, Size2::new(w, h))
        .build()
        .map_err(grid_err)?;
    let mask = tissue_mask(cfg, input, slide.as_ref())?;
    let selected =
        select_patches(&grid, mask.as_ref(), stage_params::mask_rule(cfg)).map_err(grid_err)?;
    let boxes: Vec<[i64; 4]> = grid.iter().map(|p| p.output).collect();
    let indices: Vec<usize> = selected.iter().map(|(i, _)| *i as usize).collect();
    let canvas = CanvasPlan::new(&boxes, &indices, Size2::new(w, h)).map_err(|source| {
        SlideError::Canvas {
            slide: path.to_path_buf(),
            source,
        }
    })?;
    let [cw, ch] = canvas.canvas_size().map(|v| v as u64);
    let [ox, oy] = canvas.origin();
    let (tiles, postproc) = postproc_tiles(cfg, [cw, ch]).map_err(grid_err)?;
    let mask_desc = describe_mask(cfg.input.mask_for(input), mask.as_ref());
    Ok(SlidePlan {
        mask: mask_desc,
        patches_total: grid.len(),
        patches_selected: selected.len() as u64,
        canvas: (cw, ch, ox, oy),
        postproc,
        layout: Some(SlideLayout {
            slide,
            grid,
            selected,
            canvas,
            tiles,
        }),
        ..base
    })
}

/// In patch mode every image must have exactly the model's input size.
fn check_patch_size(cfg: &RunConfig, path: &Path, (w, h): (u64, u64)) -> Result<(), SlideError> {
    let (iw, ih) = (cfg.io.patch_input.width, cfg.io.patch_input.height);
    if (w, h) == (iw, ih) {
        return Ok(());
    }
    Err(SlideError::PatchSize {
        slide: path.to_path_buf(),
        width: w,
        height: h,
        want_width: iw,
        want_height: ih,
    })
}

/// TIAToolbox's choice: the whole canvas in one post-processing call when it fits the raw
/// `tile_shape`, else tiles of `tile_shape` rounded down to a multiple of the output patch, with
/// their seam strips and crosses. No tile is dropped (see the module docs).
fn postproc_tiles(
    cfg: &RunConfig,
    [cw, ch]: [u64; 2],
) -> Result<(Vec<PostprocTile>, PostprocPlan), mtseg_tiling::GridError> {
    let raw = cfg.io.tile_shape;
    if cw <= raw.width && ch <= raw.height {
        let tiles = if cw == 0 || ch == 0 {
            Vec::new()
        } else {
            vec![PostprocTile {
                set: TileSet::Full,
                bounds: [0, 0, cw as i64, ch as i64],
                flags: SideFlags::NONE,
            }]
        };
        return Ok((tiles, PostprocPlan::FullCanvas));
    }
    let eff = cfg.io.effective_tile();
    let tile = eff.width.min(eff.height);
    let tiles = tile_layout(Size2::new(cw, ch), tile, u64::from(cfg.io.margin), |_| true)?;
    let count = |f: &dyn Fn(TileSet) -> bool| tiles.iter().filter(|t| f(t.set)).count();
    let plan = PostprocPlan::Tiles {
        tile,
        full: count(&|s| s == TileSet::Full),
        strips: count(&|s| matches!(s, TileSet::VerticalStrip | TileSet::HorizontalStrip)),
        crosses: count(&|s| s == TileSet::Cross),
    };
    Ok((tiles, plan))
}

fn describe_mask(spec: &MaskSpec, mask: Option<&TissueMask>) -> String {
    match (spec, mask) {
        (MaskSpec::None, _) => "none".to_string(),
        (MaskSpec::Auto, Some(m)) => format!(
            "auto (Otsu on the thumbnail, {}x{} px, {:.1} % tissue)",
            m.width(),
            m.height(),
            100.0 * m.tissue_pixels() as f64 / f64::from(m.width() * m.height()).max(1.0)
        ),
        (MaskSpec::Path(p), Some(m)) => format!("{p} ({}x{} px)", m.width(), m.height()),
        _ => String::new(),
    }
}

//! The plan of a run, computed without running the model (`--dry-run`): per slide, its size at
//! the processing resolution, the patches before and after the tissue mask, the stitched canvas,
//! the post-processing tiles, and the files that would be written.

use std::path::{Path, PathBuf};

use mtseg_io_config::{InputMode, MaskSpec, RunConfig};
use mtseg_slide::{SlideReader, TissueMask, open_slide};
use mtseg_stitch::CanvasPlan;
use mtseg_tiling::{Size2, TileSet, box_has_tissue, select_patches, tile_layout};

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

/// What a run would do with one slide.
#[derive(Debug, Clone, PartialEq)]
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
}

/// The tissue mask of a slide, as the config asks (None = no mask).
pub fn tissue_mask(
    cfg: &RunConfig,
    slide: &dyn SlideReader,
) -> Result<Option<TissueMask>, SlideError> {
    match &cfg.input.mask {
        MaskSpec::None => Ok(None),
        MaskSpec::Auto => Ok(Some(TissueMask::otsu(slide)?)),
        MaskSpec::Path(pattern) => {
            let stem = crate::output_names::slide_stem(slide.path());
            let path = PathBuf::from(pattern.replace("{stem}", &stem));
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

/// Plans one slide: opens it and reads its thumbnail (for the mask), nothing more.
pub fn plan_slide(cfg: &RunConfig, path: &Path) -> Result<SlidePlan, SlideError> {
    let slide = open_slide(path, stage_params::slide_open_options(cfg))?;
    let info = slide.info().clone();
    let res = stage_params::resolution(cfg);
    let (w, h) = slide.dimensions_at(res)?;
    let outputs = output_paths(cfg, path)
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
    };
    if cfg.input.mode == InputMode::Patch {
        let (iw, ih) = (cfg.io.patch_input.width, cfg.io.patch_input.height);
        if (w, h) != (iw, ih) {
            return Err(SlideError::PatchSize {
                slide: path.to_path_buf(),
                width: w,
                height: h,
                want_width: iw,
                want_height: ih,
            });
        }
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
    let mask = tissue_mask(cfg, slide.as_ref())?;
    let rule = stage_params::mask_rule(cfg);
    let selected = select_patches(&grid, mask.as_ref(), rule).map_err(grid_err)?;
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
    let tile_shape = cfg.io.tile_shape;
    let postproc = if cw > tile_shape.width || ch > tile_shape.height {
        let eff = cfg.io.effective_tile();
        let tile = eff.width.min(eff.height);
        let image = Size2::new(w, h);
        let tiles = tile_layout(Size2::new(cw, ch), tile, u64::from(cfg.io.margin), |b| {
            let on_slide = [
                b[0] + ox as i64,
                b[1] + oy as i64,
                b[2] + ox as i64,
                b[3] + oy as i64,
            ];
            mask.as_ref()
                .is_none_or(|m| box_has_tissue(on_slide, m, image, rule, 0.0))
        })
        .map_err(grid_err)?;
        let count = |f: &dyn Fn(TileSet) -> bool| tiles.iter().filter(|t| f(t.set)).count();
        PostprocPlan::Tiles {
            tile,
            full: count(&|s| s == TileSet::Full),
            strips: count(&|s| matches!(s, TileSet::VerticalStrip | TileSet::HorizontalStrip)),
            crosses: count(&|s| s == TileSet::Cross),
        }
    } else {
        PostprocPlan::FullCanvas
    };
    let mask_desc = match (&cfg.input.mask, &mask) {
        (MaskSpec::None, _) => "none".to_string(),
        (MaskSpec::Auto, Some(m)) => format!(
            "auto (Otsu on the thumbnail, {}x{} px, {:.1} % tissue)",
            m.width(),
            m.height(),
            100.0 * m.tissue_pixels() as f64 / f64::from(m.width() * m.height()).max(1.0)
        ),
        (MaskSpec::Path(p), Some(m)) => format!("{p} ({}x{} px)", m.width(), m.height()),
        _ => String::new(),
    };
    Ok(SlidePlan {
        mask: mask_desc,
        patches_total: grid.len(),
        patches_selected: selected.len() as u64,
        canvas: (cw, ch, ox, oy),
        postproc,
        ..base
    })
}

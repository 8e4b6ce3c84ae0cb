//! One canvas (or many, in parallel) -> nucleus and layer outputs: TIAToolbox's
//! `HoVerNet.postproc` / `HoVerNetPlus.postproc`.

use rayon::prelude::*;

use crate::canvas::CanvasView;
use crate::instance_info::{NucleusInstance, instance_info};
use crate::layers::{LayerRegion, layer_info, proc_layers};
use crate::np_hv_to_instances::{NpHvWorkspace, np_hv_to_instances_with};
use crate::{NpHvParams, PostprocError};

/// Nuclei of one canvas: the `nuclei_segmentation` task output.
#[derive(Debug, Clone, PartialEq)]
pub struct NucleiOutput {
    /// Canvas height.
    pub height: usize,
    /// Canvas width.
    pub width: usize,
    /// Instance label map, row-major, 0 = background (TIAToolbox's `predictions`, not offset).
    pub labels: Vec<i32>,
    /// One record per instance, ascending label (TIAToolbox's `info_dict`).
    pub instances: Vec<NucleusInstance>,
}

/// Tissue layers of one canvas: the `layer_segmentation` task output of HoVer-Net+.
#[derive(Debug, Clone, PartialEq)]
pub struct LayersOutput {
    /// Canvas height.
    pub height: usize,
    /// Canvas width.
    pub width: usize,
    /// Cleaned layer map, row-major (TIAToolbox's `predictions`).
    pub layer_map: Vec<u8>,
    /// Polygons; TIAToolbox's keys are `index + 1`.
    pub regions: Vec<LayerRegion>,
}

/// `np_hv_to_instances` then `instance_info` (with the canvas's type map, if any), with `offset`
/// (`[x, y]` of the canvas origin) added to boxes, centroids and contours.
///
/// # Errors
/// As [`np_hv_to_instances`](fn@crate::np_hv_to_instances).
pub fn postprocess_nuclei(
    view: &CanvasView<'_>,
    params: &NpHvParams,
    offset: [i32; 2],
) -> Result<NucleiOutput, PostprocError> {
    postprocess_nuclei_with(view, params, offset, &mut NpHvWorkspace::default())
}

/// [`postprocess_nuclei`] with a reusable [`NpHvWorkspace`] (the same result; what a worker
/// post-processing many tiles should call).
///
/// # Errors
/// As [`np_hv_to_instances`](fn@crate::np_hv_to_instances).
pub fn postprocess_nuclei_with(
    view: &CanvasView<'_>,
    params: &NpHvParams,
    offset: [i32; 2],
    workspace: &mut NpHvWorkspace,
) -> Result<NucleiOutput, PostprocError> {
    let labels = np_hv_to_instances_with(view, params, workspace)?;
    let instances = instance_info(&labels, view.height, view.width, view.tp, offset)?;
    Ok(NucleiOutput {
        height: view.height,
        width: view.width,
        labels,
        instances,
    })
}

/// `proc_layers` then `layer_info` on the canvas's layer map, with `offset` added.
///
/// # Errors
/// [`PostprocError::MissingMap`] when the view has no layer map.
pub fn postprocess_layers(
    view: &CanvasView<'_>,
    offset: [i32; 2],
) -> Result<LayersOutput, PostprocError> {
    let ls = view.ls.ok_or(PostprocError::MissingMap { map: "ls" })?;
    let layer_map = proc_layers(ls, view.height, view.width)?;
    let regions = layer_info(&layer_map, view.height, view.width, offset)?;
    Ok(LayersOutput {
        height: view.height,
        width: view.width,
        layer_map,
        regions,
    })
}

/// One tile to post-process: its maps and its origin on the slide canvas.
#[derive(Debug, Clone, Copy)]
pub struct TileInput<'a> {
    /// The tile's head outputs.
    pub view: CanvasView<'a>,
    /// `[x, y]` of the tile's top-left pixel, added to every coordinate.
    pub offset: [i32; 2],
}

/// [`postprocess_nuclei`] over many tiles in parallel on the current rayon pool (one
/// [`NpHvWorkspace`] per rayon task, reused across its tiles); results in input order, identical
/// to processing the tiles one by one.
pub fn postprocess_tiles(
    tiles: &[TileInput<'_>],
    params: &NpHvParams,
) -> Vec<Result<NucleiOutput, PostprocError>> {
    tiles
        .par_iter()
        .map_init(NpHvWorkspace::default, |ws, t| {
            postprocess_nuclei_with(&t.view, params, t.offset, ws)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_need_a_layer_map() {
        let v = CanvasView::new(1, 1, &[0.0], &[0.0, 0.0]).unwrap();
        assert_eq!(
            postprocess_layers(&v, [0, 0]).unwrap_err().to_string(),
            "the canvas has no ls map"
        );
    }

    #[test]
    fn tiles_keep_their_order() {
        let np = [0.0f32; 4];
        let hv = [0.0f32; 8];
        let v = CanvasView::new(2, 2, &np, &hv).unwrap();
        let tiles = [
            TileInput {
                view: v,
                offset: [0, 0],
            },
            TileInput {
                view: v,
                offset: [2, 0],
            },
        ];
        let out = postprocess_tiles(&tiles, &NpHvParams::hovernet());
        assert_eq!(out.len(), 2);
        assert!(
            out.iter()
                .all(|r| r.as_ref().is_ok_and(|o| o.instances.is_empty()))
        );
    }
}

//! HoVer-Net+ tissue layers: TIAToolbox's `HoVerNetPlus._proc_ls` and `_get_layer_info`.

use serde::{Deserialize, Serialize};

use crate::PostprocError;
use crate::canvas::{check_len, check_size, round_class_id};
use crate::contours::{ChainApprox, ContourTracer};
use crate::instance_info::{translate_bbox, translate_points};
use crate::label_components::{LabelScratch, label_4conn, remove_small_labels};
use crate::morphology::{Element, MorphScratch, close, open};

/// Epithelium components (classes >= 2, 4-connected) smaller than this are dropped.
pub const MIN_EPITHELIUM_AREA: usize = 20_000;
/// Side of the square closing/opening kernel (anchor `(10, 10)`, offsets -10..=+9).
pub const LAYER_KERNEL_SIZE: usize = 20;

/// One layer polygon: one entry of TIAToolbox's layer `info_dict` (keys are `index + 1`).
/// Serialises with serde (field names as here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRegion {
    /// `[x0, y0, x1, y1]` (max exclusive) of *all* pixels of this class, + offset (TIAToolbox
    /// computes one box per class and gives it to each of the class's polygons).
    pub bbox: [i32; 4],
    /// A border from `cv2.findContours(class_mask, RETR_TREE, CHAIN_APPROX_NONE)`, outer or hole
    /// (holes become polygons of their own, as in TIAToolbox), + offset; not closed (the first
    /// point is not repeated).
    pub contour: Vec<[i32; 2]>,
    /// Layer class id (1 other tissue, 2 basal, 3 epithelium, 4 keratin for `hovernetplus-oed`).
    pub type_id: u8,
}

impl LayerRegion {
    /// Moves the polygon by `[dx, dy]` pixels: box and every contour point, e.g. from the canvas
    /// frame to the slide frame.
    pub fn translate(&mut self, offset: [i32; 2]) {
        self.bbox = translate_bbox(self.bbox, offset);
        translate_points(&mut self.contour, offset);
    }
}

/// Cleans a HoVer-Net+ layer map as `_proc_ls`: ids rounded half-to-even; epithelium (ids >= 2)
/// components under [`MIN_EPITHELIUM_AREA`] px dropped; each of classes 3, 2, 4 (in that order,
/// later ones win) closed then opened with a 20 x 20 square; the tissue mask (ids >= 1) closed and
/// opened the same way; the result is the tissue mask (1) overwritten by the cleaned classes.
///
/// # Errors
/// [`PostprocError::BufferLength`] when `ls` does not hold `height * width` values.
pub fn proc_layers(ls: &[f32], height: usize, width: usize) -> Result<Vec<u8>, PostprocError> {
    check_size(height, width)?;
    check_len("ls", ls.len(), height, width, 1)?;
    let (h, w) = (height, width);
    let n = h * w;
    let _span = tracing::debug_span!("proc_layers", height = h, width = w).entered();
    let ids: Vec<u8> = ls.iter().map(|&v| round_class_id(v)).collect();

    let epith_all: Vec<u8> = ids.iter().map(|&v| u8::from(v >= 2)).collect();
    let mut lab = vec![0i32; n];
    let n_comp = label_4conn(&epith_all, h, w, &mut lab, &mut LabelScratch::default());
    remove_small_labels(&mut lab, n_comp, MIN_EPITHELIUM_AREA - 1, &mut Vec::new());
    let edited: Vec<u8> = ids
        .iter()
        .zip(&lab)
        .map(|(&v, &l)| if l > 0 { v } else { 0 })
        .collect();

    let el = Element::rect(LAYER_KERNEL_SIZE, LAYER_KERNEL_SIZE);
    let mut ms = MorphScratch::default();
    let mut edited_open = vec![0u8; n];
    let mut tmp = vec![0u8; n];
    for class in [3u8, 2, 4] {
        for (t, &e) in tmp.iter_mut().zip(&edited) {
            *t = u8::from(e == class);
        }
        close(&mut tmp, h, w, &el, &mut ms);
        open(&mut tmp, h, w, &el, &mut ms);
        for (o, &t) in edited_open.iter_mut().zip(&tmp) {
            if t == 1 {
                *o = class;
            }
        }
    }
    let mut out: Vec<u8> = ids.iter().map(|&v| u8::from(v >= 1)).collect();
    close(&mut out, h, w, &el, &mut ms);
    open(&mut out, h, w, &el, &mut ms);
    for (o, &e) in out.iter_mut().zip(&edited_open) {
        if (2..=4).contains(&e) {
            *o = e;
        }
    }
    Ok(out)
}

/// Layer polygons of a cleaned layer map, as `_get_layer_info(pred_layer, offset)`: for each
/// class id present (ascending, 0 excluded), every contour of its mask with at least 3 points, in
/// OpenCV's output order.
///
/// # Errors
/// [`PostprocError::BufferLength`] when `layer_map` does not hold `height * width` values.
pub fn layer_info(
    layer_map: &[u8],
    height: usize,
    width: usize,
    offset: [i32; 2],
) -> Result<Vec<LayerRegion>, PostprocError> {
    check_size(height, width)?;
    check_len("layers", layer_map.len(), height, width, 1)?;
    let (h, w) = (height, width);
    let mut present = [false; 256];
    for &v in layer_map {
        present[v as usize] = true;
    }
    let mut out = Vec::new();
    let mut tracer = ContourTracer::default();
    let mut order = Vec::new();
    for class in 1..=255u8 {
        if !present[class as usize] {
            continue;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        let (buf, stride) = tracer.reset(h, w);
        for y in 0..h {
            for x in 0..w {
                if layer_map[y * w + x] == class {
                    buf[(y + 1) * stride + x + 1] = 1;
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x);
                    y1 = y1.max(y);
                }
            }
        }
        let bbox = [
            x0 as i32 + offset[0],
            y0 as i32 + offset[1],
            x1 as i32 + 1 + offset[0],
            y1 as i32 + 1 + offset[1],
        ];
        tracer.trace_all(ChainApprox::None);
        tracer.output_order(&mut order);
        for &id in &order {
            let pts = tracer.points(id);
            if pts.len() < 3 {
                continue;
            }
            out.push(LayerRegion {
                bbox,
                contour: pts
                    .iter()
                    .map(|p| [p[0] + offset[0], p[1] + offset[1]])
                    .collect(),
                type_id: class,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_epithelium_becomes_tissue() {
        let (h, w) = (60, 60);
        let mut ls = vec![1.0f32; h * w];
        for y in 20..40 {
            for x in 20..40 {
                ls[y * w + x] = 3.0;
            }
        }
        let out = proc_layers(&ls, h, w).unwrap();
        assert!(
            out.iter().all(|&v| v == 1),
            "400 px of class 3 is under 20000 px"
        );
        let regions = layer_info(&out, h, w, [5, 7]).unwrap();
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].bbox, [5, 7, 65, 67]);
        assert_eq!(regions[0].contour[0], [5, 7]);
    }

    /// Twice the signed area (shoelace, `x` right, `y` down).
    fn signed_area2(c: &[[i32; 2]]) -> i64 {
        (0..c.len())
            .map(|i| {
                let (a, b) = (c[i], c[(i + 1) % c.len()]);
                i64::from(a[0]) * i64::from(b[1]) - i64::from(b[0]) * i64::from(a[1])
            })
            .sum()
    }

    #[test]
    fn outer_borders_and_hole_borders_turn_opposite_ways() {
        // a 30 x 30 square of class 2 with a 10 x 10 hole (class 1 inside) and one of class 0:
        // as cv2.findContours, outer borders have a negative shoelace area (y down), hole
        // borders a positive one (mtseg-export's layer map relies on it)
        let (h, w) = (40, 80);
        let mut map = vec![0u8; h * w];
        for y in 5..35 {
            for x in 5..75 {
                map[y * w + x] = 2;
            }
        }
        for y in 15..25 {
            for x in 15..25 {
                map[y * w + x] = 1;
            }
            for x in 50..60 {
                map[y * w + x] = 0;
            }
        }
        let regions = layer_info(&map, h, w, [0, 0]).unwrap();
        let summary: Vec<(u8, i64)> = regions
            .iter()
            .map(|r| (r.type_id, signed_area2(&r.contour).signum()))
            .collect();
        assert_eq!(summary, [(1, -1), (2, -1), (2, 1), (2, 1)]);
        // each hole border runs through the class-2 pixels around its hole
        assert!(regions[2..].iter().all(|r| {
            r.contour
                .iter()
                .all(|p| map[p[1] as usize * w + p[0] as usize] == 2)
        }));
    }

    #[test]
    fn translate_matches_computing_with_the_offset() {
        let (h, w) = (30, 40);
        let mut map = vec![0u8; h * w];
        for y in 5..25 {
            for x in 5..35 {
                map[y * w + x] = 2;
            }
        }
        for y in 10..15 {
            for x in 10..15 {
                map[y * w + x] = 1;
            }
        }
        let offset = layer_info(&map, h, w, [13, -6]).unwrap();
        let mut moved = layer_info(&map, h, w, [0, 0]).unwrap();
        moved.iter_mut().for_each(|r| r.translate([13, -6]));
        assert_eq!(moved, offset);
        assert_eq!(moved[0].bbox, [23, 4, 28, 9]);
        assert_eq!(moved[0].contour[0], [23, 4]);
    }

    #[test]
    fn rejects_wrong_length() {
        assert!(proc_layers(&[0.0; 5], 2, 3).is_err());
        assert!(layer_info(&[0; 7], 2, 3, [0, 0]).is_err());
    }
}

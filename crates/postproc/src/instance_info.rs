//! Per-instance records: TIAToolbox's `HoVerNet.get_instance_info`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::PostprocError;
use crate::canvas::{check_len, check_size, round_class_id};
use crate::contours::{ChainApprox, ContourTracer};

/// One nucleus, as one entry of TIAToolbox's `info_dict`. Coordinates are `(x, y)` pixels of the
/// processing resolution plus the `offset` given (the canvas/tile origin);
/// [`translate`](Self::translate) moves them (the pipeline moves final nuclei to the slide frame).
/// Serialises with serde (field names as here); through `serde_json` with its `float_roundtrip`
/// feature (on in this workspace) the floats read back bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NucleusInstance {
    /// Label of the instance in the label map (not offset).
    pub label: i32,
    /// `[x0, y0, x1, y1]`, max exclusive (`get_bounding_box` + offset).
    pub bbox: [i32; 4],
    /// `[x, y]` = `(m10 / m00, m01 / m00)` of the instance crop (`cv2.moments`) + box origin +
    /// offset, in the pixel-index frame (no +0.5).
    pub centroid: [f64; 2],
    /// The first contour of `cv2.findContours(crop, RETR_TREE, CHAIN_APPROX_SIMPLE)`: border pixel
    /// centres in OpenCV's point order and orientation, + box origin + offset; not closed (the
    /// first point is not repeated).
    pub contour: Vec<[i32; 2]>,
    /// Majority class id (`np.around(tp)`), the runner-up when the majority is background 0;
    /// `None` without a type map.
    pub type_id: Option<u32>,
    /// Pixel share of `type_id`: `count / (area + 1e-6)`; `None` without a type map.
    pub type_prob: Option<f64>,
}

impl NucleusInstance {
    /// Moves the nucleus by `[dx, dy]` pixels: box, centroid and every contour point (`label`
    /// stays), e.g. from the canvas frame to the slide frame.
    pub fn translate(&mut self, [dx, dy]: [i32; 2]) {
        self.bbox = translate_bbox(self.bbox, [dx, dy]);
        self.centroid = [
            self.centroid[0] + f64::from(dx),
            self.centroid[1] + f64::from(dy),
        ];
        translate_points(&mut self.contour, [dx, dy]);
    }
}

/// `bbox` (`[x0, y0, x1, y1]`) moved by `[dx, dy]`.
pub(crate) fn translate_bbox(bbox: [i32; 4], [dx, dy]: [i32; 2]) -> [i32; 4] {
    [bbox[0] + dx, bbox[1] + dy, bbox[2] + dx, bbox[3] + dy]
}

/// Every `[x, y]` point moved by `[dx, dy]`.
pub(crate) fn translate_points(points: &mut [[i32; 2]], [dx, dy]: [i32; 2]) {
    for p in points {
        *p = [p[0] + dx, p[1] + dy];
    }
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    label: i32,
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    area: u64,
    sum_x: u64,
    sum_y: u64,
}

impl Stats {
    fn empty(label: i32) -> Self {
        Self {
            label,
            x0: usize::MAX,
            y0: usize::MAX,
            x1: 0,
            y1: 0,
            area: 0,
            sum_x: 0,
            sum_y: 0,
        }
    }
}

/// Bounding boxes and moments of every positive label, in ascending label order.
fn label_stats(labels: &[i32], h: usize, w: usize) -> Vec<Stats> {
    let max = labels.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        return Vec::new();
    }
    // Dense table indexed by label when labels are compact (always for our own maps), else a
    // sorted table of the labels present.
    let dense = (max as u64) <= (labels.len() as u64).saturating_mul(4) + 64;
    let keys: Vec<i32> = if dense {
        Vec::new()
    } else {
        let mut k: Vec<i32> = labels.iter().copied().filter(|&l| l > 0).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    let slots = if dense { max as usize + 1 } else { keys.len() };
    let mut st: Vec<Stats> = (0..slots)
        .map(|i| Stats::empty(if dense { i as i32 } else { keys[i] }))
        .collect();
    for y in 0..h {
        for (x, &l) in labels[y * w..(y + 1) * w].iter().enumerate() {
            if l <= 0 {
                continue;
            }
            let k = if dense {
                l as usize
            } else {
                keys.binary_search(&l).expect("label collected above")
            };
            let s = &mut st[k];
            s.x0 = s.x0.min(x);
            s.y0 = s.y0.min(y);
            s.x1 = s.x1.max(x);
            s.y1 = s.y1.max(y);
            s.area += 1;
            s.sum_x += x as u64;
            s.sum_y += y as u64;
        }
    }
    st.retain(|s| s.area > 0);
    st
}

/// Per-instance records of a label map, as TIAToolbox's `get_instance_info(pred_inst, pred_type,
/// offset)`, in ascending label order.
///
/// `types` is the raw `tp` map (averaged class ids as f32), rounded here half-to-even as
/// `np.around(tp).astype(uint8)`. Labels `<= 0` are background. Instances whose first contour has
/// fewer than 3 points are left out, as TIAToolbox does (they stay in the label map). Instances
/// are processed in parallel on the current rayon pool; the result does not depend on the number
/// of threads.
///
/// Difference from TIAToolbox: its `np.unique(pred_inst)[1:]` assumes label 0 is present and drops
/// the smallest label when a canvas is covered by instances without any background pixel; we keep
/// every positive label.
///
/// # Errors
/// [`PostprocError::BufferLength`] when `labels` or `types` do not hold `height * width` values.
pub fn instance_info(
    labels: &[i32],
    height: usize,
    width: usize,
    types: Option<&[f32]>,
    offset: [i32; 2],
) -> Result<Vec<NucleusInstance>, PostprocError> {
    check_size(height, width)?;
    check_len("labels", labels.len(), height, width, 1)?;
    if let Some(t) = types {
        check_len("tp", t.len(), height, width, 1)?;
    }
    let _span = tracing::debug_span!("instance_info", height, width).entered();
    let stats = label_stats(labels, height, width);
    let out: Vec<Option<NucleusInstance>> = stats
        .par_iter()
        .map_init(ContourTracer::default, |tracer, s| {
            one_instance(labels, width, types, offset, s, tracer)
        })
        .collect();
    Ok(out.into_iter().flatten().collect())
}

fn one_instance(
    labels: &[i32],
    w: usize,
    types: Option<&[f32]>,
    offset: [i32; 2],
    s: &Stats,
    tracer: &mut ContourTracer,
) -> Option<NucleusInstance> {
    let (bw, bh) = (s.x1 + 1 - s.x0, s.y1 + 1 - s.y0);
    let (buf, stride) = tracer.reset(bh, bw);
    for y in 0..bh {
        let src = &labels[(s.y0 + y) * w + s.x0..(s.y0 + y) * w + s.x0 + bw];
        let dst = &mut buf[(y + 1) * stride + 1..(y + 1) * stride + 1 + bw];
        for (d, &l) in dst.iter_mut().zip(src) {
            *d = i32::from(l == s.label);
        }
    }
    tracer.trace_all(ChainApprox::Simple);
    let first = tracer.first_contour()?;
    if first.len() < 3 {
        return None;
    }
    let ox = s.x0 as i32 + offset[0];
    let oy = s.y0 as i32 + offset[1];
    let contour = first.iter().map(|p| [p[0] + ox, p[1] + oy]).collect();
    let m00 = s.area as f64;
    let m10 = (s.sum_x - s.area * s.x0 as u64) as f64;
    let m01 = (s.sum_y - s.area * s.y0 as u64) as f64;
    let centroid = [m10 / m00 + f64::from(ox), m01 / m00 + f64::from(oy)];
    let (type_id, type_prob) = match types {
        None => (None, None),
        Some(tp) => {
            let mut counts = [0u64; 256];
            for y in s.y0..=s.y1 {
                let row = y * w;
                for x in s.x0..=s.x1 {
                    if labels[row + x] == s.label {
                        counts[round_class_id(tp[row + x]) as usize] += 1;
                    }
                }
            }
            let (t, c) = majority_type(&counts);
            (Some(u32::from(t)), Some(c as f64 / (m00 + 1.0e-6)))
        }
    };
    Some(NucleusInstance {
        label: s.label,
        bbox: [
            s.x0 as i32 + offset[0],
            s.y0 as i32 + offset[1],
            s.x1 as i32 + 1 + offset[0],
            s.y1 as i32 + 1 + offset[1],
        ],
        centroid,
        contour,
        type_id,
        type_prob,
    })
}

/// TIAToolbox's vote: classes sorted by count (descending, ties to the lower id as numpy's
/// sorted `unique` + stable `sorted`), the first one unless it is background 0 and another class
/// is present, then the second. Returns `(class, count)`.
fn majority_type(counts: &[u64; 256]) -> (u8, u64) {
    let mut best: Option<(u8, u64)> = None;
    let mut second: Option<(u8, u64)> = None;
    for (t, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let cand = (t as u8, c);
        match best {
            None => best = Some(cand),
            Some((_, bc)) if c > bc => {
                second = best;
                best = Some(cand);
            }
            _ => match second {
                Some((_, sc)) if c <= sc => {}
                _ => second = Some(cand),
            },
        }
    }
    match (best, second) {
        (Some((0, _)), Some(s)) => s,
        (Some(b), _) => b,
        (None, _) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_prefers_count_then_lower_id_and_skips_background() {
        let mut c = [0u64; 256];
        c[2] = 5;
        c[1] = 5;
        c[3] = 2;
        assert_eq!(majority_type(&c), (1, 5));
        let mut c = [0u64; 256];
        c[0] = 9;
        c[4] = 3;
        c[2] = 3;
        assert_eq!(majority_type(&c), (2, 3));
        let mut c = [0u64; 256];
        c[0] = 9;
        assert_eq!(majority_type(&c), (0, 9));
    }

    #[test]
    fn box_centroid_contour_of_a_rectangle() {
        let (h, w) = (6, 7);
        let mut lab = vec![0; h * w];
        for y in 1..4 {
            for x in 2..6 {
                lab[y * w + x] = 1;
            }
        }
        let info = instance_info(&lab, h, w, None, [10, 20]).unwrap();
        assert_eq!(info.len(), 1);
        let n = &info[0];
        assert_eq!(n.bbox, [12, 21, 16, 24]);
        assert_eq!(n.centroid, [13.5 + 0.0, 22.0]);
        assert_eq!(n.contour, vec![[12, 21], [12, 23], [15, 23], [15, 21]]);
        assert_eq!((n.type_id, n.type_prob), (None, None));
    }

    #[test]
    fn translate_moves_box_centroid_and_contour_but_not_the_label() {
        let (h, w) = (6, 7);
        let mut lab = vec![0; h * w];
        for y in 1..4 {
            for x in 2..6 {
                lab[y * w + x] = 3;
            }
        }
        let at_origin = instance_info(&lab, h, w, Some(&vec![1.0; h * w]), [0, 0]).unwrap();
        let offset = instance_info(&lab, h, w, Some(&vec![1.0; h * w]), [-4, 9]).unwrap();
        let mut moved = at_origin[0].clone();
        moved.translate([-4, 9]);
        assert_eq!(
            moved, offset[0],
            "translate matches computing with the offset"
        );
        assert_eq!(moved.label, 3);
        assert_eq!(moved.bbox, [-2, 10, 2, 13]);
        assert_eq!(moved.centroid, [-0.5, 11.0]);
        assert_eq!(moved.contour, vec![[-2, 10], [-2, 12], [1, 12], [1, 10]]);
        moved.translate([4, -9]);
        assert_eq!(moved, at_origin[0], "and back");
    }

    #[test]
    fn full_cover_keeps_every_label() {
        // TIAToolbox would drop label 1 here (no background); we keep it (documented difference)
        let lab = vec![1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2];
        let info = instance_info(&lab, 3, 6, None, [0, 0]).unwrap();
        assert_eq!(info.iter().map(|n| n.label).collect::<Vec<_>>(), vec![1, 2]);
    }
}

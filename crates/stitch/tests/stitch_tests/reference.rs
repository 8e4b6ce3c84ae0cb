//! Two independent references, written from TIAToolbox's source rather than from this crate:
//! a literal port of `infer_wsi`'s stitching (valid for `out/2 <= stride <= out`) and a
//! whole-canvas stitch with the same definition for every stride.

use std::collections::HashMap;

use mtseg_stitch::PatchPrediction;

/// A stitched canvas: size `[w, h]`, origin `[x, y]`, per head `h × w × c` values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Canvas {
    pub(crate) size: [usize; 2],
    pub(crate) origin: [u64; 2],
    pub(crate) heads: Vec<Vec<f32>>,
}

impl Canvas {
    /// Bit patterns, so that comparisons are bytewise (NaN == NaN, 0.0 != -0.0).
    pub(crate) fn bits(&self) -> Vec<Vec<u32>> {
        self.heads
            .iter()
            .map(|h| h.iter().map(|v| v.to_bits()).collect())
            .collect()
    }
}

/// `get_full_output_locs_inside_mask`: inside boxes (grid order), origin, masked shape `[w, h]`.
pub(crate) fn inside_mask(
    boxes: &[[i64; 4]],
    selected: &[usize],
    slide: [usize; 2],
) -> (Vec<usize>, [i64; 2], [usize; 2]) {
    let mb = [
        selected.iter().map(|&i| boxes[i][0]).min().unwrap(),
        selected.iter().map(|&i| boxes[i][1]).min().unwrap(),
        selected.iter().map(|&i| boxes[i][2]).max().unwrap(),
        selected.iter().map(|&i| boxes[i][3]).max().unwrap(),
    ];
    let inside: Vec<usize> = (0..boxes.len())
        .filter(|&i| {
            let [sx, sy, ex, ey] = boxes[i];
            !(ex < mb[0] || sx > mb[2] || ey < mb[1] || sy > mb[3])
        })
        .collect();
    let min_x = inside.iter().map(|&i| boxes[i][0]).min().unwrap();
    let min_y = inside.iter().map(|&i| boxes[i][1]).min().unwrap();
    let max_x = inside.iter().map(|&i| boxes[i][2]).max().unwrap();
    let max_y = inside.iter().map(|&i| boxes[i][3]).max().unwrap();
    let (w, h) = (slide[0] as i64, slide[1] as i64);
    let pad_right = (w - max_x).max(0);
    let pad_bottom = (h - max_y).max(0);
    (
        inside,
        [min_x, min_y],
        [
            (w - min_x - pad_right) as usize,
            (h - min_y - pad_bottom) as usize,
        ],
    )
}

/// One band of `rows × width × c` sums and per-pixel counts, per head (`merge_horizontal`).
struct Band {
    y0: i64,
    y1: i64,
    sums: Vec<Vec<f32>>,
    counts: Vec<Vec<u32>>,
}

fn bands(
    boxes: &[[i64; 4]],
    inside: &[usize],
    origin: [i64; 2],
    width: usize,
    out: [usize; 2],
    channels: &[usize],
    patches: &HashMap<usize, PatchPrediction>,
) -> Vec<Band> {
    let mut result: Vec<Band> = Vec::new();
    for &i in inside {
        let b = boxes[i];
        let (xs, ys, xe, ye) = (
            b[0] - origin[0],
            b[1] - origin[1],
            b[2] - origin[0],
            b[3] - origin[1],
        );
        if result.last().is_none_or(|band| band.y0 != ys) {
            result.push(Band {
                y0: ys,
                y1: ye,
                sums: channels
                    .iter()
                    .map(|&c| vec![0.0; out[1] * width * c])
                    .collect(),
                counts: channels.iter().map(|_| vec![0; out[1] * width]).collect(),
            });
        }
        let band = result.last_mut().unwrap();
        // Not inferred (outside the mask): a zero block, skipped.
        let Some(patch) = patches.get(&i) else {
            continue;
        };
        let xe = xe.min(width as i64);
        for (h, &c) in channels.iter().enumerate() {
            let block = &patch.heads[h].data;
            if !block.iter().any(|&v| v != 0.0) {
                continue;
            }
            for y in 0..(ye - ys) as usize {
                for x in xs..xe {
                    let bx = (x - xs) as usize;
                    for k in 0..c {
                        band.sums[h][(y * width + x as usize) * c + k] +=
                            block[(y * out[0] + bx) * c + k];
                    }
                    band.counts[h][y * width + x as usize] += 1;
                }
            }
        }
    }
    result
}

/// TIAToolbox's `infer_wsi` stitching, literally (`merge_horizontal` per row, then
/// `merge_vertical_chunkwise` with its overlap arithmetic). Needs `out/2 <= stride <= out`.
pub(crate) fn tiatoolbox_stitch(
    boxes: &[[i64; 4]],
    selected: &[usize],
    slide: [usize; 2],
    out: [usize; 2],
    channels: &[usize],
    patches: &HashMap<usize, PatchPrediction>,
) -> Canvas {
    let (inside, origin, [wm, hm]) = inside_mask(boxes, selected, slide);
    let rows = bands(boxes, &inside, origin, wm, out, channels, patches);
    let mut heads = Vec::new();
    for (h, &c) in channels.iter().enumerate() {
        let mut y0s: Vec<i64> = rows.iter().map(|r| r.y0).collect();
        let mut y1s: Vec<i64> = rows.iter().map(|r| r.y1).collect();
        y0s.dedup();
        y1s.dedup();
        let r = rows.len();
        let mut overlaps: Vec<i64> = (0..r.saturating_sub(1))
            .map(|i| y1s[i] - y0s[i + 1])
            .collect();
        overlaps.push(0);
        let row_len = wm * c;
        // `cur` and `cc` as lists of rows.
        let split =
            |v: &Vec<f32>| -> Vec<Vec<f32>> { v.chunks(row_len).map(<[f32]>::to_vec).collect() };
        let split_c =
            |v: &Vec<u32>| -> Vec<Vec<u32>> { v.chunks(wm).map(<[u32]>::to_vec).collect() };
        let mut cur = split(&rows[0].sums[h]);
        let mut cc = split_c(&rows[0].counts[h]);
        let mut written = 0usize;
        let mut out_rows: Vec<f32> = Vec::new();
        for (i, &ov) in overlaps.iter().enumerate() {
            if i + 1 < r && ov > 0 {
                let ov = ov as usize;
                let next = split(&rows[i + 1].sums[h]);
                let next_c = split_c(&rows[i + 1].counts[h]);
                let n = cur.len();
                assert!(
                    ov <= n,
                    "stride below out/2: TIAToolbox fails here (issue #1071)"
                );
                for k in 0..ov {
                    for (a, b) in cur[n - ov + k].iter_mut().zip(&next[k]) {
                        *a += *b;
                    }
                    for (a, b) in cc[n - ov + k].iter_mut().zip(&next_c[k]) {
                        *a += *b;
                    }
                }
            }
            let take = cur.len().min(hm.saturating_sub(written));
            if take == 0 {
                break;
            }
            for (row, counts) in cur.iter().zip(&cc).take(take) {
                for (x, &count) in counts.iter().enumerate() {
                    let d = if count == 0 { 1.0 } else { count as f32 };
                    for k in 0..c {
                        out_rows.push(row[x * c + k] / d);
                    }
                }
            }
            written += take;
            if i + 1 < r {
                let ov = ov.max(0) as usize;
                cur = split(&rows[i + 1].sums[h])[ov..].to_vec();
                cc = split_c(&rows[i + 1].counts[h])[ov..].to_vec();
            }
        }
        // Rows never reached (stride > out leaves gaps TIAToolbox mishandles) are not compared.
        out_rows.resize(hm * wm * c, 0.0);
        heads.push(out_rows);
    }
    Canvas {
        size: [wm, hm],
        origin: [origin[0] as u64, origin[1] as u64],
        heads,
    }
}

/// The whole-canvas stitch for any stride: bands summed left to right, then the bands covering
/// a row added top to bottom, mean `sum / max(count, 1)` in f32.
pub(crate) fn whole_canvas_stitch(
    boxes: &[[i64; 4]],
    selected: &[usize],
    slide: [usize; 2],
    out: [usize; 2],
    channels: &[usize],
    patches: &HashMap<usize, PatchPrediction>,
) -> Canvas {
    let (inside, origin, [wm, hm]) = inside_mask(boxes, selected, slide);
    let rows = bands(boxes, &inside, origin, wm, out, channels, patches);
    let heads = channels
        .iter()
        .enumerate()
        .map(|(h, &c)| {
            let mut sum = vec![0.0f32; hm * wm * c];
            let mut count = vec![0u32; hm * wm];
            for band in &rows {
                for y in 0..(band.y1 - band.y0) as usize {
                    let cy = band.y0 as usize + y;
                    if cy >= hm {
                        break;
                    }
                    for x in 0..wm {
                        for k in 0..c {
                            sum[(cy * wm + x) * c + k] += band.sums[h][(y * wm + x) * c + k];
                        }
                        count[cy * wm + x] += band.counts[h][y * wm + x];
                    }
                }
            }
            sum.iter()
                .enumerate()
                .map(|(i, &s)| s / count[i / c].max(1) as f32)
                .collect()
        })
        .collect();
    Canvas {
        size: [wm, hm],
        origin: [origin[0] as u64, origin[1] as u64],
        heads,
    }
}

//! [`synthetic_layer_raster`]: a deterministic tissue-layer raster (HoVer-Net+'s
//! `layer_segmentation` truth) of any size, for oracle runs.

/// `[across, down]` period of the [`synthetic_layer_raster`] pattern, in pixels.
pub const SYNTHETIC_LAYER_PERIOD: [usize; 2] = [600, 750];

/// A synthetic layer raster of `width x height` pixels (row-major, one class id per pixel):
/// wavy horizontal bands of classes 0-3 with holes and blobs, repeating every
/// [`SYNTHETIC_LAYER_PERIOD`] pixels, the same for every call (integer arithmetic only).
///
/// One period, top to bottom in band coordinates `v` (the bands are shifted down by a smooth
/// wave of +-25 px that repeats every 600 px across; the image starts at `v = 400`):
///
/// | `v` | class | inside it (centre `u` across the period, size in px) |
/// |---|---|---|
/// | 0-59 | 0 background | |
/// | 60-259 | 1 | a background hole (u 100, radius 40); a class-3 disc (u 250, radius 35, 3,848 px: under the 20,000 px that `_proc_ls` keeps, so it becomes class 1); a class-3 ellipse (u 450, 120 x 70, ~26,400 px: kept) |
/// | 260-359 | 2 | |
/// | 360-619 | 3 | a class-1 island (u 150, radius 50); a background hole through all tissue (u 450, radius 45) |
/// | 620-689 | 2 | |
/// | 690-749 | 1 | |
///
/// Every band and shape is at least 35 px across and every boundary is smooth (radius of
/// curvature >= 35 px), so HoVer-Net+'s layer post-processing (20 x 20 closing and opening)
/// keeps it up to a pixel or two along the edges; only the small class-3 disc goes, by design.
pub fn synthetic_layer_raster(width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; width.saturating_mul(height)];
    if width == 0 {
        return out;
    }
    for (y, row) in out.chunks_exact_mut(width).enumerate() {
        for (x, v) in row.iter_mut().enumerate() {
            *v = synthetic_layer_class(x as i64, y as i64);
        }
    }
    out
}

/// The band shift at `u` in `0..600`: two parabolic arcs, +25 px at `u = 150`, -25 px at
/// `u = 450`, continuous with a continuous slope (also across the period boundary).
fn wave(u: i64) -> i64 {
    let t = u % 300;
    let q = t * (300 - t) * 25 / 22_500;
    if u < 300 { q } else { -q }
}

/// Whether `(u, v)` lies in the ellipse centred at `(cu, cv)` with semi-axes `(ru, rv)`.
fn in_ellipse([u, v]: [i64; 2], [cu, cv]: [i64; 2], [ru, rv]: [i64; 2]) -> bool {
    let (du, dv) = (u - cu, v - cv);
    (du * rv).pow(2) + (dv * ru).pow(2) <= (ru * rv).pow(2)
}

/// The class of pixel `(x, y)` of the synthetic pattern.
fn synthetic_layer_class(x: i64, y: i64) -> u8 {
    let u = x.rem_euclid(SYNTHETIC_LAYER_PERIOD[0] as i64);
    let v = (y - wave(u) + 400).rem_euclid(SYNTHETIC_LAYER_PERIOD[1] as i64);
    let p = [u, v];
    match v {
        60..260 => {
            if in_ellipse(p, [100, 160], [40, 40]) {
                0
            } else if in_ellipse(p, [250, 160], [35, 35]) || in_ellipse(p, [450, 160], [120, 70]) {
                3
            } else {
                1
            }
        }
        260..360 | 620..690 => 2,
        360..620 => {
            if in_ellipse(p, [150, 490], [50, 50]) {
                1
            } else if in_ellipse(p, [450, 490], [45, 45]) {
                0
            } else {
                3
            }
        }
        690.. => 1,
        _ => 0,
    }
}

/// The class map (`w x h`, row-major, 0 = background) drawn by layer polygons
/// `(class, contour)` as TIAToolbox's `_get_layer_info` gives them: per class, an even-odd
/// scanline fill on pixel centres over all of that class's contours at once (a hole's border is
/// a polygon of its own, so a hole is inside two of them and stays empty), plus the contour
/// points themselves; where classes meet on a border pixel the higher class wins.
#[must_use]
pub fn rasterise_layer_polygons(polygons: &[(u8, &[[i32; 2]])], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h];
    let mut classes: Vec<u8> = polygons.iter().map(|&(c, _)| c).collect();
    classes.sort_unstable();
    classes.dedup();
    for class in classes {
        let of_class = || polygons.iter().filter(move |(c, _)| *c == class);
        let mut xs: Vec<Vec<f64>> = vec![Vec::new(); h];
        for (_, c) in of_class() {
            for k in 0..c.len() {
                let (a, b) = (c[k], c[(k + 1) % c.len()]);
                for y in a[1].min(b[1]).max(0)..a[1].max(b[1]).min(h as i32) {
                    let t = f64::from(y - a[1]) / f64::from(b[1] - a[1]);
                    xs[y as usize].push(f64::from(a[0]) + t * f64::from(b[0] - a[0]));
                }
            }
        }
        for (y, row) in xs.iter_mut().enumerate() {
            row.sort_by(f64::total_cmp);
            for pair in row.chunks(2) {
                if let [x0, x1] = pair {
                    for x in (x0.ceil() as i64).max(0)..=(x1.floor() as i64).min(w as i64 - 1) {
                        out[y * w + x as usize] = class;
                    }
                }
            }
        }
        for (_, c) in of_class() {
            for p in c.iter() {
                if (0..w as i32).contains(&p[0]) && (0..h as i32).contains(&p[1]) {
                    out[p[1] as usize * w + p[0] as usize] = class;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtseg_postproc::proc_layers;

    /// 4-connected components of the pixels of `class`.
    fn components(map: &[u8], w: usize, class: u8) -> usize {
        let mut seen = vec![false; map.len()];
        let mut count = 0;
        let mut stack = Vec::new();
        for start in 0..map.len() {
            if map[start] != class || seen[start] {
                continue;
            }
            count += 1;
            seen[start] = true;
            stack.push(start);
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                let mut visit = |j: usize| {
                    if map[j] == class && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                };
                if x > 0 {
                    visit(i - 1);
                }
                if x + 1 < w {
                    visit(i + 1);
                }
                if y > 0 {
                    visit(i - w);
                }
                if i + w < map.len() {
                    visit(i + w);
                }
            }
        }
        count
    }

    #[test]
    fn bands_holes_and_blobs_of_classes_0_to_3() {
        let [w, h] = SYNTHETIC_LAYER_PERIOD;
        let r = synthetic_layer_raster(w, h);
        assert_eq!(r, synthetic_layer_raster(w, h));
        assert!(r.iter().all(|&c| c <= 3));
        let area = |c: u8| r.iter().filter(|&&v| v == c).count();
        for c in 0..=3 {
            assert!(area(c) > w * h / 10, "class {c}: {} px", area(c));
        }
        // the wave: the top of the first class-2 band (v = 260, y = 260 - 400 + 750 + wave)
        // is 25 px lower at u = 150 than at u = 0 and 25 px higher at u = 450
        let band2 = |x: usize, from: usize| (from..h).find(|&y| r[y * w + x] == 2).unwrap();
        assert_eq!((band2(0, 0), band2(150, 0), band2(450, 0)), (220, 245, 195));
        assert_eq!(
            (band2(0, 400), band2(150, 400), band2(450, 400)),
            (610, 635, 585)
        );
        // background: the band and two holes; class 3: two bands, the ellipse, the small disc
        assert_eq!(components(&r, w, 0), 3);
        assert_eq!(components(&r, w, 3), 4);
        // a larger raster repeats the period
        let big = synthetic_layer_raster(2 * w, h + 10);
        assert_eq!(big[h * 2 * w + w + 17], r[17]);
    }

    #[test]
    fn layer_postprocessing_keeps_all_but_the_small_disc() {
        let [w, h] = SYNTHETIC_LAYER_PERIOD;
        let r = synthetic_layer_raster(w, h);
        let ls: Vec<f32> = r.iter().map(|&c| f32::from(c)).collect();
        let out = proc_layers(&ls, h, w).unwrap();
        // `_proc_ls` closes then opens with a 20 x 20 square anchored at (10, 10) (offsets
        // -10..=+9, not reflected between erosion and dilation, as OpenCV does): each of the two
        // moves every edge 1 px right and down, so the cleaned map is the raster shifted by
        // (2, 2), up to rounded corners and the small class-3 disc (3,848 px, under the 20,000 px
        // kept), which becomes class 1.
        for (shift, bounds) in [
            (0usize, [0.93, 0.92, 0.95, 0.95]),
            (2, [0.99, 0.96, 0.995, 0.97]),
        ] {
            for c in 0..=3u8 {
                let (mut inter, mut union) = (0usize, 0usize);
                for y in shift..h {
                    for x in shift..w {
                        let (a, b) = (r[(y - shift) * w + x - shift], out[y * w + x]);
                        inter += usize::from(a == c && b == c);
                        union += usize::from(a == c || b == c);
                    }
                }
                let iou = inter as f64 / union as f64;
                println!("shift {shift} class {c}: IoU {iou:.4}");
                assert!(
                    iou >= bounds[c as usize],
                    "shift {shift} class {c}: IoU {iou:.4}"
                );
            }
        }
        let disc_to_1 = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                y >= 2 && x >= 2 && r[(y - 2) * w + x - 2] == 3 && out[y * w + x] == 1
            })
            .count();
        assert!(
            disc_to_1 >= 3_800,
            "{disc_to_1} px of class 3 became class 1"
        );
    }

    #[test]
    fn a_hole_border_of_the_same_class_leaves_the_hole_empty() {
        // class 2: a 10 x 10 square (pixel centres 1..=10) with a hole 4..=7 drawn by its border
        let outer: Vec<[i32; 2]> = vec![[1, 1], [1, 10], [10, 10], [10, 1]];
        let hole: Vec<[i32; 2]> = vec![
            [4, 3],
            [3, 4],
            [3, 7],
            [4, 8],
            [7, 8],
            [8, 7],
            [8, 4],
            [7, 3],
        ];
        let map = rasterise_layer_polygons(&[(2, &outer[..]), (2, &hole[..])], 12, 12);
        let at = |x: usize, y: usize| map[y * 12 + x];
        assert_eq!(at(1, 1), 2);
        assert_eq!(at(10, 10), 2);
        assert_eq!(at(2, 5), 2, "between the borders");
        assert_eq!(at(3, 5), 2, "the hole's border is class pixels");
        assert_eq!(at(5, 5), 0, "inside the hole");
        assert_eq!(at(0, 0), 0);
        assert_eq!(at(11, 5), 0);
    }
}

//! Comparing an instance label map with the truth: detection F1 at an IoU threshold, and the
//! Aggregated Jaccard Index, as HoVer-Net's `compute_stats.py` (`get_fast_pq`, `get_fast_aji`,
//! `get_fast_aji_plus`) defines them.

use std::collections::HashMap;

use crate::linear_assignment::max_weight_assignment;

/// Detection counts and quality of one comparison ([`match_instances`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchStats {
    /// True positives: matched (truth, prediction) pairs.
    pub tp: u64,
    /// False positives: predicted instances left unmatched.
    pub fp: u64,
    /// False negatives: true instances left unmatched.
    pub fn_: u64,
    /// Detection F1 = `2 tp / (2 tp + fp + fn)` (HoVer-Net's DQ); 1 when both maps are empty.
    pub f1: f64,
    /// Mean IoU of the matched pairs (HoVer-Net's SQ); 0 when nothing is matched.
    pub mean_iou: f64,
}

impl MatchStats {
    /// Instances in the truth (`tp + fn`).
    #[must_use]
    pub fn n_truth(&self) -> u64 {
        self.tp + self.fn_
    }

    /// Instances in the prediction (`tp + fp`).
    #[must_use]
    pub fn n_pred(&self) -> u64 {
        self.tp + self.fp
    }

    /// `tp / (tp + fp)`; 1 when nothing is predicted.
    #[must_use]
    pub fn precision(&self) -> f64 {
        if self.n_pred() == 0 {
            1.0
        } else {
            self.tp as f64 / self.n_pred() as f64
        }
    }

    /// `tp / (tp + fn)`; 1 when the truth is empty.
    #[must_use]
    pub fn recall(&self) -> f64 {
        if self.n_truth() == 0 {
            1.0
        } else {
            self.tp as f64 / self.n_truth() as f64
        }
    }

    /// Panoptic quality `f1 * mean_iou` (HoVer-Net's PQ = DQ x SQ).
    #[must_use]
    pub fn pq(&self) -> f64 {
        self.f1 * self.mean_iou
    }
}

/// Areas of the instances of both maps and the areas of their overlaps.
struct Overlaps {
    truth_area: Vec<u64>,
    pred_area: Vec<u64>,
    /// `(truth index, pred index, intersection)`, ascending; indices follow ascending ids.
    pairs: Vec<(usize, usize, u64)>,
}

impl Overlaps {
    fn new(truth: &[i32], pred: &[i32], width: usize, height: usize) -> Self {
        let n = width.checked_mul(height).expect("width * height overflows");
        assert!(
            truth.len() == n && pred.len() == n,
            "label maps must hold width * height = {n} values, got truth {} and pred {}",
            truth.len(),
            pred.len()
        );
        let mut truth_area: HashMap<i32, u64> = HashMap::new();
        let mut pred_area: HashMap<i32, u64> = HashMap::new();
        let mut inter: HashMap<(i32, i32), u64> = HashMap::new();
        // count runs of equal (truth, pred) pairs, then add each run once
        let mut flush = |t: i32, p: i32, c: u64| {
            if t > 0 {
                *truth_area.entry(t).or_default() += c;
            }
            if p > 0 {
                *pred_area.entry(p).or_default() += c;
            }
            if t > 0 && p > 0 {
                *inter.entry((t, p)).or_default() += c;
            }
        };
        let mut run = (0, 0, 0u64);
        for (&t, &p) in truth.iter().zip(pred) {
            let (t, p) = (t.max(0), p.max(0));
            if (t, p) == (run.0, run.1) {
                run.2 += 1;
            } else {
                flush(run.0, run.1, run.2);
                run = (t, p, 1);
            }
        }
        flush(run.0, run.1, run.2);
        let index = |areas: HashMap<i32, u64>| {
            let mut ids: Vec<(i32, u64)> = areas.into_iter().collect();
            ids.sort_unstable();
            let at: HashMap<i32, usize> = ids.iter().enumerate().map(|(i, v)| (v.0, i)).collect();
            (ids.into_iter().map(|v| v.1).collect::<Vec<u64>>(), at)
        };
        let (truth_area, t_at) = index(truth_area);
        let (pred_area, p_at) = index(pred_area);
        let mut pairs: Vec<(usize, usize, u64)> = inter
            .into_iter()
            .map(|((t, p), c)| (t_at[&t], p_at[&p], c))
            .collect();
        pairs.sort_unstable();
        Self {
            truth_area,
            pred_area,
            pairs,
        }
    }

    fn union(&self, &(t, p, c): &(usize, usize, u64)) -> u64 {
        self.truth_area[t] + self.pred_area[p] - c
    }

    fn iou(&self, pair: &(usize, usize, u64)) -> f64 {
        pair.2 as f64 / self.union(pair) as f64
    }

    /// HoVer-Net's one-to-one pairing (`get_fast_pq`): for `threshold >= 0.5` the pairs whose IoU
    /// passes `threshold` (each instance has at most one); below, the pairing of overlapping
    /// instances that maximises the summed IoU (`linear_sum_assignment`), of which the pairs whose
    /// IoU passes `threshold` are kept. Returns indices into `pairs`, ascending.
    fn unique_matching(&self, threshold: f64) -> Vec<usize> {
        let above = |e: &usize| self.iou(&self.pairs[*e]) > threshold;
        if threshold >= 0.5 {
            return (0..self.pairs.len()).filter(above).collect();
        }
        let edges: Vec<usize> = (0..self.pairs.len()).collect();
        // connected components of the bipartite graph (union-find over truth, then pred nodes)
        let nt = self.truth_area.len();
        let mut parent: Vec<usize> = (0..nt + self.pred_area.len()).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for &e in &edges {
            let (t, p, _) = self.pairs[e];
            let (a, b) = (find(&mut parent, t), find(&mut parent, nt + p));
            parent[a.max(b)] = a.min(b);
        }
        let mut components: HashMap<usize, Vec<usize>> = HashMap::new();
        for &e in &edges {
            let root = find(&mut parent, self.pairs[e].0);
            components.entry(root).or_default().push(e);
        }
        let mut matched = Vec::new();
        for (_, comp) in components {
            if comp.len() == 1 {
                matched.push(comp[0]);
                continue;
            }
            let mut ts: Vec<usize> = comp.iter().map(|&e| self.pairs[e].0).collect();
            let mut ps: Vec<usize> = comp.iter().map(|&e| self.pairs[e].1).collect();
            ts.sort_unstable();
            ts.dedup();
            ps.sort_unstable();
            ps.dedup();
            let (rows, cols) = (ts.len(), ps.len());
            let mut w = vec![0.0; rows * cols];
            let mut edge_at = vec![usize::MAX; rows * cols];
            for &e in &comp {
                let r = ts
                    .binary_search(&self.pairs[e].0)
                    .expect("truth of the component");
                let c = ps
                    .binary_search(&self.pairs[e].1)
                    .expect("pred of the component");
                w[r * cols + c] = self.iou(&self.pairs[e]);
                edge_at[r * cols + c] = e;
            }
            for (r, c) in max_weight_assignment(&w, rows, cols) {
                if edge_at[r * cols + c] != usize::MAX {
                    matched.push(edge_at[r * cols + c]);
                }
            }
        }
        matched.retain(above);
        matched.sort_unstable();
        matched
    }
}

/// Matches the instances of `pred` to those of `truth` (row-major `width x height` label maps;
/// ids > 0, any values, not necessarily contiguous; <= 0 is background) one to one, counting a
/// pair as a match when its IoU is **strictly** greater than `iou`, as HoVer-Net's `get_fast_pq`:
/// at `iou >= 0.5` such pairs are unique; below, the instances are paired one to one so that the
/// summed IoU of all pairs is largest (`linear_sum_assignment`, here the Hungarian method per
/// group of overlapping instances), and the pairs above `iou` count. Where several pairings tie,
/// which one is taken may differ from scipy's.
///
/// # Panics
/// When a map does not hold `width * height` values.
///
/// # Example
/// ```
/// use mtseg_test_models::match_instances;
/// // truth: two 2-pixel nuclei; prediction: the first exactly (other id), the second missed,
/// // plus a false positive
/// let truth = [1, 1, 0, 2, 2, 0];
/// let pred = [7, 7, 0, 0, 0, 3];
/// let s = match_instances(&truth, &pred, 6, 1, 0.5);
/// assert_eq!((s.tp, s.fp, s.fn_), (1, 1, 1));
/// assert_eq!((s.f1, s.mean_iou), (0.5, 1.0));
/// ```
#[must_use]
pub fn match_instances(
    truth: &[i32],
    pred: &[i32],
    width: usize,
    height: usize,
    iou: f64,
) -> MatchStats {
    let ov = Overlaps::new(truth, pred, width, height);
    let matched = ov.unique_matching(iou);
    let tp = matched.len() as u64;
    let (nt, np) = (ov.truth_area.len() as u64, ov.pred_area.len() as u64);
    let iou_sum: f64 = matched.iter().map(|&e| ov.iou(&ov.pairs[e])).sum();
    MatchStats {
        tp,
        fp: np - tp,
        fn_: nt - tp,
        f1: if nt + np == 0 {
            1.0
        } else {
            2.0 * tp as f64 / (nt + np) as f64
        },
        mean_iou: if tp == 0 { 0.0 } else { iou_sum / tp as f64 },
    }
}

/// Aggregated Jaccard Index (Kumar et al. 2017, as HoVer-Net's `get_fast_aji`): each true
/// instance `G` is paired with the predicted instance `S` of highest IoU among those it overlaps
/// (ties: the smaller predicted id), adding `|G ∩ S|` to `C` and `|G ∪ S|` to `U`; a true
/// instance that overlaps nothing adds `|G|` to `U`; every predicted instance never chosen adds
/// its area to `U`. AJI = `C / U`. A predicted instance may be chosen by several true ones (and
/// then counts in `U` each time), which is the known over-penalisation that [`aji_plus`] removes.
/// Both maps empty gives 1.
///
/// # Panics
/// When a map does not hold `width * height` values.
///
/// # Example
/// ```
/// use mtseg_test_models::aji;
/// // two true 2-pixel nuclei merged into one predicted 4-pixel instance: (2 + 2) / (4 + 4)
/// assert_eq!(aji(&[1, 1, 2, 2], &[5, 5, 5, 5], 4, 1), 0.5);
/// ```
#[must_use]
pub fn aji(truth: &[i32], pred: &[i32], width: usize, height: usize) -> f64 {
    let ov = Overlaps::new(truth, pred, width, height);
    let (mut c, mut u) = (0u64, 0u64);
    let mut used = vec![false; ov.pred_area.len()];
    let mut paired_truth = vec![false; ov.truth_area.len()];
    let mut e = 0;
    while e < ov.pairs.len() {
        // pairs are sorted by truth then pred: the first best IoU has the smallest pred id
        let t = ov.pairs[e].0;
        let mut best = e;
        while e < ov.pairs.len() && ov.pairs[e].0 == t {
            if ov.iou(&ov.pairs[e]) > ov.iou(&ov.pairs[best]) {
                best = e;
            }
            e += 1;
        }
        c += ov.pairs[best].2;
        u += ov.union(&ov.pairs[best]);
        used[ov.pairs[best].1] = true;
        paired_truth[t] = true;
    }
    u += unpaired_area(&ov.truth_area, &paired_truth) + unpaired_area(&ov.pred_area, &used);
    ratio(c, u)
}

/// AJI+ (Graham et al. 2019, HoVer-Net's `get_fast_aji_plus`): as [`aji`], but true and
/// predicted instances are paired one to one (the pairing of overlapping instances that maximises
/// the summed IoU), so no predicted instance is counted twice; unpaired instances of either side
/// add their area to `U`. Both maps empty gives 1.
///
/// # Panics
/// When a map does not hold `width * height` values.
#[must_use]
pub fn aji_plus(truth: &[i32], pred: &[i32], width: usize, height: usize) -> f64 {
    let ov = Overlaps::new(truth, pred, width, height);
    let (mut c, mut u) = (0u64, 0u64);
    let mut paired_pred = vec![false; ov.pred_area.len()];
    let mut paired_truth = vec![false; ov.truth_area.len()];
    for e in ov.unique_matching(0.0) {
        let pair = ov.pairs[e];
        c += pair.2;
        u += ov.union(&pair);
        paired_truth[pair.0] = true;
        paired_pred[pair.1] = true;
    }
    u += unpaired_area(&ov.truth_area, &paired_truth) + unpaired_area(&ov.pred_area, &paired_pred);
    ratio(c, u)
}

fn unpaired_area(area: &[u64], paired: &[bool]) -> u64 {
    area.iter()
        .zip(paired)
        .filter(|(_, p)| !**p)
        .map(|(a, _)| a)
        .sum()
}

fn ratio(c: u64, u: u64) -> f64 {
    if u == 0 { 1.0 } else { c as f64 / u as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-row map from `(id, start, end)` runs.
    fn row(w: usize, runs: &[(i32, usize, usize)]) -> Vec<i32> {
        let mut v = vec![0; w];
        for &(id, a, b) in runs {
            v[a..b].fill(id);
        }
        v
    }

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn identical_maps_up_to_relabelling() {
        let truth = [1, 1, 0, 2, 0, 0, 9, 9, 9];
        let pred = [4, 4, 0, 100, 0, 0, 3, 3, 3];
        let s = match_instances(&truth, &pred, 3, 3, 0.5);
        assert_eq!((s.tp, s.fp, s.fn_, s.f1, s.mean_iou), (3, 0, 0, 1.0, 1.0));
        assert_eq!((s.precision(), s.recall(), s.pq()), (1.0, 1.0, 1.0));
        assert_eq!(aji(&truth, &pred, 3, 3), 1.0);
        assert_eq!(aji_plus(&truth, &pred, 3, 3), 1.0);
    }

    #[test]
    fn empty_maps() {
        let z = [0; 4];
        let s = match_instances(&z, &z, 2, 2, 0.5);
        assert_eq!((s.tp, s.fp, s.fn_, s.f1, s.mean_iou), (0, 0, 0, 1.0, 0.0));
        assert_eq!(aji(&z, &z, 2, 2), 1.0);
        let t = [1, 1, 0, -5];
        let s = match_instances(&t, &z, 2, 2, 0.5);
        assert_eq!((s.tp, s.fp, s.fn_, s.f1), (0, 0, 1, 0.0));
        assert_eq!(aji(&t, &z, 2, 2), 0.0);
        assert_eq!(aji(&z, &t, 2, 2), 0.0);
    }

    #[test]
    fn iou_threshold_is_strict() {
        // truth 4 px, prediction 2 of them: IoU exactly 0.5
        let truth = row(6, &[(1, 0, 4)]);
        let pred = row(6, &[(2, 1, 3)]);
        let s = match_instances(&truth, &pred, 6, 1, 0.5);
        assert_eq!((s.tp, s.fp, s.fn_, s.f1), (0, 1, 1, 0.0));
        let s = match_instances(&truth, &pred, 6, 1, 0.4);
        assert_eq!((s.tp, s.f1, s.mean_iou), (1, 1.0, 0.5));
    }

    #[test]
    fn low_threshold_takes_the_best_one_to_one_matching() {
        // t1 = [0, 10), t2 = [10, 20); p2 = [0, 4) (IoU with t1 0.4), p1 = [4, 14) (IoU 6/14
        // with t1, 4/16 with t2). Greedy would match t1-p1 only; the best matching is
        // t1-p2 + t2-p1.
        let truth = row(20, &[(1, 0, 10), (2, 10, 20)]);
        let pred = row(20, &[(2, 0, 4), (1, 4, 14)]);
        let s = match_instances(&truth, &pred, 20, 1, 0.2);
        assert_eq!((s.tp, s.fp, s.fn_, s.f1), (2, 0, 0, 1.0));
        assert!(approx(s.mean_iou, (0.4 + 0.25) / 2.0));
        let s = match_instances(&truth, &pred, 20, 1, 0.5);
        assert_eq!((s.tp, s.fp, s.fn_), (0, 2, 2));
        // AJI: t1 -> p1 (6 / 14), t2 -> p1 (4 / 16), p2 unused (+4): 10 / 34
        assert!(approx(aji(&truth, &pred, 20, 1), 10.0 / 34.0));
        // AJI+: t1-p2 (4 / 10) + t2-p1 (4 / 16): 8 / 26
        assert!(approx(aji_plus(&truth, &pred, 20, 1), 8.0 / 26.0));
    }

    #[test]
    fn aji_known_values() {
        // one nucleus over-segmented by 2 px: 4 / 6
        let t = row(8, &[(1, 0, 4)]);
        let p = row(8, &[(1, 0, 6)]);
        assert!(approx(aji(&t, &p, 8, 1), 4.0 / 6.0));
        // two nuclei merged: (2 + 2) / (4 + 4) = 0.5; AJI+ pairs one: 2 / (4 + 2) = 1/3
        let t = row(4, &[(1, 0, 2), (2, 2, 4)]);
        let p = row(4, &[(1, 0, 4)]);
        assert!(approx(aji(&t, &p, 4, 1), 0.5));
        assert!(approx(aji_plus(&t, &p, 4, 1), 1.0 / 3.0));
        // one nucleus split in two halves (tie: the smaller id): 4 / (8 + 4)
        let t = row(8, &[(1, 0, 8)]);
        let p = row(8, &[(1, 0, 4), (2, 4, 8)]);
        assert!(approx(aji(&t, &p, 8, 1), 1.0 / 3.0));
        assert!(approx(aji_plus(&t, &p, 8, 1), 1.0 / 3.0));
        // an exact match plus a 5-px false positive: 4 / 9
        let t = row(12, &[(1, 0, 4)]);
        let p = row(12, &[(1, 0, 4), (2, 6, 11)]);
        assert!(approx(aji(&t, &p, 12, 1), 4.0 / 9.0));
        // an exact match plus a missed 3-px nucleus: 4 / 7
        let t = row(12, &[(1, 0, 4), (2, 6, 9)]);
        let p = row(12, &[(1, 0, 4)]);
        assert!(approx(aji(&t, &p, 12, 1), 4.0 / 7.0));
        let s = match_instances(&t, &p, 12, 1, 0.5);
        assert_eq!((s.tp, s.fp, s.fn_), (1, 0, 1));
        assert!(approx(s.f1, 2.0 / 3.0));
    }

    #[test]
    fn two_dimensional_case() {
        // 4 x 4: truth a 2 x 2 square; prediction the same square shifted right by one column
        #[rustfmt::skip]
        let t = [
            1, 1, 0, 0,
            1, 1, 0, 0,
            0, 0, 0, 0,
            0, 0, 0, 0,
        ];
        #[rustfmt::skip]
        let p = [
            0, 3, 3, 0,
            0, 3, 3, 0,
            0, 0, 0, 0,
            0, 0, 0, 0,
        ];
        // IoU 2 / 6
        let s = match_instances(&t, &p, 4, 4, 0.3);
        assert_eq!(s.tp, 1);
        assert!(approx(s.mean_iou, 1.0 / 3.0));
        assert_eq!(match_instances(&t, &p, 4, 4, 0.5).tp, 0);
        assert!(approx(aji(&t, &p, 4, 4), 1.0 / 3.0));
    }

    #[test]
    fn matching_is_symmetric_and_optimal_on_random_maps() {
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..200 {
            let w = 24;
            let mut t = vec![0; w];
            let mut p = vec![0; w];
            for map in [&mut t, &mut p] {
                let mut x = 0;
                while x < w {
                    let len = 1 + next(5) as usize;
                    let id = next(4) as i32; // 0 = background, ids may repeat (non-connected)
                    map[x..(x + len).min(w)].fill(id);
                    x += len;
                }
            }
            for thr in [0.0, 0.2, 0.5, 0.7] {
                let a = match_instances(&t, &p, w, 1, thr);
                let b = match_instances(&p, &t, w, 1, thr);
                assert_eq!((a.tp, a.fp, a.fn_), (b.tp, b.fn_, b.fp));
                assert!(approx(a.mean_iou, b.mean_iou));
            }
            let a = aji_plus(&t, &p, w, 1);
            assert!(approx(a, aji_plus(&p, &t, w, 1)));
            assert!((0.0..=1.0).contains(&aji(&t, &p, w, 1)));
        }
    }
}

#[must_use]
/// Fills each instance contour (OpenCV border pixel centres, `(id, points)`) into a `w x h`
/// label raster: scanline even-odd fill on pixel centres plus the border segments, so a
/// simple contour from `cv2.findContours` gives back its instance's pixels. Later instances
/// overwrite earlier ones where they overlap.
pub fn rasterise_contours(nuclei: &[(u64, Vec<[i32; 2]>)], w: usize, h: usize) -> Vec<i32> {
    let mut out = vec![0i32; w * h];
    for (id, c) in nuclei {
        let ymin = c.iter().map(|p| p[1]).min().unwrap_or(0).max(0);
        let ymax = c.iter().map(|p| p[1]).max().unwrap_or(-1).min(h as i32 - 1);
        for y in ymin..=ymax {
            let fy = f64::from(y);
            let mut xs = Vec::new();
            for k in 0..c.len() {
                let (a, b) = (c[k], c[(k + 1) % c.len()]);
                let (ya, yb) = (f64::from(a[1]), f64::from(b[1]));
                if (ya <= fy && fy < yb) || (yb <= fy && fy < ya) {
                    xs.push(f64::from(a[0]) + (fy - ya) / (yb - ya) * f64::from(b[0] - a[0]));
                }
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks(2) {
                if let [x0, x1] = pair {
                    for x in (x0.ceil() as i32).max(0)..=(x1.floor() as i32).min(w as i32 - 1) {
                        out[y as usize * w + x as usize] = *id as i32;
                    }
                }
            }
        }
        // the border itself: CHAIN_APPROX_SIMPLE keeps only the ends of straight (horizontal,
        // vertical or diagonal) runs, so step along each segment
        for k in 0..c.len() {
            let (a, b) = (c[k], c[(k + 1) % c.len()]);
            let steps = (b[0] - a[0]).abs().max((b[1] - a[1]).abs()).max(1);
            for i in 0..=steps {
                let x = a[0] + (b[0] - a[0]) * i / steps;
                let y = a[1] + (b[1] - a[1]) * i / steps;
                if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
                    out[y as usize * w + x as usize] = *id as i32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod rasterise_tests {
    use super::*;

    #[test]
    fn a_contour_gives_back_its_pixels() {
        // a 3 x 3 square (border pixel centres, OpenCV order) and a diamond
        let square = (1, vec![[1, 1], [1, 3], [3, 3], [3, 1]]);
        let diamond = (2, vec![[7, 0], [6, 1], [7, 2], [8, 1]]);
        let r = rasterise_contours(&[square, diamond], 10, 5);
        let count = |id| r.iter().filter(|&&v| v == id).count();
        assert_eq!(count(1), 9);
        assert_eq!(count(2), 5);
        assert_eq!(r[2 * 10 + 2], 1);
        assert_eq!(r[10 + 7], 2);
    }
}

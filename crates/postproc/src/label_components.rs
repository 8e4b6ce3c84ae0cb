//! 4-connected component labelling as `scipy.ndimage.label` (default cross structure: labels
//! 1..N in raster order of each component's first pixel) and `skimage.morphology.
//! remove_small_objects(labels, max_size)` (drops components of at most `max_size` pixels and
//! keeps the other labels unchanged, without renumbering).
//!
//! Works on runs (maximal horizontal stretches of foreground): each run gets a provisional label
//! in raster order and is united with the runs it touches in the row above (union-find keeping
//! the smaller root). A component's first pixel in raster order starts its first run, which has
//! the smallest provisional label of the component, so numbering the roots in increasing order
//! gives scipy's order. Sizes come from run lengths, and label maps are written run by run.

/// One run of foreground pixels `x0..x1` in one row, with its provisional label.
#[derive(Debug, Clone, Copy)]
struct Run {
    x0: u32,
    x1: u32,
    label: u32,
}

/// Reusable buffers for the labelling functions, and the result of the last [`label_runs`].
#[derive(Debug, Default)]
pub(crate) struct LabelScratch {
    parent: Vec<u32>,
    final_id: Vec<u32>,
    runs: Vec<Run>,
    /// `row_start[y]..row_start[y + 1]` are the runs of row `y`.
    row_start: Vec<u32>,
    /// Pixel count of each final label (index 0 unused).
    sizes: Vec<u32>,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

/// Bytes per all-zero test when skipping background.
const SKIP: usize = 16;

/// Appends the runs of non-zero bytes of `row` (provisional labels not yet set).
fn row_runs(row: &[u8], runs: &mut Vec<Run>) {
    let w = row.len();
    let mut x = 0;
    while x < w {
        while x + SKIP <= w
            && u128::from_ne_bytes(row[x..x + SKIP].try_into().expect("SKIP bytes")) == 0
        {
            x += SKIP;
        }
        while x < w && row[x] == 0 {
            x += 1;
        }
        if x >= w {
            break;
        }
        let x0 = x;
        while x < w && row[x] != 0 {
            x += 1;
        }
        runs.push(Run {
            x0: x0 as u32,
            x1: x as u32,
            label: 0,
        });
    }
}

/// Labels the 4-connected components of the pixels where `fg[i] != 0`, keeping the runs, each
/// run's final label (1..=N, scipy's order) and the component sizes in `scratch`; returns N.
pub(crate) fn label_runs(fg: &[u8], h: usize, w: usize, scratch: &mut LabelScratch) -> usize {
    debug_assert_eq!(fg.len(), h * w);
    let LabelScratch {
        parent,
        final_id,
        runs,
        row_start,
        sizes,
    } = scratch;
    runs.clear();
    row_start.clear();
    parent.clear();
    parent.push(0); // provisional label 0 = background
    for y in 0..h {
        let start = runs.len();
        row_start.push(start as u32);
        row_runs(&fg[y * w..(y + 1) * w], runs);
        let above = if y > 0 {
            row_start[y - 1] as usize..start
        } else {
            0..0
        };
        let mut a = above.start;
        for r in start..runs.len() {
            let l = parent.len() as u32;
            parent.push(l);
            runs[r].label = l;
            let (x0, x1) = (runs[r].x0, runs[r].x1);
            // runs above that end at or before x0 touch neither this run nor later ones
            while a < above.end && runs[a].x1 <= x0 {
                a += 1;
            }
            let mut b = a;
            while b < above.end && runs[b].x0 < x1 {
                let ru = find(parent, runs[b].label);
                let rl = find(parent, l);
                if rl < ru {
                    parent[ru as usize] = rl;
                } else if ru < rl {
                    parent[rl as usize] = ru;
                }
                b += 1;
            }
        }
    }
    row_start.push(runs.len() as u32);
    let n_prov = parent.len();
    final_id.clear();
    final_id.resize(n_prov, 0);
    let mut next = 0u32;
    for l in 1..n_prov as u32 {
        let r = find(parent, l);
        if r == l {
            next += 1;
            final_id[l as usize] = next;
        } else {
            final_id[l as usize] = final_id[r as usize];
        }
    }
    sizes.clear();
    sizes.resize(next as usize + 1, 0);
    for run in runs.iter_mut() {
        run.label = final_id[run.label as usize];
        sizes[run.label as usize] += run.x1 - run.x0;
    }
    next as usize
}

/// Labels the 4-connected components of the pixels where `fg[i] != 0`, writing 1..=N (0 for
/// background) into `out`, and returns N.
pub(crate) fn label_4conn(
    fg: &[u8],
    h: usize,
    w: usize,
    out: &mut [i32],
    scratch: &mut LabelScratch,
) -> usize {
    debug_assert_eq!(out.len(), h * w);
    let n = label_runs(fg, h, w, scratch);
    out.fill(0);
    write_runs(out, w, usize::MAX, scratch);
    n
}

/// Writes the labels of the last [`label_runs`] into `out` (which must be all 0), leaving out
/// components of at most `max_size` pixels (`usize::MAX`: none left out).
fn write_runs(out: &mut [i32], w: usize, max_size: usize, scratch: &LabelScratch) {
    for y in 0..scratch.row_start.len().saturating_sub(1) {
        let (a, b) = (
            scratch.row_start[y] as usize,
            scratch.row_start[y + 1] as usize,
        );
        let row = &mut out[y * w..(y + 1) * w];
        for run in &scratch.runs[a..b] {
            if max_size == usize::MAX || scratch.sizes[run.label as usize] as usize > max_size {
                row[run.x0 as usize..run.x1 as usize].fill(run.label as i32);
            }
        }
    }
}

/// `label` then `remove_small_objects(labels, max_size)` into `out`, which must be all 0 on
/// entry; returns the number of labels before removal (the largest label is at most that).
pub(crate) fn label_4conn_remove_small(
    fg: &[u8],
    h: usize,
    w: usize,
    max_size: usize,
    out: &mut [i32],
    scratch: &mut LabelScratch,
) -> usize {
    debug_assert_eq!(out.len(), h * w);
    let n = label_runs(fg, h, w, scratch);
    write_runs(out, w, max_size.min(usize::MAX - 1), scratch);
    n
}

/// Clears (in the 0/1 image `fg` the last [`label_runs`] labelled) the components of at most
/// `max_size` pixels; returns whether any component is left.
pub(crate) fn clear_small_runs(
    fg: &mut [u8],
    w: usize,
    max_size: usize,
    scratch: &LabelScratch,
) -> bool {
    let mut any = false;
    for y in 0..scratch.row_start.len().saturating_sub(1) {
        let (a, b) = (
            scratch.row_start[y] as usize,
            scratch.row_start[y + 1] as usize,
        );
        let row = &mut fg[y * w..(y + 1) * w];
        for run in &scratch.runs[a..b] {
            if scratch.sizes[run.label as usize] as usize <= max_size {
                row[run.x0 as usize..run.x1 as usize].fill(0);
            } else {
                any = true;
            }
        }
    }
    any
}

/// Pixel count of each label 0..=n (index 0 counts the background).
pub(crate) fn component_sizes(labels: &[i32], n: usize, sizes: &mut Vec<u32>) {
    sizes.clear();
    sizes.resize(n + 1, 0);
    for &l in labels {
        sizes[l.max(0) as usize] += 1;
    }
}

/// `remove_small_objects(labels, max_size)`: zeroes every label whose component has at most
/// `max_size` pixels; other labels keep their value.
pub(crate) fn remove_small_labels(
    labels: &mut [i32],
    n: usize,
    max_size: usize,
    sizes: &mut Vec<u32>,
) {
    component_sizes(labels, n, sizes);
    if sizes.iter().skip(1).all(|&s| s as usize > max_size) {
        return;
    }
    for v in labels.iter_mut() {
        if *v > 0 && sizes[*v as usize] as usize <= max_size {
            *v = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(img: &[&str]) -> (Vec<i32>, usize) {
        let h = img.len();
        let w = img[0].len();
        let fg: Vec<u8> = img
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        let mut out = vec![0; h * w];
        let n = label_4conn(&fg, h, w, &mut out, &mut LabelScratch::default());
        (out, n)
    }

    #[test]
    fn raster_order_of_first_pixel() {
        // the U shape's first pixel comes before the dot's, even though its right arm joins late
        let (out, n) = label(&["#.#.#", "#.#..", "###.#"]);
        assert_eq!(n, 3);
        assert_eq!(out, vec![1, 0, 1, 0, 2, 1, 0, 1, 0, 0, 1, 1, 1, 0, 3]);
    }

    #[test]
    fn diagonal_is_not_connected() {
        let (_, n) = label(&["#.", ".#"]);
        assert_eq!(n, 2);
    }

    #[test]
    fn removes_small_without_renumbering() {
        let (mut out, n) = label(&["##..#", ".....", "###.."]);
        let mut sizes = Vec::new();
        remove_small_labels(&mut out, n, 2, &mut sizes);
        assert_eq!(out, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 0, 0]);
    }

    #[test]
    fn runs_agree_with_pixel_labelling() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        let mut scratch = LabelScratch::default();
        for case in 0..500 {
            let (h, w) = (1 + next(30) as usize, 1 + next(40) as usize);
            let density = 1 + next(5);
            let fg: Vec<u8> = (0..h * w).map(|_| u8::from(next(6) < density)).collect();
            // reference: pixel flood fill in raster order
            let mut exp = vec![0i32; h * w];
            let mut n = 0;
            for start in 0..h * w {
                if fg[start] == 0 || exp[start] != 0 {
                    continue;
                }
                n += 1;
                let mut stack = vec![start];
                exp[start] = n;
                while let Some(i) = stack.pop() {
                    let (y, x) = (i / w, i % w);
                    let mut go = |j: usize| {
                        if fg[j] != 0 && exp[j] == 0 {
                            exp[j] = n;
                            stack.push(j);
                        }
                    };
                    if y > 0 {
                        go(i - w);
                    }
                    if y + 1 < h {
                        go(i + w);
                    }
                    if x > 0 {
                        go(i - 1);
                    }
                    if x + 1 < w {
                        go(i + 1);
                    }
                }
            }
            let mut out = vec![7; h * w];
            assert_eq!(label_4conn(&fg, h, w, &mut out, &mut scratch), n as usize);
            assert_eq!(out, exp, "case {case}");
            let max_size = next(6) as usize;
            let mut small = exp.clone();
            remove_small_labels(&mut small, n as usize, max_size, &mut Vec::new());
            let mut fused = vec![0; h * w];
            label_4conn_remove_small(&fg, h, w, max_size, &mut fused, &mut scratch);
            assert_eq!(fused, small, "case {case}");
            let mut cleared = fg.clone();
            label_runs(&fg, h, w, &mut scratch);
            let any = clear_small_runs(&mut cleared, w, max_size, &scratch);
            let kept: Vec<u8> = small.iter().map(|&l| u8::from(l > 0)).collect();
            assert_eq!(cleared, kept, "case {case}");
            assert_eq!(any, kept.contains(&1));
        }
    }
}

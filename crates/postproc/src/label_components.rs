//! 4-connected component labelling as `scipy.ndimage.label` (default cross structure: labels
//! 1..N in raster order of each component's first pixel) and `skimage.morphology.
//! remove_small_objects(labels, max_size)` (drops components of at most `max_size` pixels and
//! keeps the other labels unchanged, without renumbering).
//!
//! Two raster passes with a union-find over provisional labels. A component's first pixel in
//! raster order always opens a new provisional label, the smallest in its set, and unions keep
//! the smaller root; numbering the roots in increasing order therefore gives scipy's order.

/// Reusable buffers for [`label_4conn`].
#[derive(Debug, Default)]
pub(crate) struct LabelScratch {
    parent: Vec<u32>,
    final_id: Vec<u32>,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
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
    debug_assert_eq!(fg.len(), h * w);
    debug_assert_eq!(out.len(), h * w);
    let parent = &mut scratch.parent;
    parent.clear();
    parent.push(0); // provisional label 0 = background
    for y in 0..h {
        let row = y * w;
        for x in 0..w {
            let i = row + x;
            if fg[i] == 0 {
                out[i] = 0;
                continue;
            }
            let left = if x > 0 { out[i - 1] as u32 } else { 0 };
            let up = if y > 0 { out[i - w] as u32 } else { 0 };
            let lab = match (left, up) {
                (0, 0) => {
                    let l = parent.len() as u32;
                    parent.push(l);
                    l
                }
                (l, 0) | (0, l) => l,
                (l, u) => {
                    if l != u {
                        let rl = find(parent, l);
                        let ru = find(parent, u);
                        if rl < ru {
                            parent[ru as usize] = rl;
                        } else if ru < rl {
                            parent[rl as usize] = ru;
                        }
                    }
                    l.min(u)
                }
            };
            out[i] = lab as i32;
        }
    }
    let n_prov = parent.len();
    let final_id = &mut scratch.final_id;
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
    for v in out.iter_mut() {
        if *v != 0 {
            *v = final_id[*v as usize] as i32;
        }
    }
    next as usize
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
}

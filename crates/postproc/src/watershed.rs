//! Marker-based watershed, exactly as `skimage.segmentation.watershed(image, markers, mask=mask)`
//! (scikit-image 0.26, connectivity 1, no compactness, no watershed line).
//!
//! scikit-image floods from all marker pixels (pushed in raster order with age 0) through a binary
//! heap ordered by `(value, age)`, where `age` counts pushes. A pixel takes its label when it is
//! pushed, from the pixel being expanded; neighbours are visited up, left, right, down; the pushed
//! value is raised to the value of the pixel it came from. Ties between equal `(value, age)`
//! items (only marker pixels share age 0) are decided by the heap's internal layout, so the heap
//! here is a line-by-line copy of scikit-image's `heap_general.pxi` (same sift-up / sift-down,
//! same comparisons), which makes the labels identical, not just equivalent.

#[derive(Debug, Clone, Copy)]
struct Item {
    value: f64,
    age: u32,
    index: u32,
}

#[inline(always)]
fn smaller(a: &Item, b: &Item) -> bool {
    if a.value != b.value {
        return a.value < b.value;
    }
    a.age < b.age
}

/// scikit-image's binary heap (`heappush` / `heappop` of `heap_general.pxi`).
#[derive(Debug, Default)]
pub(crate) struct WatershedHeap {
    items: Vec<Item>,
}

impl WatershedHeap {
    /// `heappush`: sift the new item up while it is `smaller` than its parent (hole form of the
    /// same swaps).
    fn push(&mut self, it: Item) {
        let mut child = self.items.len();
        self.items.push(it);
        while child > 0 {
            let parent = child.div_ceil(2) - 1;
            let p = self.items[parent];
            if smaller(&it, &p) {
                self.items[child] = p;
                child = parent;
            } else {
                break;
            }
        }
        self.items[child] = it;
    }

    /// `heappop`: take the root, move the last item to the root and sift it down, comparing the
    /// left child with it first and the right child with the smaller of the two (hole form of
    /// the same swaps).
    fn pop(&mut self) -> Option<Item> {
        let top = *self.items.first()?;
        let last = self.items.pop().expect("non-empty");
        let len = self.items.len();
        if len == 0 {
            return Some(top);
        }
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= len {
                break;
            }
            let mut smallest = i;
            let mut best = last;
            let lv = self.items[l];
            if smaller(&lv, &best) {
                smallest = l;
                best = lv;
            }
            let r = l + 1;
            if r < len {
                let rv = self.items[r];
                if smaller(&rv, &best) {
                    smallest = r;
                    best = rv;
                }
            }
            if smallest == i {
                break;
            }
            self.items[i] = best;
            i = smallest;
        }
        self.items[i] = last;
        Some(top)
    }
}

/// Floods `labels` (marker labels on input, non-zero = seed; the result on output) over the
/// pixels where `mask != 0`, by increasing `image` value. Seeds outside the mask are cleared
/// first, as scikit-image does (`markers * mask`). Pixels not reachable from a seed inside the
/// mask stay 0.
pub(crate) fn watershed(
    image: &[f64],
    labels: &mut [i32],
    mask: &[u8],
    h: usize,
    w: usize,
    heap: &mut WatershedHeap,
) {
    debug_assert_eq!(image.len(), h * w);
    debug_assert_eq!(labels.len(), h * w);
    debug_assert_eq!(mask.len(), h * w);
    heap.items.clear();
    for (i, l) in labels.iter_mut().enumerate() {
        if mask[i] == 0 {
            *l = 0;
        } else if *l != 0 {
            heap.push(Item {
                value: image[i],
                age: 0,
                index: i as u32,
            });
        }
    }
    // skimage keeps `age` in an int32 heap field; it wraps only past 2^31 pushes
    let mut age: u32 = 1;
    let n_pix = h * w;
    while let Some(e) = heap.pop() {
        let i = e.index as usize;
        let x = i % w;
        let label = labels[i];
        // neighbour order of skimage's raveled offsets: up, left, right, down
        let neighbours = [
            if i >= w { i - w } else { usize::MAX },
            if x > 0 { i - 1 } else { usize::MAX },
            if x + 1 < w { i + 1 } else { usize::MAX },
            if i + w < n_pix { i + w } else { usize::MAX },
        ];
        for n in neighbours {
            if n == usize::MAX || mask[n] == 0 || labels[n] != 0 {
                continue;
            }
            age = age.wrapping_add(1);
            labels[n] = label;
            let v = image[n];
            heap.push(Item {
                value: if v < e.value { e.value } else { v },
                age,
                index: n as u32,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_value_is_raised_to_its_source() {
        // scikit-image 0.26 gives [[1 1 1 2 2 2]] here (without the raise it would be all 1s)
        let img = [0.0, -5.0, -5.0, -6.0, -6.0, 0.0];
        let mut lab = [1, 0, 0, 0, 0, 2];
        watershed(&img, &mut lab, &[1; 6], 1, 6, &mut WatershedHeap::default());
        assert_eq!(lab, [1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn mask_blocks_and_clears_seeds() {
        let img = [0.0; 6];
        let mut lab = [1, 0, 0, 0, 2, 3];
        watershed(
            &img,
            &mut lab,
            &[1, 1, 0, 1, 1, 0],
            1,
            6,
            &mut WatershedHeap::default(),
        );
        assert_eq!(lab, [1, 1, 0, 2, 2, 0]);
    }
}

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

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A queued pixel of the fast path: `(value key, age, pixel)`, ordered as a tuple (entries all
/// differ, by pixel at least).
type Entry = (u64, u32, u32);

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
    /// The fast path's priority queue.
    queue: BinaryHeap<Reverse<Entry>>,
    /// Pixels the fast path labelled (all 0 before), to undo when it refuses.
    flooded: Vec<u32>,
    /// Members of the current tie block.
    block: Vec<u32>,
    /// Per pixel, the serial number of the tie block that pushed it (kept across calls: serials
    /// only grow, so old entries never match).
    claimed_by_block: Vec<u32>,
    /// Serial number of the last tie block.
    serial: u32,
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

/// An f64 as a u64 whose unsigned order is the float order, `-0` and `+0` the same key (NaNs
/// sort to the ends; their labels are unspecified).
#[inline(always)]
fn value_key(v: f64) -> u64 {
    let b = (v + 0.0).to_bits();
    if b >> 63 != 0 { !b } else { b | 1 << 63 }
}

/// Inverse of [`value_key`].
#[inline(always)]
fn key_value(k: u64) -> f64 {
    f64::from_bits(if k >> 63 != 0 { k & !(1 << 63) } else { !k })
}

/// Floods `labels` (marker labels on input, non-zero = seed; the result on output) over the
/// pixels where `mask != 0`, by increasing `image` value. Seeds outside the mask are cleared
/// first, as scikit-image does (`markers * mask`). Pixels not reachable from a seed inside the
/// mask stay 0. The result is scikit-image's, label for label.
///
/// # Why a faster queue gives scikit-image's result
///
/// scikit-image pops items by `(value, age)`. Ages count pushes, so they are unique except the
/// markers' 0, and the only order its heap layout decides is within a *tie block*: markers of
/// one value, which pop one after the other (anything pushed meanwhile has a larger age and a
/// value at least as high). If no pixel is claimed by two members of a block with different labels, every
/// order of the block pushes the same pixels with the same labels and values; only the ages of
/// those pushes, a range of consecutive numbers no other item has, are permuted. Pushes of one
/// value from that range again pop one after the other, in an order their ages decide, so they
/// form a tie block of their own, with the same argument. The fast path therefore gives all the
/// pushes of a block the first age of its range (advancing the counter past the range), pops
/// each tie block (equal value and age) whole, in any order, and checks it; the queue is `std`'s
/// binary heap, seeded only with markers that have an unlabelled neighbour in the
/// mask (the others never push anything). When a block has a pixel claimed with two labels, it
/// starts again with [`watershed_exact`], the line-by-line copy of scikit-image's heap.
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
    // ages stay below 2^31 (scikit-image's int32) on any canvas below 2^31 pixels
    if h * w < 1 << 31 {
        if watershed_fast(image, labels, mask, h, w, heap) {
            return;
        }
        for &i in &heap.flooded {
            labels[i as usize] = 0;
        }
    }
    watershed_exact(image, labels, mask, h, w, heap);
}

/// The 4-neighbours of pixel `i` in scikit-image's order (up, left, right, down); `usize::MAX`
/// where outside the image.
#[inline(always)]
fn neighbours(i: usize, w: usize, n_pix: usize) -> [usize; 4] {
    let x = i % w;
    [
        if i >= w { i - w } else { usize::MAX },
        if x > 0 { i - 1 } else { usize::MAX },
        if x + 1 < w { i + 1 } else { usize::MAX },
        if i + w < n_pix { i + w } else { usize::MAX },
    ]
}

/// The fast path of [`watershed`]; `false` (labels half done) when a tie block could depend on
/// the heap layout.
fn watershed_fast(
    image: &[f64],
    labels: &mut [i32],
    mask: &[u8],
    h: usize,
    w: usize,
    heap: &mut WatershedHeap,
) -> bool {
    let n_pix = h * w;
    let WatershedHeap {
        queue,
        block,
        claimed_by_block,
        serial,
        flooded,
        ..
    } = heap;
    queue.clear();
    flooded.clear();
    if claimed_by_block.len() != n_pix || *serial > u32::MAX - n_pix as u32 {
        claimed_by_block.clear();
        claimed_by_block.resize(n_pix, 0);
        *serial = 0;
    }
    for i in 0..n_pix {
        if mask[i] == 0 {
            labels[i] = 0;
        } else if labels[i] != 0 {
            // labels before i are already cleared outside the mask; after i they are only read
            // where mask != 0
            let open = neighbours(i, w, n_pix)
                .into_iter()
                .any(|n| n != usize::MAX && mask[n] != 0 && labels[n] == 0);
            if open {
                queue.push(Reverse((value_key(image[i]), 0, i as u32)));
            }
        }
    }
    let mut age: u32 = 1;
    while let Some(Reverse((vk, a, i))) = queue.pop() {
        // entries order by value, then age, then pixel (which only orders the members of a
        // tie block, in which any order gives the same result)
        let tied = queue
            .peek()
            .is_some_and(|&Reverse((nk, na, _))| nk == vk && na == a);
        if !tied {
            let i = i as usize;
            let ev = key_value(vk);
            let label = labels[i];
            for n in neighbours(i, w, n_pix) {
                if n == usize::MAX || mask[n] == 0 || labels[n] != 0 {
                    continue;
                }
                age += 1;
                labels[n] = label;
                flooded.push(n as u32);
                let v = image[n];
                let v = if v < ev { ev } else { v };
                queue.push(Reverse((value_key(v), age, n as u32)));
            }
            continue;
        }
        // a tie block: its other members are the next keys
        block.clear();
        block.push(i);
        while let Some(&Reverse((nk, na, ni))) = queue.peek() {
            if nk != vk || na != a {
                break;
            }
            block.push(ni);
            queue.pop();
        }
        debug_assert!(block.len() >= 2 && a < age);
        *serial += 1;
        let serial = *serial;
        let ev = key_value(vk);
        let block_age = age + 1;
        for &m in block.iter() {
            let m = m as usize;
            let label = labels[m];
            for n in neighbours(m, w, n_pix) {
                if n == usize::MAX || mask[n] == 0 {
                    continue;
                }
                if labels[n] != 0 {
                    if labels[n] != label && claimed_by_block[n] == serial {
                        return false; // claimed by two members with different labels
                    }
                    continue;
                }
                age += 1;
                labels[n] = label;
                flooded.push(n as u32);
                claimed_by_block[n] = serial;
                let v = image[n];
                let v = if v < ev { ev } else { v };
                queue.push(Reverse((value_key(v), block_age, n as u32)));
            }
        }
    }
    true
}

/// [`watershed`] with scikit-image's heap itself: every marker pixel pushed, ties between
/// equal-valued markers decided by the heap layout.
pub(crate) fn watershed_exact(
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

    /// The fast path, whenever it accepts, agrees with the copy of scikit-image's heap, on
    /// images built to have many ties (few distinct values, plateaus, raised pushes).
    #[test]
    fn fast_path_agrees_with_the_exact_heap_on_ties() {
        let mut s = 0x853c_49e6_748f_ea9bu64;
        let mut next = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        let (mut accepted, mut refused) = (0, 0);
        let mut heap = WatershedHeap::default();
        for case in 0..3000 {
            let (h, w) = (1 + next(12) as usize, 1 + next(12) as usize);
            let levels = 1 + next(4);
            let img: Vec<f64> = (0..h * w)
                .map(|_| next(levels) as f64 * if case % 2 == 0 { -0.5 } else { 0.25 })
                .collect();
            let mask: Vec<u8> = (0..h * w).map(|_| u8::from(next(6) != 0)).collect();
            let n_labels = 1 + next(4) as i32;
            let markers: Vec<i32> = (0..h * w)
                .map(|_| {
                    if next(5) == 0 {
                        1 + next(n_labels as u64) as i32
                    } else {
                        0
                    }
                })
                .collect();
            let mut exact = markers.clone();
            watershed_exact(&img, &mut exact, &mask, h, w, &mut heap);
            let mut fast = markers.clone();
            if watershed_fast(&img, &mut fast, &mask, h, w, &mut heap) {
                accepted += 1;
                assert_eq!(fast, exact, "case {case}: {h}x{w}");
            } else {
                refused += 1;
            }
            let mut both = markers.clone();
            watershed(&img, &mut both, &mask, h, w, &mut heap);
            assert_eq!(both, exact, "case {case}: {h}x{w}");
        }
        // many cases have contested ties; the point is that most do not
        assert!(accepted > refused, "accepted {accepted}, refused {refused}");
    }
}

//! `scipy.ndimage.binary_fill_holes(mask)` with the default structure: background pixels that
//! are not 4-connected to the image border become foreground.
//!
//! scipy grows the complement from outside the image (`binary_dilation` with `border_value=1`,
//! masked by the background, until stable); a flood fill from the border background pixels
//! through 4-neighbours reaches exactly the same set.

/// Fills the holes of `mask` (non-zero = foreground) in place. `stack` is a reusable buffer.
pub(crate) fn fill_holes(mask: &mut [u8], h: usize, w: usize, stack: &mut Vec<u32>) {
    debug_assert_eq!(mask.len(), h * w);
    if h == 0 || w == 0 {
        return;
    }
    // 0 = background not yet reached, 1 = foreground, 2 = background reached from the border.
    for v in mask.iter_mut() {
        *v = u8::from(*v != 0);
    }
    stack.clear();
    let seed = |i: usize, mask: &mut [u8], stack: &mut Vec<u32>| {
        if mask[i] == 0 {
            mask[i] = 2;
            stack.push(i as u32);
        }
    };
    for x in 0..w {
        seed(x, mask, stack);
        seed((h - 1) * w + x, mask, stack);
    }
    for y in 0..h {
        seed(y * w, mask, stack);
        seed(y * w + w - 1, mask, stack);
    }
    while let Some(i) = stack.pop() {
        let i = i as usize;
        let (y, x) = (i / w, i % w);
        if y > 0 {
            seed(i - w, mask, stack);
        }
        if y + 1 < h {
            seed(i + w, mask, stack);
        }
        if x > 0 {
            seed(i - 1, mask, stack);
        }
        if x + 1 < w {
            seed(i + 1, mask, stack);
        }
    }
    for v in mask.iter_mut() {
        *v = u8::from(*v != 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_enclosed_but_not_open_or_diagonal_holes() {
        #[rustfmt::skip]
        let mut m = vec![
            1, 1, 1, 0, 0,
            1, 0, 1, 0, 1,
            1, 1, 1, 1, 0,
            0, 0, 0, 0, 0,
        ];
        fill_holes(&mut m, 4, 5, &mut Vec::new());
        #[rustfmt::skip]
        assert_eq!(m, vec![
            1, 1, 1, 0, 0,
            1, 1, 1, 0, 1,
            1, 1, 1, 1, 0,
            0, 0, 0, 0, 0,
        ]);
    }
}

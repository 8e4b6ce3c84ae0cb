//! `scipy.ndimage.binary_fill_holes(mask)` with the default structure: background pixels that
//! are not 4-connected to the image border become foreground.
//!
//! scipy grows the complement from outside the image (`binary_dilation` with `border_value=1`,
//! masked by the background, until stable); a flood fill from the border background pixels
//! through 4-neighbours reaches exactly the same set.

/// Fills the holes of `mask` (non-zero = foreground) in place. `stack` is a reusable buffer.
///
/// A scanline flood fill: each popped seed grows into its whole background run, which is marked
/// reached, and seeds the start of every unreached background run it touches in the rows above
/// and below; so every background pixel is looked at a few times, never pushed one by one.
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
    for x in 0..w {
        stack.push(x as u32);
        stack.push(((h - 1) * w + x) as u32);
    }
    for y in 0..h {
        stack.push((y * w) as u32);
        stack.push((y * w + w - 1) as u32);
    }
    while let Some(i) = stack.pop() {
        let i = i as usize;
        if mask[i] != 0 {
            continue;
        }
        let (y, x) = (i / w, i % w);
        let row = &mut mask[y * w..(y + 1) * w];
        let mut x0 = x;
        while x0 > 0 && row[x0 - 1] == 0 {
            x0 -= 1;
        }
        let mut x1 = x + 1;
        while x1 < w && row[x1] == 0 {
            x1 += 1;
        }
        row[x0..x1].fill(2);
        for ny in [y.wrapping_sub(1), y + 1] {
            if ny >= h {
                continue;
            }
            let nrow = &mask[ny * w..(ny + 1) * w];
            let mut prev_open = false;
            for (xx, &v) in nrow[x0..x1].iter().enumerate() {
                let open = v == 0;
                if open && !prev_open {
                    stack.push((ny * w + x0 + xx) as u32);
                }
                prev_open = open;
            }
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

    #[test]
    fn scanline_fill_agrees_with_a_pixel_flood() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        for case in 0..500 {
            let (h, w) = (1 + next(25) as usize, 1 + next(25) as usize);
            let density = 1 + next(5);
            let m: Vec<u8> = (0..h * w).map(|_| u8::from(next(6) < density)).collect();
            // reference: background pixels reachable from the border, one by one
            let mut reached = vec![false; h * w];
            let mut stack: Vec<usize> = (0..h * w)
                .filter(|&i| i / w == 0 || i / w == h - 1 || i % w == 0 || i % w == w - 1)
                .collect();
            while let Some(i) = stack.pop() {
                if m[i] != 0 || reached[i] {
                    continue;
                }
                reached[i] = true;
                let (y, x) = (i / w, i % w);
                if y > 0 {
                    stack.push(i - w);
                }
                if y + 1 < h {
                    stack.push(i + w);
                }
                if x > 0 {
                    stack.push(i - 1);
                }
                if x + 1 < w {
                    stack.push(i + 1);
                }
            }
            let exp: Vec<u8> = reached.iter().map(|&r| u8::from(!r)).collect();
            let mut got = m.clone();
            fill_holes(&mut got, h, w, &mut Vec::new());
            assert_eq!(got, exp, "case {case}");
        }
    }
}

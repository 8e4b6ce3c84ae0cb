//! `cv2.findContours(img, RETR_TREE, CHAIN_APPROX_SIMPLE | CHAIN_APPROX_NONE)` of OpenCV 4.x
//! (`contours_new.cpp`): Suzuki-Abe border following with OpenCV's start directions, marks,
//! point selection, hierarchy and output order.
//!
//! * The image gets a one-pixel zero frame (as `copyMakeBorder` in OpenCV), so objects touching
//!   the border are traced like any other; points are reported in unframed coordinates.
//! * A contour starts at an outer border (`0` then unvisited `1` in the raster scan) or a hole
//!   border (a visited-or-unvisited, non-right-marked foreground pixel followed by `0`); tracing
//!   marks pixels `-nbd` where the pixel to their right was checked and found empty, else `nbd`.
//! * `CHAIN_APPROX_SIMPLE` keeps a point where the chain direction changes; `NONE` keeps all.
//! * The parent comes from the last border met on the row (Suzuki's LNBD rule).
//! * Output order is OpenCV's tree walk: depth first, parent before children, siblings in
//!   *reverse* order of discovery. So `contours[0]` is the top-level border found last in the scan.
//!
//! OpenCV stores marks in signed bytes and wraps its border counter after 126 contours, resolving
//! the ambiguity by bounding boxes and re-tracing; we keep exact `i32` ids instead, which gives the
//! hierarchy that re-tracing is there to recover.

/// Which points of a border are kept (OpenCV's `CHAIN_APPROX_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainApprox {
    /// Every border pixel (`CHAIN_APPROX_NONE`).
    None,
    /// Only the pixels where the chain direction changes (`CHAIN_APPROX_SIMPLE`).
    Simple,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    is_hole: bool,
    parent: usize,
    start: usize,
    len: usize,
}

/// Chain code deltas (x, y), OpenCV's `chainCodeDeltas`.
const DELTAS: [(isize, isize); 8] = [
    (1, 0),
    (1, -1),
    (0, -1),
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// Traces all borders of a binary image; reusable across images.
#[derive(Debug, Default)]
pub(crate) struct ContourTracer {
    img: Vec<i32>,
    stride: usize,
    rows: usize,
    points: Vec<[i32; 2]>,
    nodes: Vec<Node>,
    children_buf: Vec<usize>,
}

impl ContourTracer {
    /// Clears the tracer for an `h x w` image and returns the framed buffer (`(h + 2) x (w + 2)`,
    /// all zero) with its row stride; write 1 at `(y + 1) * stride + x + 1` for each foreground
    /// pixel `(y, x)`.
    pub(crate) fn reset(&mut self, h: usize, w: usize) -> (&mut [i32], usize) {
        self.stride = w + 2;
        self.rows = h + 2;
        self.img.clear();
        self.img.resize(self.stride * self.rows, 0);
        self.points.clear();
        self.nodes.clear();
        self.nodes.push(Node {
            is_hole: true,
            parent: usize::MAX,
            start: 0,
            len: 0,
        });
        (&mut self.img, self.stride)
    }

    #[inline(always)]
    fn delta(&self, s: usize) -> isize {
        let (dx, dy) = DELTAS[s & 7];
        dx + dy * self.stride as isize
    }

    /// Scans the image set up by [`Self::reset`] and traces every border.
    pub(crate) fn trace_all(&mut self, approx: ChainApprox) {
        let (w, h) = (self.stride, self.rows);
        if w < 3 || h < 3 {
            return;
        }
        for y in 1..h - 1 {
            let mut last_x: usize = 0; // LNBD position on this row (0 = frame)
            let mut prev = 0i32;
            let mut x = 1;
            while x < w - 1 {
                let i = y * w + x;
                let p = self.img[i];
                if p == prev {
                    x += 1;
                    continue;
                }
                let is_hole = if prev == 0 && p == 1 {
                    false
                } else if p == 0 && prev >= 1 {
                    if prev >= 2 {
                        last_x = x - 1;
                    }
                    true
                } else {
                    prev = p;
                    if p != 0 && p != 1 {
                        last_x = x;
                    }
                    x += 1;
                    continue;
                };
                let parent = if last_x == 0 {
                    0
                } else {
                    let mark = self.img[y * w + last_x];
                    let lnbd = (mark.unsigned_abs() as usize).saturating_sub(1);
                    let lnode = self.nodes.get(lnbd).copied().unwrap_or(self.nodes[0]);
                    if lnbd == 0 {
                        0
                    } else if lnode.is_hole == is_hole {
                        if lnode.parent == usize::MAX {
                            0
                        } else {
                            lnode.parent
                        }
                    } else {
                        lnbd
                    }
                };
                let start_x = x - usize::from(is_hole);
                last_x = start_x;
                let id = self.nodes.len();
                let nbd = (id + 1) as i32;
                let start = self.points.len();
                self.fetch(
                    y * w + start_x,
                    [start_x as i32 - 1, y as i32 - 1],
                    is_hole,
                    nbd,
                    approx,
                );
                self.nodes.push(Node {
                    is_hole,
                    parent,
                    start,
                    len: self.points.len() - start,
                });
                prev = self.img[y * w + x];
                x += 1;
            }
        }
    }

    /// OpenCV's `icvFetchContourEx` on a signed mark image.
    fn fetch(&mut self, i0: usize, origin: [i32; 2], is_hole: bool, nbd: i32, approx: ChainApprox) {
        let direct = approx == ChainApprox::None;
        let mut pt = origin;
        let mut s_end: usize = if is_hole { 0 } else { 4 };
        let mut s = s_end;
        let mut i1;
        loop {
            s = (s + 7) & 7;
            i1 = (i0 as isize + self.delta(s)) as usize;
            if self.img[i1] != 0 || s == s_end {
                break;
            }
        }
        if s == s_end {
            self.img[i0] = -nbd;
            self.points.push(pt);
            return;
        }
        let mut i3 = i0;
        let mut prev_s = s ^ 4;
        loop {
            s_end = s;
            let mut i4 = i3;
            while s < 15 {
                s += 1;
                i4 = (i3 as isize + self.delta(s)) as usize;
                if self.img[i4] != 0 {
                    break;
                }
            }
            s &= 7;
            if s.wrapping_sub(1) < s_end {
                self.img[i3] = -nbd;
            } else if self.img[i3] == 1 {
                self.img[i3] = nbd;
            }
            if direct || s != prev_s {
                self.points.push(pt);
            }
            prev_s = s;
            pt[0] += DELTAS[s].0 as i32;
            pt[1] += DELTAS[s].1 as i32;
            if i4 == i0 && i3 == i1 {
                break;
            }
            i3 = i4;
            s = (s + 4) & 7;
        }
    }

    /// Contour ids (1-based node ids) in OpenCV's output order.
    pub(crate) fn output_order(&mut self, out: &mut Vec<usize>) {
        out.clear();
        let n = self.nodes.len();
        // children in discovery order, CSR layout
        let mut counts = vec![0usize; n + 1];
        for node in &self.nodes[1..] {
            counts[node.parent + 1] += 1;
        }
        for k in 1..=n {
            counts[k] += counts[k - 1];
        }
        self.children_buf.clear();
        self.children_buf.resize(n, 0);
        let mut fill = counts.clone();
        for (id, node) in self.nodes.iter().enumerate().skip(1) {
            self.children_buf[fill[node.parent]] = id;
            fill[node.parent] += 1;
        }
        let mut stack: Vec<usize> = self.children_buf[counts[0]..counts[1]].to_vec();
        while let Some(id) = stack.pop() {
            out.push(id);
            stack.extend_from_slice(&self.children_buf[counts[id]..counts[id + 1]]);
        }
    }

    /// The first contour of OpenCV's output (the top-level border found last), if any.
    pub(crate) fn first_contour(&self) -> Option<&[[i32; 2]]> {
        let id = (1..self.nodes.len())
            .rev()
            .find(|&id| self.nodes[id].parent == 0)?;
        Some(self.points(id))
    }

    /// Points of contour `id`.
    pub(crate) fn points(&self, id: usize) -> &[[i32; 2]] {
        let n = &self.nodes[id];
        &self.points[n.start..n.start + n.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(img: &[&str], approx: ChainApprox) -> Vec<Vec<[i32; 2]>> {
        let (h, w) = (img.len(), img[0].len());
        let mut t = ContourTracer::default();
        let (buf, stride) = t.reset(h, w);
        for (y, r) in img.iter().enumerate() {
            for (x, b) in r.bytes().enumerate() {
                buf[(y + 1) * stride + x + 1] = i32::from(b == b'#');
            }
        }
        t.trace_all(approx);
        let mut order = Vec::new();
        t.output_order(&mut order);
        order.iter().map(|&id| t.points(id).to_vec()).collect()
    }

    #[test]
    fn square_simple_is_four_corners_counter_clockwise_in_image_coords() {
        // cv2.findContours(np.ones((3,4),np.uint8), RETR_TREE, CHAIN_APPROX_SIMPLE)
        // -> [[0,0],[0,2],[3,2],[3,0]]
        let c = trace(&["####", "####", "####"], ChainApprox::Simple);
        assert_eq!(c, vec![vec![[0, 0], [0, 2], [3, 2], [3, 0]]]);
    }

    #[test]
    fn single_pixel_and_ring() {
        let c = trace(&["#...", "....", "...."], ChainApprox::Simple);
        assert_eq!(c, vec![vec![[0, 0]]]);
        let c = trace(&["###", "#.#", "###"], ChainApprox::None);
        assert_eq!(c.len(), 2, "outer border and hole");
        assert_eq!(c[0].len(), 8);
    }
}

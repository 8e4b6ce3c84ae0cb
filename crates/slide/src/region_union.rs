//! [`SlideReader::read_regions`]: many boxes read with one decode of the level data they share.
//!
//! # Algorithm
//! 1. Plan every box as `read_region` does (the level rectangle behind it and its resampling),
//!    in order, so the first invalid box gives `read_region`'s error.
//! 2. Group consecutive boxes: a box joins the open group when it reads the same level, that
//!    level reads crops exactly, and the group's union rectangle stays within
//!    [`MAX_UNION_RATIO`] times the summed rectangle areas and [`MAX_UNION_PIXELS`]; otherwise
//!    it opens a new group. Patches of one grid row overlap and merge; the jump to the next row
//!    does not.
//! 3. Read each group of two or more boxes as its union rectangle, in pieces along the level's
//!    tile columns (or tile rows, when the union is one tile wide) read in parallel, each piece
//!    through [`SlideReader::read_level`] (so padding outside the slide is white as before).
//!    A group of one box is read as `read_region` reads it.
//! 4. Cut every box's rectangle from the pieces and resample it exactly as `read_region` does.
//!    Since the level reads crop exactly, the pixels cut are those a direct read returns, and
//!    so is every image.
//!
//! This suits backends whose reads cost per pixel read (OpenSlide paints every pixel of a read
//! through cairo). Backends that copy from decoded tiles kept in memory override
//! `read_regions`: the TIFF backend decodes each tile of the merged unions once, in parallel,
//! and then copies every box from its tile cache ([`merged_unions`], [`read_each`]); the
//! plain-image backend reads every box alone ([`read_each`]), its image being in memory.
//!
//! Memory: the pieces of a group at a time per thread; a union is at most [`MAX_UNION_PIXELS`].

use image::RgbImage;
use rayon::prelude::*;

use crate::resolution::Resolution;
use crate::slide_errors::ReadError;
use crate::slide_reader::{Interpolation, RegionPlan, SlideReader, plan_region};

/// A group's union rectangle may cover at most this many times the summed areas of its boxes'
/// level rectangles (overlaps counted each time): enough for a row of patches with gaps between
/// them, not for boxes of different grid rows.
pub(crate) const MAX_UNION_RATIO: f64 = 1.5;

/// Largest union read (16 Mpx, 48 MB of RGB); boxes beyond it start a new group.
pub(crate) const MAX_UNION_PIXELS: i128 = 1 << 24;

/// Narrowest piece a union is split into for parallel reads (whole tiles are added up to it).
const MIN_PIECE_PX: u64 = 256;

/// A rectangle of a level, `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

impl Rect {
    fn of(p: &RegionPlan) -> Self {
        Self {
            x0: p.x,
            y0: p.y,
            x1: p.x + i64::from(p.width),
            y1: p.y + i64::from(p.height),
        }
    }

    fn area(&self) -> i128 {
        i128::from(self.x1 - self.x0) * i128::from(self.y1 - self.y0)
    }

    fn union(&self, o: &Self) -> Self {
        Self {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
}

/// Consecutive boxes read from one union rectangle of `level`.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    level: usize,
    union: Rect,
    /// Summed areas of the members' rectangles.
    summed: i128,
    /// Indices into the plans, increasing.
    members: Vec<usize>,
}

/// Step 2: groups of consecutive plans (see the module docs).
fn group_plans(plans: &[RegionPlan], crops_exactly: impl Fn(usize) -> bool) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let r = Rect::of(p);
        if let Some(g) = groups.last_mut()
            && g.level == p.level
            && crops_exactly(p.level)
        {
            let union = g.union.union(&r);
            let summed = g.summed + r.area();
            let a = union.area();
            if a <= MAX_UNION_PIXELS && a as f64 <= MAX_UNION_RATIO * summed as f64 {
                g.union = union;
                g.summed = summed;
                g.members.push(i);
                continue;
            }
        }
        groups.push(Group {
            level: p.level,
            union: r,
            summed: r.area(),
            members: vec![i],
        });
    }
    groups
}

/// Cuts `u` into pieces along whole tiles of `tile` (columns, or rows when `u` lies in one tile
/// column), each at least [`MIN_PIECE_PX`] wide (or high) but the last; one piece without tiles.
fn split_along_tiles(u: Rect, tile: Option<(u64, u64)>) -> Vec<Rect> {
    let Some((tw, th)) = tile.filter(|&(w, h)| w > 0 && h > 0) else {
        return vec![u];
    };
    let cuts = |lo: i64, hi: i64, t: u64| -> Vec<(i64, i64)> {
        let step = i64::try_from(MIN_PIECE_PX.div_ceil(t) * t).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        let mut a = lo;
        while a < hi {
            // The next multiple of `step` after `a` (tile boundaries are multiples of the tile).
            let b = (a.div_euclid(step).saturating_add(1))
                .saturating_mul(step)
                .min(hi);
            out.push((a, b));
            a = b;
        }
        out
    };
    let tw_i = i64::try_from(tw).unwrap_or(i64::MAX);
    if u.x0.div_euclid(tw_i) != (u.x1 - 1).div_euclid(tw_i) {
        cuts(u.x0, u.x1, tw)
            .into_iter()
            .map(|(x0, x1)| Rect { x0, x1, ..u })
            .collect()
    } else {
        cuts(u.y0, u.y1, th)
            .into_iter()
            .map(|(y0, y1)| Rect { y0, y1, ..u })
            .collect()
    }
}

/// Step 3: the union of `g` as pieces (rectangle, pixels), read in parallel.
fn read_pieces<S: SlideReader + ?Sized>(
    slide: &S,
    g: &Group,
) -> Result<Vec<(Rect, RgbImage)>, ReadError> {
    split_along_tiles(g.union, slide.tile_size(g.level))
        .into_par_iter()
        .map(|p| {
            let (w, h) = ((p.x1 - p.x0) as u32, (p.y1 - p.y0) as u32);
            Ok((p, slide.read_level(g.level, p.x0, p.y0, w, h)?))
        })
        .collect()
}

/// Step 4: the level rectangle of `p` cut from the pieces covering it, row by row
/// (`imageops`' pixel-by-pixel copies would cost as much as painting the pixels).
fn cut(pieces: &[(Rect, RgbImage)], p: &RegionPlan) -> RgbImage {
    let r = Rect::of(p);
    let row = p.width as usize * 3;
    let mut out = vec![0u8; row * p.height as usize];
    for (pr, img) in pieces {
        let (x0, x1) = (r.x0.max(pr.x0), r.x1.min(pr.x1));
        let (y0, y1) = (r.y0.max(pr.y0), r.y1.min(pr.y1));
        if x0 >= x1 || y0 >= y1 {
            continue;
        }
        let src_row = img.width() as usize * 3;
        let n = (x1 - x0) as usize * 3;
        let (sx, dx) = ((x0 - pr.x0) as usize * 3, (x0 - r.x0) as usize * 3);
        for y in y0..y1 {
            let s = (y - pr.y0) as usize * src_row + sx;
            let d = (y - r.y0) as usize * row + dx;
            out[d..d + n].copy_from_slice(&img.as_raw()[s..s + n]);
        }
    }
    RgbImage::from_raw(p.width, p.height, out).expect("width * height * 3 bytes")
}

/// Step 1: every box planned as `read_region` plans it; the first invalid box's error.
pub(crate) fn plan_all<S: SlideReader + ?Sized>(
    slide: &S,
    boxes: &[[i64; 4]],
    res: Resolution,
    interpolation: Interpolation,
) -> Result<Vec<RegionPlan>, ReadError> {
    boxes
        .iter()
        .map(|&b| plan_region(slide, b, res, interpolation))
        .collect()
}

/// Every planned box read on its own (as `read_region` reads it), in parallel.
pub(crate) fn read_each<S: SlideReader + ?Sized>(
    slide: &S,
    plans: &[RegionPlan],
) -> Result<Vec<RgbImage>, ReadError> {
    plans
        .par_iter()
        .map(|p| Ok(p.finish(slide.read_level(p.level, p.x, p.y, p.width, p.height)?)))
        .collect()
}

/// The level rectangles (level, x0, y0, x1, y1) that merged groups of `plans` read: the unions
/// of groups of two or more boxes, clipped to their level (empty ones left out). Backends that
/// keep decoded tiles (TIFF) decode these tiles once, then read each box from the cache.
pub(crate) fn merged_unions<S: SlideReader + ?Sized>(
    slide: &S,
    plans: &[RegionPlan],
) -> Vec<(usize, [u64; 4])> {
    let levels = &slide.info().levels;
    group_plans(plans, |level| slide.read_crops_exactly(level))
        .into_iter()
        .filter(|g| g.members.len() > 1)
        .filter_map(|g| {
            let lv = levels.get(g.level)?;
            let (lw, lh) = (lv.width as i64, lv.height as i64);
            let u = g.union;
            let c = [
                u.x0.clamp(0, lw),
                u.y0.clamp(0, lh),
                u.x1.clamp(0, lw),
                u.y1.clamp(0, lh),
            ];
            (c[2] > c[0] && c[3] > c[1]).then(|| (g.level, c.map(|v| v as u64)))
        })
        .collect()
}

/// [`SlideReader::read_regions`] (see the module docs).
pub(crate) fn read_regions<S: SlideReader + ?Sized>(
    slide: &S,
    boxes: &[[i64; 4]],
    res: Resolution,
    interpolation: Interpolation,
) -> Result<Vec<RgbImage>, ReadError> {
    let plans = plan_all(slide, boxes, res, interpolation)?;
    let groups = group_plans(&plans, |level| slide.read_crops_exactly(level));
    let per_group = groups
        .par_iter()
        .map(|g| -> Result<Vec<RgbImage>, ReadError> {
            if let [i] = g.members.as_slice() {
                return read_each(slide, &plans[*i..=*i]);
            }
            let pieces = read_pieces(slide, g)?;
            Ok(g.members
                .par_iter()
                .map(|&i| plans[i].finish(cut(&pieces, &plans[i])))
                .collect())
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Groups hold consecutive boxes in order, so their images concatenate in box order.
    Ok(per_group.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x0: i64, y0: i64, x1: i64, y1: i64) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    #[test]
    fn pieces_follow_tile_columns_then_rows() {
        // A batch union 1404 px wide from x = -46: pieces end on multiples of 256.
        let u = rect(-46, 118, 1358, 374);
        let p = split_along_tiles(u, Some((256, 256)));
        let xs: Vec<_> = p.iter().map(|r| (r.x0, r.x1)).collect();
        assert_eq!(
            xs,
            [
                (-46, 0),
                (0, 256),
                (256, 512),
                (512, 768),
                (768, 1024),
                (1024, 1280),
                (1280, 1358)
            ]
        );
        assert!(p.iter().all(|r| (r.y0, r.y1) == (118, 374)));
        // 240 px tiles: pieces of two tiles (480 px) reach 256 px.
        let p = split_along_tiles(rect(100, 0, 1100, 10), Some((240, 240)));
        let xs: Vec<_> = p.iter().map(|r| (r.x0, r.x1)).collect();
        assert_eq!(xs, [(100, 480), (480, 960), (960, 1100)]);
        // Strips as wide as the level: cut into rows of whole strips.
        let p = split_along_tiles(rect(10, 5, 900, 700), Some((1000, 16)));
        let ys: Vec<_> = p.iter().map(|r| (r.y0, r.y1)).collect();
        assert_eq!(ys, [(5, 256), (256, 512), (512, 700)]);
        assert_eq!(split_along_tiles(u, None), [u]);
        assert_eq!(split_along_tiles(u, Some((0, 256))), [u]);
    }

    fn plan(level: usize, x: i64, y: i64, width: u32, height: u32) -> RegionPlan {
        RegionPlan {
            level,
            x,
            y,
            width,
            height,
            out_w: width,
            out_h: height,
            filter: crate::resample::Filter::Area,
        }
    }

    #[test]
    fn a_row_of_patches_merges_and_the_next_row_does_not() {
        // A batch that wraps: the last four patches of a 92-patch grid row, then the first four
        // of the next row (256 px every 164 px).
        let at = |col: i64, row: i64| plan(0, -46 + 164 * col, -46 + 164 * row, 256, 256);
        let plans: Vec<_> = (88..92)
            .map(|c| at(c, 0))
            .chain((0..4).map(|c| at(c, 1)))
            .collect();
        let g = group_plans(&plans, |_| true);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].members, [0, 1, 2, 3]);
        assert_eq!(g[0].union, rect(-46 + 164 * 88, -46, 164 * 91 + 210, 210));
        assert_eq!(g[1].members, [4, 5, 6, 7]);
        assert_eq!(g[1].union, rect(-46, 118, 164 * 3 + 210, 374));
        // No merging where crops are not exact, nor across levels.
        assert_eq!(group_plans(&plans, |_| false).len(), 8);
        let mixed = [plan(0, 0, 0, 10, 10), plan(1, 5, 0, 10, 10)];
        assert_eq!(group_plans(&mixed, |_| true).len(), 2);
        // Side by side with a gap: a 30 x 10 union is 1.5 x the two 10 x 10 boxes and merges, a
        // 31 x 10 one does not.
        let gap = [plan(0, 0, 0, 10, 10), plan(0, 20, 0, 10, 10)];
        assert_eq!(group_plans(&gap, |_| true).len(), 1);
        let far = [plan(0, 0, 0, 10, 10), plan(0, 21, 0, 10, 10)];
        assert_eq!(group_plans(&far, |_| true).len(), 2);
    }

    #[test]
    fn unions_stay_within_the_pixel_cap() {
        // 4096-wide rows of 1024 px side by side: four fit 16 Mpx, the fifth opens a new group.
        let plans: Vec<_> = (0..5).map(|k| plan(0, 1024 * k, 0, 1024, 4096)).collect();
        let g = group_plans(&plans, |_| true);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].members, [0, 1, 2, 3]);
        assert_eq!(g[0].union.area(), MAX_UNION_PIXELS);
    }
}

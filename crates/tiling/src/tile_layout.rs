//! The post-processing tile layout of TIAToolbox's tile mode (`_get_tile_info`): full tiles of
//! `T = floor(tile_shape / patch_output) * patch_output` pixels on a row-major grid, then three
//! more sets that re-process the seams with a margin `m`: vertical strips (`2m` wide, on the
//! right edge of each tile), horizontal strips (`2m` high, on the bottom edge) and cross sections
//! (`4m x 4m`, on each inner corner). Each tile carries four flags (top, bottom, left, right): a
//! flag is cleared where that side touches the image border, because nothing lies beyond it.
//! The `instmerge` crate applies the margin rules with these flags.

use mtseg_types::Size2;

use crate::patch_grid::PatchGridBuilder;
use crate::tiling_errors::GridError;

/// The four tile sets, in the order they are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileSet {
    /// Full tiles (TIAToolbox mode 0).
    Full,
    /// Vertical strips across the vertical seams (mode 1).
    VerticalStrip,
    /// Horizontal strips across the horizontal seams (mode 2).
    HorizontalStrip,
    /// Cross sections at the seams' crossings (mode 3).
    Cross,
}

/// Which sides of a tile face a neighbour (true) rather than the image border (false).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SideFlags {
    /// Top side.
    pub top: bool,
    /// Bottom side.
    pub bottom: bool,
    /// Left side.
    pub left: bool,
    /// Right side.
    pub right: bool,
}

impl SideFlags {
    /// All four set.
    pub const ALL: Self = Self::from_array([true; 4]);
    /// None set.
    pub const NONE: Self = Self::from_array([false; 4]);

    /// From `[top, bottom, left, right]`.
    pub const fn from_array(a: [bool; 4]) -> Self {
        Self {
            top: a[0],
            bottom: a[1],
            left: a[2],
            right: a[3],
        }
    }

    /// As `[top, bottom, left, right]`.
    pub const fn to_array(self) -> [bool; 4] {
        [self.top, self.bottom, self.left, self.right]
    }
}

/// One post-processing tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostprocTile {
    /// Which set it belongs to.
    pub set: TileSet,
    /// `[x0, y0, x1, y1]` on the canvas (may run past the canvas; post-processing clips it).
    pub bounds: [i64; 4],
    /// Sides facing a neighbour.
    pub flags: SideFlags,
}

/// The tiles of a canvas of `image` pixels, tile side `tile` (already a multiple of the output
/// patch) and margin `margin`, in merge order (all full tiles, then vertical strips, horizontal
/// strips, crosses). `keep` filters the full tiles (e.g. tiles without tissue); strips and crosses
/// come only from kept tiles. A canvas no larger than one tile gives one tile with no flags.
pub fn tile_layout(
    image: Size2,
    tile: u64,
    margin: u64,
    keep: impl Fn(&[i64; 4]) -> bool,
) -> Result<Vec<PostprocTile>, GridError> {
    let grid = PatchGridBuilder::new(image, Size2::new(tile, tile)).build()?;
    let boxes: Vec<[i64; 4]> = grid.iter().map(|p| p.output).filter(|b| keep(b)).collect();
    if image.width <= tile && image.height <= tile {
        return Ok(boxes
            .into_iter()
            .map(|bounds| PostprocTile {
                set: TileSet::Full,
                bounds,
                flags: SideFlags::NONE,
            })
            .collect());
    }
    let (w, h, m) = (image.width as i64, image.height as i64, margin as i64);
    // Closed-interval intersection with the four border lines, as shapely's `intersects`.
    let unset = |b: &[i64; 4], mut f: [bool; 4]| {
        let on_x = b[0] <= w && b[2] >= 0;
        let on_y = b[1] <= h && b[3] >= 0;
        if on_x && b[1] <= 0 && b[3] >= 0 {
            f[0] = false;
        }
        if on_x && b[1] <= h && b[3] >= h {
            f[1] = false;
        }
        if on_y && b[0] <= 0 && b[2] >= 0 {
            f[2] = false;
        }
        if on_y && b[0] <= w && b[2] >= w {
            f[3] = false;
        }
        SideFlags::from_array(f)
    };
    let full: Vec<PostprocTile> = boxes
        .iter()
        .map(|b| PostprocTile {
            set: TileSet::Full,
            bounds: *b,
            flags: unset(b, [true; 4]),
        })
        .collect();
    let mut out = full.clone();
    for t in full.iter().filter(|t| t.flags.right) {
        let b = [t.bounds[2] - m, t.bounds[1], t.bounds[2] + m, t.bounds[3]];
        out.push(PostprocTile {
            set: TileSet::VerticalStrip,
            bounds: b,
            flags: unset(&b, [true, true, false, false]),
        });
    }
    for t in full.iter().filter(|t| t.flags.bottom) {
        let b = [t.bounds[0], t.bounds[3] - m, t.bounds[2], t.bounds[3] + m];
        out.push(PostprocTile {
            set: TileSet::HorizontalStrip,
            bounds: b,
            flags: unset(&b, [false, false, true, true]),
        });
    }
    for t in full.iter().filter(|t| t.flags.bottom && t.flags.right) {
        out.push(PostprocTile {
            set: TileSet::Cross,
            bounds: [
                t.bounds[2] - 2 * m,
                t.bounds[3] - 2 * m,
                t.bounds[2] + 2 * m,
                t.bounds[3] + 2 * m,
            ],
            flags: SideFlags::ALL,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(a: [u8; 4]) -> SideFlags {
        SideFlags::from_array(a.map(|v| v == 1))
    }

    fn find(tiles: &[PostprocTile], set: TileSet, bounds: [i64; 4]) -> SideFlags {
        tiles
            .iter()
            .find(|t| t.set == set && t.bounds == bounds)
            .unwrap_or_else(|| panic!("no {set:?} tile {bounds:?}"))
            .flags
    }

    #[test]
    fn reference_fixture_16x16_t4_m1() {
        // Reference section 3.1 (TIAToolbox v1.6.0 test_nucleus_instance_segmentor, re-verified
        // on the current algorithm).
        let t = tile_layout(Size2::new(16, 16), 4, 1, |_| true).unwrap();
        let count = |s| t.iter().filter(|x| x.set == s).count();
        assert_eq!(
            (
                count(TileSet::Full),
                count(TileSet::VerticalStrip),
                count(TileSet::HorizontalStrip),
                count(TileSet::Cross)
            ),
            (16, 12, 12, 9)
        );
        assert_eq!(find(&t, TileSet::Full, [0, 0, 4, 4]), flags([0, 1, 0, 1]));
        assert_eq!(find(&t, TileSet::Full, [4, 0, 8, 4]), flags([0, 1, 1, 1]));
        assert_eq!(find(&t, TileSet::Full, [12, 0, 16, 4]), flags([0, 1, 1, 0]));
        assert_eq!(find(&t, TileSet::Full, [4, 4, 8, 8]), flags([1, 1, 1, 1]));
        assert_eq!(
            find(&t, TileSet::Full, [12, 12, 16, 16]),
            flags([1, 0, 1, 0])
        );
        assert_eq!(
            find(&t, TileSet::VerticalStrip, [3, 0, 5, 4]),
            flags([0, 1, 0, 0])
        );
        assert_eq!(
            find(&t, TileSet::VerticalStrip, [3, 4, 5, 8]),
            flags([1, 1, 0, 0])
        );
        assert_eq!(
            find(&t, TileSet::VerticalStrip, [11, 12, 13, 16]),
            flags([1, 0, 0, 0])
        );
        assert_eq!(
            find(&t, TileSet::HorizontalStrip, [0, 3, 4, 5]),
            flags([0, 0, 0, 1])
        );
        assert_eq!(
            find(&t, TileSet::HorizontalStrip, [4, 3, 8, 5]),
            flags([0, 0, 1, 1])
        );
        assert_eq!(
            find(&t, TileSet::HorizontalStrip, [12, 3, 16, 5]),
            flags([0, 0, 1, 0])
        );
        assert_eq!(find(&t, TileSet::Cross, [2, 2, 6, 6]), SideFlags::ALL);
        assert_eq!(find(&t, TileSet::Cross, [10, 10, 14, 14]), SideFlags::ALL);
        // Merge order: all full tiles first, then the strips, then the crosses.
        assert!(t.windows(2).all(|p| p[0].set <= p[1].set));
        assert_eq!(t[0].bounds, [0, 0, 4, 4]);
        assert_eq!(t[1].bounds, [4, 0, 8, 4]);
    }

    #[test]
    fn small_canvas_is_one_tile_without_flags() {
        // test_get_tile_info_small_image_triggers_early_return: 100 x 100, tile 200.
        let t = tile_layout(Size2::new(100, 100), 200, 128, |_| true).unwrap();
        assert_eq!(
            t,
            vec![PostprocTile {
                set: TileSet::Full,
                bounds: [0, 0, 200, 200],
                flags: SideFlags::NONE
            }]
        );
    }

    #[test]
    fn tiles_without_tissue_are_left_out_with_their_seams() {
        let t = tile_layout(Size2::new(16, 16), 4, 1, |b| b[0] < 8).unwrap();
        assert_eq!(t.iter().filter(|x| x.set == TileSet::Full).count(), 8);
        assert!(t.iter().all(|x| x.bounds[0] < 10));
    }
}

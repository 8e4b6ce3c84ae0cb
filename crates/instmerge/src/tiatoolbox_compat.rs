//! The switch between TIAToolbox's exact tile-mode behaviour and ours (four bug fixes).

use mtseg_tiling::Size2;

/// Which of TIAToolbox's tile-mode defects to reproduce. The default ([`Self::OFF`]) fixes
/// all four; [`Self::exact`] reproduces TIAToolbox 2.1.3 (used by the parity tests).
///
/// * `edge_boundary_lines` — the lost-edge-nuclei quirk (reference section 3.3): a strip side
///   that lies on the image border has its flag cleared, so TIAToolbox tests it against a 1-px
///   `boundary_line` and drops every nucleus touching the image border inside the strip, while
///   the full tiles on both sides already dropped it as lying in their margin. With `false`, a
///   strip side on the image border removes nothing (nothing was cut there).
/// * `grid_extent` — the grid-anchoring bug (reference section 3.1): TIAToolbox sizes the tile
///   grid by the selected-output bounding box (`mask_bounds`) but anchors it at the canvas origin
///   (`mask_padding`), which lies one stride up/left of that box, so the last stride-wide
///   column/row of tissue can fall outside every tile. With `None`, the grid covers the whole
///   canvas it is given. With `Some(extent)`, the grid (and its border flags) are sized by
///   `extent` and anchored at the canvas origin, as TIAToolbox does.
/// * `closed_margin_boxes` — lost nuclei at the margin edges: TIAToolbox tests pixel boxes as
///   closed rectangles, so every margin box and 1-px line meets one pixel line more than it
///   covers, and a nucleus whose box starts or ends exactly on a margin edge is dropped by both
///   tiles that share it (e.g. a full tile drops it as lying in its margin, the strip as touching
///   its cut line `x0 <= 1`; a strip drops it as meeting its margin, the cross as lying in its
///   own). With `false`: strips test the pixels of their margins and their outermost pixel line
///   only, full tiles keep a nucleus that touches a strip's cut line, and a cross removes the
///   earlier nuclei meeting the pixels of its inner `2m x 2m` square (exactly those it keeps),
///   so each nucleus has one owner.
/// * `layer_margin_rules` — lost tissue layers (reference section 3.2, QUIRK): TIAToolbox runs
///   the HoVer-Net+ layer polygons of every tile through the nucleus margin rules, testing the
///   box of the *whole class* in the tile. That box meets every cut edge and every cross
///   section's margin lines, so strips drop their polygons and each cross removes the full
///   tiles' polygons around it: what is left is mostly the `4m x 4m` cross sections (the
///   polygons give back 50% of the full-mode layer map in `tests/layer_tiles.rs`; in the
///   pipeline's HoVer-Net+ end-to-end test, tiles 492 / margin 64, a per-class IoU with the
///   true layers of 0.17-0.51). Its dense layer map (`predictions`) keeps it all: each tile
///   overwrites its bounds, full tiles first, then strips, then crosses. With `false`, each
///   tile keeps the layer polygons of the part of the canvas it owns in that map (its bounds
///   less those of every later tile of the layout), and no rule removes any: the polygons
///   partition exactly the dense map TIAToolbox writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TiaToolboxCompat {
    /// Reproduce the 1-px boundary lines on image-border sides of strips.
    pub edge_boundary_lines: bool,
    /// Size the tile grid by this extent instead of the canvas (TIAToolbox's `mask_bounds`
    /// width and height); only the tile-mode driver reads it.
    pub grid_extent: Option<Size2>,
    /// Test margin boxes and boundary lines as closed rectangles.
    pub closed_margin_boxes: bool,
    /// Run the layer polygons through the nucleus margin rules (TIAToolbox) instead of cutting
    /// each tile's layer map to the part of the canvas the tile owns.
    pub layer_margin_rules: bool,
}

impl TiaToolboxCompat {
    /// Every defect fixed (the default).
    pub const OFF: Self = Self {
        edge_boundary_lines: false,
        grid_extent: None,
        closed_margin_boxes: false,
        layer_margin_rules: false,
    };

    /// TIAToolbox's exact behaviour, with its tile grid sized by `grid_extent` (pass the canvas
    /// size when TIAToolbox ran without a tissue mask: then its grid is not shifted).
    pub const fn exact(grid_extent: Size2) -> Self {
        Self {
            edge_boundary_lines: true,
            grid_extent: Some(grid_extent),
            closed_margin_boxes: true,
            layer_margin_rules: true,
        }
    }
}

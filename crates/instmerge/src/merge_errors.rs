//! Errors of the merge and of the tile-mode driver.

use mtseg_postproc::PostprocError;
use mtseg_tiling::GridError;
use mtseg_types::HeadKind;

/// Why a merge or a tile-mode run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// A tile index past the layout.
    #[error("tile index {index} is not in the layout of {tiles} tiles")]
    UnknownTile {
        /// The index given.
        index: usize,
        /// Tiles in the layout.
        tiles: usize,
    },
    /// The same tile pushed again.
    #[error("tile {index} was already merged")]
    TileTwice {
        /// The tile's index.
        index: usize,
    },
    /// `finish` before every tile was pushed.
    #[error("{missing} tiles were never merged, the first is tile {first} at {bounds:?}")]
    MissingTiles {
        /// How many.
        missing: usize,
        /// The lowest missing index.
        first: usize,
        /// Its bounds.
        bounds: [i64; 4],
    },
    /// A layout tile with inverted bounds.
    #[error("tile {index} at {bounds:?} has x1 < x0 or y1 < y0")]
    EmptyTile {
        /// The tile's index.
        index: usize,
        /// Its bounds.
        bounds: [i64; 4],
    },
    /// An instance not inside its tile (were the coordinates offset by the tile origin?).
    #[error(
        "instance {index} of tile {tile} at {bounds:?} has position {position:?} and box {bbox:?}: \
         expected a non-empty box positioned inside the tile, in canvas coordinates"
    )]
    InstanceOutsideTile {
        /// The tile's index.
        tile: usize,
        /// The tile's bounds.
        bounds: [i64; 4],
        /// The instance's index in the pushed list.
        index: usize,
        /// Its position.
        position: [f64; 2],
        /// Its box.
        bbox: [i32; 4],
    },
    /// A margin that does not fit pixel coordinates.
    #[error("margin {margin} px is larger than any canvas")]
    MarginTooLarge {
        /// The margin given.
        margin: u64,
    },
    /// Rows given to the streaming driver out of order, or maps of the wrong length.
    #[error(
        "canvas rows out of order: expected row {expected}, got {rows} rows from row {got} \
         (canvas height {height}), or a map of the wrong length"
    )]
    RowsOutOfOrder {
        /// The next row expected.
        expected: usize,
        /// The first row given.
        got: usize,
        /// Rows given.
        rows: usize,
        /// Canvas height.
        height: usize,
    },
    /// The post-processing tile size is zero.
    #[error("the post-processing tile size must be at least 1 px")]
    ZeroTile,
    /// A canvas buffer of the wrong length.
    #[error(
        "the canvas {map} map has {found} values, expected {expected} ({height} x {width} x {channels})"
    )]
    CanvasBuffer {
        /// Which map.
        map: &'static str,
        /// Its length.
        found: usize,
        /// `height * width * channels`.
        expected: usize,
        /// Canvas height.
        height: usize,
        /// Canvas width.
        width: usize,
        /// Channels of that map.
        channels: usize,
    },
    /// The tile layout could not be built.
    #[error("tile layout: {0}")]
    Layout(#[from] GridError),
    /// A checkpoint given to `StreamingTileMode::resume` that was taken for another run (or
    /// written in another checkpoint format).
    #[error("the checkpoint does not fit this run: {what}")]
    CheckpointMismatch {
        /// What differs, with both values (canvas size, tile layout, margin, maps, TIAToolbox
        /// compat, np/hv parameters, format).
        what: String,
    },
    /// A checkpoint whose content the driver could not have reached (edited or damaged).
    #[error("the checkpoint is inconsistent: {what}")]
    CheckpointInvalid {
        /// The first inconsistency found.
        what: String,
    },
    /// A row chunk built from head maps without the np or hv map.
    #[error("the row chunk from row {y0} has no {} map (the streaming driver needs np and hv)", .head.name())]
    MissingHead {
        /// The head missing.
        head: HeadKind,
        /// The chunk's first canvas row.
        y0: usize,
    },
    /// A row chunk built from head maps with one head twice.
    #[error("the row chunk from row {y0} has the {} map twice", .head.name())]
    HeadTwice {
        /// The head given twice.
        head: HeadKind,
        /// The chunk's first canvas row.
        y0: usize,
    },
    /// Post-processing a tile failed.
    #[error("post-processing the tile at {bounds:?}: {source}")]
    Postproc {
        /// The tile's bounds.
        bounds: [i64; 4],
        /// The cause.
        source: PostprocError,
    },
}

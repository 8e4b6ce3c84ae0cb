//! Errors of this crate.

/// What can go wrong when post-processing a canvas.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PostprocError {
    /// A map's buffer does not hold `height * width * channels` values.
    #[error(
        "{map} buffer has {found} values, expected {expected} ({height} x {width} x {channels})"
    )]
    BufferLength {
        /// Which map (`np`, `hv`, `tp`, `ls`, `labels`, `layers`).
        map: &'static str,
        /// Values found.
        found: usize,
        /// Values expected.
        expected: usize,
        /// Canvas height.
        height: usize,
        /// Canvas width.
        width: usize,
        /// Channels per pixel.
        channels: usize,
    },
    /// The canvas is larger than this crate's `u32` pixel indices allow.
    #[error("canvas {height} x {width} has more than {max} pixels")]
    CanvasTooLarge {
        /// Canvas height.
        height: usize,
        /// Canvas width.
        width: usize,
        /// Largest supported pixel count.
        max: u64,
    },
    /// A map the step needs is not in the canvas view.
    #[error("the canvas has no {map} map")]
    MissingMap {
        /// Which map (`tp`, `ls`).
        map: &'static str,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Field name in [`crate::NpHvParams`].
        name: &'static str,
        /// The value given, printed.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

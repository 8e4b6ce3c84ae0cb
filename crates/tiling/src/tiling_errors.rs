//! Errors of the tiling crate.

/// A grid or tile layout that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    /// A size is zero.
    #[error("the {what} size {width} x {height} must be positive")]
    ZeroSize {
        /// Which size.
        what: &'static str,
        /// Width given.
        width: u64,
        /// Height given.
        height: u64,
    },
    /// The output patch does not fit in the input patch.
    #[error("the output patch {output:?} is larger than the input patch {input:?} (w, h)")]
    OutputLargerThanInput {
        /// Input (w, h).
        input: (u64, u64),
        /// Output (w, h).
        output: (u64, u64),
    },
    /// Every patch was removed by the tissue mask.
    #[error(
        "no patch remains after the tissue mask (the mask has no tissue where the slide has pixels)"
    )]
    NoPatchLeft,
}

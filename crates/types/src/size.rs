//! [`Size2`]: a 2-D size in pixels, always (width, height).

use std::fmt;

/// A (width, height) pair of pixel counts.
///
/// The one axis order of every public call in the workspace that takes a 2-D size: slide and
/// canvas sizes, patch sizes, tile sizes. TIAToolbox mixes `(w, h)` and `(h, w)`; converting
/// happens where its arrays are read, never in a signature.
///
/// ```
/// use mtseg_types::Size2;
/// let s = Size2::new(640, 480);
/// assert_eq!((s.width, s.height), (640, 480));
/// assert_eq!(s.area(), 307_200);
/// assert_eq!(s.to_string(), "640 x 480 (w x h)");
/// assert_eq!(Size2::square(164).to_string(), "164");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Size2 {
    /// Columns.
    pub width: u64,
    /// Rows.
    pub height: u64,
}

impl Size2 {
    /// A size of `width` columns and `height` rows.
    #[must_use]
    pub const fn new(width: u64, height: u64) -> Self {
        Self { width, height }
    }

    /// A square size.
    #[must_use]
    pub const fn square(side: u64) -> Self {
        Self::new(side, side)
    }

    /// Whether either side is zero.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// `width * height`, saturating at `u64::MAX`.
    #[must_use]
    pub const fn area(self) -> u64 {
        self.width.saturating_mul(self.height)
    }

    /// `[width, height]` as `usize`, for indexing buffers.
    ///
    /// # Panics
    /// When a side does not fit a `usize` (only on targets narrower than 64 bits).
    #[must_use]
    pub fn to_usize(self) -> [usize; 2] {
        let cast = |v: u64| usize::try_from(v).expect("a pixel count fits usize");
        [cast(self.width), cast(self.height)]
    }
}

impl fmt::Display for Size2 {
    /// A square as one number ("164"), otherwise "W x H (w x h)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.width == self.height {
            write!(f, "{}", self.width)
        } else {
            write!(f, "{} x {} (w x h)", self.width, self.height)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_order_is_width_then_height() {
        let s = Size2::new(3, 2);
        assert_eq!(s.width, 3);
        assert_eq!(s.height, 2);
        assert_eq!(s.to_usize(), [3, 2]);
        assert!(!s.is_empty());
        assert!(Size2::new(0, 5).is_empty());
        assert_eq!(Size2::new(u64::MAX, 2).area(), u64::MAX);
    }
}

//! The borrowed input of post-processing: one stitched canvas (or tile) of head outputs.

use crate::PostprocError;

/// Largest canvas in pixels: pixel indices are kept in `u32`.
pub(crate) const MAX_PIXELS: u64 = u32::MAX as u64;

/// A borrowed view of the stitched head outputs of one canvas or tile, row-major, in TIAToolbox's
/// NHWC layout without the batch axis.
///
/// * `np`: `height * width` nucleus probabilities (softmax channel 1 of the np head);
/// * `hv`: `height * width * 2` interleaved `(h, v)` = (horizontal, vertical) distance maps;
/// * `tp`: optional `height * width` nucleus class ids as averaged floats (argmax ids, averaged where
///   patches overlap; rounded half-to-even here, as `np.around`);
/// * `ls`: optional `height * width` HoVer-Net+ layer ids as averaged floats.
///
/// Build it with [`CanvasView::new`], which checks every buffer length.
#[derive(Debug, Clone, Copy)]
pub struct CanvasView<'a> {
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) np: &'a [f32],
    pub(crate) hv: &'a [f32],
    pub(crate) tp: Option<&'a [f32]>,
    pub(crate) ls: Option<&'a [f32]>,
}

pub(crate) fn check_len(
    map: &'static str,
    found: usize,
    height: usize,
    width: usize,
    channels: usize,
) -> Result<(), PostprocError> {
    let expected = height
        .checked_mul(width)
        .and_then(|p| p.checked_mul(channels))
        .unwrap_or(usize::MAX);
    if found != expected {
        return Err(PostprocError::BufferLength {
            map,
            found,
            expected,
            height,
            width,
            channels,
        });
    }
    Ok(())
}

pub(crate) fn check_size(height: usize, width: usize) -> Result<(), PostprocError> {
    if (height as u64).saturating_mul(width as u64) > MAX_PIXELS {
        return Err(PostprocError::CanvasTooLarge {
            height,
            width,
            max: MAX_PIXELS,
        });
    }
    Ok(())
}

impl<'a> CanvasView<'a> {
    /// A view of the np and hv maps of a `height x width` canvas.
    ///
    /// # Errors
    /// [`PostprocError::BufferLength`] when `np.len() != height * width` or
    /// `hv.len() != 2 * height * width`; [`PostprocError::CanvasTooLarge`] past `u32::MAX` pixels.
    pub fn new(
        height: usize,
        width: usize,
        np: &'a [f32],
        hv: &'a [f32],
    ) -> Result<Self, PostprocError> {
        check_size(height, width)?;
        check_len("np", np.len(), height, width, 1)?;
        check_len("hv", hv.len(), height, width, 2)?;
        Ok(Self {
            height,
            width,
            np,
            hv,
            tp: None,
            ls: None,
        })
    }

    /// Adds the type map (`height * width` averaged class ids).
    ///
    /// # Errors
    /// [`PostprocError::BufferLength`] when `tp.len() != height * width`.
    pub fn with_types(mut self, tp: &'a [f32]) -> Result<Self, PostprocError> {
        check_len("tp", tp.len(), self.height, self.width, 1)?;
        self.tp = Some(tp);
        Ok(self)
    }

    /// Adds the HoVer-Net+ layer map (`height * width` averaged layer ids).
    ///
    /// # Errors
    /// [`PostprocError::BufferLength`] when `ls.len() != height * width`.
    pub fn with_layers(mut self, ls: &'a [f32]) -> Result<Self, PostprocError> {
        check_len("ls", ls.len(), self.height, self.width, 1)?;
        self.ls = Some(ls);
        Ok(self)
    }

    /// Canvas height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Canvas width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The type map, if any.
    pub fn types(&self) -> Option<&'a [f32]> {
        self.tp
    }

    /// The layer map, if any.
    pub fn layers(&self) -> Option<&'a [f32]> {
        self.ls
    }
}

/// `np.around(x).astype(uint8)` for class-id maps: half-to-even rounding, saturated to 0..=255
/// (NaN gives 0). numpy's cast of out-of-range values is platform-defined; class ids never are.
pub(crate) fn round_class_id(x: f32) -> u8 {
    let r = x.round_ties_even();
    if r.is_nan() || r <= 0.0 {
        0
    } else if r >= 255.0 {
        255
    } else {
        r as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_lengths_with_values() {
        let np = vec![0.0; 6];
        let hv = vec![0.0; 11];
        let err = CanvasView::new(2, 3, &np, &hv).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hv buffer has 11 values, expected 12 (2 x 3 x 2)"
        );
        let hv = vec![0.0; 12];
        let v = CanvasView::new(2, 3, &np, &hv).unwrap();
        assert!(v.with_types(&[0.0; 5]).is_err());
    }

    #[test]
    fn class_ids_round_half_to_even() {
        assert_eq!(round_class_id(0.5), 0);
        assert_eq!(round_class_id(1.5), 2);
        assert_eq!(round_class_id(2.5), 2);
        assert_eq!(round_class_id(-3.0), 0);
        assert_eq!(round_class_id(f32::NAN), 0);
        assert_eq!(round_class_id(400.0), 255);
    }
}

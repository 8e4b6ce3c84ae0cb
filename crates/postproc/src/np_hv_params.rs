//! Parameters of the np/hv -> instances step.

use crate::PostprocError;

/// Parameters of [`crate::np_hv_to_instances`], TIAToolbox's `_proc_np_hv` constants by default.
///
/// | field | default | TIAToolbox |
/// |---|---|---|
/// | `scale_factor` | 1.0 (HoVer-Net at 0.25 mpp); [`NpHvParams::hovernet_plus`] uses 0.5 | `scale_factor` |
/// | `np_threshold` | 0.5 | `blb_raw >= 0.5` |
/// | `edge_threshold` | 0.4 | `overall >= 0.4` |
/// | `min_blob_area` | 10 | `remove_small_objects(max_size=9)`: blobs of at most 9 px go |
///
/// Derived from `scale_factor`: the Sobel size `int(20 * s + 1)` (21 at 1.0, 11 at 0.5; must be
/// odd and at most 31, as OpenCV requires) and the marker minimum area `ceil(10 * s^2)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NpHvParams {
    /// Scale of the nuclei relative to 0.25 mpp (1.0 for HoVer-Net, 0.5 for HoVer-Net+).
    pub scale_factor: f64,
    /// np probability at or above which a pixel is nucleus.
    pub np_threshold: f32,
    /// Sobel edge energy at or above which a nucleus pixel is not a marker.
    pub edge_threshold: f64,
    /// Foreground components with fewer pixels are dropped before anything else.
    pub min_blob_area: usize,
}

impl Default for NpHvParams {
    fn default() -> Self {
        Self::hovernet()
    }
}

impl NpHvParams {
    /// HoVer-Net (`scale_factor` 1.0).
    pub fn hovernet() -> Self {
        Self {
            scale_factor: 1.0,
            np_threshold: 0.5,
            edge_threshold: 0.4,
            min_blob_area: 10,
        }
    }

    /// HoVer-Net+ (`scale_factor` 0.5, as `HoVerNetPlus.postproc` calls `_proc_np_hv`).
    pub fn hovernet_plus() -> Self {
        Self {
            scale_factor: 0.5,
            ..Self::hovernet()
        }
    }

    /// Sobel kernel size, `int(20 * scale_factor + 1)`.
    ///
    /// # Errors
    /// [`PostprocError::InvalidParameter`] unless it is odd and in 1..=31.
    pub fn sobel_ksize(&self) -> Result<usize, PostprocError> {
        let s = self.scale_factor;
        let k = 20.0 * s + 1.0;
        if !(s.is_finite() && (1.0..32.0).contains(&k)) || (k as usize).is_multiple_of(2) {
            return Err(PostprocError::InvalidParameter {
                name: "scale_factor",
                value: s.to_string(),
                reason: "the Sobel size int(20 * scale_factor + 1) must be odd and in 1..=31",
            });
        }
        Ok(k as usize)
    }

    /// Markers with fewer pixels than `ceil(10 * scale_factor^2)` are dropped.
    pub fn min_marker_area(&self) -> usize {
        (10.0 * self.scale_factor * self.scale_factor)
            .ceil()
            .max(0.0) as usize
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`PostprocError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), PostprocError> {
        self.sobel_ksize()?;
        if self.np_threshold.is_nan() {
            return Err(PostprocError::InvalidParameter {
                name: "np_threshold",
                value: self.np_threshold.to_string(),
                reason: "must be a number",
            });
        }
        if self.edge_threshold.is_nan() {
            return Err(PostprocError::InvalidParameter {
                name: "edge_threshold",
                value: self.edge_threshold.to_string(),
                reason: "must be a number",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_sizes_match_tiatoolbox() {
        assert_eq!(NpHvParams::hovernet().sobel_ksize(), Ok(21));
        assert_eq!(NpHvParams::hovernet_plus().sobel_ksize(), Ok(11));
        assert_eq!(NpHvParams::hovernet().min_marker_area(), 10);
        assert_eq!(NpHvParams::hovernet_plus().min_marker_area(), 3);
    }

    #[test]
    fn even_or_huge_sobel_is_refused() {
        let p = NpHvParams {
            scale_factor: 0.75,
            ..NpHvParams::hovernet()
        };
        assert!(p.validate().is_err());
        let p = NpHvParams {
            scale_factor: 2.0,
            ..NpHvParams::hovernet()
        };
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("scale_factor = 2"), "{e}");
    }
}

//! Slide metadata and TIAToolbox's resolution arithmetic: which pyramid level to read for a target
//! resolution, the slide's size at that resolution, and the level region behind a box given at
//! that resolution (`WSIReader.find_read_bounds_params`, `_find_read_params_at_resolution`,
//! `WSIMeta.relative_level_scales`). Rounding follows numpy (`np.round` is half-to-even).

/// A processing resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolution {
    /// Microns per pixel.
    Mpp(f64),
    /// Objective power (e.g. 20 for "20x").
    Power(f64),
    /// A scale relative to level 0 (1.0 = baseline, 0.25 = a quarter of the size).
    Baseline(f64),
}

/// One pyramid level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelInfo {
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
    /// Level-0 pixels per level pixel (OpenSlide's definition: mean of the two axes' ratios).
    pub downsample: f64,
}

/// What a slide reader knows about its slide.
#[derive(Debug, Clone, PartialEq)]
pub struct SlideInfo {
    /// Pyramid levels, level 0 (full resolution) first, then decreasing size.
    pub levels: Vec<LevelInfo>,
    /// Microns per pixel at level 0, (x, y), if known.
    pub mpp: Option<[f64; 2]>,
    /// Objective power at level 0, if known.
    pub objective_power: Option<f64>,
    /// The backend and format, e.g. "openslide (aperio)".
    pub format: String,
}

/// What to read at a pyramid level to produce a box at a target resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelRead {
    /// Pyramid level to read.
    pub level: usize,
    /// Top-left at that level (may be negative: the part outside the slide is white).
    pub x: i64,
    /// Top-left at that level.
    pub y: i64,
    /// Width to read at that level (at least 1).
    pub width: u64,
    /// Height to read at that level (at least 1).
    pub height: u64,
}

fn round_half_even(v: f64) -> f64 {
    v.round_ties_even()
}

impl SlideInfo {
    /// Size of level 0 as (width, height).
    pub fn dimensions(&self) -> (u64, u64) {
        self.levels.first().map_or((0, 0), |l| (l.width, l.height))
    }

    /// Per level, output pixels per level pixel along (x, y) for `res`
    /// (TIAToolbox's `relative_level_scales`). `Err` names the metadata that is missing.
    pub fn level_scales(&self, res: Resolution) -> Result<Vec<[f64; 2]>, String> {
        let (base, target): ([f64; 2], [f64; 2]) = match res {
            Resolution::Mpp(m) => (
                self.mpp
                    .ok_or("has no microns-per-pixel metadata; give [input] mpp or use a { baseline = .. } resolution")?,
                [m, m],
            ),
            Resolution::Power(p) => {
                let obj = self
                    .objective_power
                    .ok_or("has no objective power metadata; use an { mpp = .. } or { baseline = .. } resolution")?;
                ([1.0 / obj; 2], [1.0 / p; 2])
            }
            Resolution::Baseline(b) => ([1.0; 2], [1.0 / b; 2]),
        };
        Ok(self
            .levels
            .iter()
            .map(|l| {
                [
                    base[0] * l.downsample / target[0],
                    base[1] * l.downsample / target[1],
                ]
            })
            .collect())
    }

    /// The level TIAToolbox reads for `res` and its remaining scale: the smallest level that still
    /// has at least the target resolution (scale rounded to 3 decimals <= 1), else level 0.
    pub fn optimal_level(&self, res: Resolution) -> Result<(usize, [f64; 2]), String> {
        let scales = self.level_scales(res)?;
        let sufficient = |s: &[f64; 2]| {
            s.iter()
                .all(|v| (v * 1000.0).round_ties_even() / 1000.0 <= 1.0)
        };
        let level = scales.iter().rposition(sufficient).unwrap_or(0);
        Ok((level, scales[level]))
    }

    /// The slide's size at `res` as (width, height), as TIAToolbox's `slide_dimensions`.
    pub fn dimensions_at(&self, res: Resolution) -> Result<(u64, u64), String> {
        let (level, scale) = self.optimal_level(res)?;
        let ds = self.levels[level].downsample;
        let (w, h) = self.dimensions();
        let lw = round_half_even(w as f64 / ds);
        let lh = round_half_even(h as f64 / ds);
        Ok((
            round_half_even(lw * scale[0]).max(0.0) as u64,
            round_half_even(lh * scale[1]).max(0.0) as u64,
        ))
    }

    /// The level region behind the box `[x0, y0, x1, y1)` given in pixels at `res`
    /// (TIAToolbox's `read_bounds(..., coord_space="resolution")`): the box is taken to baseline
    /// with `ceil`, then to the read level with half-to-even rounding.
    pub fn level_read_for(&self, bounds: [i64; 4], res: Resolution) -> Result<LevelRead, String> {
        let (level, scale) = self.optimal_level(res)?;
        let ds = self.levels[level].downsample;
        let s0 = [scale[0] / ds, scale[1] / ds];
        let size = [
            (bounds[2] - bounds[0]) as f64,
            (bounds[3] - bounds[1]) as f64,
        ];
        if size[0] <= 0.0 || size[1] <= 0.0 {
            return Err(format!("empty box {bounds:?}"));
        }
        let size_base = [(size[0] / s0[0]).ceil(), (size[1] / s0[1]).ceil()];
        let loc_base = [
            (bounds[0] as f64 / s0[0]).ceil(),
            (bounds[1] as f64 / s0[1]).ceil(),
        ];
        let w = round_half_even(size_base[0] / ds).max(1.0);
        let h = round_half_even(size_base[1] / ds).max(1.0);
        Ok(LevelRead {
            level,
            x: round_half_even(loc_base[0] / ds) as i64,
            y: round_half_even(loc_base[1] / ds) as i64,
            width: w as u64,
            height: h as u64,
        })
    }

    /// Output pixels per level-0 pixel at `res` along (x, y): TIAToolbox's scale factor that takes
    /// processing-resolution coordinates back to baseline (divide by it).
    pub fn baseline_scale(&self, res: Resolution) -> Result<[f64; 2], String> {
        let first = self.level_scales(res)?;
        first
            .first()
            .copied()
            .ok_or_else(|| "has no levels".to_string())
    }
}

impl SlideInfo {
    /// Fills a missing objective power from the mpp (nearest common power to 10 / mpp) or a
    /// missing mpp from the power (10 / power), as TIAToolbox's `_estimate_mpp_objective_power`.
    pub fn estimate_missing_metadata(&mut self) {
        match (self.mpp, self.objective_power) {
            (Some(mpp), None) => {
                const COMMON: [f64; 12] = [
                    1.0, 1.25, 2.0, 2.5, 4.0, 5.0, 10.0, 20.0, 40.0, 60.0, 90.0, 100.0,
                ];
                let op = 10.0 / ((mpp[0] + mpp[1]) / 2.0);
                let mut best = COMMON[0];
                for p in COMMON {
                    if (op - p).abs() < (op - best).abs() {
                        best = p;
                    }
                }
                self.objective_power = Some(best);
            }
            (None, Some(p)) if p > 0.0 => self.mpp = Some([10.0 / p; 2]),
            _ => {}
        }
    }
}

/// Turns a TIFF/OpenSlide level list into [`LevelInfo`]s with OpenSlide's downsample definition.
pub fn levels_from_sizes(sizes: &[(u64, u64)]) -> Vec<LevelInfo> {
    let Some(&(w0, h0)) = sizes.first() else {
        return Vec::new();
    };
    sizes
        .iter()
        .map(|&(w, h)| LevelInfo {
            width: w,
            height: h,
            downsample: (w0 as f64 / w.max(1) as f64 + h0 as f64 / h.max(1) as f64) / 2.0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmu() -> SlideInfo {
        SlideInfo {
            levels: levels_from_sizes(&[(2220, 2967)]),
            mpp: Some([0.499, 0.499]),
            objective_power: Some(20.0),
            format: "test".into(),
        }
    }

    fn pyramid() -> SlideInfo {
        // data/cmu_pyramid.tif as made by scripts/setup (libvips), as TIAToolbox reports it.
        SlideInfo {
            levels: levels_from_sizes(&[
                (2220, 2967),
                (1110, 1483),
                (555, 741),
                (277, 370),
                (138, 185),
            ]),
            mpp: Some([0.499001996007984; 2]),
            objective_power: Some(20.0),
            format: "test".into(),
        }
    }

    #[test]
    fn dimensions_at_resolutions_match_tiatoolbox() {
        // Values printed by TIAToolbox 2.1.3 OpenSlideWSIReader.slide_dimensions on cmu_small_region.svs.
        let s = cmu();
        assert_eq!(
            s.dimensions_at(Resolution::Mpp(0.25)).unwrap(),
            (4431, 5922)
        );
        assert_eq!(s.dimensions_at(Resolution::Mpp(0.5)).unwrap(), (2216, 2961));
        assert_eq!(s.dimensions_at(Resolution::Mpp(1.0)).unwrap(), (1108, 1481));
        assert_eq!(
            s.dimensions_at(Resolution::Power(1.25)).unwrap(),
            (139, 185)
        );
        assert_eq!(
            s.dimensions_at(Resolution::Baseline(1.0)).unwrap(),
            (2220, 2967)
        );
    }

    #[test]
    fn optimal_level_is_the_smallest_sufficient_level() {
        let p = pyramid();
        assert_eq!(p.optimal_level(Resolution::Mpp(0.25)).unwrap().0, 0);
        assert_eq!(p.optimal_level(Resolution::Mpp(0.499)).unwrap().0, 0);
        // TIAToolbox: 1.0 mpp -> level 1 (scale 0.998), 2.0 mpp -> level 2, 1.25x -> level 3.
        assert_eq!(p.optimal_level(Resolution::Mpp(1.0)).unwrap().0, 1);
        assert_eq!(p.optimal_level(Resolution::Mpp(2.0)).unwrap().0, 2);
        assert_eq!(p.optimal_level(Resolution::Power(1.25)).unwrap().0, 3);
        assert_eq!(p.dimensions_at(Resolution::Mpp(1.0)).unwrap(), (1108, 1480));
        assert_eq!(p.dimensions_at(Resolution::Mpp(2.0)).unwrap(), (554, 740));
        assert!((p.levels[4].downsample - 16.062397179788483).abs() < 1e-12);
    }

    #[test]
    fn metadata_is_estimated_as_tiatoolbox() {
        let mut s = cmu();
        s.objective_power = None;
        s.estimate_missing_metadata();
        assert_eq!(s.objective_power, Some(20.0));
        s.mpp = None;
        s.objective_power = Some(40.0);
        s.estimate_missing_metadata();
        assert_eq!(s.mpp, Some([0.25, 0.25]));
    }

    #[test]
    fn missing_metadata_is_reported() {
        let mut s = cmu();
        s.mpp = None;
        s.objective_power = None;
        assert!(
            s.level_scales(Resolution::Mpp(0.5))
                .unwrap_err()
                .contains("microns-per-pixel")
        );
        assert!(
            s.level_scales(Resolution::Power(20.0))
                .unwrap_err()
                .contains("objective power")
        );
        assert!(s.level_scales(Resolution::Baseline(0.5)).is_ok());
    }

    #[test]
    fn level_read_rounds_as_tiatoolbox() {
        let s = cmu();
        // 256x256 at 0.25 mpp from (-46, -46): baseline ceil(-46 / 1.996) = -23, size ceil(256/1.996) = 129.
        let r = s
            .level_read_for([-46, -46, 210, 210], Resolution::Mpp(0.25))
            .unwrap();
        assert_eq!(
            (r.level, r.x, r.y, r.width, r.height),
            (0, -23, -23, 129, 129)
        );
        assert!(
            s.level_read_for([0, 0, 0, 5], Resolution::Mpp(0.25))
                .is_err()
        );
    }
}

//! Class colours of the QuPath GeoJSON: TIAToolbox's rule
//! (`plt.colormaps["tab20"].resampled(N)(i)`, each channel `int(c * 255)`), so a class gets the
//! colour TIAToolbox gives it.
//!
//! With `N` class names, class `i` gets tab20 entry `min(int(linspace(0, 1, N)[i] * 20), 19)`.
//! A class id with no name (or no class list at all) gets tab20 entry `i mod 20`.

/// matplotlib's tab20, each channel `int(c * 255)`.
const TAB20: [[u8; 3]; 20] = [
    [31, 119, 180],
    [174, 199, 232],
    [255, 127, 14],
    [255, 187, 120],
    [44, 160, 44],
    [152, 223, 138],
    [214, 39, 40],
    [255, 152, 150],
    [148, 103, 189],
    [197, 176, 213],
    [140, 86, 75],
    [196, 156, 148],
    [227, 119, 194],
    [247, 182, 210],
    [127, 127, 127],
    [199, 199, 199],
    [188, 189, 34],
    [219, 219, 141],
    [23, 190, 207],
    [158, 218, 229],
];

/// Colour `[r, g, b]` of class `class_id` among `n_classes` named classes.
pub(crate) fn class_colour(class_id: u32, n_classes: usize) -> [u8; 3] {
    let i = class_id as usize;
    if i >= n_classes {
        return TAB20[i % 20];
    }
    if n_classes == 1 {
        return TAB20[0];
    }
    // numpy.linspace(0, 1, N): i * (1 / (N - 1)), the last value exactly 1.
    let v = if i == n_classes - 1 {
        1.0
    } else {
        i as f64 * (1.0 / (n_classes - 1) as f64)
    };
    // ListedColormap.__call__: x * N, N -> N - 1, truncation.
    let index = ((v * 20.0) as usize).min(19);
    TAB20[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by matplotlib 3.10 (TIAToolbox 2.1.3 venv):
    /// `[[int(c*255) for c in cm.resampled(N)(i)[:3]] for i in range(N)]`.
    #[test]
    fn matches_matplotlib_resampled_tab20() {
        let expect: [(usize, &[[u8; 3]]); 4] = [
            (1, &[[31, 119, 180]]),
            (3, &[[31, 119, 180], [140, 86, 75], [158, 218, 229]]),
            (
                6,
                &[
                    [31, 119, 180],
                    [44, 160, 44],
                    [148, 103, 189],
                    [227, 119, 194],
                    [188, 189, 34],
                    [158, 218, 229],
                ],
            ),
            (
                25,
                &[
                    [31, 119, 180],
                    [31, 119, 180],
                    [174, 199, 232],
                    [255, 127, 14],
                    [255, 187, 120],
                    [44, 160, 44],
                    [152, 223, 138],
                    [152, 223, 138],
                    [214, 39, 40],
                    [255, 152, 150],
                    [148, 103, 189],
                    [197, 176, 213],
                    [140, 86, 75],
                    [140, 86, 75],
                    [196, 156, 148],
                    [227, 119, 194],
                    [247, 182, 210],
                    [127, 127, 127],
                    [199, 199, 199],
                    [199, 199, 199],
                    [188, 189, 34],
                    [219, 219, 141],
                    [23, 190, 207],
                    [158, 218, 229],
                    [158, 218, 229],
                ],
            ),
        ];
        for (n, colours) in expect {
            for (i, c) in colours.iter().enumerate() {
                assert_eq!(class_colour(i as u32, n), *c, "class {i} of {n}");
            }
        }
        assert_eq!(class_colour(21, 0), TAB20[1]);
    }
}

//! The patch grid, exactly as TIAToolbox's `PatchExtractor.get_coordinates`: output boxes every
//! `stride` pixels from 0 to `ceil(W / stride) * stride` per axis, in row-major order (y outer,
//! x inner), each input box centred on its output box (offset `(input - output) / 2`, floored).
//! Boxes are `[x0, y0, x1, y1]` with exclusive ends, in pixels at the processing resolution;
//! output boxes may run past the image and input boxes may start at negative coordinates (the
//! reader pads with white).

use mtseg_types::{PatchBox, Size2};

use crate::tiling_errors::GridError;

/// A validated patch grid over an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchGrid {
    image: Size2,
    patch_input: Size2,
    patch_output: Size2,
    stride: Size2,
    columns: u64,
    rows: u64,
}

/// Builds a [`PatchGrid`].
///
/// Defaults: `patch_output` = `patch_input` (no centre crop), `stride` = `patch_output` (patches
/// tile the image without overlap). `build` checks that every size is positive and the output
/// fits in the input; any stride from 1 px up is accepted (a stride larger than the output leaves
/// unpredicted gaps, which the config layer refuses for runs, but the grid itself is well defined).
#[derive(Debug, Clone)]
pub struct PatchGridBuilder {
    image: Size2,
    patch_input: Size2,
    patch_output: Option<Size2>,
    stride: Option<Size2>,
}

impl PatchGridBuilder {
    /// A grid of `patch_input` patches over an image of `image` pixels.
    pub fn new(image: Size2, patch_input: Size2) -> Self {
        Self {
            image,
            patch_input,
            patch_output: None,
            stride: None,
        }
    }

    /// The centre region the model predicts.
    pub fn patch_output(mut self, size: Size2) -> Self {
        self.patch_output = Some(size);
        self
    }

    /// The step between patches.
    pub fn stride(mut self, size: Size2) -> Self {
        self.stride = Some(size);
        self
    }

    /// Checks the sizes and builds the grid.
    pub fn build(self) -> Result<PatchGrid, GridError> {
        let output = self.patch_output.unwrap_or(self.patch_input);
        let stride = self.stride.unwrap_or(output);
        for (what, s) in [
            ("image", self.image),
            ("patch input", self.patch_input),
            ("patch output", output),
            ("stride", stride),
        ] {
            if s.width == 0 || s.height == 0 {
                return Err(GridError::ZeroSize {
                    what,
                    width: s.width,
                    height: s.height,
                });
            }
        }
        if output.width > self.patch_input.width || output.height > self.patch_input.height {
            return Err(GridError::OutputLargerThanInput {
                input: (self.patch_input.width, self.patch_input.height),
                output: (output.width, output.height),
            });
        }
        Ok(PatchGrid {
            image: self.image,
            patch_input: self.patch_input,
            patch_output: output,
            stride,
            columns: self.image.width.div_ceil(stride.width),
            rows: self.image.height.div_ceil(stride.height),
        })
    }
}

impl PatchGrid {
    /// Image size the grid covers.
    pub fn image(&self) -> Size2 {
        self.image
    }

    /// Input patch size.
    pub fn patch_input(&self) -> Size2 {
        self.patch_input
    }

    /// Output patch size.
    pub fn patch_output(&self) -> Size2 {
        self.patch_output
    }

    /// Stride.
    pub fn stride(&self) -> Size2 {
        self.stride
    }

    /// Patches per grid row.
    pub fn columns(&self) -> u64 {
        self.columns
    }

    /// Grid rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Number of patches.
    pub fn len(&self) -> u64 {
        self.columns * self.rows
    }

    /// Whether the grid has no patches (never, for a built grid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Patch `index` in row-major order, or `None` past the end.
    pub fn get(&self, index: u64) -> Option<PatchBox> {
        if index >= self.len() {
            return None;
        }
        let (row, col) = (index / self.columns, index % self.columns);
        let x = (col * self.stride.width) as i64;
        let y = (row * self.stride.height) as i64;
        let (ow, oh) = (
            self.patch_output.width as i64,
            self.patch_output.height as i64,
        );
        let (iw, ih) = (
            self.patch_input.width as i64,
            self.patch_input.height as i64,
        );
        let (dx, dy) = ((iw - ow).div_euclid(2), (ih - oh).div_euclid(2));
        Some(PatchBox {
            input: [x - dx, y - dy, x - dx + iw, y - dy + ih],
            output: [x, y, x + ow, y + oh],
        })
    }

    /// All patches in row-major order.
    pub fn iter(&self) -> impl Iterator<Item = PatchBox> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index below len"))
    }

    /// Grid row of patch `index`.
    pub fn row_of(&self, index: u64) -> u64 {
        index / self.columns
    }

    /// Indices of the patches whose input box lies inside the image (TIAToolbox's
    /// `input_within_bound=True`).
    pub fn input_within_bound(&self) -> Vec<u64> {
        let (w, h) = (self.image.width as i64, self.image.height as i64);
        (0..self.len())
            .filter(|&i| {
                let b = self.get(i).expect("in range").input;
                b[0] >= 0 && b[1] >= 0 && b[2] <= w && b[3] <= h
            })
            .collect()
    }

    /// Indices of the patches whose output box lies inside the image (TIAToolbox's
    /// `output_within_bound=True`).
    pub fn output_within_bound(&self) -> Vec<u64> {
        let (w, h) = (self.image.width as i64, self.image.height as i64);
        (0..self.len())
            .filter(|&i| {
                let b = self.get(i).expect("in range").output;
                b[2] <= w && b[3] <= h
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(w: u64, h: u64, input: u64, output: u64, stride: u64) -> PatchGrid {
        PatchGridBuilder::new(Size2::new(w, h), Size2::new(input, input))
            .patch_output(Size2::new(output, output))
            .stride(Size2::new(stride, stride))
            .build()
            .unwrap()
    }

    #[test]
    fn tiatoolbox_get_coordinates_examples() {
        // tests/test_patch_extraction.py::test_get_coordinates, image_shape = [9, 6] (w, h).
        // TIAToolbox lists the expected boxes column-major but only checks their sum; the real
        // order (which its engine relies on) is row-major.
        let g = grid(9, 6, 4, 4, 4);
        let boxes: Vec<[i64; 4]> = g.iter().map(|p| p.input).collect();
        assert_eq!(
            boxes,
            vec![
                [0, 0, 4, 4],
                [4, 0, 8, 4],
                [8, 0, 12, 4],
                [0, 4, 4, 8],
                [4, 4, 8, 8],
                [8, 4, 12, 8]
            ]
        );
        // input_within_bound=True keeps the two boxes inside 9 x 6.
        let inside: Vec<[i64; 4]> = g
            .input_within_bound()
            .iter()
            .map(|&i| g.get(i).unwrap().input)
            .collect();
        assert_eq!(inside, vec![[0, 0, 4, 4], [4, 0, 8, 4]]);
        // Input 5, output 4, stride 4, output_within_bound=True: two patches.
        let g = grid(9, 6, 5, 4, 4);
        assert_eq!(g.output_within_bound().len(), 2);
        assert_eq!(g.get(0).unwrap().input, [0, 0, 5, 5]);
        // A patch larger than the image, stride (9, 8), input_within_bound=True: none.
        let g = PatchGridBuilder::new(Size2::new(9, 6), Size2::new(9, 9))
            .stride(Size2::new(9, 8))
            .build()
            .unwrap();
        assert!(g.input_within_bound().is_empty());
    }

    #[test]
    fn fast_hovernet_example_of_the_reference() {
        // W = H = 504, 256 -> 164, stride 164: x in {0, 164, 328, 492}, 16 patches, inputs from -46.
        let g = grid(504, 504, 256, 164, 164);
        assert_eq!(g.len(), 16);
        assert_eq!(g.get(0).unwrap().input, [-46, -46, 210, 210]);
        assert_eq!(g.get(15).unwrap().output, [492, 492, 656, 656]);
        assert_eq!(g.get(4).unwrap().output, [0, 164, 164, 328]);
        // HoVer-Net original: 270 -> 80, offset 95.
        let g = grid(100, 100, 270, 80, 80);
        assert_eq!(g.get(0).unwrap().input, [-95, -95, 175, 175]);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let e = PatchGridBuilder::new(Size2::new(9, 6), Size2::new(2, 2))
            .patch_output(Size2::new(4, 4))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("larger than the input"), "{e}");
        let e = PatchGridBuilder::new(Size2::new(9, 6), Size2::new(4, 4))
            .stride(Size2::new(0, 4))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("stride"), "{e}");
        assert!(
            PatchGridBuilder::new(Size2::new(0, 6), Size2::new(4, 4))
                .build()
                .is_err()
        );
    }
}

//! A whole image through any [`Model`]: TIAToolbox's patch grid (output tiles every
//! `output_size` pixels from the origin, input boxes centred on them, out-of-image pixels 255),
//! batched forwards, and the head outputs placed on one canvas (the grid's output tiles do not
//! overlap, so TIAToolbox's sum / count mean is a copy).

use mtseg_infer::{BatchView, HeadKind, Model};

use crate::TrainError;

/// Stitched head outputs of one image, TIAToolbox's `infer_batch` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct CanvasMaps {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Nucleus probability, `height * width`.
    pub np: Vec<f32>,
    /// Interleaved (h, v), `2 * height * width`.
    pub hv: Vec<f32>,
    /// Class id as float, `height * width`, when the model has a type head.
    pub tp: Option<Vec<f32>>,
    /// Patches run.
    pub patches: usize,
}

/// Runs `model` over the `height` x `width` RGB image `rgb` in batches of `batch_size` patches.
///
/// # Errors
/// [`TrainError::Infer`] from the model; [`TrainError::Data`] when `rgb` does not hold
/// `height * width * 3` bytes or the model lacks an np or hv head.
pub fn predict_image(
    model: &mut dyn Model,
    rgb: &[u8],
    height: usize,
    width: usize,
    batch_size: usize,
) -> Result<CanvasMaps, TrainError> {
    if rgb.len() != height * width * 3 {
        return Err(TrainError::Data {
            path: "<image>".into(),
            detail: format!("{} bytes for a {height}x{width} RGB image", rgb.len()),
        });
    }
    let (inp, out) = (model.input_size(), model.output_size());
    let margin = (inp - out) / 2;
    let tiles: Vec<(usize, usize)> = (0..height)
        .step_by(out)
        .flat_map(|y| (0..width).step_by(out).map(move |x| (y, x)))
        .collect();
    let has_tp = model.heads().iter().any(|h| h.kind == HeadKind::Tp);
    let mut maps = CanvasMaps {
        height,
        width,
        np: vec![0.0; height * width],
        hv: vec![0.0; 2 * height * width],
        tp: has_tp.then(|| vec![0.0; height * width]),
        patches: tiles.len(),
    };
    for chunk in tiles.chunks(batch_size.max(1)) {
        let mut pixels = vec![255u8; chunk.len() * inp * inp * 3];
        for (i, &(oy, ox)) in chunk.iter().enumerate() {
            let patch = &mut pixels[i * inp * inp * 3..(i + 1) * inp * inp * 3];
            for py in 0..inp {
                let Some(y) = (oy + py).checked_sub(margin).filter(|&y| y < height) else {
                    continue;
                };
                let x0 = ox.saturating_sub(margin);
                let px0 = x0 + margin - ox;
                let x1 = (ox + inp - margin).min(width);
                if x1 <= x0 {
                    continue;
                }
                let dst = (py * inp + px0) * 3;
                patch[dst..dst + (x1 - x0) * 3]
                    .copy_from_slice(&rgb[(y * width + x0) * 3..(y * width + x1) * 3]);
            }
        }
        let indices: Vec<u64> = (0..chunk.len() as u64).collect();
        let batch = BatchView::new(&pixels, &indices, inp, inp)?;
        let outputs = model.forward(batch)?;
        for kind in [HeadKind::Np, HeadKind::Hv, HeadKind::Tp] {
            let Some(head) = outputs.head(kind) else {
                if kind == HeadKind::Tp {
                    continue;
                }
                return Err(TrainError::Data {
                    path: "<model>".into(),
                    detail: format!("the model has no {kind} head"),
                });
            };
            let c = head.shape[3];
            let dst = match kind {
                HeadKind::Np => &mut maps.np,
                HeadKind::Hv => &mut maps.hv,
                _ => maps
                    .tp
                    .as_mut()
                    .expect("tp canvas exists when the model has tp"),
            };
            for (i, &(oy, ox)) in chunk.iter().enumerate() {
                let src = head.patch(i).expect("one output per input patch");
                for ty in 0..out.min(height - oy) {
                    let w = out.min(width - ox);
                    let s = ty * out * c;
                    let d = ((oy + ty) * width + ox) * c;
                    dst[d..d + w * c].copy_from_slice(&src[s..s + w * c]);
                }
            }
        }
    }
    Ok(maps)
}

#[cfg(test)]
mod tests {
    use mtseg_infer::{HeadOutputs, HeadSpec, HeadTensor, InferError};

    use super::*;

    /// A model whose np output is the input's red channel / 255 at the output pixel: checks the
    /// grid, the centring and the padding.
    struct RedModel {
        heads: Vec<HeadSpec>,
    }

    impl Model for RedModel {
        fn heads(&self) -> &[HeadSpec] {
            &self.heads
        }
        fn input_size(&self) -> usize {
            8
        }
        fn output_size(&self) -> usize {
            4
        }
        fn forward(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError> {
            let n = batch.len();
            let mut np = Vec::new();
            for i in 0..n {
                for y in 2..6 {
                    for x in 2..6 {
                        np.push(f32::from(batch.pixels()[((i * 8 + y) * 8 + x) * 3]) / 255.0);
                    }
                }
            }
            Ok(HeadOutputs {
                indices: batch.indices().to_vec(),
                heads: vec![
                    HeadTensor {
                        kind: HeadKind::Np,
                        shape: [n, 4, 4, 1],
                        data: np,
                    },
                    HeadTensor {
                        kind: HeadKind::Hv,
                        shape: [n, 4, 4, 2],
                        data: vec![0.5; n * 32],
                    },
                ],
            })
        }
    }

    #[test]
    fn grid_centres_and_stitches() {
        let (h, w) = (7, 10);
        let rgb: Vec<u8> = (0..h * w).flat_map(|i| [i as u8, 0, 0]).collect();
        let mut m = RedModel {
            heads: vec![
                HeadSpec::new(HeadKind::Np, 2),
                HeadSpec::new(HeadKind::Hv, 2),
            ],
        };
        let maps = predict_image(&mut m, &rgb, h, w, 4).unwrap();
        assert_eq!(maps.patches, 6);
        let expect: Vec<f32> = (0..h * w).map(|i| i as f32 / 255.0).collect();
        assert_eq!(maps.np, expect);
        assert!(maps.hv.iter().all(|&v| v == 0.5));
        assert!(maps.tp.is_none());
    }
}

//! Training batches: random 256² input patches of the training image with their 164² centre
//! targets (np, hv, tp rendered once by `mtseg_postproc::render_hovernet_targets` on the whole
//! training image, so a nucleus cut by a patch border keeps its whole-nucleus offsets), with
//! dihedral augmentation (transpose, flips: hv components permuted and negated to match) and a
//! mild colour jitter, all drawn from one seeded generator.
//!
//! Outside the training image the input is 255 (as TIAToolbox pads out-of-slide pixels) and the
//! targets background, so output windows reach every training pixel, including the edge next
//! to the held-out third, without ever showing a held-out pixel.

use mtseg_postproc::render_hovernet_targets;
use tch::{Device, Kind, Tensor};

use crate::TrainError;
use crate::dataset::AnnotatedImage;
use crate::losses::Targets;
use crate::rng::SplitMix64;

/// Input patch side.
pub const INPUT_SIZE: i64 = 256;
/// Output (loss) side: the valid centre of HoVer-Net fast.
pub const OUTPUT_SIZE: i64 = 164;
const MARGIN: i64 = (INPUT_SIZE - OUTPUT_SIZE) / 2;

/// Ranges of the colour jitter, each drawn uniformly per patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourJitter {
    /// Added to every channel, in 0..255 units: ±this.
    pub brightness: f64,
    /// Contrast factor about the patch mean: 1 ± this.
    pub contrast: f64,
    /// Saturation factor about the per-pixel grey: 1 ± this.
    pub saturation: f64,
    /// Per-channel gain (a stain-intensity shift): 1 ± this.
    pub channel_gain: f64,
}

impl Default for ColourJitter {
    /// Mild: brightness ±10, contrast and saturation ±10 %, channel gains ±4 %.
    fn default() -> Self {
        Self {
            brightness: 10.0,
            contrast: 0.1,
            saturation: 0.1,
            channel_gain: 0.04,
        }
    }
}

/// Draws augmented training batches from one image.
#[derive(Debug)]
pub struct PatchSampler {
    /// [3, H + 2m, W + 2m] float 0..255, padded with 255.
    image: Tensor,
    /// [H + 2m, W + 2m] int64, padded with 0.
    np: Tensor,
    /// [2, H + 2m, W + 2m] float.
    hv: Tensor,
    /// [H + 2m, W + 2m] int64.
    tp: Tensor,
    height: i64,
    width: i64,
    rng: SplitMix64,
    jitter: ColourJitter,
    device: Device,
}

impl PatchSampler {
    /// Renders the targets of `image` and pads everything by the 46 px input margin.
    ///
    /// # Errors
    /// [`TrainError::Data`] when the image is smaller than one output window;
    /// [`TrainError::Postproc`] from rendering.
    pub fn new(
        image: &AnnotatedImage,
        seed: u64,
        jitter: ColourJitter,
        device: Device,
    ) -> Result<Self, TrainError> {
        let (h, w) = (image.height, image.width);
        if (h as i64) < OUTPUT_SIZE || (w as i64) < OUTPUT_SIZE {
            return Err(TrainError::Data {
                path: "<training image>".into(),
                detail: format!("{h}x{w} is smaller than one {OUTPUT_SIZE}² output window"),
            });
        }
        // np sigma 0: the binary nucleus mask, HoVer-Net's np target
        let t = render_hovernet_targets(&image.labels, Some(&image.types), h, w, 0.0)?;
        let (hi, wi) = (h as i64, w as i64);
        let pad = [MARGIN, MARGIN, MARGIN, MARGIN];
        let rgb = Tensor::from_slice(&image.rgb)
            .view([hi, wi, 3])
            .permute([2, 0, 1])
            .to_kind(Kind::Float);
        let image_t = (rgb - 255.0).constant_pad_nd(pad) + 255.0;
        let np = Tensor::from_slice(&t.np)
            .view([hi, wi])
            .to_kind(Kind::Int64)
            .constant_pad_nd(pad);
        let hv = Tensor::from_slice(&t.hv)
            .view([hi, wi, 2])
            .permute([2, 0, 1])
            .constant_pad_nd(pad);
        let tp = Tensor::from_slice(&t.tp)
            .view([hi, wi])
            .to_kind(Kind::Int64)
            .constant_pad_nd(pad);
        Ok(Self {
            image: image_t.to_device(device),
            np: np.to_device(device),
            hv: hv.to_device(device),
            tp: tp.to_device(device),
            height: hi,
            width: wi,
            rng: SplitMix64::new(seed),
            jitter,
            device,
        })
    }

    /// `n` augmented patches: input [n, 3, 256, 256] float 0..255 (whole numbers, as u8 input
    /// would be) and the targets of their 164² centres.
    pub fn batch(&mut self, n: usize) -> (Tensor, Targets) {
        let mut xs = Vec::with_capacity(n);
        let (mut nps, mut hvs, mut tps) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let oy = self.rng.below((self.height - OUTPUT_SIZE + 1) as usize) as i64;
            let ox = self.rng.below((self.width - OUTPUT_SIZE + 1) as usize) as i64;
            let crop = |t: &Tensor, y: i64, x: i64, s: i64| {
                let d = t.dim() as i64;
                t.narrow(d - 2, y, s).narrow(d - 1, x, s)
            };
            let mut x = crop(&self.image, oy, ox, INPUT_SIZE);
            let (o_y, o_x) = (oy + MARGIN, ox + MARGIN);
            let mut np = crop(&self.np, o_y, o_x, OUTPUT_SIZE);
            let mut hv = crop(&self.hv, o_y, o_x, OUTPUT_SIZE);
            let mut tp = crop(&self.tp, o_y, o_x, OUTPUT_SIZE);
            let sign = |h: f32, v: f32| {
                Tensor::from_slice(&[h, v])
                    .view([2, 1, 1])
                    .to_device(self.device)
            };
            if self.rng.coin() {
                // transpose: x <-> y, so h <-> v
                x = x.transpose(1, 2);
                np = np.transpose(0, 1);
                tp = tp.transpose(0, 1);
                hv = hv.transpose(1, 2).flip([0]);
            }
            if self.rng.coin() {
                x = x.flip([2]);
                np = np.flip([1]);
                tp = tp.flip([1]);
                hv = hv.flip([2]) * sign(-1.0, 1.0);
            }
            if self.rng.coin() {
                x = x.flip([1]);
                np = np.flip([0]);
                tp = tp.flip([0]);
                hv = hv.flip([1]) * sign(1.0, -1.0);
            }
            xs.push(self.colour_jitter(&x));
            nps.push(np);
            hvs.push(hv);
            tps.push(tp);
        }
        (
            Tensor::stack(&xs, 0),
            Targets {
                np: Tensor::stack(&nps, 0),
                hv: Tensor::stack(&hvs, 0),
                tp: Tensor::stack(&tps, 0),
            },
        )
    }

    fn colour_jitter(&mut self, x: &Tensor) -> Tensor {
        let j = self.jitter;
        let mut u = |r: f64| self.rng.uniform(-r, r);
        let gains: Vec<f32> = (0..3).map(|_| (1.0 + u(j.channel_gain)) as f32).collect();
        let (b, c, s) = (u(j.brightness), 1.0 + u(j.contrast), 1.0 + u(j.saturation));
        let gains = Tensor::from_slice(&gains)
            .view([3, 1, 1])
            .to_device(self.device);
        let x = x * gains;
        let grey = x.mean_dim([0i64].as_slice(), true, Kind::Float);
        let x = &grey + (&x - &grey) * s;
        let mean = x.mean(Kind::Float);
        ((&x - &mean) * c + &mean + b).clamp(0.0, 255.0).round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One elongated nucleus: after any augmentation, hv must still point away from the
    /// centre of the nucleus, and the image must move with the targets.
    #[test]
    fn augmentation_keeps_targets_consistent() {
        let (h, w) = (200usize, 200usize);
        let mut labels = vec![0i32; h * w];
        let mut rgb = vec![230u8; h * w * 3];
        for y in 90..110 {
            for x in 60..140 {
                labels[y * w + x] = 1;
                rgb[(y * w + x) * 3] = 40;
            }
        }
        let img = AnnotatedImage {
            height: h,
            width: w,
            rgb,
            labels,
            types: vec![2; h * w],
        };
        let jitter = ColourJitter {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            channel_gain: 0.0,
        };
        let mut s = PatchSampler::new(&img, 3, jitter, Device::Cpu).unwrap();
        for _ in 0..8 {
            let (x, t) = s.batch(1);
            // red < 100 exactly on nucleus pixels (input centre = target window)
            let red = x
                .get(0)
                .get(0)
                .narrow(0, MARGIN, OUTPUT_SIZE)
                .narrow(1, MARGIN, OUTPUT_SIZE);
            let dark = red.lt(100.0).to_kind(Kind::Int64);
            assert!(dark.eq_tensor(&t.np.get(0)).all().int64_value(&[]) == 1);
            assert!((t.tp.get(0) - t.np.get(0) * 2).abs().max().int64_value(&[]) == 0);
            // on a nucleus, h grows with x and v with y
            let np = t.np.get(0).to_kind(Kind::Float);
            let hv = t.hv.get(0);
            let (hh, vv) = (hv.get(0), hv.get(1));
            let dx = (hh.narrow(1, 1, OUTPUT_SIZE - 1) - hh.narrow(1, 0, OUTPUT_SIZE - 1))
                * np.narrow(1, 1, OUTPUT_SIZE - 1)
                * np.narrow(1, 0, OUTPUT_SIZE - 1);
            let dy = (vv.narrow(0, 1, OUTPUT_SIZE - 1) - vv.narrow(0, 0, OUTPUT_SIZE - 1))
                * np.narrow(0, 1, OUTPUT_SIZE - 1)
                * np.narrow(0, 0, OUTPUT_SIZE - 1);
            assert!(dx.min().double_value(&[]) >= 0.0);
            assert!(dy.min().double_value(&[]) >= 0.0);
        }
    }
}

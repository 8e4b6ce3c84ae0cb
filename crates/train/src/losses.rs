//! HoVer-Net's training losses (Graham et al. 2019; `models/hovernet/utils.py` of the reference
//! code): np = cross-entropy + Dice, hv = MSE + MSGE (mean squared error of the maps' gradients
//! inside nuclei), tp = cross-entropy. Every term has weight 1.

use tch::{Kind, Tensor};

use crate::trainable_hovernet::HeadLogits;

/// The targets of one batch at the output size: `np` [N, H, W] int64 (0 / 1), `hv` [N, 2, H, W]
/// float (h then v, each in [-1, 1]), `tp` [N, H, W] int64 class ids.
#[derive(Debug)]
pub struct Targets {
    /// Nucleus mask.
    pub np: Tensor,
    /// Horizontal and vertical maps.
    pub hv: Tensor,
    /// Class ids.
    pub tp: Tensor,
}

/// The loss terms of one batch (scalar tensors, with gradients).
#[derive(Debug)]
pub struct LossTerms {
    /// np cross-entropy.
    pub np_ce: Tensor,
    /// np Dice (summed over the two channels, as HoVer-Net's `dice_loss`).
    pub np_dice: Tensor,
    /// hv mean squared error.
    pub hv_mse: Tensor,
    /// hv mean squared gradient error inside nuclei.
    pub hv_msge: Tensor,
    /// tp cross-entropy.
    pub tp_ce: Tensor,
}

impl LossTerms {
    /// The sum of the terms.
    pub fn total(&self) -> Tensor {
        &self.np_ce + &self.np_dice + &self.hv_mse + &self.hv_msge + &self.tp_ce
    }

    /// The terms as numbers: np CE, np Dice, hv MSE, hv MSGE, tp CE.
    #[must_use]
    pub fn values(&self) -> [f64; 5] {
        [
            &self.np_ce,
            &self.np_dice,
            &self.hv_mse,
            &self.hv_msge,
            &self.tp_ce,
        ]
        .map(|t| t.double_value(&[]))
    }
}

/// Cross-entropy of `logits` [N, C, H, W] against class ids `target` [N, H, W], mean over pixels.
fn cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    logits.log_softmax(1, Kind::Float).nll_loss_nd::<Tensor>(
        target,
        None,
        tch::Reduction::Mean,
        -100,
    )
}

/// HoVer-Net's `dice_loss` on softmax probabilities vs one-hot targets: per channel
/// `1 - (2 sum(p t) + s) / (sum p + sum t + s)` over batch and pixels, `s` = 1e-3, summed over
/// channels.
fn dice(logits: &Tensor, target: &Tensor) -> Tensor {
    let c = logits.size()[1];
    let p = logits.softmax(1, Kind::Float);
    let t = target.one_hot(c).permute([0, 3, 1, 2]).to_kind(Kind::Float);
    let dims = [0i64, 2, 3];
    let inse = (&p * &t).sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let l = p.sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let r = t.sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let smooth = 1e-3;
    let ratio = (inse * 2.0 + smooth) / (l + r + smooth);
    (-ratio + 1.0).sum(Kind::Float)
}

/// HoVer-Net's 5x5 gradient kernels `dx / (dx² + dy²)` and `dy / (dx² + dy²)`, as a [2, 1, 5, 5]
/// weight for a grouped convolution: channel 0 (h) differentiated along x, channel 1 (v) along y.
fn gradient_kernels(device: tch::Device) -> Tensor {
    let mut k = vec![0f32; 2 * 25];
    for (i, dy) in (-2i32..=2).enumerate() {
        for (j, dx) in (-2i32..=2).enumerate() {
            let r2 = (dx * dx + dy * dy) as f32 + 1e-15;
            k[i * 5 + j] = dx as f32 / r2;
            k[25 + i * 5 + j] = dy as f32 / r2;
        }
    }
    Tensor::from_slice(&k).view([2, 1, 5, 5]).to_device(device)
}

/// HoVer-Net's MSGE: squared difference of the predicted and true maps' gradients (h along x,
/// v along y, zero padding), summed over nucleus pixels of both channels and divided by their
/// count (+1e-8).
fn msge(pred: &Tensor, truth: &Tensor, focus: &Tensor) -> Tensor {
    let k = gradient_kernels(pred.device());
    let grad = |x: &Tensor| x.conv2d(&k, None::<Tensor>, [1, 1], [2, 2], [1, 1], 2);
    let focus = focus
        .to_kind(Kind::Float)
        .unsqueeze(1)
        .expand([-1, 2, -1, -1], false);
    let diff = grad(pred) - grad(truth);
    (&focus * &diff * &diff).sum(Kind::Float) / (focus.sum(Kind::Float) + 1e-8)
}

/// The five loss terms of `out` against `targets`.
#[must_use]
pub fn hovernet_losses(out: &HeadLogits, targets: &Targets) -> LossTerms {
    LossTerms {
        np_ce: cross_entropy(&out.np, &targets.np),
        np_dice: dice(&out.np, &targets.np),
        hv_mse: (&out.hv - &targets.hv).square().mean(Kind::Float),
        hv_msge: msge(&out.hv, &targets.hv, &targets.np),
        tp_ce: cross_entropy(&out.tp, &targets.tp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_predictions_have_small_losses() {
        let np = Tensor::from_slice(&[0i64, 1, 1, 0, 1, 1, 0, 0, 0]).view([1, 3, 3]);
        let tp = &np * 2;
        let big =
            |t: &Tensor, c: i64| t.one_hot(c).permute([0, 3, 1, 2]).to_kind(Kind::Float) * 50.0;
        let hv = Tensor::from_slice(&(0..18).map(|v| v as f32 / 18.0).collect::<Vec<_>>())
            .view([1, 2, 3, 3]);
        let out = HeadLogits {
            np: big(&np, 2),
            hv: hv.shallow_clone(),
            tp: big(&tp, 3),
        };
        let targets = Targets {
            np: np.shallow_clone(),
            hv,
            tp,
        };
        let v = hovernet_losses(&out, &targets).values();
        for (name, x) in ["np_ce", "np_dice", "hv_mse", "hv_msge", "tp_ce"]
            .iter()
            .zip(v)
        {
            assert!(x.abs() < 1e-3, "{name} = {x}");
        }
    }

    #[test]
    fn msge_sees_gradients_along_their_axes() {
        // h increasing along x has a positive x-gradient; the kernel for v ignores it
        let ramp: Vec<f32> = (0..25).map(|i| (i % 5) as f32).collect();
        let zero = vec![0f32; 25];
        let pred = Tensor::from_slice(&[ramp.clone(), zero.clone()].concat()).view([1, 2, 5, 5]);
        let flat = Tensor::zeros([1, 2, 5, 5], (Kind::Float, tch::Device::Cpu));
        let focus = Tensor::ones([1, 5, 5], (Kind::Int64, tch::Device::Cpu));
        assert!(msge(&pred, &flat, &focus).double_value(&[]) > 0.1);
        let pred_v = Tensor::from_slice(&[zero, ramp].concat()).view([1, 2, 5, 5]);
        let g = pred_v.conv2d(
            &gradient_kernels(tch::Device::Cpu),
            None::<Tensor>,
            [1, 1],
            [2, 2],
            [1, 1],
            2,
        );
        // the centre pixel of a ramp along x has no y-gradient
        assert!(g.double_value(&[0, 1, 2, 2]).abs() < 1e-6);
    }
}

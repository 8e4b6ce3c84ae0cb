//! The training loop: Adam on the summed HoVer-Net losses, linear warm-up then cosine decay of the
//! learning rate, BatchNorm in training mode, one seeded run.

use std::time::Instant;

use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind};

use crate::TrainError;
use crate::dataset::AnnotatedImage;
use crate::losses::hovernet_losses;
use crate::patch_sampler::{ColourJitter, PatchSampler};
use crate::trainable_hovernet::TrainableHoVerNet;

/// Everything that decides a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Seeds libtorch (initial weights) and the patch / augmentation generator.
    pub seed: u64,
    /// Optimiser steps.
    pub steps: usize,
    /// Patches per step.
    pub batch_size: usize,
    /// Peak learning rate (Adam).
    pub learning_rate: f64,
    /// Learning rate at the last step (cosine decay from the peak).
    pub final_learning_rate: f64,
    /// Steps of linear warm-up from 0 to the peak.
    pub warmup_steps: usize,
    /// Adam's L2 weight decay.
    pub weight_decay: f64,
    /// Channel divisor of HoVer-Net fast (8 for the demo model).
    pub width_divisor: i64,
    /// Type classes, background included.
    pub num_types: i64,
    /// Colour augmentation.
    pub jitter: ColourJitter,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 20_250_611,
            steps: 1200,
            batch_size: 4,
            learning_rate: 1e-3,
            final_learning_rate: 1e-5,
            warmup_steps: 100,
            weight_decay: 1e-5,
            width_divisor: 8,
            num_types: 4,
            jitter: ColourJitter::default(),
        }
    }
}

impl TrainConfig {
    /// The learning rate of step `step` (0-based).
    #[must_use]
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let t = (step - self.warmup_steps) as f64 / span;
        self.final_learning_rate
            + 0.5
                * (self.learning_rate - self.final_learning_rate)
                * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// One logged step: step, learning rate, the five loss terms and their sum.
pub type StepLog = (usize, f64, [f64; 5], f64);

/// A trained network and its loss history.
#[derive(Debug)]
pub struct TrainedModel {
    /// The variables (TIAToolbox names).
    pub vars: nn::VarStore,
    /// The network.
    pub net: TrainableHoVerNet,
    /// Every step's losses.
    pub history: Vec<StepLog>,
    /// Wall time of the loop, seconds.
    pub seconds: f64,
}

/// Trains a network on `image` with `config`, calling `progress` after every step.
///
/// # Errors
/// As [`PatchSampler::new`].
pub fn train(
    image: &AnnotatedImage,
    config: &TrainConfig,
    device: Device,
    mut progress: impl FnMut(&StepLog),
) -> Result<TrainedModel, TrainError> {
    tch::manual_seed(config.seed as i64);
    let vars = nn::VarStore::new(device);
    let net = TrainableHoVerNet::new(&vars.root(), config.num_types, config.width_divisor);
    let mut sampler = PatchSampler::new(image, config.seed ^ 0x5A17_u64, config.jitter, device)?;
    let mut opt = nn::Adam::default()
        .wd(config.weight_decay)
        .build(&vars, config.learning_rate)?;
    let mut history = Vec::with_capacity(config.steps);
    let start = Instant::now();
    for step in 0..config.steps {
        let lr = config.learning_rate_at(step);
        opt.set_lr(lr);
        let (x, targets) = sampler.batch(config.batch_size);
        let out = net.forward_t(&x.to_kind(Kind::Float), true);
        let terms = hovernet_losses(&out, &targets);
        let total = terms.total();
        opt.backward_step(&total);
        let log = (step, lr, terms.values(), total.double_value(&[]));
        progress(&log);
        history.push(log);
    }
    Ok(TrainedModel {
        vars,
        net,
        history,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        let c = TrainConfig {
            steps: 1100,
            warmup_steps: 100,
            ..TrainConfig::default()
        };
        assert!((c.learning_rate_at(0) - c.learning_rate / 100.0).abs() < 1e-12);
        assert!((c.learning_rate_at(100) - c.learning_rate).abs() < 1e-12);
        assert!(
            (c.learning_rate_at(600) - (c.learning_rate + c.final_learning_rate) / 2.0).abs()
                < 1e-9
        );
        assert!(c.learning_rate_at(1099) < c.learning_rate / 50.0);
    }
}

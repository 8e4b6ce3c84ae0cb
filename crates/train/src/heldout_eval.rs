//! Held-out evaluation: an image through a [`Model`] ([`predict_image`]), TIAToolbox's HoVer-Net
//! post-processing on the whole canvas (`mtseg-postproc`), and detection F1 / AJI
//! (`mtseg_test_models`' definitions, HoVer-Net's `compute_stats.py`) and type accuracy against the
//! image's truth.

use std::collections::HashMap;
use std::time::Instant;

use mtseg_infer::Model;
use mtseg_postproc::{CanvasView, NpHvParams, postprocess_nuclei};
use mtseg_test_models::{MatchStats, aji, match_instances};

use crate::TrainError;
use crate::dataset::AnnotatedImage;
use crate::instance_metrics::matched_pairs;
use crate::tiled_inference::predict_image;

/// IoU a predicted and a true nucleus must exceed to count as a detection.
pub const DETECTION_IOU: f64 = 0.5;

/// The quality of a model on one annotated image.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Detection at IoU > [`DETECTION_IOU`]: counts, F1 (HoVer-Net's DQ), matched IoU.
    pub detection: MatchStats,
    /// Aggregated Jaccard Index.
    pub aji: f64,
    /// True instances in the image.
    pub true_instances: usize,
    /// Predicted instances.
    pub predicted_instances: usize,
    /// Share of matched nuclei whose predicted type is the true one (majority class of the true
    /// instance's pixels); `None` without a type head or without matches.
    pub type_accuracy: Option<f64>,
    /// Patches run through the model.
    pub patches: usize,
    /// Seconds spent in the model (grid, forwards, stitching).
    pub inference_seconds: f64,
    /// Seconds spent in post-processing.
    pub postproc_seconds: f64,
}

/// Runs `model` over `image`, post-processes with `params`, and scores the instances.
///
/// # Errors
/// As [`predict_image`]; [`TrainError::Postproc`] from post-processing.
pub fn evaluate(
    model: &mut dyn Model,
    image: &AnnotatedImage,
    params: &NpHvParams,
    batch_size: usize,
) -> Result<EvalReport, TrainError> {
    let t0 = Instant::now();
    let maps = predict_image(model, &image.rgb, image.height, image.width, batch_size)?;
    let t1 = Instant::now();
    let mut view = CanvasView::new(maps.height, maps.width, &maps.np, &maps.hv)?;
    if let Some(tp) = &maps.tp {
        view = view.with_types(tp)?;
    }
    let nuclei = postprocess_nuclei(&view, params, [0, 0])?;
    let t2 = Instant::now();
    let (w, h) = (image.width, image.height);
    let pairs = matched_pairs(&image.labels, &nuclei.labels);
    let type_accuracy = if maps.tp.is_some() && !pairs.is_empty() {
        let truth = majority_types(&image.labels, &image.types);
        let predicted: HashMap<i32, Option<u32>> = nuclei
            .instances
            .iter()
            .map(|n| (n.label, n.type_id))
            .collect();
        let right = pairs
            .iter()
            .filter(|(t, p)| {
                predicted.get(p).copied().flatten() == truth.get(t).map(|&c| u32::from(c))
            })
            .count();
        Some(right as f64 / pairs.len() as f64)
    } else {
        None
    };
    Ok(EvalReport {
        detection: match_instances(&image.labels, &nuclei.labels, w, h, DETECTION_IOU),
        aji: aji(&image.labels, &nuclei.labels, w, h),
        true_instances: image.instance_count(),
        predicted_instances: nuclei.instances.len(),
        type_accuracy,
        patches: maps.patches,
        inference_seconds: (t1 - t0).as_secs_f64(),
        postproc_seconds: (t2 - t1).as_secs_f64(),
    })
}

/// The most frequent non-zero class of each instance (lowest class on ties).
fn majority_types(labels: &[i32], types: &[u8]) -> HashMap<i32, u8> {
    let mut counts: HashMap<i32, [u64; 256]> = HashMap::new();
    for (&l, &t) in labels.iter().zip(types) {
        if l > 0 && t > 0 {
            counts.entry(l).or_insert([0; 256])[usize::from(t)] += 1;
        }
    }
    counts
        .into_iter()
        .map(|(l, c)| {
            let best = (1..=255u8)
                .max_by_key(|&t| (c[usize::from(t)], std::cmp::Reverse(t)))
                .unwrap_or(1);
            (l, best)
        })
        .collect()
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.detection;
        write!(
            f,
            "F1@{DETECTION_IOU} {:.4} (P {:.4}, R {:.4}; TP {}, FP {}, FN {}; matched IoU {:.3}), \
             AJI {:.4}, true {}, predicted {}, type accuracy {}, {} patches, {:.1} s model, \
             {:.1} s postproc",
            d.f1,
            d.precision(),
            d.recall(),
            d.tp,
            d.fp,
            d.fn_,
            d.mean_iou,
            self.aji,
            self.true_instances,
            self.predicted_instances,
            self.type_accuracy
                .map_or_else(|| "n/a".to_owned(), |a| format!("{a:.4}")),
            self.patches,
            self.inference_seconds,
            self.postproc_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_type_per_instance() {
        let labels = [1, 1, 1, 2, 2, 0];
        let types = [3, 3, 1, 2, 1, 3];
        let m = majority_types(&labels, &types);
        assert_eq!(m[&1], 3);
        assert_eq!(m[&2], 1, "ties go to the lower class");
        assert!(!m.contains_key(&0));
    }
}

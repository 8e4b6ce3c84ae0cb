//! Instance-map comparison: pixel agreement up to relabelling and IoU-matched F1.

#![allow(dead_code)]

use std::collections::HashMap;

/// Result of comparing a predicted label map with a reference one.
#[derive(Debug, Clone, Copy)]
pub struct Agreement {
    /// Share of pixels whose predicted label maps (by largest overlap) to their reference label,
    /// background to background.
    pub pixel_agreement: f64,
    /// Instances matched at IoU > 0.5 (one-to-one by construction).
    pub matched: usize,
    /// Predicted instances.
    pub n_pred: usize,
    /// Reference instances.
    pub n_ref: usize,
    /// 2 * matched / (n_pred + n_ref).
    pub f1: f64,
}

/// Compares two label maps (0 = background).
pub fn compare(pred: &[i32], reference: &[i32]) -> Agreement {
    assert_eq!(pred.len(), reference.len());
    let mut inter: HashMap<(i32, i32), u64> = HashMap::new();
    let mut area_p: HashMap<i32, u64> = HashMap::new();
    let mut area_r: HashMap<i32, u64> = HashMap::new();
    for (&p, &r) in pred.iter().zip(reference) {
        *inter.entry((p, r)).or_default() += 1;
        if p > 0 {
            *area_p.entry(p).or_default() += 1;
        }
        if r > 0 {
            *area_r.entry(r).or_default() += 1;
        }
    }
    // relabelling: each predicted label -> reference label with the largest overlap
    let mut best: HashMap<i32, (i32, u64)> = HashMap::new();
    for (&(p, r), &c) in &inter {
        let e = best.entry(p).or_insert((r, 0));
        if c > e.1 || (c == e.1 && r < e.0) {
            *e = (r, c);
        }
    }
    let agree: u64 = pred
        .iter()
        .zip(reference)
        .filter(|(p, r)| {
            let mapped = if **p == 0 { 0 } else { best[*p].0 };
            mapped == **r
        })
        .count() as u64;
    let mut matched = 0;
    for (&(p, r), &c) in &inter {
        if p > 0 && r > 0 {
            let union = area_p[&p] + area_r[&r] - c;
            if c as f64 / union as f64 > 0.5 {
                matched += 1;
            }
        }
    }
    let (n_pred, n_ref) = (area_p.len(), area_r.len());
    let f1 = if n_pred + n_ref == 0 {
        1.0
    } else {
        2.0 * matched as f64 / (n_pred + n_ref) as f64
    };
    Agreement {
        pixel_agreement: agree as f64 / pred.len().max(1) as f64,
        matched,
        n_pred,
        n_ref,
        f1,
    }
}

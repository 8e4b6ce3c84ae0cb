//! Which true and predicted nuclei match (IoU > 0.5), for the type accuracy of the matched
//! nuclei. The scores themselves (detection F1, AJI) are `mtseg_test_models`'.

use std::collections::HashMap;

/// The (true id, predicted id) pairs of IoU strictly above 0.5 (unique: each instance is in at
/// most one), sorted by true id. Labels are ids > 0 of two row-major maps of the same size.
pub(crate) fn matched_pairs(truth: &[i32], pred: &[i32]) -> Vec<(i32, i32)> {
    let mut true_area: HashMap<i32, u64> = HashMap::new();
    let mut pred_area: HashMap<i32, u64> = HashMap::new();
    let mut inter: HashMap<(i32, i32), u64> = HashMap::new();
    for (&t, &p) in truth.iter().zip(pred) {
        if t > 0 {
            *true_area.entry(t).or_default() += 1;
        }
        if p > 0 {
            *pred_area.entry(p).or_default() += 1;
        }
        if t > 0 && p > 0 {
            *inter.entry((t, p)).or_default() += 1;
        }
    }
    let mut pairs: Vec<(i32, i32)> = inter
        .into_iter()
        .filter(|&((t, p), i)| 2 * i > true_area[&t] + pred_area[&p] - i)
        .map(|(pair, _)| pair)
        .collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_above_half() {
        // 1 vs 7: IoU 3/5; 2 vs 8: 1; 9 alone
        let truth = [1, 1, 1, 1, 0, 2, 2, 2, 2, 0, 0, 0];
        let pred = [0, 7, 7, 7, 7, 8, 8, 8, 8, 0, 9, 9];
        assert_eq!(matched_pairs(&truth, &pred), [(1, 7), (2, 8)]);
        // IoU exactly 0.5 does not match
        assert!(matched_pairs(&[1, 1, 0], &[0, 1, 1]).is_empty());
    }
}

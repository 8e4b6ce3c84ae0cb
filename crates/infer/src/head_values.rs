//! The per-pixel head transform on the CPU, in plain Rust (no libtorch): a head's NCHW logits
//! to TIAToolbox's `infer_batch` values. It runs on the inference thread's transform thread
//! ([`crate::PendingOutputs::finish`]), off the forward's critical path.

use mtseg_types::HeadKind;

/// A lead of the largest class logit over every other that decides the argmax without the
/// softmax (see [`nchw_logits_to_nhwc`]).
const CLEAR_LEAD: f32 = 1e-4;

/// One head's NCHW logits (`[n, c, h, w]`, contiguous) to its NHWC outputs as TIAToolbox's
/// `infer_batch` computes them with libtorch's last-dimension softmax (`softmax_lastdim`): per
/// pixel `m = max_k x_k`, `e_k = exp(x_k - m)`, `s = e_0 + e_1 + ...` in channel order,
/// `p_k = e_k * (1 / s)`; np = `p_1`, hv = the logits, tp / ls = the first `k` of largest `p_k`
/// (ties that the rounding of `p` creates resolve as in torch's `argmax`; a class whose logit
/// leads every other by more than 1e-4 is the argmax without computing `p`). The difference left is
/// `exp` itself (libtorch's softmax uses its own vectorised approximation, the C library's is
/// correctly rounded): over 10^6 random pixels np differs by at most 1.2e-7 (2.4e-7 for 4
/// classes) and no argmax differs; one can only where two `p_k` are within an ulp.
pub(crate) fn nchw_logits_to_nhwc(
    kind: HeadKind,
    logits: &[f32],
    [n, c, h, w]: [usize; 4],
) -> Vec<f32> {
    let hw = h * w;
    debug_assert_eq!(logits.len(), n * c * hw);
    match kind {
        HeadKind::Hv => {
            let mut out = vec![0f32; n * hw * c];
            for b in 0..n {
                for k in 0..c {
                    let plane = &logits[(b * c + k) * hw..(b * c + k + 1) * hw];
                    let dst = &mut out[b * hw * c..(b + 1) * hw * c];
                    for (i, &v) in plane.iter().enumerate() {
                        dst[i * c + k] = v;
                    }
                }
            }
            out
        }
        HeadKind::Np => {
            let mut out = vec![0f32; n * hw];
            for b in 0..n {
                let x0 = &logits[b * c * hw..b * c * hw + hw];
                let x1 = &logits[(b * c + 1) * hw..(b * c + 2) * hw];
                for ((o, &a), &v) in out[b * hw..(b + 1) * hw].iter_mut().zip(x0).zip(x1) {
                    // exp(x - max) is exactly 1 for the larger logit: one exp per pixel
                    let d = a - v;
                    let (e0, e1) = if d <= 0.0 {
                        (d.exp(), 1.0)
                    } else {
                        (1.0, (-d).exp())
                    };
                    *o = e1 * (1.0 / (e0 + e1));
                }
            }
            out
        }
        HeadKind::Tp | HeadKind::Ls => {
            let mut out = vec![0f32; n * hw];
            let mut e = vec![0f32; c];
            for b in 0..n {
                let planes = &logits[b * c * hw..(b + 1) * c * hw];
                for (i, o) in out[b * hw..(b + 1) * hw].iter_mut().enumerate() {
                    // The largest logit wins outright when the runner-up is more than
                    // `CLEAR_LEAD` below it: its probability is then larger by a factor
                    // exp(CLEAR_LEAD), far beyond any rounding of exp or of the product. Only
                    // near ties (and NaN / infinite logits) take the softmax below.
                    let (mut m, mut second, mut top, mut odd) =
                        (f32::NEG_INFINITY, f32::NEG_INFINITY, 0usize, false);
                    for k in 0..c {
                        let v = planes[k * hw + i];
                        odd |= !v.is_finite();
                        if v > m {
                            (second, m, top) = (m, v, k);
                        } else if v > second {
                            second = v;
                        }
                    }
                    if !odd && m - second > CLEAR_LEAD {
                        *o = top as f32;
                        continue;
                    }
                    // `m` is the largest logit (NaN skipped, as `f32::max` skips it)
                    let mut sum = 0f32;
                    for (k, ek) in e.iter_mut().enumerate() {
                        *ek = (planes[k * hw + i] - m).exp();
                        sum += *ek;
                    }
                    let r = 1.0 / sum;
                    let (mut best, mut best_p) = (0usize, f32::NEG_INFINITY);
                    for (k, &ek) in e.iter().enumerate() {
                        let p = ek * r;
                        if p > best_p {
                            (best, best_p) = (k, p);
                        }
                    }
                    *o = best as f32;
                }
            }
            out
        }
    }
}

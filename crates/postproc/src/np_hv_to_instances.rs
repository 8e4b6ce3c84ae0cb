//! HoVer-Net np/hv maps -> nucleus instance labels: TIAToolbox's `HoVerNet._proc_np_hv`.

use crate::canvas::CanvasView;
use crate::fill_holes::fill_holes;
use crate::label_components::{LabelScratch, label_4conn, remove_small_labels};
use crate::morphology::{Element, MorphScratch, open};
use crate::normalize::{normalize_minmax_f32_channel, normalize_minmax_f64_to_f32};
use crate::sobel::{SeparableScratch, gaussian_blur_3x3_f64, sobel_f32};
use crate::watershed::{WatershedHeap, watershed};
use crate::{NpHvParams, PostprocError};

/// Turns one canvas's np/hv maps into an instance label map (row-major `height * width`, 0 =
/// background, instances `1..=N` numbered in raster order of their marker's first pixel), exactly
/// as TIAToolbox's `HoVerNet._proc_np_hv(np, hv, scale_factor)`:
///
/// 1. `blb = np >= np_threshold`, 4-connected blobs below `min_blob_area` px removed;
/// 2. `h`, `v` = hv channels min-max normalised to [0, 1] over this canvas (f32);
/// 3. Sobel of `h` along x and `v` along y (size `int(20 s + 1)`, f64, reflect-101), each min-max
///    normalised (f32) and inverted; `overall = max(...)` inside `blb`, 0 outside;
/// 4. `dist = -GaussianBlur3x3((1 - overall) * blb)` (f64);
/// 5. markers = `blb` minus `overall >= edge_threshold`, holes filled, opened with the 5x5
///    ellipse, labelled (4-connected), markers below `ceil(10 s^2)` px dropped;
/// 6. `watershed(dist, markers, mask=blb)` (scikit-image, 4-connected).
///
/// The min-max normalisations see the whole canvas, so results depend on the canvas extent, as in
/// TIAToolbox's tile mode. The Sobel passes of the two channels run in parallel on the current
/// rayon pool; the result does not depend on the number of threads.
///
/// # Errors
/// [`PostprocError::InvalidParameter`] for parameters [`NpHvParams::validate`] refuses.
pub fn np_hv_to_instances(
    view: &CanvasView<'_>,
    params: &NpHvParams,
) -> Result<Vec<i32>, PostprocError> {
    params.validate()?;
    let ksize = params.sobel_ksize()?;
    let (h, w) = (view.height, view.width);
    let n = h * w;
    let _span = tracing::debug_span!("np_hv_to_instances", height = h, width = w).entered();

    // 1. foreground blobs
    let mut blb: Vec<u8> = view
        .np
        .iter()
        .map(|&p| u8::from(p >= params.np_threshold))
        .collect();
    let mut labels = vec![0i32; n];
    let mut label_scratch = LabelScratch::default();
    let mut sizes = Vec::new();
    let n_blobs = label_4conn(&blb, h, w, &mut labels, &mut label_scratch);
    remove_small_labels(
        &mut labels,
        n_blobs,
        params.min_blob_area.saturating_sub(1),
        &mut sizes,
    );
    let mut any = false;
    for (b, &l) in blb.iter_mut().zip(&labels) {
        *b = u8::from(l > 0);
        any |= l > 0;
    }
    if !any {
        labels.fill(0);
        return Ok(labels);
    }

    // 2-3. normalised hv, Sobel, normalised and inverted edge maps
    let mut hn = vec![0f32; n];
    let mut vn = vec![0f32; n];
    let mut sh = vec![0f64; n];
    let mut sv = vec![0f64; n];
    rayon::join(
        || {
            normalize_minmax_f32_channel(view.hv, 2, 0, &mut hn);
            sobel_f32(
                &hn,
                h,
                w,
                ksize,
                true,
                &mut sh,
                &mut SeparableScratch::default(),
            );
            normalize_minmax_f64_to_f32(&sh, &mut hn);
        },
        || {
            normalize_minmax_f32_channel(view.hv, 2, 1, &mut vn);
            sobel_f32(
                &vn,
                h,
                w,
                ksize,
                false,
                &mut sv,
                &mut SeparableScratch::default(),
            );
            normalize_minmax_f64_to_f32(&sv, &mut vn);
        },
    );

    // overall (f64, as numpy promotes f32 - int32), dist before blur, markers
    let overall = &mut sv;
    let dist_in = &mut sh;
    let mut marker = vec![0u8; n];
    for i in 0..n {
        let o32 = (1.0f32 - hn[i]).max(1.0f32 - vn[i]);
        let b = f64::from(blb[i]);
        let mut o = f64::from(o32) - (1.0 - b);
        if o < 0.0 {
            o = 0.0;
        }
        overall[i] = o;
        dist_in[i] = (1.0 - o) * b;
        let edge = o >= params.edge_threshold;
        marker[i] = u8::from(blb[i] == 1 && !edge);
    }
    drop(hn);
    drop(vn);

    // 4. dist = -GaussianBlur(dist_in)
    let dist = overall; // reuse
    gaussian_blur_3x3_f64(dist_in, h, w, dist, &mut SeparableScratch::default());
    for d in dist.iter_mut() {
        *d = -*d;
    }

    // 5. markers
    let mut stack = Vec::new();
    fill_holes(&mut marker, h, w, &mut stack);
    open(
        &mut marker,
        h,
        w,
        &Element::ellipse_5x5(),
        &mut MorphScratch::default(),
    );
    let n_markers = label_4conn(&marker, h, w, &mut labels, &mut label_scratch);
    remove_small_labels(
        &mut labels,
        n_markers,
        params.min_marker_area().saturating_sub(1),
        &mut sizes,
    );

    // 6. watershed
    watershed(dist, &mut labels, &blb, h, w, &mut WatershedHeap::default());
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_canvas_gives_no_instances() {
        let np = vec![0.2f32; 30];
        let hv = vec![0.0f32; 60];
        let v = CanvasView::new(5, 6, &np, &hv).unwrap();
        assert_eq!(
            np_hv_to_instances(&v, &NpHvParams::hovernet()).unwrap(),
            vec![0; 30]
        );
    }

    #[test]
    fn zero_sized_canvas_is_fine() {
        let v = CanvasView::new(0, 7, &[], &[]).unwrap();
        assert!(
            np_hv_to_instances(&v, &NpHvParams::hovernet())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn one_round_blob_is_one_instance() {
        let (h, w) = (32, 32);
        let mut np = vec![0f32; h * w];
        let mut hv = vec![0f32; h * w * 2];
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 - 15.5, y as f32 - 15.5);
                if dx * dx + dy * dy < 64.0 {
                    np[y * w + x] = 1.0;
                    hv[2 * (y * w + x)] = dx / 8.0;
                    hv[2 * (y * w + x) + 1] = dy / 8.0;
                }
            }
        }
        let v = CanvasView::new(h, w, &np, &hv).unwrap();
        let lab = np_hv_to_instances(&v, &NpHvParams::hovernet()).unwrap();
        assert_eq!(lab.iter().copied().max(), Some(1));
        assert_eq!(
            lab.iter().filter(|&&l| l == 1).count(),
            np.iter().filter(|&&p| p >= 0.5).count()
        );
    }
}

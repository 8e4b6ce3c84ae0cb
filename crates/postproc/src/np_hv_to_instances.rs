//! HoVer-Net np/hv maps -> nucleus instance labels: TIAToolbox's `HoVerNet._proc_np_hv`.

use rayon::prelude::*;

use crate::canvas::CanvasView;
use crate::fill_holes::fill_holes;
use crate::label_components::{
    LabelScratch, clear_small_runs, label_4conn_remove_small, label_runs,
};
use crate::morphology::{Element, MorphScratch, open};
use crate::normalize::{UnitScaleF32, UnitScaleF64, min_max_hv};
use crate::sobel::{NormalizedChannel, SeparableScratch, gaussian_blur_3x3_f64, sobel};
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
/// TIAToolbox's tile mode. The Sobel passes (two channels, row bands) and the element-wise passes
/// run in parallel on the current rayon pool; the result does not depend on the number of
/// threads. This allocates its intermediate maps on each call; see [`np_hv_to_instances_with`].
///
/// # Errors
/// [`PostprocError::InvalidParameter`] for parameters [`NpHvParams::validate`] refuses.
pub fn np_hv_to_instances(
    view: &CanvasView<'_>,
    params: &NpHvParams,
) -> Result<Vec<i32>, PostprocError> {
    np_hv_to_instances_with(view, params, &mut NpHvWorkspace::default())
}

/// Reusable buffers of [`np_hv_to_instances_with`] (about 30 bytes per canvas pixel once used),
/// so that a worker post-processing many canvases or tiles allocates and page-faults them once.
/// Results never depend on what a workspace was used for before.
///
/// ```
/// use mtseg_postproc::{CanvasView, NpHvParams, NpHvWorkspace, np_hv_to_instances_with};
///
/// let mut ws = NpHvWorkspace::default();
/// for _ in 0..3 {
///     let (np, hv) = (vec![0.0f32; 64], vec![0.0f32; 128]);
///     let view = CanvasView::new(8, 8, &np, &hv)?;
///     assert!(np_hv_to_instances_with(&view, &NpHvParams::hovernet(), &mut ws)?.iter().all(|&l| l == 0));
/// }
/// # Ok::<(), mtseg_postproc::PostprocError>(())
/// ```
#[derive(Debug, Default)]
pub struct NpHvWorkspace {
    blb: Vec<u8>,
    marker: Vec<u8>,
    sh: Vec<f64>,
    sv: Vec<f64>,
    label_scratch: LabelScratch,
    stack: Vec<u32>,
    morph: MorphScratch,
    sep_h: SeparableScratch,
    sep_v: SeparableScratch,
    sep_g: SeparableScratch,
    heap: WatershedHeap,
}

/// Pixels per parallel chunk of the element-wise passes.
const PAR_CHUNK: usize = 1 << 15;

/// [`np_hv_to_instances`] with caller-owned buffers: the same result, without allocating (and
/// zeroing) the intermediate maps on every call. Only the returned label map is new.
///
/// # Errors
/// As [`np_hv_to_instances`].
pub fn np_hv_to_instances_with(
    view: &CanvasView<'_>,
    params: &NpHvParams,
    ws: &mut NpHvWorkspace,
) -> Result<Vec<i32>, PostprocError> {
    params.validate()?;
    let ksize = params.sobel_ksize()?;
    let (h, w) = (view.height, view.width);
    let n = h * w;
    let _span = tracing::debug_span!("np_hv_to_instances", height = h, width = w).entered();
    let NpHvWorkspace {
        blb,
        marker,
        sh,
        sv,
        label_scratch,
        stack,
        morph,
        sep_h,
        sep_v,
        sep_g,
        heap,
    } = ws;

    // 1. foreground blobs
    blb.clear();
    blb.extend(view.np.iter().map(|&p| u8::from(p >= params.np_threshold)));
    label_runs(blb, h, w, label_scratch);
    if !clear_small_runs(
        blb,
        w,
        params.min_blob_area.saturating_sub(1),
        label_scratch,
    ) {
        return Ok(vec![0; n]);
    }

    // 2-3. hv min-max normalised (on the fly, as the Sobel reads its rows), Sobel (with the
    // output's min and max), then those normalised and inverted -> overall -> dist before blur
    // (in place of the h Sobel) and markers
    let [h_scale, v_scale] = min_max_hv(view.hv).map(UnitScaleF32::from_min_max);
    for buf in [&mut *sh, &mut *sv] {
        buf.resize(n, 0.0);
    }
    let (h_sobel, v_sobel) = rayon::join(
        || {
            let src = NormalizedChannel {
                hv: view.hv,
                channel: 0,
                scale: h_scale,
                w,
            };
            sobel(&src, h, w, ksize, true, sh, sep_h)
        },
        || {
            let src = NormalizedChannel {
                hv: view.hv,
                channel: 1,
                scale: v_scale,
                w,
            };
            sobel(&src, h, w, ksize, false, sv, sep_v)
        },
    );
    let h_unit = UnitScaleF64::from_min_max(h_sobel.finish());
    let v_unit = UnitScaleF64::from_min_max(v_sobel.finish());
    marker.resize(n, 0);
    let edge_threshold = params.edge_threshold;
    sh.par_chunks_mut(PAR_CHUNK)
        .zip(marker.par_chunks_mut(PAR_CHUNK))
        .zip(sv.par_chunks(PAR_CHUNK))
        .zip(blb.par_chunks(PAR_CHUNK))
        .zip(view.hv.par_chunks(2 * PAR_CHUNK))
        .for_each(|((((sh, marker), sv), blb), hv)| {
            const BLOCK: usize = 64;
            let (mut hn, mut vn) = ([0f32; BLOCK], [0f32; BLOCK]);
            for ((((d, m), sv), bl), hv) in sh
                .chunks_mut(BLOCK)
                .zip(marker.chunks_mut(BLOCK))
                .zip(sv.chunks(BLOCK))
                .zip(blb.chunks(BLOCK))
                .zip(hv.chunks(2 * BLOCK))
            {
                let k = d.len();
                let (hn, vn) = (&mut hn[..k], &mut vn[..k]);
                // cv2.normalize keeps the destination when a Sobel map has no number in it:
                // there, the normalised hv channel
                if h_unit == UnitScaleF64::Keep {
                    for (o, p) in hn.iter_mut().zip(hv.chunks_exact(2)) {
                        *o = h_scale.apply(p[0]);
                    }
                }
                if v_unit == UnitScaleF64::Keep {
                    for (o, p) in vn.iter_mut().zip(hv.chunks_exact(2)) {
                        *o = v_scale.apply(p[1]);
                    }
                }
                h_unit.apply(d, hn);
                v_unit.apply(sv, vn);
                // overall (f64, as numpy promotes f32 - int32), dist before blur, markers
                for ((((d, m), &a), &c), &bl) in d
                    .iter_mut()
                    .zip(m.iter_mut())
                    .zip(hn.iter())
                    .zip(vn.iter())
                    .zip(bl)
                {
                    let o32 = (1.0f32 - a).max(1.0f32 - c);
                    let b = f64::from(bl);
                    let o = f64::from(o32) - (1.0 - b);
                    let o = if o < 0.0 { 0.0 } else { o };
                    *d = (1.0 - o) * b;
                    let edge = o >= edge_threshold;
                    *m = u8::from(bl == 1 && !edge);
                }
            }
        });

    // 4. dist = -GaussianBlur(dist_in), in sv
    gaussian_blur_3x3_f64(sh, h, w, sv, sep_g);
    sv.par_chunks_mut(PAR_CHUNK).for_each(|c| {
        for d in c {
            *d = -*d;
        }
    });
    let dist = &sv[..];

    // 5. markers
    fill_holes(marker, h, w, stack);
    open(marker, h, w, &Element::ellipse_5x5(), morph);
    let mut labels = vec![0i32; n];
    label_4conn_remove_small(
        marker,
        h,
        w,
        params.min_marker_area().saturating_sub(1),
        &mut labels,
        label_scratch,
    );

    // 6. watershed
    watershed(dist, &mut labels, blb, h, w, heap);
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

//! The oracle on the histolytics `hgsc_nest` masks (1500², 1294 nuclei; `scripts/setup` puts them
//! in `data/`): patch outputs equal the rendered targets of the raster crop, and TIAToolbox's
//! post-processing of a canvas stitched from oracle patches recovers the nuclei.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use mtseg_infer::{BatchView, HeadKind, Model};
use mtseg_postproc::{CanvasView, NpHvParams, postprocess_nuclei, render_hovernet_targets};
use mtseg_test_models::{
    LabelSource, MosaicLabels, OracleModel, RasterLabels, aji, aji_plus, grid_origins,
    match_instances,
};

fn hgsc_nest() -> Result<RasterLabels> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    assert!(
        data.join("hgsc_nest_inst_mask.npz").exists(),
        "data/hgsc_nest_inst_mask.npz is missing: run scripts/setup"
    );
    Ok(RasterLabels::hgsc_nest(&data)?)
}

#[test]
fn loads_the_1294_nuclei() -> Result<()> {
    let r = hgsc_nest()?;
    assert_eq!(r.size(), [1500, 1500]);
    assert_eq!(r.instance_count(), 1294);
    assert_eq!(r.num_types(), 4);
    // every nucleus pixel has a class 1-3 (4 nuclei mix two); 43 background pixels have one too
    let mut typed_background = 0;
    for (&l, &t) in r.labels().iter().zip(r.types()) {
        assert!(l <= 0 || (1..=3).contains(&t));
        typed_background += usize::from(l <= 0 && t > 0);
    }
    assert_eq!(typed_background, 43);
    // the truth matches itself
    let s = match_instances(r.labels(), r.labels(), 1500, 1500, 0.5);
    assert_eq!(
        (s.tp, s.fp, s.fn_, s.f1, s.mean_iou),
        (1294, 0, 0, 1.0, 1.0)
    );
    assert_eq!(aji(r.labels(), r.labels(), 1500, 1500), 1.0);
    Ok(())
}

#[test]
fn patch_output_is_the_rendered_crop() -> Result<()> {
    let r = hgsc_nest()?;
    let (s, o, d) = (256usize, 164usize, 46usize);
    let src: Arc<dyn LabelSource> = Arc::new(r.clone());
    let origins = [[600i64, 400i64], [-46, -46], [1300, 1350]];
    let lookup = move |i: u64| origins.get(i as usize).copied();
    let mut m = OracleModel::builder(src.clone(), lookup).build()?;
    let px = vec![0u8; 3 * s * s * 3];
    let out = m.forward(BatchView::new(&px, &[0, 1, 2], s, s)?)?;
    for (k, origin) in origins.iter().enumerate() {
        let (mut l, mut t) = (vec![0; s * s], vec![0; s * s]);
        src.fill(origin[0], origin[1], s, s, &mut l, &mut t);
        let want = render_hovernet_targets(&l, Some(&t), s, s, 1.0)?;
        let np = out.head(HeadKind::Np).unwrap().patch(k).unwrap();
        let hv = out.head(HeadKind::Hv).unwrap().patch(k).unwrap();
        let tp = out.head(HeadKind::Tp).unwrap().patch(k).unwrap();
        for y in 0..o {
            for x in 0..o {
                let (i, j) = (y * o + x, (y + d) * s + x + d);
                assert_eq!(np[i], want.np[j], "patch {k} ({x}, {y})");
                assert_eq!(tp[i], want.tp[j]);
                assert_eq!(hv[2 * i..2 * i + 2], want.hv[2 * j..2 * j + 2]);
            }
        }
        assert!(np.iter().any(|&v| v > 0.5), "patch {k} has nuclei");
    }
    Ok(())
}

/// A canvas of oracle outputs and the oracle's speed making it.
struct Stitched {
    w: usize,
    h: usize,
    np: Vec<f32>,
    hv: Vec<f32>,
    tp: Vec<f32>,
    patches_per_s: f64,
}

/// Runs the oracle over TIAToolbox's grid of `source` (batches of 16) and places each output crop
/// on the canvas (stride = output, so crops do not overlap).
fn stitched_canvas(source: Arc<dyn LabelSource>) -> Result<Stitched> {
    let [w, h] = source.size();
    let (w, h) = (w as usize, h as usize);
    let (s, o) = (256, 164);
    let origins = grid_origins([w as u64, h as u64], o as u64, s, o);
    let mut m = OracleModel::builder(source, origins).build()?;
    let counters = m.counters();
    let (cols, rows) = (w.div_ceil(o), h.div_ceil(o));
    let (mut np, mut hv, mut tp) = (vec![0f32; w * h], vec![0f32; 2 * w * h], vec![0f32; w * h]);
    let px = vec![0u8; 16 * s * s * 3];
    let indices: Vec<u64> = (0..(cols * rows) as u64).collect();
    let start = Instant::now();
    for batch in indices.chunks(16) {
        let out = m.forward(BatchView::new(&px[..batch.len() * s * s * 3], batch, s, s)?)?;
        for (k, &i) in batch.iter().enumerate() {
            let (x0, y0) = ((i as usize % cols) * o, (i as usize / cols) * o);
            let pnp = out.head(HeadKind::Np).unwrap().patch(k).unwrap();
            let phv = out.head(HeadKind::Hv).unwrap().patch(k).unwrap();
            let ptp = out.head(HeadKind::Tp).unwrap().patch(k).unwrap();
            for y in 0..o.min(h - y0) {
                let n = o.min(w - x0);
                let c = (y0 + y) * w + x0;
                np[c..c + n].copy_from_slice(&pnp[y * o..y * o + n]);
                tp[c..c + n].copy_from_slice(&ptp[y * o..y * o + n]);
                hv[2 * c..2 * (c + n)].copy_from_slice(&phv[2 * y * o..2 * (y * o + n)]);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(counters.unknown_patches(), 0);
    assert_eq!(counters.patches(), (cols * rows) as u64);
    Ok(Stitched {
        w,
        h,
        np,
        hv,
        tp,
        patches_per_s: (cols * rows) as f64 / secs,
    })
}

#[test]
fn postprocessing_the_stitched_oracle_recovers_the_nuclei() -> Result<()> {
    let r = hgsc_nest()?;
    let truth = r.labels().to_vec();
    let Stitched {
        w,
        h,
        np,
        hv,
        tp,
        patches_per_s: rate,
    } = stitched_canvas(Arc::new(r.clone()))?;
    let view = CanvasView::new(h, w, &np, &hv)?.with_types(&tp)?;
    let out = postprocess_nuclei(&view, &NpHvParams::hovernet(), [0, 0])?;
    let s = match_instances(&truth, &out.labels, w, h, 0.5);
    let a = aji(&truth, &out.labels, w, h);
    let ap = aji_plus(&truth, &out.labels, w, h);
    println!(
        "hgsc_nest oracle: {} true, {} found, tp {} fp {} fn {}, F1 {:.4}, mean IoU {:.4}, PQ {:.4}, AJI {:.4}, AJI+ {:.4}; {rate:.0} patches/s",
        s.n_truth(),
        s.n_pred(),
        s.tp,
        s.fp,
        s.fn_,
        s.f1,
        s.mean_iou,
        s.pq(),
        a,
        ap
    );
    assert_eq!(s.n_truth(), 1294);
    assert!(s.f1 >= 0.97, "{s:?}");
    assert!(
        s.mean_iou >= 0.85 && a >= 0.8 && ap >= a,
        "{s:?} AJI {a} AJI+ {ap}"
    );
    // the found nuclei carry the true class of their match (majority of the rendered tp)
    let typed = out
        .instances
        .iter()
        .filter(|n| n.type_id.is_some_and(|t| t > 0))
        .count();
    assert_eq!(typed, out.instances.len());

    // the same as post-processing the whole-raster rendering, up to the slide border (where the
    // whole rendering reflects the mask and the patches see background)
    let whole = render_hovernet_targets(&truth, Some(r.types()), h, w, 1.0)?;
    let wview = CanvasView::new(h, w, &whole.np, &whole.hv)?.with_types(&whole.tp)?;
    let wout = postprocess_nuclei(&wview, &NpHvParams::hovernet(), [0, 0])?;
    let sw = match_instances(&truth, &wout.labels, w, h, 0.5);
    let same = match_instances(&wout.labels, &out.labels, w, h, 0.5);
    println!(
        "whole-raster rendering: F1 {:.4} ({} found); stitched vs whole: F1 {:.4}, mean IoU {:.4}",
        sw.f1,
        sw.n_pred(),
        same.f1,
        same.mean_iou
    );
    assert!(same.f1 >= 0.99, "{same:?}");
    Ok(())
}

#[test]
fn mosaic_of_hgsc_nest_keeps_every_nucleus_apart() -> Result<()> {
    // 2 x 2 copies cropped to 2500²: post-processing finds the nuclei of every copy, seams too
    let base: Arc<dyn LabelSource> = Arc::new(hgsc_nest()?);
    let m = MosaicLabels::covering(base, [2500, 2500])?;
    let n_truth = m.instance_count();
    let truth = {
        let mut l = vec![0; 2500 * 2500];
        let mut t = vec![0; 2500 * 2500];
        m.fill(0, 0, 2500, 2500, &mut l, &mut t);
        l
    };
    let Stitched {
        w,
        h,
        np,
        hv,
        tp,
        patches_per_s: rate,
    } = stitched_canvas(Arc::new(m))?;
    let view = CanvasView::new(h, w, &np, &hv)?.with_types(&tp)?;
    let out = postprocess_nuclei(&view, &NpHvParams::hovernet(), [0, 0])?;
    let s = match_instances(&truth, &out.labels, w, h, 0.5);
    println!(
        "2500² mosaic: {n_truth} true, {} found, F1 {:.4}, mean IoU {:.4}; {rate:.0} patches/s",
        s.n_pred(),
        s.f1,
        s.mean_iou
    );
    assert_eq!(s.n_truth(), n_truth);
    assert!(s.f1 >= 0.97, "{s:?}");
    Ok(())
}

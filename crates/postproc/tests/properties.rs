//! Invariants of post-processing on random canvases (proptest).

use mtseg_postproc::{
    CanvasView, NpHvParams, TileInput, instance_info, np_hv_to_instances, postprocess_nuclei,
    postprocess_tiles, render_hovernet_targets,
};
use proptest::prelude::*;

/// A canvas of random discs rendered as HoVer-Net targets, plus noise: `(h, w, np, hv, tp)`.
fn arbitrary_canvas() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (12usize..56, 12usize..56).prop_flat_map(|(h, w)| {
        (
            Just(h),
            Just(w),
            prop::collection::vec((0..h, 0..w, 2usize..9, 0u8..4), 0..12),
            prop::collection::vec(-0.3f32..0.3, h * w * 3),
        )
            .prop_map(|(h, w, discs, noise)| {
                let mut labels = vec![0i32; h * w];
                let mut types = vec![0u8; h * w];
                for (k, &(cy, cx, r, t)) in discs.iter().enumerate() {
                    for y in cy.saturating_sub(r)..(cy + r).min(h) {
                        for x in cx.saturating_sub(r)..(cx + r).min(w) {
                            let (dy, dx) = (y as isize - cy as isize, x as isize - cx as isize);
                            if dy * dy + dx * dx <= (r * r) as isize {
                                labels[y * w + x] = k as i32 + 1;
                                types[y * w + x] = t;
                            }
                        }
                    }
                }
                let t =
                    render_hovernet_targets(&labels, Some(&types), h, w, 1.0).expect("sizes match");
                let np =
                    t.np.iter()
                        .zip(&noise)
                        .map(|(v, n)| (v + n).clamp(0.0, 1.0))
                        .collect();
                let hv =
                    t.hv.iter()
                        .zip(noise.iter().cycle().skip(h * w))
                        .map(|(v, n)| (v + n).clamp(-1.0, 1.0))
                        .collect();
                let tp =
                    t.tp.iter()
                        .zip(&noise)
                        .map(|(v, n)| (v + n.abs()).max(0.0))
                        .collect();
                (h, w, np, hv, tp)
            })
    })
}

fn params() -> impl Strategy<Value = NpHvParams> {
    prop_oneof![
        Just(NpHvParams::hovernet()),
        Just(NpHvParams::hovernet_plus())
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn instances_lie_inside_the_np_mask((h, w, np, hv, _tp) in arbitrary_canvas(), p in params()) {
        let view = CanvasView::new(h, w, &np, &hv).unwrap();
        let labels = np_hv_to_instances(&view, &p).unwrap();
        for (l, v) in labels.iter().zip(&np) {
            prop_assert!(*l >= 0);
            if *l > 0 {
                prop_assert!(*v >= p.np_threshold);
            }
        }
    }

    #[test]
    fn records_are_consistent_with_the_label_map((h, w, np, hv, tp) in arbitrary_canvas(), ox in -50i32..50, oy in -50i32..50) {
        let view = CanvasView::new(h, w, &np, &hv).unwrap().with_types(&tp).unwrap();
        let out = postprocess_nuclei(&view, &NpHvParams::hovernet(), [ox, oy]).unwrap();
        let mut prev = 0;
        for n in &out.instances {
            prop_assert!(n.label > prev, "ascending labels");
            prev = n.label;
            let [x0, y0, x1, y1] = n.bbox;
            prop_assert!(x0 < x1 && y0 < y1);
            for y in 0..h as i32 {
                for x in 0..w as i32 {
                    let inside = x + ox >= x0 && x + ox < x1 && y + oy >= y0 && y + oy < y1;
                    if out.labels[(y as usize) * w + x as usize] == n.label {
                        prop_assert!(inside, "pixel outside its box");
                    }
                }
            }
            prop_assert!(n.centroid[0] >= f64::from(x0) && n.centroid[0] < f64::from(x1));
            prop_assert!(n.centroid[1] >= f64::from(y0) && n.centroid[1] < f64::from(y1));
            prop_assert!(n.contour.len() >= 3);
            for p in &n.contour {
                let (x, y) = ((p[0] - ox) as usize, (p[1] - oy) as usize);
                prop_assert_eq!(out.labels[y * w + x], n.label, "contour points are instance pixels");
            }
            let prob = n.type_prob.unwrap();
            prop_assert!(prob > 0.0 && prob <= 1.0);
        }
        // the offset only shifts coordinates
        let base = instance_info(&out.labels, h, w, Some(&tp), [0, 0]).unwrap();
        prop_assert_eq!(base.len(), out.instances.len());
        for (a, b) in base.iter().zip(&out.instances) {
            prop_assert_eq!([a.bbox[0] + ox, a.bbox[1] + oy, a.bbox[2] + ox, a.bbox[3] + oy], b.bbox);
            prop_assert_eq!(a.contour.iter().map(|p| [p[0] + ox, p[1] + oy]).collect::<Vec<_>>(), b.contour.clone());
            prop_assert_eq!(a.type_id, b.type_id);
        }
    }

    #[test]
    fn output_does_not_depend_on_thread_count((h, w, np, hv, tp) in arbitrary_canvas()) {
        let view = CanvasView::new(h, w, &np, &hv).unwrap().with_types(&tp).unwrap();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
                .install(|| postprocess_nuclei(&view, &NpHvParams::hovernet(), [3, 4]).unwrap())
        };
        let one = run(1);
        prop_assert_eq!(&one, &run(3));
        // and the many-tiles helper equals one-by-one processing
        let tiles = [TileInput { view, offset: [0, 0] }, TileInput { view, offset: [w as i32, 0] }];
        let many = postprocess_tiles(&tiles, &NpHvParams::hovernet());
        prop_assert_eq!(many[0].as_ref().unwrap().labels.clone(), one.labels.clone());
        let shifted = postprocess_nuclei(&view, &NpHvParams::hovernet(), [w as i32, 0]).unwrap();
        prop_assert_eq!(many[1].as_ref().unwrap(), &shifted);
    }

    #[test]
    fn random_maps_never_panic(h in 0usize..24, w in 0usize..24, seed in any::<u64>()) {
        let mut s = seed | 1;
        let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / (1u64 << 24) as f32 };
        let np: Vec<f32> = (0..h * w).map(|_| next()).collect();
        let hv: Vec<f32> = (0..h * w * 2).map(|_| next() * 2.0 - 1.0).collect();
        let view = CanvasView::new(h, w, &np, &hv).unwrap();
        let out = postprocess_nuclei(&view, &NpHvParams::hovernet_plus(), [0, 0]).unwrap();
        prop_assert_eq!(out.labels.len(), h * w);
    }
}

//! The merge does not depend on tile arrival order, arrival granularity (all at once or band by
//! band, drained at any point) or thread count, and with `TiaToolboxCompat::exact` it equals a
//! literal re-implementation of TIAToolbox's sequential loop (`_process_tile_mode` +
//! `_process_instance_predictions`).

#[allow(unreachable_pub)]
#[path = "support/canvases.rs"]
mod canvases;

use mtseg_instmerge::{
    CanvasMaps, MergeItem, TiaToolboxCompat, TileMerger, TileModeParams, tile_mode,
};
use mtseg_postproc::render_hovernet_targets;
use mtseg_tiling::{PostprocTile, Size2, TileSet, tile_layout};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct Item {
    bbox: [i32; 4],
}

impl MergeItem for Item {
    fn merge_box(&self) -> [i32; 4] {
        self.bbox
    }
    fn position(&self) -> [f64; 2] {
        [
            f64::from(self.bbox[0] + self.bbox[2]) / 2.0,
            f64::from(self.bbox[1] + self.bbox[3]) / 2.0,
        ]
    }
}

type Case = (Vec<PostprocTile>, u64, Vec<Vec<Item>>);

/// A layout and, per tile, a few boxes inside its part of the image.
fn case() -> impl Strategy<Value = Case> {
    (60u64..300, 60u64..300, 30u64..90, 1u64..12).prop_flat_map(|(w, h, tile, margin)| {
        let tiles = tile_layout(Size2::new(w, h), tile, margin, |_| true).unwrap();
        let per_tile: Vec<_> = tiles
            .iter()
            .map(|t| {
                let b = t.bounds;
                let (x0, y0) = (b[0].max(0) as i32, b[1].max(0) as i32);
                let (x1, y1) = ((b[2] as i32).min(w as i32), (b[3] as i32).min(h as i32));
                prop::collection::vec((0.0..1.0f64, 0.0..1.0f64, 1i32..16, 1i32..16), 0..6)
                    .prop_map(move |v| {
                        if x1 <= x0 || y1 <= y0 {
                            return Vec::new();
                        }
                        v.into_iter()
                            .map(|(fx, fy, sw, sh)| {
                                let bx = x0 + ((x1 - x0) as f64 * fx) as i32;
                                let by = y0 + ((y1 - y0) as f64 * fy) as i32;
                                Item {
                                    bbox: [bx, by, (bx + sw).min(x1), (by + sh).min(y1)],
                                }
                            })
                            .filter(|i| i.bbox[2] > i.bbox[0] && i.bbox[3] > i.bbox[1])
                            .collect()
                    })
            })
            .collect();
        (Just(tiles), Just(margin), per_tile)
    })
}

fn run(
    c: &Case,
    compat: TiaToolboxCompat,
    order: &[usize],
    drain_every: usize,
) -> Vec<(u64, usize, [i32; 4])> {
    let (tiles, margin, items) = c;
    let mut m = TileMerger::new(tiles.clone(), *margin, compat).unwrap();
    let mut out = Vec::new();
    for (k, &t) in order.iter().enumerate() {
        m.push(t, items[t].clone()).unwrap();
        if drain_every > 0 && k % drain_every == 0 {
            out.extend(m.drain_final());
        }
    }
    out.extend(m.finish().unwrap());
    out.into_iter()
        .map(|o| (o.id, o.tile_index, o.item.bbox))
        .collect()
}

fn isect(a: &[i64; 4], b: &[i64; 4]) -> bool {
    a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3]
}

fn within(o: &[i64; 4], i: &[i64; 4]) -> bool {
    o[0] <= i[0] && i[2] <= o[2] && o[1] <= i[1] && i[3] <= o[3]
}

/// TIAToolbox's loop, literally: tiles in layout order, tile-local geometry, an accumulated
/// list that each non-empty cross filters with its margin lines.
fn tiatoolbox_loop(c: &Case) -> Vec<(u64, usize, [i32; 4])> {
    let (tiles, margin, items) = c;
    let m = *margin as i64;
    let mut acc: Vec<(usize, usize, [i32; 4])> = Vec::new();
    for (t, tile) in tiles.iter().enumerate() {
        let inst = &items[t];
        if inst.is_empty() {
            continue; // `if len(inst_dict) == 0: return {}, []`
        }
        let [tx, ty, bx1, by1] = tile.bounds;
        let (w, h) = (bx1 - tx, by1 - ty);
        let boundary = [
            [0, 0, w, 1],
            [0, h - 1, w, h],
            [0, 0, 1, h],
            [w - 1, 0, w, h],
        ];
        let margins = [
            [0, 0, w, m],
            [0, h - m, w, h],
            [0, 0, m, h],
            [w - m, 0, w, h],
        ];
        let flag = tile.flags.to_array();
        let local = |b: [i32; 4]| {
            [
                b[0] as i64 - tx,
                b[1] as i64 - ty,
                b[2] as i64 - tx,
                b[3] as i64 - ty,
            ]
        };
        let removed = |b: [i64; 4]| match tile.set {
            TileSet::Full | TileSet::Cross => {
                (0..4).any(|k| (flag[k] || tile.set == TileSet::Cross) && within(&margins[k], &b))
            }
            _ => (0..4).any(|k| isect(if flag[k] { &margins[k] } else { &boundary[k] }, &b)),
        };
        if tile.set == TileSet::Cross {
            let lines = [
                [m, m, w - m, m],
                [m, h - m, w - m, h - m],
                [m, m, m, h - m],
                [w - m, m, w - m, h - m],
            ]
            .map(|l| [l[0] + tx, l[1] + ty, l[2] + tx, l[3] + ty]);
            acc.retain(|a| {
                let g = a.2.map(i64::from);
                !lines.iter().any(|l| isect(l, &g))
            });
        }
        for (i, it) in inst.iter().enumerate() {
            if !removed(local(it.bbox)) {
                acc.push((t, i, it.bbox));
            }
        }
    }
    let key = |a: &(usize, usize, [i32; 4])| {
        let b = a.2;
        (
            f64::from(b[1] + b[3]) / 2.0,
            f64::from(b[0] + b[2]) / 2.0,
            a.0,
            a.1,
        )
    };
    acc.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap());
    acc.into_iter()
        .enumerate()
        .map(|(k, a)| (k as u64 + 1, a.0, a.2))
        .collect()
}

fn exact(c: &Case) -> TiaToolboxCompat {
    // the grid extent is only read by the driver
    let _ = c;
    TiaToolboxCompat::exact(Size2::new(0, 0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_order_and_granularity_gives_the_canonical_result(
        c in case(),
        seed in any::<u64>(),
        drain_every in 0usize..5,
    ) {
        let n = c.0.len();
        let canonical: Vec<usize> = (0..n).collect();
        // a seeded shuffle, and bands: tiles sorted by their top
        let mut shuffled = canonical.clone();
        let mut s = seed | 1;
        for i in (1..n).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut bands = canonical.clone();
        bands.sort_by_key(|&i| (c.0[i].bounds[3], c.0[i].bounds[0]));
        for compat in [TiaToolboxCompat::OFF, exact(&c)] {
            let reference = run(&c, compat, &canonical, 0);
            prop_assert_eq!(&run(&c, compat, &shuffled, drain_every), &reference);
            prop_assert_eq!(&run(&c, compat, &bands, 1), &reference);
            let ids: Vec<u64> = reference.iter().map(|r| r.0).collect();
            prop_assert_eq!(ids, (1..=reference.len() as u64).collect::<Vec<_>>());
        }
        prop_assert_eq!(run(&c, exact(&c), &shuffled, drain_every), tiatoolbox_loop(&c));
    }
}

#[test]
fn tile_mode_is_the_same_on_1_and_3_threads() {
    // a 400 x 300 corner of the hgsc_nest mask, tiles of 128 px, margin 24
    let (_, full_labels) = canvases::hgsc_nest().unwrap();
    let (h, w) = (300, 400);
    let labels = canvases::crop_labels(&full_labels, 1500, [0, 0, w, h]);
    let t = render_hovernet_targets(&labels, None, h, w, 1.0).unwrap();
    let canvas = CanvasMaps {
        height: h,
        width: w,
        np: &t.np,
        hv: &t.hv,
        tp: Some(&t.tp),
        ls: None,
    };
    let params = TileModeParams::new(128, 24);
    let on = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| tile_mode(&canvas, &params).unwrap())
    };
    let (one, three) = (on(1), on(3));
    assert!(one.nuclei.len() > 50, "{} nuclei", one.nuclei.len());
    // instances, ids and counters agree (only `peak_held` follows the chunking)
    assert!(
        one.nuclei == three.nuclei,
        "the nuclei differ between 1 and 3 threads"
    );
    let counts = |s: mtseg_instmerge::MergeStats| {
        (
            s.tiles,
            s.instances_in,
            s.removed_by_margin,
            s.removed_by_cross,
            s.emitted,
        )
    };
    assert_eq!(counts(one.nuclei_stats), counts(three.nuclei_stats));
}

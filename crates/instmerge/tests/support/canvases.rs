//! Test canvases and instance comparison shared by the integration tests.

#![allow(dead_code)]

use anyhow::Result;
use mtseg_instmerge::MergedItem;
use mtseg_postproc::{HoverNetTargets, NucleusInstance, render_hovernet_targets};

use mtseg_test_models::npy;

/// `mtseg-postproc`'s `tests/fixtures` folder (the hgsc_nest masks live there, once).
pub fn postproc_fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../postproc/tests/fixtures")
}

/// The histolytics `hgsc_nest` masks (1500 x 1500, 1294 nuclei) rendered as HoVer-Net outputs.
pub fn hgsc_nest() -> Result<(HoverNetTargets, Vec<i32>)> {
    let dir = postproc_fixtures_dir();
    let mask = npy::read(&dir.join("hgsc_nest_inst_mask_u16.npy.gz"))?;
    let (h, w) = (mask.shape[0], mask.shape[1]);
    let labels: Vec<i32> = mask.to_i64().into_iter().map(|v| v as i32).collect();
    let types: Vec<u8> = npy::read(&dir.join("hgsc_nest_type_mask_u8.npy.gz"))?
        .to_i64()
        .into_iter()
        .map(|v| v as u8)
        .collect();
    Ok((
        render_hovernet_targets(&labels, Some(&types), h, w, 1.0)?,
        labels,
    ))
}

/// A deterministic pseudo-random field of `count` square nuclei with sides in `sides` (later
/// ones drawn over earlier ones) on an `h x w` label map (`h`, `w` > 8), from `seed`. Sides
/// under about 10 px mostly give no watershed marker with HoVer-Net's constants (21 px Sobel,
/// markers of at least 10 px), so no instance.
pub fn random_blob_labels(
    h: usize,
    w: usize,
    count: i32,
    sides: std::ops::Range<usize>,
    seed: u64,
) -> Vec<i32> {
    let mut labels = vec![0i32; h * w];
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    for id in 1..=count {
        let (x, y) = (next() % (w - 8), next() % (h - 8));
        let r = sides.start + next() % sides.len().max(1);
        for yy in y..(y + r).min(h) {
            for xx in x..(x + r).min(w) {
                labels[yy * w + xx] = id;
            }
        }
    }
    labels
}

/// A HoVer-Net+ layer-id map (`h x w`, argmax ids as floats): class 1 tissue with a few
/// rectangles of classes 0 to 3 drawn over it (background holes, epithelium, keratin), from
/// `seed`.
pub fn random_layer_ids(h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut ls = vec![1f32; h * w];
    let mut s = seed | 1;
    let mut next = |n: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % n as u64) as usize
    };
    for _ in 0..1 + next(5) {
        let (x0, y0) = (next(w), next(h));
        let (x1, y1) = ((x0 + 10 + next(w)).min(w), (y0 + 10 + next(h)).min(h));
        let class = next(4) as f32;
        for y in y0..y1 {
            ls[y * w + x0..y * w + x1].fill(class);
        }
    }
    ls
}

/// A crop `[x0, y0, x1, y1)` of a label map.
pub fn crop_labels(labels: &[i32], width: usize, r: [usize; 4]) -> Vec<i32> {
    (r[1]..r[3])
        .flat_map(|y| labels[y * width + r[0]..y * width + r[2]].iter().copied())
        .collect()
}

/// The pixels of an instance as row spans `(y, x_min, x_max)`: each row of its contour filled
/// from its leftmost to its rightmost contour pixel (exact for row-convex nuclei; applied the
/// same way to both sides of a comparison). The contour's straight runs
/// (`CHAIN_APPROX_SIMPLE`) are walked pixel by pixel.
pub fn spans(n: &NucleusInstance) -> Vec<(i32, i32, i32)> {
    let [_, y0, _, y1] = n.bbox;
    let h = (y1 - y0) as usize;
    let mut rows = vec![(i32::MAX, i32::MIN); h];
    let mut mark = |x: i32, y: i32| {
        if let Some(r) = rows.get_mut((y - y0) as usize) {
            r.0 = r.0.min(x);
            r.1 = r.1.max(x);
        }
    };
    let c = &n.contour;
    for i in 0..c.len() {
        let (a, b) = (c[i], c[(i + 1) % c.len()]);
        let steps = (b[0] - a[0]).abs().max((b[1] - a[1]).abs()).max(1);
        for s in 0..=steps {
            mark(
                a[0] + (b[0] - a[0]) * s / steps,
                a[1] + (b[1] - a[1]) * s / steps,
            );
        }
    }
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.0 <= r.1)
        .map(|(k, r)| (y0 + k as i32, r.0, r.1))
        .collect()
}

fn overlap(a: &[(i32, i32, i32)], b: &[(i32, i32, i32)]) -> i64 {
    let mut s = 0i64;
    for &(y, l, r) in a {
        for &(y2, l2, r2) in b {
            if y == y2 {
                s += i64::from((r.min(r2) - l.max(l2) + 1).max(0));
            }
        }
    }
    s
}

fn area(a: &[(i32, i32, i32)]) -> i64 {
    a.iter().map(|&(_, l, r)| i64::from(r - l + 1)).sum()
}

/// Instances matched one to one at IoU > 0.5, and the F1 `2 m / (n_a + n_b)`.
pub fn match_f1(
    a: &[MergedItem<NucleusInstance>],
    b: &[MergedItem<NucleusInstance>],
) -> (usize, f64) {
    let sa: Vec<_> = a.iter().map(|n| spans(&n.item)).collect();
    let sb: Vec<_> = b.iter().map(|n| spans(&n.item)).collect();
    let mut used = vec![false; b.len()];
    let mut matched = 0;
    for (i, na) in a.iter().enumerate() {
        let ba = na.item.bbox;
        for (j, nb) in b.iter().enumerate() {
            let bb = nb.item.bbox;
            if used[j] || bb[0] >= ba[2] || ba[0] >= bb[2] || bb[1] >= ba[3] || ba[1] >= bb[3] {
                continue;
            }
            let inter = overlap(&sa[i], &sb[j]);
            let union = area(&sa[i]) + area(&sb[j]) - inter;
            if inter * 2 > union {
                used[j] = true;
                matched += 1;
                break;
            }
        }
    }
    let n = a.len() + b.len();
    (
        matched,
        if n == 0 {
            1.0
        } else {
            2.0 * matched as f64 / n as f64
        },
    )
}

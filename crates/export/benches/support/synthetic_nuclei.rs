//! Synthetic but realistic nuclei for the whole-slide benches (shared by
//! `crates/export/benches/million_nuclei.rs` and `crates/instmerge/benches/merge_million.rs`).
//!
//! 512 templates, each a noisy ellipse of radius 7-12 px rasterised and traced by postproc's
//! `instance_info` (the `cv2.findContours(CHAIN_APPROX_SIMPLE)` contours HoVer-Net gives:
//! 14-44 points for 98% of them), placed one per 100 × 100 cell of a slide 100 000 px wide
//! (1000 cells a row, as many rows as needed: 10^6 nuclei cover 100 000 × 100 000 px),
//! jittered inside the cell, with one of 5 classes and a type probability. Deterministic.

use mtseg_instmerge::MergedItem;
use mtseg_postproc::{NucleusInstance, instance_info};

/// Cells (one nucleus each) per row of the slide.
pub(crate) const CELLS_PER_ROW: usize = 1000;
/// Side of a cell in processing pixels.
pub(crate) const CELL: i32 = 100;
/// Side of a template's box.
const TEMPLATE: i32 = 40;
/// Number of distinct nucleus shapes.
const TEMPLATES: usize = 512;

/// splitmix64: a deterministic hash of `i`.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in `[0, 1)` from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The templates: noisy ellipses in `TEMPLATE`-pixel cells, traced by postproc, each moved
/// to its cell's origin.
fn templates() -> Vec<NucleusInstance> {
    let columns = 32usize;
    let rows = TEMPLATES.div_ceil(columns);
    let side = TEMPLATE as usize;
    let (w, h) = (columns * side, rows * side);
    let mut labels = vec![0i32; w * h];
    for t in 0..TEMPLATES {
        let u = |k: u64| unit(mix((t as u64) << 8 | k));
        let radius = 7.0 + 5.0 * u(0);
        let aspect = 0.75 + 0.5 * u(1);
        let angle = std::f64::consts::PI * u(2);
        let (wobble, phase) = (0.08 * u(3), std::f64::consts::TAU * u(4));
        let lobes = 2.0 + (u(5) * 4.0).floor();
        let c = f64::from(TEMPLATE) / 2.0 - 0.5;
        let (x0, y0) = ((t % columns) * side, (t / columns) * side);
        for y in 0..side {
            for x in 0..side {
                let (dx, dy) = (x as f64 - c, y as f64 - c);
                let (rx, ry) = (
                    dx * angle.cos() + dy * angle.sin(),
                    (-dx * angle.sin() + dy * angle.cos()) / aspect,
                );
                let theta = ry.atan2(rx);
                let limit = radius * (1.0 + wobble * (lobes * theta + phase).sin());
                if rx.hypot(ry) <= limit {
                    labels[(y0 + y) * w + x0 + x] = t as i32 + 1;
                }
            }
        }
    }
    let mut found = instance_info(&labels, h, w, None, [0, 0]).expect("a valid label map");
    found.sort_by_key(|n| n.label);
    assert_eq!(found.len(), TEMPLATES, "every template is one nucleus");
    for n in &mut found {
        let t = (n.label - 1) as usize;
        let (x0, y0) = ((t % columns) as i32, (t / columns) as i32);
        n.translate([-x0 * TEMPLATE, -y0 * TEMPLATE]);
    }
    found
}

/// `n` nuclei, ids 1..=n, in row-major cell order.
pub(crate) fn nuclei(n: usize) -> Vec<MergedItem<NucleusInstance>> {
    let templates = templates();
    (0..n)
        .map(|i| {
            let h = mix(i as u64 ^ 0x5eed);
            let mut nucleus = templates[(h % TEMPLATES as u64) as usize].clone();
            let slack = (CELL - TEMPLATE) as u64;
            let (jx, jy) = ((h >> 16) % slack, (h >> 32) % slack);
            let (col, row) = ((i % CELLS_PER_ROW) as i32, (i / CELLS_PER_ROW) as i32);
            nucleus.translate([col * CELL + jx as i32, row * CELL + jy as i32]);
            nucleus.label = (i % 5000) as i32 + 1;
            nucleus.type_id = Some(1 + ((h >> 48) % 5) as u32);
            nucleus.type_prob = Some(0.4 + 0.6 * unit(mix(h)));
            MergedItem {
                id: i as u64 + 1,
                tile_index: i / 5000,
                item: nucleus,
            }
        })
        .collect()
}

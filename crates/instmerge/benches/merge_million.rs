//! Merge throughput on a slide of 10^6 synthetic nuclei: the nuclei of every post-processing
//! tile of a 100 000 px wide slide (2048 px tiles, margin 128: the pipeline's defaults) pushed
//! into a [`TileMerger`] tile row by tile row, final instances drained after every tile, as the
//! pipeline's merge stage does; prints nuclei/s and the merge counters.
//!
//! ```text
//! cargo bench -p mtseg-instmerge --bench merge_million                    # 10^6 nuclei
//! cargo bench -p mtseg-instmerge --bench merge_million -- --quick         # 20 000 nuclei
//! cargo bench -p mtseg-instmerge --bench merge_million -- --nuclei 200000 --tile 1024 --margin 64
//! ```
//!
//! The nuclei are those of mtseg-export's `million_nuclei` bench (shared generator
//! `crates/export/benches/support/synthetic_nuclei.rs`). Each tile gets the nuclei whose
//! centroid lies in it, with the box clipped to the tile (a nucleus cut by the tile edge, as
//! post-processing the tile alone would see it): nuclei near a seam arrive from two to four
//! tiles (full tile, strips, cross) and the margin rules keep one. Tiles are pushed in order of
//! their bottom row. The per-tile lists are built before the clock starts.

use std::time::Instant;

use mtseg_instmerge::{TiaToolboxCompat, TileMerger};
use mtseg_postproc::NucleusInstance;
use mtseg_tiling::{Size2, tile_layout};

#[path = "../../export/benches/support/synthetic_nuclei.rs"]
#[allow(dead_code)]
mod synthetic_nuclei;

use synthetic_nuclei::{CELL, CELLS_PER_ROW, nuclei};

struct Options {
    nuclei: usize,
    tile: u64,
    margin: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        nuclei: 1_000_000,
        tile: 2048,
        margin: 128,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            args.next()
                .ok_or(format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--nuclei" => options.nuclei = number("--nuclei")? as usize,
            "--tile" => options.tile = number("--tile")?,
            "--margin" => options.margin = number("--margin")?,
            "--quick" => options.nuclei = 20_000,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    let start = Instant::now();
    let all: Vec<NucleusInstance> = nuclei(options.nuclei).into_iter().map(|n| n.item).collect();
    let rows = all.len().div_ceil(CELLS_PER_ROW);
    let size = Size2::new(
        CELLS_PER_ROW as u64 * CELL as u64,
        rows as u64 * CELL as u64,
    );
    let tiles = tile_layout(size, options.tile, options.margin, |_| true)?;
    // The nuclei of each tile: those whose centroid lies in it (looked up by cell), the box
    // clipped to the tile.
    let cell = f64::from(CELL);
    let per_tile: Vec<Vec<NucleusInstance>> = tiles
        .iter()
        .map(|t| {
            let [x0, y0, x1, y1] = t.bounds.map(|v| v as f64);
            let cells = |a: f64, b: f64, n: usize| {
                ((a / cell).floor().max(0.0) as usize)..((b / cell).ceil() as usize).min(n)
            };
            let mut found = Vec::new();
            for r in cells(y0, y1, rows) {
                for c in cells(x0, x1, CELLS_PER_ROW) {
                    let Some(n) = all.get(r * CELLS_PER_ROW + c) else {
                        continue;
                    };
                    let [cx, cy] = n.centroid;
                    if (x0..x1).contains(&cx) && (y0..y1).contains(&cy) {
                        let b = t.bounds.map(|v| v.clamp(0, i64::from(i32::MAX)) as i32);
                        let mut n = n.clone();
                        n.bbox = [
                            n.bbox[0].max(b[0]),
                            n.bbox[1].max(b[1]),
                            n.bbox[2].min(b[2]),
                            n.bbox[3].min(b[3]),
                        ];
                        found.push(n);
                    }
                }
            }
            found
        })
        .collect();
    let pushed: usize = per_tile.iter().map(Vec::len).sum();
    let mut order: Vec<usize> = (0..tiles.len()).collect();
    order.sort_by_key(|&i| (tiles[i].bounds[3], tiles[i].bounds[1], i));
    println!(
        "{} nuclei on {} x {} px, {} tiles of {} (margin {}), {} instances pushed; prepared in {:.2} s",
        all.len(),
        size.width,
        size.height,
        tiles.len(),
        options.tile,
        options.margin,
        pushed,
        start.elapsed().as_secs_f64()
    );
    drop(all);

    let start = Instant::now();
    let mut merger = TileMerger::new(tiles, options.margin, TiaToolboxCompat::OFF)?;
    let mut per_tile: Vec<Option<Vec<NucleusInstance>>> = per_tile.into_iter().map(Some).collect();
    let mut emitted = 0usize;
    let mut last_id = 0u64;
    for i in order {
        merger.push(i, per_tile[i].take().unwrap_or_default())?;
        for item in merger.drain_final() {
            assert_eq!(item.id, last_id + 1, "ids are handed out in order");
            last_id = item.id;
            emitted += 1;
        }
    }
    let stats = merger.stats();
    emitted += merger.finish()?.len();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "merge {:>9.0} nuclei/s  {:.2} s  ({} pushed, {} removed by margins, {} by crosses, \
         {} emitted, peak held {})",
        emitted as f64 / seconds,
        seconds,
        stats.instances_in,
        stats.removed_by_margin,
        stats.removed_by_cross,
        emitted,
        stats.peak_held
    );
    Ok(())
}

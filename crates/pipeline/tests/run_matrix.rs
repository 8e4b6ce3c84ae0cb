//! One slide through the whole pipeline under every combination of the settings that change
//! how the work is scheduled but must not change the result: CPU threads (1 or 2), memory
//! budget (tight enough that the stitcher waits for post-processing, or loose), post-processing
//! mode (the whole canvas at once, or tiles) and batch size (1 or 5). Within a mode, every cell
//! must give the same nuclei with the same ids.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, ensure};
use mtseg_instmerge::MergedItem;
use mtseg_io_config::RunConfig;
use mtseg_pipeline::{Engine, MemoryOutputs, NoProgress};
use mtseg_postproc::NucleusInstance;
use mtseg_test_models::{LabelSource, RasterLabels};

#[path = "support/oracle_provider.rs"]
mod oracle_provider;
use oracle_provider::OracleProvider;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy)]
struct Cell {
    threads: u32,
    memory: &'static str,
    tile_shape: u32,
    batch: u32,
}

fn config(dir: &Path, slide: &Path, c: Cell) -> Result<RunConfig> {
    let text = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nbatch_size = {}\n\
         [io]\nresolution = {{ mpp = 0.5 }}\ntile_shape = {}\nmargin = 64\n\
         [input]\nslides = [{:?}]\nmpp = 0.5\nmask = \"none\"\n\
         [output]\ndir = {:?}\n\
         [pipeline]\nthreads = {}\nmemory_limit = {:?}\nqueue_capacity = 2\n",
        c.batch,
        c.tile_shape,
        slide.display().to_string(),
        dir.join("out").display().to_string(),
        c.threads,
        c.memory,
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, &text)?;
    Ok(RunConfig::from_file(&path)?)
}

/// What must not change: ids and geometry of every nucleus, in output order.
type Nuclei = Vec<(u64, [i32; 4], Vec<[i32; 2]>, Option<u32>)>;

fn key(items: &[MergedItem<NucleusInstance>]) -> Nuclei {
    items
        .iter()
        .map(|m| (m.id, m.item.bbox, m.item.contour.clone(), m.item.type_id))
        .collect()
}

#[test]
fn every_schedule_gives_the_same_nuclei_and_ids() -> Result<()> {
    let truth = RasterLabels::hgsc_nest(&data())?;
    let source: Arc<dyn LabelSource> = Arc::new(truth);
    let tmp = tempfile::tempdir()?;
    let slide = data().join("hgsc_nest.jpg");
    // tile_shape 2048 holds the 1.5k canvas: full mode; 600: 49 tiles, strips and crosses
    for (mode, tile_shape, tight) in [("full", 2048, TIGHT_FULL), ("tile", 600, TIGHT_TILES)] {
        let mut reference: Option<(Cell, Nuclei)> = None;
        for threads in [1, 2] {
            for memory in [tight, "4GiB"] {
                for batch in [1, 5] {
                    let cell = Cell {
                        threads,
                        memory,
                        tile_shape,
                        batch,
                    };
                    let cfg = config(tmp.path(), &slide, cell)?;
                    let outputs = MemoryOutputs::default();
                    let summary = Engine::new(
                        &cfg,
                        &OracleProvider::new(Arc::clone(&source)),
                        &outputs,
                        &NoProgress,
                    )
                    .run()?;
                    ensure!(
                        summary.failed.is_empty(),
                        "{mode} {cell:?}: {:?}",
                        summary.failed
                    );
                    let got = key(&outputs.collected()[0].nuclei);
                    eprintln!(
                        "{mode:>4} threads {threads} memory {memory:>6} batch {batch}: {} nuclei, {:.2} s, peak {:?}",
                        got.len(),
                        summary.wall_s,
                        summary.peak_rss_bytes
                    );
                    ensure!(got.len() > 1000, "{mode} {cell:?}: {} nuclei", got.len());
                    match &reference {
                        None => reference = Some((cell, got)),
                        Some((c0, want)) => ensure!(
                            &got == want,
                            "{mode}: {cell:?} gives {} nuclei, {c0:?} gave {} (first difference at {:?})",
                            got.len(),
                            want.len(),
                            got.iter().zip(want).position(|(a, b)| a != b)
                        ),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Budgets that the 1.5k canvas only fits by waiting: the stitcher holds rows back until
/// post-processing has freed the ones before. In full mode the post-processing window is the
/// whole canvas (36 MB of maps), in tile mode a band of tiles (15.7 MB); about 5 MB more are
/// held by the stitcher, which leaves room for a few dozen canvas rows in flight.
const TIGHT_FULL: &str = "40MiB";
const TIGHT_TILES: &str = "20MiB";

//! The run executes the plan that `--dry-run` prints: the same patches and the same
//! post-processing tiles (counted by the progress events and the summary), and one model load
//! serves every slide of a run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, ensure};
use mtseg_infer::{
    BatchView, HeadKind, HeadOutputs, HeadSpec, HeadTensor, InferError, LoadError, Model,
};
use mtseg_io_config::{RunConfig, SlideInput};
use mtseg_pipeline::{
    Engine, MemoryOutputs, ModelFactory, ModelProvider, ProgressEvent, ProgressSink, plan_slide,
    stage_params, tissue_mask,
};
use mtseg_slide::open_slide;
use mtseg_test_models::{LabelSource, RasterLabels};
use mtseg_tiling::{Size2, box_has_tissue, tile_layout};

#[path = "support/oracle_provider.rs"]
mod oracle_provider;
use oracle_provider::OracleProvider;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A HoVer-Net-shaped model that predicts background everywhere (nothing to post-process, so
/// a whole slide runs in seconds), counting its loads.
struct Background {
    heads: Vec<HeadSpec>,
}

impl Model for Background {
    fn heads(&self) -> &[HeadSpec] {
        &self.heads
    }
    fn input_size(&self) -> usize {
        256
    }
    fn output_size(&self) -> usize {
        164
    }
    fn forward(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError> {
        let n = batch.len();
        let tensor = |kind: HeadKind| HeadTensor {
            kind,
            shape: [n, 164, 164, kind.output_channels()],
            data: vec![0.0; n * 164 * 164 * kind.output_channels()],
        };
        Ok(HeadOutputs {
            indices: batch.indices().to_vec(),
            heads: self.heads.iter().map(|h| tensor(h.kind)).collect(),
        })
    }
}

#[derive(Default)]
struct BackgroundProvider {
    loads: Arc<AtomicUsize>,
}

impl ModelProvider for BackgroundProvider {
    fn factory(&self) -> Result<ModelFactory, LoadError> {
        let loads = Arc::clone(&self.loads);
        Ok(Box::new(move || {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(Background {
                heads: vec![
                    HeadSpec::new(HeadKind::Np, 2),
                    HeadSpec::new(HeadKind::Hv, 2),
                    HeadSpec::new(HeadKind::Tp, 6),
                ],
            }) as Box<dyn Model>)
        }))
    }
}

#[derive(Default)]
struct Events(std::sync::Mutex<Vec<ProgressEvent>>);
impl ProgressSink for Events {
    fn event(&self, e: &ProgressEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

/// A config over `slides` with HoVer-Net fast's PanNuke shapes and `extra` keys.
fn config(dir: &Path, slides: &[PathBuf], io: &str, input: &str) -> Result<RunConfig> {
    let list: Vec<String> = slides
        .iter()
        .map(|s| format!("{:?}", s.display().to_string()))
        .collect();
    let text = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nbatch_size = 8\n[io]\n{io}\n\
         [input]\nslides = [{}]\n{input}\n[output]\ndir = {:?}\n",
        list.join(", "),
        dir.join("out").display().to_string()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, &text)?;
    Ok(RunConfig::from_file(&path)?)
}

/// Runs `cfg` with the background model and checks the plan of each slide against the run:
/// patches, and post-processing tiles as announced, reported done and summarised.
fn run_matches_plan(cfg: &RunConfig) -> Result<Vec<usize>> {
    let plans: Vec<_> = cfg
        .input
        .slides
        .iter()
        .map(|s| plan_slide(cfg, s))
        .collect::<Result<_, _>>()?;
    let events = Events::default();
    let summary = Engine::new(
        cfg,
        &BackgroundProvider::default(),
        &MemoryOutputs::default(),
        &events,
    )
    .run()?;
    ensure!(summary.failed.is_empty(), "{:?}", summary.failed);
    let events = events.0.into_inner().unwrap();
    let mut counts = Vec::new();
    for (i, (plan, done)) in plans.iter().zip(&summary.slides).enumerate() {
        let tiles = plan.postproc_tiles();
        let started = events.iter().find_map(|e| match e {
            ProgressEvent::SlideStarted {
                slide,
                tiles,
                patches,
                ..
            } if *slide == i => Some((*patches, *tiles)),
            _ => None,
        });
        let last_done = events.iter().rev().find_map(|e| match e {
            ProgressEvent::TilesDone {
                slide, done, total, ..
            } if *slide == i => Some((*done, *total)),
            _ => None,
        });
        ensure!(
            started == Some((plan.patches_selected, tiles)),
            "{}: started {started:?}, planned {} patches and {tiles} tiles",
            plan.path.display(),
            plan.patches_selected
        );
        ensure!(
            last_done == Some((tiles, tiles)) && done.tiles == tiles,
            "{}: tiles done {last_done:?}, summary {}, planned {tiles}",
            plan.path.display(),
            done.tiles
        );
        ensure!(done.patches == plan.patches_selected);
        counts.push(tiles);
    }
    Ok(counts)
}

/// Post-processing tiles of the canvas of `slide`: all of them, and those whose full tile
/// meets the tissue mask (TIAToolbox's filter, with its strips and crosses).
fn tile_counts(cfg: &RunConfig, slide: &SlideInput) -> Result<(usize, usize)> {
    let plan = plan_slide(cfg, slide)?;
    let reader = open_slide(&slide.path, stage_params::slide_open_options(cfg, slide))?;
    let mask = tissue_mask(cfg, slide, reader.as_ref())?.expect("auto mask");
    let (cw, ch, ox, oy) = plan.canvas;
    let (w, h) = plan.processing;
    let eff = cfg.io.effective_tile();
    let tile = eff.width.min(eff.height);
    let layout = |keep: &dyn Fn(&[i64; 4]) -> bool| {
        tile_layout(Size2::new(cw, ch), tile, u64::from(cfg.io.margin), keep).map(|t| t.len())
    };
    let all = layout(&|_| true)?;
    let with_tissue = layout(&|b| {
        let on_slide = [
            b[0] + ox as i64,
            b[1] + oy as i64,
            b[2] + ox as i64,
            b[3] + oy as i64,
        ];
        box_has_tissue(
            on_slide,
            &mask,
            Size2::new(w, h),
            stage_params::mask_rule(cfg),
            0.0,
        )
    })?;
    Ok((all, with_tissue))
}

#[test]
fn dry_run_and_run_count_the_same_tiles() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cmu = root().join("data/cmu_small_region.svs");
    let nest = root().join("data/hgsc_nest.jpg");
    // configs/hovernet.toml's shapes: 0.25 mpp, tile_shape 1024 (984 px tiles), auto mask
    let cfg = config(
        tmp.path(),
        std::slice::from_ref(&cmu),
        "resolution = { mpp = 0.25 }",
        "mask = \"auto\"",
    )?;
    let tiles = run_matches_plan(&cfg)?;
    eprintln!("cmu_small_region at 0.25 mpp: {tiles:?} tiles");
    ensure!(tiles[0] > 1, "tile mode");
    // README difference 18: every tile of the canvas is post-processed; TIAToolbox keeps only
    // the tiles whose box meets the tissue mask.
    let (all, with_tissue) = tile_counts(&cfg, &cfg.input.slides[0])?;
    eprintln!("  tiles: {all} in the layout, {with_tissue} meet the tissue mask");
    ensure!(tiles[0] == all && with_tissue < all);
    // configs/demo.toml's shapes: 0.5 mpp, tile_shape 2048, auto mask; and hgsc_nest (no mpp in
    // the file: 0.5 given), tile 600 so that it is tiled too
    let cfg = config(
        tmp.path(),
        &[cmu, nest.clone()],
        "resolution = { mpp = 0.5 }\ntile_shape = 2048",
        "mpp = 0.5\nmask = \"auto\"",
    )?;
    let tiles = run_matches_plan(&cfg)?;
    eprintln!("cmu_small_region, hgsc_nest at 0.5 mpp, tile 2048: {tiles:?} tiles");
    let cfg = config(
        tmp.path(),
        &[nest],
        "resolution = { mpp = 0.5 }\ntile_shape = 600\nmargin = 64",
        "mpp = 0.5\nmask = \"auto\"",
    )?;
    let tiles = run_matches_plan(&cfg)?;
    eprintln!("hgsc_nest at 0.5 mpp, tile 600: {tiles:?} tiles");
    ensure!(tiles[0] > 1, "tile mode");
    Ok(())
}

#[test]
fn one_model_load_serves_twenty_slides() -> Result<()> {
    // 20 slides: crops of hgsc_nest at its origin, so the oracle's labels hold for each
    let tmp = tempfile::tempdir()?;
    let truth = RasterLabels::hgsc_nest(&root().join("data"))?;
    let image = image::open(root().join("data/hgsc_nest.jpg"))?.to_rgb8();
    let slides: Vec<PathBuf> = (0..20)
        .map(|k| {
            let side = 300 + 10 * k;
            let p = tmp.path().join(format!("crop{k:02}.png"));
            image::imageops::crop_imm(&image, 0, 0, side, side)
                .to_image()
                .save(&p)
                .map(|()| p)
        })
        .collect::<Result<_, _>>()?;
    let cfg = config(
        tmp.path(),
        &slides,
        "resolution = { mpp = 0.5 }",
        "mpp = 0.5\nmask = \"none\"",
    )?;
    let provider = OracleProvider::new(Arc::new(truth.clone()) as Arc<dyn LabelSource>);
    let outputs = MemoryOutputs::default();
    let summary = Engine::new(&cfg, &provider, &outputs, &mtseg_pipeline::NoProgress).run()?;
    ensure!(summary.failed.is_empty(), "{:?}", summary.failed);
    ensure!(summary.slides.len() == 20);
    ensure!(
        provider.loads() == 1,
        "{} loads for 20 slides",
        provider.loads()
    );
    let counts: Vec<u64> = summary.slides.iter().map(|s| s.nuclei).collect();
    ensure!(counts[0] > 10, "{counts:?}");
    // the shared model gives each slide what a run of that slide alone gives
    let together = outputs.collected();
    for k in [0, 7, 19] {
        let alone_cfg = config(
            tmp.path(),
            &slides[k..=k],
            "resolution = { mpp = 0.5 }",
            "mpp = 0.5\nmask = \"none\"",
        )?;
        let alone = MemoryOutputs::default();
        let provider = OracleProvider::new(Arc::new(truth.clone()) as Arc<dyn LabelSource>);
        Engine::new(&alone_cfg, &provider, &alone, &mtseg_pipeline::NoProgress).run()?;
        let alone = alone.collected();
        ensure!(
            alone[0].nuclei == together[k].nuclei,
            "slide {k}: {} nuclei alone, {} in the run of 20",
            alone[0].nuclei.len(),
            together[k].nuclei.len()
        );
    }
    Ok(())
}

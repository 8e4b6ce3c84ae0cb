//! The whole streamed pipeline (read -> infer -> stitch -> post-process -> merge -> outputs) on
//! real images with the oracle test model, whose outputs are rendered from the known nuclei of
//! `hgsc_nest.jpg`: the nuclei must come back, in tile mode, identically for any channel
//! capacity and batch size, and a bad slide must not stop the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use mtseg_io_config::RunConfig;
use mtseg_pipeline::{Engine, MemoryOutputs, NoProgress, ProgressEvent, ProgressSink};
use mtseg_test_models::{LabelSource, RasterLabels, match_instances, rasterise_contours};

#[path = "support/oracle_provider.rs"]
mod oracle_provider;
use oracle_provider::OracleProvider;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

fn config(dir: &Path, slides: &[PathBuf], extra: &str) -> Result<RunConfig> {
    let list: Vec<String> = slides
        .iter()
        .map(|s| format!("{:?}", s.display().to_string()))
        .collect();
    let text = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nbatch_size = 4\n\
         [io]\nresolution = {{ mpp = 0.5 }}\ntile_shape = 600\nmargin = 64\n\
         [input]\nslides = [{}]\nmpp = 0.5\nmask = \"none\"\n\
         [output]\ndir = {:?}\n{extra}",
        list.join(", "),
        dir.join("out").display().to_string()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, &text)?;
    Ok(RunConfig::from_file(&path)?)
}

#[derive(Default)]
struct Events(std::sync::Mutex<Vec<ProgressEvent>>);
impl ProgressSink for Events {
    fn event(&self, e: &ProgressEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

#[test]
fn oracle_nuclei_come_back_in_tile_mode_for_any_capacity() -> Result<()> {
    let truth = RasterLabels::hgsc_nest(&data())?;
    let source: Arc<dyn LabelSource> = Arc::new(truth.clone());
    let tmp = tempfile::tempdir()?;
    let slide = data().join("hgsc_nest.jpg");
    let mut reference = None;
    for (capacity, batch) in [(1, 1), (8, 4), (2, 7)] {
        let mut cfg = config(tmp.path(), std::slice::from_ref(&slide), "")?;
        cfg.pipeline.queue_capacity = std::num::NonZeroU32::new(capacity).unwrap();
        cfg.model.batch_size = std::num::NonZeroU32::new(batch).unwrap();
        let outputs = MemoryOutputs::default();
        let events = Events::default();
        let summary = Engine::new(
            &cfg,
            &OracleProvider::new(Arc::clone(&source)),
            &outputs,
            &events,
        )
        .run()?;
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        let got = outputs.collected();
        assert_eq!(got.len(), 1);
        let s = &got[0];
        assert!(s.finished);
        // ids 1..=N in order, rows_final never decreasing
        assert!(
            s.nuclei
                .iter()
                .enumerate()
                .all(|(i, n)| n.id == i as u64 + 1)
        );
        assert!(s.rows_final.windows(2).all(|w| w[0] <= w[1]));
        let tiles = summary.slides[0].tiles;
        assert!(tiles > 4, "tile mode expected, got {tiles} tiles");
        let nuclei: Vec<(u64, Vec<[i32; 2]>)> = s
            .nuclei
            .iter()
            .map(|n| (n.id, n.item.contour.clone()))
            .collect();
        let pred = rasterise_contours(&nuclei, truth.width(), truth.height());
        let m = match_instances(truth.labels(), &pred, truth.width(), truth.height(), 0.5);
        println!(
            "capacity {capacity} batch {batch}: {} nuclei, F1 {:.4} (tp {} fp {} fn {}), {tiles} tiles, stages {:?}",
            s.nuclei.len(),
            m.f1,
            m.tp,
            m.fp,
            m.fn_,
            summary.slides[0].stages
        );
        assert!(m.f1 >= 0.95, "F1 {}", m.f1);
        let ev = events.0.lock().unwrap();
        assert!(matches!(
            ev.first(),
            Some(ProgressEvent::RunStarted { slides: 1 })
        ));
        assert!(
            ev.iter().any(
                |e| matches!(e, ProgressEvent::PatchesDone { done, total, .. } if done == total)
            )
        );
        assert!(matches!(
            ev.last(),
            Some(ProgressEvent::RunFinished { slides_ok: 1, .. })
        ));
        let key: Vec<_> = s
            .nuclei
            .iter()
            .map(|n| (n.id, n.item.bbox, n.item.type_id))
            .collect();
        match &reference {
            None => reference = Some(key),
            Some(r) => assert_eq!(&key, r, "capacity {capacity} batch {batch} differs"),
        }
    }
    Ok(())
}

#[test]
fn a_corrupt_slide_in_a_batch_of_three_fails_alone() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let bad = tmp.path().join("corrupt.svs");
    std::fs::write(&bad, b"II*\0 this is not a slide")?;
    let good = data().join("hgsc_nest.jpg");
    let slides = [
        good.clone(),
        bad.clone(),
        data().join("hgsc_stromal_he.jpg"),
    ];
    let cfg = config(tmp.path(), &slides, "")?;
    let source: Arc<dyn LabelSource> = Arc::new(RasterLabels::hgsc_nest(&data())?);
    let outputs = MemoryOutputs::default();
    let summary = Engine::new(&cfg, &OracleProvider::new(source), &outputs, &NoProgress).run()?;
    assert_eq!(summary.slides.len(), 2);
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].0, bad);
    assert!(
        summary.failed[0].1.contains("corrupt.svs"),
        "{}",
        summary.failed[0].1
    );
    let missing = tmp.path().join("missing.svs");
    let cfg = config(tmp.path(), &[missing.clone(), good], "")?;
    let summary = Engine::new(
        &cfg,
        &OracleProvider::new(Arc::new(RasterLabels::hgsc_nest(&data())?)),
        &outputs,
        &NoProgress,
    )
    .run()?;
    assert_eq!(summary.slides.len(), 1);
    assert!(
        summary.failed[0].1.contains("missing.svs"),
        "{}",
        summary.failed[0].1
    );
    Ok(())
}

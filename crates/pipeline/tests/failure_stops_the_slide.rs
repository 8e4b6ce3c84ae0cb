//! A stage that fails stops its slide at once: the reader sends no more batches, so a model
//! that fails on an early batch is not asked for the rest of the slide's forwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mtseg_infer::{
    BatchView, HeadKind, HeadOutputs, HeadSpec, HeadTensor, InferError, LoadError, Model,
};
use mtseg_io_config::RunConfig;
use mtseg_pipeline::{Engine, MemoryOutputs, ModelFactory, ModelProvider, NoProgress, plan_slide};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Background everywhere, except that forward number `fail_at` (0-based) fails.
struct FailsAt {
    heads: Vec<HeadSpec>,
    fail_at: usize,
    forwards: Arc<AtomicUsize>,
}

impl Model for FailsAt {
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
        if self.forwards.fetch_add(1, Ordering::SeqCst) == self.fail_at {
            return Err(InferError::Torch {
                detail: "out of memory (test)".into(),
            });
        }
        let n = batch.len();
        let tensor = |kind: HeadKind| HeadTensor {
            kind,
            shape: [n, 164, 164, kind.output_channels()],
            data: vec![0.0; n * 164 * 164 * kind.output_channels()],
        };
        Ok(HeadOutputs {
            indices: batch.indices().to_vec(),
            heads: vec![tensor(HeadKind::Np), tensor(HeadKind::Hv)],
        })
    }
}

struct Provider {
    fail_at: usize,
    forwards: Arc<AtomicUsize>,
}

impl ModelProvider for Provider {
    fn factory(&self) -> Result<ModelFactory, LoadError> {
        let (fail_at, forwards) = (self.fail_at, Arc::clone(&self.forwards));
        Ok(Box::new(move || {
            Ok(Box::new(FailsAt {
                heads: vec![
                    HeadSpec::new(HeadKind::Np, 2),
                    HeadSpec::new(HeadKind::Hv, 2),
                ],
                fail_at,
                forwards,
            }) as Box<dyn Model>)
        }))
    }
}

#[test]
fn a_failed_forward_stops_the_reading_of_its_slide() {
    let slide = root().join("data/cmu_small_region.svs");
    assert!(slide.exists(), "test data missing: run scripts/setup first");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nbatch_size = 8\n\
         [input]\nslides = [{:?}]\nmask = \"none\"\n[output]\ndir = {:?}\n\
         [pipeline]\nqueue_capacity = 2\n",
        slide.display().to_string(),
        dir.path().join("out").display().to_string()
    );
    let path = dir.path().join("run.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = RunConfig::from_file(&path).unwrap();
    let batches = plan_slide(&cfg, &cfg.input.slides[0])
        .unwrap()
        .patches_selected
        .div_ceil(8);
    assert!(batches > 100, "{batches} batches: the slide is too small");

    let forwards = Arc::new(AtomicUsize::new(0));
    let provider = Provider {
        fail_at: 2,
        forwards: Arc::clone(&forwards),
    };
    let summary = Engine::new(&cfg, &provider, &MemoryOutputs::default(), &NoProgress)
        .run()
        .unwrap();
    assert_eq!(summary.failed.len(), 1);
    let error = summary.failed[0].1.to_string();
    assert!(error.contains("out of memory (test)"), "{error}");
    // Forward 2 failed; the batches already queued behind it when the stitcher saw the error
    // (the jobs queue, the transform queue and the results queue hold 2 each, plus one batch
    // in each stage's hands) may still run, the other ~120 batches must not.
    let n = forwards.load(Ordering::SeqCst);
    assert!(n <= 3 + 3 * 2 + 4, "{n} forwards of {batches} batches");
}

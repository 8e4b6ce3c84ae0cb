//! Patch mode end to end (TIAToolbox's `patch_mode=True`): a list of 256 x 256 images, each one
//! model input. The model is loaded once for the whole list, images travel in batches of
//! `[model] batch_size`, each image gets its own nuclei in output-patch coordinates, and a bad
//! image (missing, wrong size) is reported while the others finish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use mtseg_infer::{
    BatchView, HeadKind, HeadOutputs, HeadSpec, HeadTensor, InferError, LoadError, Model,
};
use mtseg_io_config::RunConfig;
use mtseg_pipeline::{Engine, MemoryOutputs, ModelFactory, ModelProvider};

const INPUT: usize = 256;
const OUTPUT: usize = 164;
const MARGIN: usize = (INPUT - OUTPUT) / 2;
const RADIUS: i32 = 7;

/// np = 1 on dark pixels (mean < 128) of the centre crop, hv = the offset from the centre of the
/// disc under the pixel / disc radius (HoVer-Net's targets; the centres are known per image
/// index), tp = 2 on dark pixels: every dark disc becomes one nucleus of class 2.
struct DarkBlobModel {
    heads: Vec<HeadSpec>,
    batch_sizes: Arc<Vec<AtomicUsize>>,
    centres: Arc<HashMap<u64, Vec<[i32; 2]>>>,
}

impl Model for DarkBlobModel {
    fn heads(&self) -> &[HeadSpec] {
        &self.heads
    }
    fn input_size(&self) -> usize {
        INPUT
    }
    fn output_size(&self) -> usize {
        OUTPUT
    }
    fn forward(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError> {
        let n = batch.len();
        self.batch_sizes[n.min(self.batch_sizes.len() - 1)].fetch_add(1, Ordering::Relaxed);
        let px = batch.pixels();
        let mut np = vec![0f32; n * OUTPUT * OUTPUT];
        let mut hv = vec![0f32; n * OUTPUT * OUTPUT * 2];
        for (b, index) in batch.indices().iter().enumerate() {
            let centres = self.centres.get(index).map_or(&[][..], Vec::as_slice);
            for y in 0..OUTPUT {
                for x in 0..OUTPUT {
                    let (ix, iy) = (x + MARGIN, y + MARGIN);
                    let i = ((b * INPUT + iy) * INPUT + ix) * 3;
                    let mean = (u32::from(px[i]) + u32::from(px[i + 1]) + u32::from(px[i + 2])) / 3;
                    if mean >= 128 {
                        continue;
                    }
                    let o = (b * OUTPUT + y) * OUTPUT + x;
                    np[o] = 1.0;
                    if let Some(&[cx, cy]) = centres.iter().find(|&&[cx, cy]| {
                        let (dx, dy) = (ix as i32 - cx, iy as i32 - cy);
                        dx * dx + dy * dy <= RADIUS * RADIUS
                    }) {
                        hv[o * 2] = (ix as i32 - cx) as f32 / RADIUS as f32;
                        hv[o * 2 + 1] = (iy as i32 - cy) as f32 / RADIUS as f32;
                    }
                }
            }
        }
        let tp = np.iter().map(|&v| v * 2.0).collect();
        Ok(HeadOutputs {
            indices: batch.indices().to_vec(),
            heads: vec![
                HeadTensor {
                    kind: HeadKind::Np,
                    shape: [n, OUTPUT, OUTPUT, 1],
                    data: np,
                },
                HeadTensor {
                    kind: HeadKind::Hv,
                    shape: [n, OUTPUT, OUTPUT, 2],
                    data: hv,
                },
                HeadTensor {
                    kind: HeadKind::Tp,
                    shape: [n, OUTPUT, OUTPUT, 1],
                    data: tp,
                },
            ],
        })
    }
}

/// Counts model loads and batch sizes.
#[derive(Default)]
struct CountingProvider {
    loads: Arc<AtomicUsize>,
    factories: AtomicUsize,
    batch_sizes: Arc<Vec<AtomicUsize>>,
    centres: Arc<HashMap<u64, Vec<[i32; 2]>>>,
}

impl CountingProvider {
    /// `centres`: the disc centres of each image, by its index in the run.
    fn new(centres: HashMap<u64, Vec<[i32; 2]>>) -> Self {
        Self {
            batch_sizes: Arc::new((0..8).map(|_| AtomicUsize::new(0)).collect()),
            centres: Arc::new(centres),
            ..Self::default()
        }
    }
}

impl ModelProvider for CountingProvider {
    fn factory(&self) -> Result<ModelFactory, LoadError> {
        self.factories.fetch_add(1, Ordering::Relaxed);
        let loads = Arc::clone(&self.loads);
        let batch_sizes = Arc::clone(&self.batch_sizes);
        let centres = Arc::clone(&self.centres);
        Ok(Box::new(move || {
            loads.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(DarkBlobModel {
                heads: vec![
                    HeadSpec::new(HeadKind::Np, 2),
                    HeadSpec::new(HeadKind::Hv, 2),
                    HeadSpec::new(HeadKind::Tp, 6),
                ],
                batch_sizes,
                centres,
            }) as Box<dyn Model>)
        }))
    }
}

/// A white image with dark discs of radius `RADIUS` at `centres` (input pixel coordinates).
fn write_image(path: &Path, side: u32, centres: &[[i32; 2]]) {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let dark = centres.iter().any(|&[cx, cy]| {
            let (dx, dy) = (x as i32 - cx, y as i32 - cy);
            dx * dx + dy * dy <= RADIUS * RADIUS
        });
        if dark {
            image::Rgb([40, 30, 90])
        } else {
            image::Rgb([240, 235, 245])
        }
    });
    img.save(path).unwrap();
}

fn config(dir: &Path, images: &[PathBuf], batch: usize) -> Result<RunConfig> {
    let list: Vec<String> = images
        .iter()
        .map(|s| format!("{:?}", s.display().to_string()))
        .collect();
    let text = format!(
        "[model]\npreset = \"hovernet_fast-pannuke\"\nbatch_size = {batch}\n\
         [io]\nresolution = {{ mpp = 0.5 }}\n\
         [input]\nmode = \"patch\"\nslides = [{}]\nmpp = 0.5\nmask = \"none\"\n\
         [output]\ndir = {:?}\n",
        list.join(", "),
        dir.join("out").display().to_string()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, &text)?;
    Ok(RunConfig::from_file(&path)?)
}

/// Disc centres for image `k`: `k + 1` discs on a diagonal inside the centre crop.
fn centres(k: usize) -> Vec<[i32; 2]> {
    (0..=k as i32).map(|j| [60 + 25 * j, 70 + 20 * j]).collect()
}

#[test]
fn images_are_batched_through_one_model_and_keep_their_own_nuclei() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut images = Vec::new();
    for k in 0..5 {
        let p = dir.path().join(format!("img{k}.png"));
        write_image(&p, INPUT as u32, &centres(k));
        images.push(p);
    }
    // A wrong-size image and a missing one in the middle of the list.
    let wrong = dir.path().join("wrong_size.png");
    write_image(&wrong, 300, &centres(0));
    images.insert(2, wrong.clone());
    let missing = dir.path().join("missing.png");
    images.insert(4, missing.clone());

    let cfg = config(dir.path(), &images, 2)?;
    let known = images
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let k: usize = p.file_stem()?.to_str()?.strip_prefix("img")?.parse().ok()?;
            Some((i as u64, centres(k)))
        })
        .collect();
    let provider = CountingProvider::new(known);
    let outputs = MemoryOutputs::default();
    let summary = Engine::new(&cfg, &provider, &outputs, &mtseg_pipeline::NoProgress).run()?;

    assert_eq!(provider.loads.load(Ordering::Relaxed), 1, "one model load");
    assert_eq!(provider.factories.load(Ordering::Relaxed), 1);
    // 5 good images in batches of at most 2 (the bad ones leave gaps, never mixed sizes).
    let sizes: Vec<usize> = provider
        .batch_sizes
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    assert_eq!(sizes[0], 0, "no empty batch");
    assert_eq!(sizes[1] + 2 * sizes[2], 5, "{sizes:?}");
    assert!(sizes[3..].iter().all(|&c| c == 0), "{sizes:?}");

    let failed: Vec<&PathBuf> = summary.failed.iter().map(|(p, _)| p).collect();
    assert_eq!(failed, [&wrong, &missing], "{:?}", summary.failed);
    let wrong_msg = &summary.failed[0].1;
    assert!(
        wrong_msg.contains("300 x 300") && wrong_msg.contains("256 x 256"),
        "{wrong_msg}"
    );
    assert!(
        summary.failed[1].1.contains("missing.png"),
        "{}",
        summary.failed[1].1
    );

    assert_eq!(summary.slides.len(), 5);
    let collected = outputs.collected();
    assert_eq!(collected.len(), 5);
    for k in 0..5 {
        let path = dir.path().join(format!("img{k}.png"));
        let s = summary.slides.iter().find(|s| s.path == path).unwrap();
        assert_eq!(s.nuclei, k as u64 + 1, "{}", path.display());
        let c = collected
            .iter()
            .find(|c| c.spec.as_ref().is_some_and(|sp| sp.slide_path == path))
            .unwrap();
        assert!(c.finished);
        let mut got: Vec<[f64; 2]> = c.nuclei.iter().map(|n| n.item.centroid).collect();
        got.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let want = centres(k);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            // Output-patch coordinates: the input minus the margin.
            let (ex, ey) = (
                f64::from(w[0]) - MARGIN as f64,
                f64::from(w[1]) - MARGIN as f64,
            );
            assert!(
                (g[0] - ex).abs() < 0.5 && (g[1] - ey).abs() < 0.5,
                "{}: centroid {g:?}, disc at {ex}, {ey}",
                path.display()
            );
        }
        assert!(c.nuclei.iter().all(|n| n.item.type_id == Some(2)));
    }
    Ok(())
}

#[test]
fn a_model_that_fails_to_load_fails_every_image_once() -> Result<()> {
    struct Broken(AtomicUsize);
    impl ModelProvider for Broken {
        fn factory(&self) -> Result<ModelFactory, LoadError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(|| {
                Err(LoadError::InvalidArchitecture {
                    detail: "deliberately broken".into(),
                })
            }))
        }
    }
    let dir = tempfile::tempdir()?;
    let images: Vec<PathBuf> = (0..3)
        .map(|k| {
            let p = dir.path().join(format!("img{k}.png"));
            write_image(&p, INPUT as u32, &centres(k));
            p
        })
        .collect();
    let cfg = config(dir.path(), &images, 2)?;
    let provider = Broken(AtomicUsize::new(0));
    let outputs = MemoryOutputs::default();
    let summary = Engine::new(&cfg, &provider, &outputs, &mtseg_pipeline::NoProgress).run()?;
    assert_eq!(provider.0.load(Ordering::Relaxed), 1, "tried once");
    assert!(summary.slides.is_empty());
    assert_eq!(summary.failed.len(), 3);
    for ((p, msg), want) in summary.failed.iter().zip(&images) {
        assert_eq!(p, want);
        assert!(
            msg.contains("loading the model") && msg.contains("deliberately broken"),
            "{msg}"
        );
    }
    assert!(outputs.collected().is_empty(), "nothing written");
    Ok(())
}

#[test]
fn a_cancelled_run_reports_the_images_not_started() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let images: Vec<PathBuf> = (0..4)
        .map(|k| {
            let p = dir.path().join(format!("img{k}.png"));
            write_image(&p, INPUT as u32, &centres(k));
            p
        })
        .collect();
    let cfg = config(dir.path(), &images, 2)?;
    let provider = CountingProvider::new(HashMap::new());
    let outputs = MemoryOutputs::default();
    let engine = Engine::new(&cfg, &provider, &outputs, &mtseg_pipeline::NoProgress);
    engine.cancel_flag().store(true, Ordering::Relaxed);
    let summary = engine.run()?;
    assert!(summary.slides.is_empty());
    assert_eq!(summary.failed.len(), 4);
    assert!(summary.failed.iter().all(|(_, m)| m.contains("cancelled")));
    assert!(outputs.collected().is_empty());
    Ok(())
}

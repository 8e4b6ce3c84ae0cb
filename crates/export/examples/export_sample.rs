//! Write sample outputs of every format, for `tools/check_outputs.py`, and time the writers.
//!
//! ```text
//! cargo run --release -p mtseg-export --example export_sample [OUTDIR]     # default target/export-sample
//! tools/fixtures/.venv/bin/python tools/check_outputs.py target/export-sample
//! cargo run --release -p mtseg-export --example export_sample -- --bench 100000 [NAME FILTER]
//! ```
//!
//! The sample holds random blobs traced like `cv2.findContours` (with one-pixel spurs and
//! necks) and hand-made awkward contours (single pixels, lines, figure eights, spurs, rings),
//! so that the Python checks see every geometry repair. `--bench N` writes N synthetic nuclei
//! to each format alone (in a temporary directory) and prints nuclei per second.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mtseg_export::{Format, SlideExportSpec, SlideExporter, Task};
use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/export/support.rs"]
mod support;

use support::{Lcg, box_and_centroid, merged, random_blob, trace_contour};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--bench") {
        let n: usize = args.get(i + 1).map_or(Ok(100_000), |s| s.parse())?;
        return bench(n, args.get(i + 2).map_or("", String::as_str));
    }
    let out = PathBuf::from(args.first().map_or("target/export-sample", String::as_str));
    std::fs::create_dir_all(&out)?;
    for (stem, gzip, typed) in [("sample", false, true), ("sample_untyped", true, false)] {
        let summary = write_sample(&out, stem, gzip, typed)?;
        for file in &summary.files {
            println!(
                "{:<40} {:>8} records {:>10} bytes",
                file.path.display(),
                file.records,
                file.bytes
            );
        }
        println!(
            "{stem}: {} nuclei, {} layers, {} split and {} pixel-square polygons",
            summary.nuclei, summary.layers, summary.split_polygons, summary.pixel_square_polygons
        );
    }
    Ok(())
}

fn spec(
    dir: &Path,
    stem: &str,
    gzip: bool,
    typed: bool,
    formats: &[(Task, Format)],
) -> SlideExportSpec {
    let paths = formats
        .iter()
        .map(|&(task, format)| {
            let suffix = if task == Task::Layers { "_layers" } else { "" };
            let name = match format {
                Format::AnnotationStore => format!("{stem}{suffix}.db"),
                Format::QuPath if gzip => format!("{stem}{suffix}.geojson.gz"),
                Format::QuPath => format!("{stem}{suffix}.geojson"),
                Format::Zarr => format!("{stem}.zarr"),
            };
            (task, format, dir.join(name))
        })
        .collect();
    SlideExportSpec {
        slide_path: PathBuf::from(format!("/slides/{stem}.svs")),
        stem: stem.to_owned(),
        paths,
        overwrite: true,
        gzip_geojson: gzip,
        scale_factor: [2.0, 2.0],
        processing_size: [1000, 1000],
        processing_mpp: Some([0.5, 0.5]),
        baseline_mpp: Some([0.25, 0.25]),
        nuclei_classes: if typed {
            [
                "Background",
                "Neoplastic",
                "Inflammatory",
                "Connective",
                "Dead",
                "Non-Neoplastic Epithelial",
            ]
            .map(String::from)
            .to_vec()
        } else {
            Vec::new()
        },
        layer_classes: [
            "Background",
            "Other Tissue",
            "Basal Epithelium",
            "(Core) Epithelium",
            "Keratin",
        ]
        .map(String::from)
        .to_vec(),
        save_instance_map: true,
        save_layer_map: true,
        provenance: serde_json::json!({"example": "export_sample", "config_sha256": "0".repeat(64)}),
    }
}

/// Hand-made contours that are not simple polygons, placed at `[x, y]`.
fn awkward_contours(x: i32, y: i32) -> Vec<Vec<[i32; 2]>> {
    let shift = |c: &[[i32; 2]]| c.iter().map(|p| [p[0] + x, p[1] + y]).collect::<Vec<_>>();
    vec![
        shift(&[[0, 0]]),
        shift(&[[0, 0], [6, 0]]),
        shift(&[[0, 0], [4, 4]]),
        shift(&[[0, 0], [5, 0], [5, 4], [5, 0]]),
        shift(&[
            [0, 2],
            [1, 1],
            [2, 2],
            [3, 1],
            [4, 2],
            [3, 3],
            [2, 2],
            [1, 3],
        ]),
        shift(&[[0, 0], [3, 0], [3, 1], [8, 1], [3, 1], [3, 3], [0, 3]]),
        // Two squares joined by a one-pixel neck, traced along the neck both ways.
        shift(&[
            [0, 0],
            [3, 0],
            [3, 1],
            [6, 1],
            [6, 0],
            [9, 0],
            [9, 3],
            [6, 3],
            [6, 2],
            [3, 2],
            [3, 3],
            [0, 3],
        ]),
        // Outer square and an inner loop touching it (nested: pixel squares).
        shift(&[
            [0, 0],
            [8, 0],
            [8, 8],
            [0, 8],
            [0, 0],
            [3, 2],
            [4, 2],
            [4, 3],
            [3, 3],
            [2, 2],
        ]),
        // Crossing diagonals.
        shift(&[[0, 0], [1, 1], [1, 0], [0, 1]]),
        // A non-lattice bow tie.
        shift(&[[0, 0], [6, 3], [6, 0], [0, 3]]),
    ]
}

fn write_sample(
    out: &Path,
    stem: &str,
    gzip: bool,
    typed: bool,
) -> Result<mtseg_export::ExportSummary, Box<dyn std::error::Error>> {
    let formats = [
        (Task::Nuclei, Format::AnnotationStore),
        (Task::Nuclei, Format::QuPath),
        (Task::Nuclei, Format::Zarr),
        (Task::Layers, Format::AnnotationStore),
        (Task::Layers, Format::QuPath),
        (Task::Layers, Format::Zarr),
    ];
    let mut exporter = SlideExporter::create(spec(out, stem, gzip, typed, &formats))?;
    let mut rng = Lcg(42);
    let mut id = 0u64;
    // Rows of 20-pixel cells: the first row holds the awkward contours.
    for row in 0..45i64 {
        let mut batch = Vec::new();
        if row == 0 {
            for (k, contour) in awkward_contours(0, 0).into_iter().enumerate() {
                let contour: Vec<[i32; 2]> = contour
                    .iter()
                    .map(|p| [p[0] + 20 * k as i32 + 2, p[1] + 4])
                    .collect();
                let xs = contour.iter().map(|p| p[0]);
                let ys = contour.iter().map(|p| p[1]);
                let bbox = [
                    xs.clone().min().unwrap(),
                    ys.clone().min().unwrap(),
                    xs.max().unwrap() + 1,
                    ys.max().unwrap() + 1,
                ];
                id += 1;
                let nucleus = NucleusInstance {
                    label: id as i32,
                    centroid: [
                        f64::from(bbox[0] + bbox[2] - 1) / 2.0,
                        f64::from(bbox[1] + bbox[3] - 1) / 2.0,
                    ],
                    bbox,
                    contour,
                    type_id: typed.then_some(1),
                    type_prob: typed.then_some(1.0),
                };
                batch.push(merged(id, nucleus));
            }
        } else {
            for col in 0..50i64 {
                let origin = [col * 20 + 2, row * 20 + 2];
                id += 1;
                // Rows 30..35: random self-crossing scribbles (their even-odd fill becomes pixel
                // squares, with holes and diagonal touches); the last rows: speckled blobs.
                if (30..35).contains(&row) {
                    let contour: Vec<[i32; 2]> = (0..6 + rng.below(8))
                        .map(|_| {
                            [
                                (origin[0] + rng.below(16)) as i32,
                                (origin[1] + rng.below(16)) as i32,
                            ]
                        })
                        .collect();
                    let xs = contour.iter().map(|p| p[0]);
                    let ys = contour.iter().map(|p| p[1]);
                    let bbox = [
                        xs.clone().min().unwrap(),
                        ys.clone().min().unwrap(),
                        xs.max().unwrap() + 1,
                        ys.max().unwrap() + 1,
                    ];
                    let nucleus = NucleusInstance {
                        label: id as i32,
                        centroid: [
                            f64::from(bbox[0] + bbox[2]) / 2.0,
                            f64::from(bbox[1] + bbox[3]) / 2.0,
                        ],
                        bbox,
                        contour,
                        type_id: typed.then_some(2),
                        type_prob: typed.then_some(0.5),
                    };
                    batch.push(merged(id, nucleus));
                    continue;
                }
                let blob = if row >= 35 {
                    speckled_blob(&mut rng, origin)
                } else {
                    random_blob(&mut rng, origin, 16)
                };
                let (bbox, centroid) = box_and_centroid(&blob);
                let nucleus = NucleusInstance {
                    label: id as i32,
                    contour: trace_contour(&blob),
                    bbox,
                    centroid,
                    type_id: typed.then(|| 1 + rng.below(5) as u32),
                    type_prob: typed.then(|| 0.4 + rng.below(60) as f64 / 100.0),
                };
                batch.push(merged(id, nucleus));
            }
        }
        exporter.write_nuclei(&batch)?;
        exporter.rows_final((row as u64 + 1) * 20)?;
    }
    // Tissue layers: a band of each class below the nuclei, one with a hole given as its own
    // polygon (TIAToolbox's layer QUIRK).
    let layers = [
        (1, vec![[0, 910], [999, 910], [999, 999], [0, 999]]),
        (2, vec![[100, 920], [300, 920], [300, 990], [100, 990]]),
        (3, vec![[400, 920], [600, 920], [600, 990], [400, 990]]),
        (4, vec![[450, 940], [550, 940], [550, 970], [450, 970]]),
    ];
    let layers: Vec<MergedItem<LayerRegion>> = layers
        .into_iter()
        .enumerate()
        .map(|(i, (type_id, contour))| {
            let xs = contour.iter().map(|p: &[i32; 2]| p[0]);
            let ys = contour.iter().map(|p| p[1]);
            let bbox = [
                xs.clone().min().unwrap(),
                ys.clone().min().unwrap(),
                xs.max().unwrap() + 1,
                ys.max().unwrap() + 1,
            ];
            merged(
                i as u64 + 1,
                LayerRegion {
                    contour,
                    bbox,
                    type_id,
                },
            )
        })
        .collect();
    exporter.write_layers(&layers)?;
    Ok(exporter.finish()?)
}

/// The largest 8-connected component of random pixels (density 0.6) in a 16 × 16 box.
fn speckled_blob(rng: &mut Lcg, origin: [i64; 2]) -> support::Blob {
    let pixels: support::Blob = (0..16)
        .flat_map(|y| (0..16).map(move |x| [origin[0] + x, origin[1] + y]))
        .filter(|_| rng.below(10) < 6)
        .collect();
    support::largest_component(&pixels)
}

/// `n` synthetic nuclei: 400 traced random blobs, tiled over a slide 1000 cells wide.
fn synthetic_nuclei(n: usize) -> Vec<MergedItem<NucleusInstance>> {
    let mut rng = Lcg(7);
    let templates: Vec<NucleusInstance> = (0..400)
        .map(|_| {
            let blob = random_blob(&mut rng, [2, 2], 16);
            let (bbox, centroid) = box_and_centroid(&blob);
            NucleusInstance {
                label: 1,
                contour: trace_contour(&blob),
                bbox,
                centroid,
                type_id: None,
                type_prob: None,
            }
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut nucleus = templates[i % templates.len()].clone();
            nucleus.translate([(i % 1000) as i32 * 20, (i / 1000) as i32 * 20]);
            nucleus.type_id = Some(1 + (i % 5) as u32);
            nucleus.type_prob = Some(0.9);
            merged(i as u64 + 1, nucleus)
        })
        .collect()
}

/// A timed case: name, gzip, outputs.
type BenchCase<'a> = (&'a str, bool, &'a [(Task, Format)]);

fn bench(n: usize, only: &str) -> Result<(), Box<dyn std::error::Error>> {
    let nuclei = synthetic_nuclei(n);
    let rows = n.div_ceil(1000) as u64 * 20;
    println!(
        "{n} synthetic nuclei ({} contour points on average)",
        nuclei.iter().map(|r| r.item.contour.len()).sum::<usize>() / n.max(1)
    );
    let cases: [BenchCase<'_>; 5] = [
        (
            "annotationstore (.db)",
            false,
            &[(Task::Nuclei, Format::AnnotationStore)],
        ),
        (
            "qupath (.geojson)",
            false,
            &[(Task::Nuclei, Format::QuPath)],
        ),
        (
            "qupath (.geojson.gz)",
            true,
            &[(Task::Nuclei, Format::QuPath)],
        ),
        (
            "zarr (map + tables)",
            false,
            &[(Task::Nuclei, Format::Zarr)],
        ),
        (
            "all three",
            false,
            &[
                (Task::Nuclei, Format::AnnotationStore),
                (Task::Nuclei, Format::QuPath),
                (Task::Nuclei, Format::Zarr),
            ],
        ),
    ];
    for (name, gzip, formats) in cases {
        if !name.contains(only) {
            continue;
        }
        let dir = tempfile::tempdir_in("target")?;
        let mut spec = spec(dir.path(), "bench", gzip, true, formats);
        spec.processing_size = [20_000, rows];
        let start = Instant::now();
        let mut exporter = SlideExporter::create(spec)?;
        let mut peak_map = 0;
        for (k, batch) in nuclei.chunks(1000).enumerate() {
            exporter.write_nuclei(batch)?;
            exporter.rows_final((k as u64 + 1) * 20)?;
            peak_map = peak_map.max(exporter.map_buffer_bytes());
        }
        let summary = exporter.finish()?;
        let seconds = start.elapsed().as_secs_f64();
        let bytes: u64 = summary.files.iter().map(|f| f.bytes).sum();
        println!(
            "{name:<24} {seconds:>7.2} s {:>10.0} nuclei/s {:>8.1} MiB on disk, peak map buffer {:.1} MiB",
            n as f64 / seconds,
            bytes as f64 / 1_048_576.0,
            peak_map as f64 / 1_048_576.0
        );
    }
    Ok(())
}

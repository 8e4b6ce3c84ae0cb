//! Oracle forward throughput on a 15k x 15k mosaic of the `hgsc_nest` masks (10 x 10 copies,
//! 129,400 nuclei), batches of 16 patches of 256² -> 164² spread over the slide.
//!
//! Run: `cargo bench -p mtseg-test-models --bench oracle_forward` (needs `scripts/setup`'s
//! `data/`). Besides criterion's batch timing it prints the time to run the whole slide's grid
//! (92 x 92 = 8,464 patches) once.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mtseg_infer::{BatchView, Model};
use mtseg_test_models::{LabelSource, MosaicLabels, OracleModel, RasterLabels, grid_origins};

fn slide() -> Arc<dyn LabelSource> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let base = Arc::new(RasterLabels::hgsc_nest(&data).expect("run scripts/setup for data/"));
    Arc::new(MosaicLabels::covering(base, [15_000, 15_000]).expect("mosaic"))
}

fn bench(c: &mut Criterion) {
    let slide = slide();
    let origins = grid_origins(slide.size(), 164, 256, 164);
    let mut model = OracleModel::builder(slide, origins)
        .build()
        .expect("oracle");
    let total = 92u64 * 92;
    let px = vec![0u8; 16 * 256 * 256 * 3];

    // the whole slide once
    let start = Instant::now();
    let all: Vec<u64> = (0..total).collect();
    for b in all.chunks(16) {
        let view = BatchView::new(&px[..b.len() * 256 * 256 * 3], b, 256, 256).expect("batch");
        black_box(model.forward(view).expect("forward"));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "15k² slide: {total} patches in {secs:.2} s = {:.0} patches/s ({} rayon threads)",
        total as f64 / secs,
        rayon::current_num_threads()
    );

    let mut g = c.benchmark_group("oracle_forward");
    g.throughput(Throughput::Elements(16));
    // a batch from the middle of the slide (every patch has nuclei)
    let indices: Vec<u64> = (46 * 92 + 30..46 * 92 + 46).collect();
    g.bench_with_input(BenchmarkId::new("batch", 16), &indices, |b, idx| {
        let view = BatchView::new(&px, idx, 256, 256).expect("batch");
        b.iter(|| black_box(model.forward(view).expect("forward")));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

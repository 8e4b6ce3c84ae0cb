//! The saved probability maps: Zarr V3 metadata and values, read back with zarrs. (zarr-python
//! opens the same layout: see `tools/check_stitch_zarr.py`.)

use std::sync::Arc;

use mtseg_stitch::{
    CanvasPlan, HeadSpec, MemoryBudget, ProbabilityStore, Size2, StitchError, ZarrLayout,
};
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

use super::synthetic::{SyntheticSlide, grid, identity_crop, params, spawn_rows, stitch_all};

#[test]
fn saved_maps_are_the_canvas_padded_to_the_slide() {
    let (slide_w, slide_h) = (53usize, 41usize);
    let slide = SyntheticSlide::new(slide_w, slide_h, 3, 11);
    let (input, output, stride) = ([14, 14], [10, 10], [7, 7]);
    let g = grid([slide_w, slide_h], input, output, stride);
    // Tissue in the middle: the canvas does not touch the slide's top-left corner.
    let selected: Vec<usize> = (0..g.output_boxes.len())
        .filter(|&i| {
            let b = g.output_boxes[i];
            (14..35).contains(&b[0]) && (14..28).contains(&b[1])
        })
        .collect();
    let plan = CanvasPlan::new(
        &g.output_boxes,
        &selected,
        Size2::new(slide_w as u64, slide_h as u64),
    )
    .unwrap();
    assert!(plan.origin()[0] > 0 && plan.origin()[1] > 0);
    let channels = [1usize, 2];
    let heads = vec![HeadSpec::new("np", 1), HeadSpec::new("hv", 2)];
    let patches: Vec<_> = selected
        .iter()
        .map(|&i| identity_crop(&slide, &g, i, input, output, &channels))
        .collect();
    let canvas = stitch_all(
        params(plan.clone(), output, &channels, MemoryBudget::unlimited()),
        patches.clone(),
    );

    // Write the rows through the store (small chunks: several shards per row, several shard rows).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slide.zarr");
    let layout = ZarrLayout {
        chunk: [8, 8],
        shard_chunks_x: 2,
        zstd_level: 3,
    };
    let mut attrs = serde_json::Map::new();
    attrs.insert("resolution".into(), serde_json::json!({"mpp": 0.25}));
    let mut store = ProbabilityStore::create(
        &path,
        &plan,
        &heads,
        attrs,
        layout,
        &MemoryBudget::unlimited(),
    )
    .unwrap();
    let mut stitcher = mtseg_stitch::Stitcher::new(params(
        plan.clone(),
        output,
        &channels,
        MemoryBudget::unlimited(),
    ))
    .unwrap();
    for p in patches {
        for rows in stitcher.push(p).unwrap() {
            store.write_rows(&rows).unwrap();
        }
    }
    for rows in stitcher.finish().unwrap().0 {
        store.write_rows(&rows).unwrap();
    }
    let written = store.finish().unwrap();
    assert_eq!(written, path);
    assert!(!dir.path().join("slide.zarr.part").exists());

    // Metadata, as zarr-python reads it.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("probabilities/1/zarr.json")).unwrap())
            .unwrap();
    assert_eq!(meta["zarr_format"], 3);
    assert_eq!(meta["node_type"], "array");
    assert_eq!(meta["shape"], serde_json::json!([slide_h, slide_w, 2]));
    assert_eq!(meta["data_type"], "float32");
    assert_eq!(meta["fill_value"], 0.0);
    assert_eq!(
        meta["dimension_names"],
        serde_json::json!(["y", "x", "channel"])
    );
    assert_eq!(
        meta["chunk_grid"]["configuration"]["chunk_shape"],
        serde_json::json!([8, 16, 2])
    );
    assert_eq!(meta["codecs"][0]["name"], "sharding_indexed");
    let inner = &meta["codecs"][0]["configuration"];
    assert_eq!(inner["chunk_shape"], serde_json::json!([8, 8, 2]));
    assert!(
        inner["codecs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "zstd")
    );
    assert_eq!(meta["attributes"]["head"], "hv");
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("zarr.json")).unwrap()).unwrap();
    assert_eq!(root["node_type"], "group");
    assert_eq!(root["attributes"]["resolution"]["mpp"], 0.25);
    let pad = plan.mask_padding();
    assert_eq!(
        root["attributes"]["mtseg_stitch"]["mask_padding"],
        serde_json::json!([pad.left, pad.top, pad.right, pad.bottom])
    );

    // Values: the canvas at its origin, zeros elsewhere (never-written shards read as 0).
    assert_store_holds_canvas(&path, &plan, &channels, &canvas.heads, [slide_w, slide_h]);

    // An existing output is not overwritten.
    let err = ProbabilityStore::create(
        &path,
        &plan,
        &heads,
        serde_json::Map::new(),
        layout,
        &MemoryBudget::unlimited(),
    )
    .unwrap_err();
    assert!(matches!(err, StitchError::OutputExists { .. }), "{err}");
}

/// Every head of the finished store at `path` is the canvas `heads` (per head, rows x width x
/// channels) at the plan's origin and 0 elsewhere, bit for bit, over a slide of `size` (w, h).
fn assert_store_holds_canvas(
    path: &std::path::Path,
    plan: &CanvasPlan,
    channels: &[usize],
    heads: &[Vec<f32>],
    size: [usize; 2],
) {
    assert_arrays_hold_canvas(path, "/probabilities/", plan, channels, heads, size);
}

/// As [`assert_store_holds_canvas`], with the arrays at `<prefix><head index>` in the store.
pub(crate) fn assert_arrays_hold_canvas(
    path: &std::path::Path,
    prefix: &str,
    plan: &CanvasPlan,
    channels: &[usize],
    heads: &[Vec<f32>],
    [slide_w, slide_h]: [usize; 2],
) {
    let [ox, oy] = plan.origin().map(|v| v as usize);
    let [w, h] = plan.canvas_size();
    for (head, &c) in channels.iter().enumerate() {
        let all = read_array(path, &format!("{prefix}{head}"), c, [slide_w, slide_h]);
        for y in 0..slide_h {
            for x in 0..slide_w {
                for k in 0..c {
                    let inside = (ox..ox + w).contains(&x) && (oy..oy + h).contains(&y);
                    let expected = if inside {
                        heads[head][((y - oy) * w + x - ox) * c + k]
                    } else {
                        0.0
                    };
                    assert_eq!(
                        all[(y * slide_w + x) * c + k].to_bits(),
                        expected.to_bits(),
                        "({x}, {y}) head {head}"
                    );
                }
            }
        }
    }
}

/// Read the array `array_path` (channels `c`) of a finished store, slide-sized.
fn read_array(path: &std::path::Path, array_path: &str, c: usize, size: [usize; 2]) -> Vec<f32> {
    let fs = Arc::new(FilesystemStore::new(path).unwrap());
    let array = Array::open(fs, array_path).unwrap();
    array
        .retrieve_array_subset(&ArraySubset::new_with_ranges(&[
            0..size[1] as u64,
            0..size[0] as u64,
            0..c as u64,
        ]))
        .unwrap()
}

#[test]
fn the_threaded_stitcher_saves_the_maps_under_a_tight_budget() {
    use crossbeam_channel::bounded;
    use mtseg_stitch::PatchPrediction;

    let (slide_w, slide_h) = (61usize, 47usize);
    let slide = SyntheticSlide::new(slide_w, slide_h, 2, 5);
    let (input, output, stride) = ([12, 12], [8, 8], [6, 6]);
    let g = grid([slide_w, slide_h], input, output, stride);
    let selected: Vec<usize> = (0..g.output_boxes.len())
        .filter(|&i| {
            (6..40).contains(&g.output_boxes[i][0]) && (12..30).contains(&g.output_boxes[i][1])
        })
        .collect();
    let plan = CanvasPlan::new(
        &g.output_boxes,
        &selected,
        Size2::new(slide_w as u64, slide_h as u64),
    )
    .unwrap();
    let channels = [1usize, 2];
    let heads = vec![HeadSpec::new("np", 1), HeadSpec::new("hv", 2)];
    let patches: Vec<_> = selected
        .iter()
        .map(|&i| identity_crop(&slide, &g, i, input, output, &channels))
        .collect();
    let layout = ZarrLayout {
        chunk: [5, 8],
        shard_chunks_x: 2,
        zstd_level: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let probe = params(plan.clone(), output, &channels, MemoryBudget::unlimited());
    // Window + the store's buffer (5 rows at the canvas width) + the rows in flight (the
    // channel's 2, one being made, one in the consumer's hands), no more.
    let store_buffer = (5 * plan.width() * 3 * 4) as u64;
    let budget =
        MemoryBudget::with_bytes(probe.window_bytes() + store_buffer + 4 * probe.chunk_bytes());
    let store = ProbabilityStore::create(
        &dir.path().join("rows.zarr"),
        &plan,
        &heads,
        serde_json::Map::new(),
        layout,
        &budget,
    )
    .unwrap();
    assert_eq!(budget.used(), store_buffer);

    let (in_tx, in_rx) = bounded::<Vec<PatchPrediction>>(2);
    let (out_tx, out_rx) = bounded(2);
    let stage = spawn_rows(
        mtseg_stitch::Stitcher::new(params(plan.clone(), output, &channels, budget.clone()))
            .unwrap(),
        in_rx,
        out_tx,
        Some(store),
    );
    let feed = patches.clone();
    let feeder = std::thread::spawn(move || {
        for chunk in feed.chunks(4) {
            in_tx.send(chunk.to_vec()).unwrap();
        }
    });
    let consumer = std::thread::spawn(move || out_rx.iter().count());
    let (_, saved) = stage.join().unwrap().unwrap();
    feeder.join().unwrap();
    assert!(consumer.join().unwrap() > 0);
    assert_eq!(
        saved.as_deref(),
        Some(dir.path().join("rows.zarr").as_path())
    );
    assert!(budget.peak() <= budget.limit());
    assert_eq!(budget.used(), 0);

    // The saved maps equal the in-memory stitch, padded to the slide.
    let canvas = stitch_all(probe, patches);
    assert_store_holds_canvas(
        &dir.path().join("rows.zarr"),
        &plan,
        &channels,
        &canvas.heads,
        [slide_w, slide_h],
    );
}

#[test]
fn a_group_store_holds_the_maps_directly_under_its_path() {
    // As the export's Zarr output uses it: `<store>/probabilities/<h>`, not one level deeper.
    let (slide_w, slide_h) = (30usize, 22usize);
    let slide = SyntheticSlide::new(slide_w, slide_h, 3, 5);
    let (input, output, stride) = ([14, 14], [10, 10], [10, 10]);
    let g = grid([slide_w, slide_h], input, output, stride);
    let selected: Vec<usize> = (0..g.output_boxes.len()).collect();
    let plan = CanvasPlan::new(
        &g.output_boxes,
        &selected,
        Size2::new(slide_w as u64, slide_h as u64),
    )
    .unwrap();
    let channels = [1usize, 2];
    let heads = vec![HeadSpec::new("np", 1), HeadSpec::new("hv", 2)];
    let patches: Vec<_> = selected
        .iter()
        .map(|&i| identity_crop(&slide, &g, i, input, output, &channels))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("slide.zarr");
    std::fs::create_dir(&outer).unwrap();
    let path = outer.join("probabilities");
    let mut attrs = serde_json::Map::new();
    attrs.insert("processing_mpp".into(), serde_json::json!(0.5));
    let mut store = ProbabilityStore::create_group(
        &path,
        &plan,
        &heads,
        attrs,
        ZarrLayout::default(),
        &MemoryBudget::unlimited(),
    )
    .unwrap();
    let mut stitcher = mtseg_stitch::Stitcher::new(params(
        plan.clone(),
        output,
        &channels,
        MemoryBudget::unlimited(),
    ))
    .unwrap();
    for p in patches {
        for rows in stitcher.push(p).unwrap() {
            store.write_rows(&rows).unwrap();
        }
    }
    let (rest, _) = stitcher.finish().unwrap();
    for rows in rest {
        store.write_rows(&rows).unwrap();
    }
    assert_eq!(store.finish().unwrap(), path);

    let group: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("zarr.json")).unwrap()).unwrap();
    assert_eq!(group["node_type"], "group");
    assert_eq!(group["attributes"]["processing_mpp"], 0.5);
    assert_eq!(
        group["attributes"]["mtseg_stitch"]["layout"],
        "<head index>: (y, x, channel) float32 at the processing resolution"
    );
    assert!(!path.join("probabilities").exists(), "no nested group");
    // Opened from the outer directory, the arrays are at `probabilities/<h>`.
    let fs = Arc::new(FilesystemStore::new(&outer).unwrap());
    for (head, &c) in channels.iter().enumerate() {
        let array = Array::open(fs.clone(), &format!("/probabilities/{head}")).unwrap();
        assert_eq!(array.shape(), &[slide_h as u64, slide_w as u64, c as u64]);
    }
    let np: Vec<f32> = Array::open(fs, "/probabilities/0")
        .unwrap()
        .retrieve_array_subset(&ArraySubset::new_with_ranges(&[
            0..slide_h as u64,
            0..slide_w as u64,
            0..1,
        ]))
        .unwrap();
    assert!(np.iter().any(|&v| v != 0.0), "maps were written");
}

//! Write a small saved-probability-map store for an outside check with zarr-python 3
//! (`tools/check_stitch_zarr.py` runs this example, then opens the store).
//!
//! ```text
//! cargo run -p mtseg-stitch --example write_probability_store -- OUT_DIR
//! ```
//! Writes `OUT_DIR/probabilities.zarr` (a masked 300 × 220 slide, patch output 40, stride 30,
//! heads np/hv/tp = 1, 2, 1 channels) and, per head `h`, `OUT_DIR/expected_<h>.f32`: the
//! slide-sized map (height × width × channels, little-endian float32) the store must hold,
//! plus `OUT_DIR/expected.json` with the shapes and the canvas placement.

use std::path::PathBuf;

use mtseg_stitch::{
    CanvasPlan, HeadBlock, HeadSpec, MemoryBudget, PatchPrediction, ProbabilityStore, Size2,
    StitchParams, Stitcher, ZarrLayout,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: OUT_DIR")?);
    std::fs::create_dir_all(&out_dir)?;
    let (width, height, out, stride) = (300usize, 220usize, 40usize, 30usize);
    let mut boxes = Vec::new();
    for y in (0..height).step_by(stride) {
        for x in (0..width).step_by(stride) {
            boxes.push([x as i64, y as i64, (x + out) as i64, (y + out) as i64]);
        }
    }
    // "Tissue": patches whose output box starts inside [60, 200) x [50, 150).
    let selected: Vec<usize> = (0..boxes.len())
        .filter(|&i| (60..200).contains(&boxes[i][0]) && (50..150).contains(&boxes[i][1]))
        .collect();
    let plan = CanvasPlan::new(&boxes, &selected, Size2::new(width as u64, height as u64))?;
    let heads = vec![
        HeadSpec::new("np", 1),
        HeadSpec::new("hv", 2),
        HeadSpec::new("tp", 1),
    ];
    let channels: Vec<usize> = heads.iter().map(|h| h.channels).collect();
    let budget = MemoryBudget::unlimited();
    let params = StitchParams::new(
        plan.clone(),
        Size2::square(out as u64),
        heads.clone(),
        budget.clone(),
    )?;
    let mut stitcher = Stitcher::new(params)?;
    let store_path = out_dir.join("probabilities.zarr");
    if store_path.exists() {
        std::fs::remove_dir_all(&store_path)?;
    }
    let mut attributes = serde_json::Map::new();
    attributes.insert(
        "resolution".into(),
        serde_json::json!({"units": "mpp", "value": 0.5}),
    );
    let layout = ZarrLayout {
        chunk: [64, 64],
        shard_chunks_x: 2,
        zstd_level: 3,
    };
    let mut store =
        ProbabilityStore::create(&store_path, &plan, &heads, attributes, layout, &budget)?;

    // Slide-sized expected maps (zeros outside the canvas).
    let mut expected: Vec<Vec<f32>> = channels
        .iter()
        .map(|&c| vec![0.0; width * height * c])
        .collect();
    let [ox, oy] = plan.origin().map(|v| v as usize);
    let mut keep = |rows: Vec<mtseg_stitch::CanvasRows>| -> Result<(), Box<dyn std::error::Error>> {
        for r in rows {
            store.write_rows(&r)?;
            for (h, &c) in channels.iter().enumerate() {
                for y in 0..r.rows {
                    let src = &r.heads[h][y * r.width * c..][..r.width * c];
                    let dst = ((oy + r.y0 + y) * width + ox) * c;
                    expected[h][dst..dst + r.width * c].copy_from_slice(src);
                }
            }
        }
        Ok(())
    };
    for &i in &selected {
        let value = |k: usize| ((i * 7 + k * 13) % 97) as f32 / 9.0 - 3.0;
        let patch = PatchPrediction {
            index: i,
            output_box: boxes[i],
            heads: channels
                .iter()
                .map(|&c| HeadBlock::new(c, (0..out * out * c).map(value).collect()))
                .collect(),
        };
        keep(stitcher.push(patch)?)?;
    }
    keep(stitcher.finish()?.0)?;
    let path = store.finish()?;

    for (h, data) in expected.iter().enumerate() {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(out_dir.join(format!("expected_{h}.f32")), bytes)?;
    }
    let padding = plan.mask_padding();
    let meta = serde_json::json!({
        "store": path,
        "slide_size": [width, height],
        "channels": channels,
        "heads": ["np", "hv", "tp"],
        "canvas_origin": plan.origin(),
        "canvas_size": plan.canvas_size(),
        "mask_padding": [padding.left, padding.top, padding.right, padding.bottom],
    });
    std::fs::write(
        out_dir.join("expected.json"),
        serde_json::to_vec_pretty(&meta)?,
    )?;
    println!("{}", path.display());
    Ok(())
}

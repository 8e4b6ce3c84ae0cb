//! A synthetic slide, TIAToolbox's patch grid, test models, and the stitcher driven on a thread.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use mtseg_stitch::{
    CanvasPlan, CanvasRows, HeadBlock, HeadSpec, MemoryBudget, PatchPrediction, ProbabilityStore,
    Size2, StitchError, StitchMetrics, StitchParams, Stitcher,
};

/// An in-memory image, `height × width × channels` f32.
#[derive(Debug, Clone)]
pub(crate) struct SyntheticSlide {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) channels: usize,
    pub(crate) data: Vec<f32>,
}

impl SyntheticSlide {
    /// Integer values in 1..=254, never 0 nor the padding value 255.
    pub(crate) fn new(width: usize, height: usize, channels: usize, seed: u64) -> Self {
        let mut data = Vec::with_capacity(width * height * channels);
        for y in 0..height {
            for x in 0..width {
                for c in 0..channels {
                    let h = hash(seed, (y * width + x) as u64, c as u64);
                    data.push((h % 254 + 1) as f32);
                }
            }
        }
        Self {
            width,
            height,
            channels,
            data,
        }
    }

    /// TIAToolbox `read_bounds(..., pad_constant_values=255)`: the box `[x0, y0, x1, y1]`, pixels
    /// outside the slide are 255.
    pub(crate) fn read_bounds(&self, b: [i64; 4]) -> Vec<f32> {
        let (w, h) = ((b[2] - b[0]) as usize, (b[3] - b[1]) as usize);
        let mut out = Vec::with_capacity(w * h * self.channels);
        for y in b[1]..b[3] {
            for x in b[0]..b[2] {
                for c in 0..self.channels {
                    let inside =
                        x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height;
                    out.push(if inside {
                        self.data[(y as usize * self.width + x as usize) * self.channels + c]
                    } else {
                        255.0
                    });
                }
            }
        }
        out
    }

    pub(crate) fn get(&self, x: usize, y: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * self.channels + c]
    }
}

/// A cheap, well-mixed hash.
pub(crate) fn hash(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// TIAToolbox `PatchExtractor.get_coordinates`: (input boxes, output boxes), row-major, output
/// tiles every stride from 0 to ceil(W/stride)*stride, input boxes centred on them.
pub(crate) struct Grid {
    pub(crate) input_boxes: Vec<[i64; 4]>,
    pub(crate) output_boxes: Vec<[i64; 4]>,
}

pub(crate) fn grid(
    slide: [usize; 2],
    input: [usize; 2],
    output: [usize; 2],
    stride: [usize; 2],
) -> Grid {
    // All as [w, h].
    let nx = slide[0].div_ceil(stride[0]);
    let ny = slide[1].div_ceil(stride[1]);
    let off = [
        ((input[0] - output[0]) / 2) as i64,
        ((input[1] - output[1]) / 2) as i64,
    ];
    let mut input_boxes = Vec::new();
    let mut output_boxes = Vec::new();
    for j in 0..ny {
        for i in 0..nx {
            let (x, y) = ((i * stride[0]) as i64, (j * stride[1]) as i64);
            output_boxes.push([x, y, x + output[0] as i64, y + output[1] as i64]);
            let (ix, iy) = (x - off[0], y - off[1]);
            input_boxes.push([ix, iy, ix + input[0] as i64, iy + input[1] as i64]);
        }
    }
    Grid {
        input_boxes,
        output_boxes,
    }
}

/// The identity-crop model: the centre `output` crop of the input patch, as every head (head
/// `h` gets channels `0..channels[h]` of the slide, cycling).
pub(crate) fn identity_crop(
    slide: &SyntheticSlide,
    grid: &Grid,
    index: usize,
    input: [usize; 2],
    output: [usize; 2],
    channels: &[usize],
) -> PatchPrediction {
    let patch = slide.read_bounds(grid.input_boxes[index]);
    let off = [(input[0] - output[0]) / 2, (input[1] - output[1]) / 2];
    let heads = channels
        .iter()
        .map(|&hc| {
            let mut data = Vec::with_capacity(output[0] * output[1] * hc);
            for y in 0..output[1] {
                for x in 0..output[0] {
                    for c in 0..hc {
                        let sc = c % slide.channels;
                        data.push(
                            patch[((y + off[1]) * input[0] + x + off[0]) * slide.channels + sc],
                        );
                    }
                }
            }
            HeadBlock::new(hc, data)
        })
        .collect();
    PatchPrediction {
        index,
        output_box: grid.output_boxes[index],
        heads,
    }
}

/// A model with arbitrary float outputs (negative, fractional, occasionally all-zero blocks), to
/// check exact float summation order.
pub(crate) fn noisy_model(
    grid: &Grid,
    index: usize,
    output: [usize; 2],
    channels: &[usize],
    seed: u64,
) -> PatchPrediction {
    let heads = channels
        .iter()
        .enumerate()
        .map(|(h, &hc)| {
            let n = output[0] * output[1] * hc;
            let zero_block = hash(seed, index as u64, 1000 + h as u64).is_multiple_of(7);
            let data = (0..n)
                .map(|i| {
                    if zero_block {
                        0.0
                    } else {
                        let v = hash(seed, index as u64 * 31 + h as u64, i as u64);
                        ((v % 20_001) as f32 - 10_000.0) / 997.0
                            * if v.is_multiple_of(13) { 0.0 } else { 1.0 }
                    }
                })
                .collect();
            HeadBlock::new(hc, data)
        })
        .collect();
    PatchPrediction {
        index,
        output_box: grid.output_boxes[index],
        heads,
    }
}

/// Stitch params for a test case.
pub(crate) fn params(
    plan: CanvasPlan,
    output: [usize; 2],
    channels: &[usize],
    budget: MemoryBudget,
) -> StitchParams {
    let heads = channels
        .iter()
        .enumerate()
        .map(|(i, &c)| HeadSpec::new(format!("head{i}"), c))
        .collect();
    StitchParams::new(
        plan,
        Size2::new(output[0] as u64, output[1] as u64),
        heads,
        budget,
    )
    .expect("valid test params")
}

/// Concatenate emitted rows into a canvas, checking they are contiguous and cover it.
pub(crate) fn assemble(plan: &CanvasPlan, rows: &[CanvasRows]) -> super::reference::Canvas {
    let [w, h] = plan.canvas_size();
    let channels = rows.first().map(|r| r.channels.clone()).unwrap_or_default();
    let mut heads: Vec<Vec<f32>> = channels.iter().map(|_| Vec::new()).collect();
    let mut next = 0;
    for r in rows {
        assert_eq!(r.y0, next, "rows are emitted top to bottom without gaps");
        assert_eq!(r.width, w);
        assert_eq!(r.origin, plan.origin());
        for (acc, head) in heads.iter_mut().zip(&r.heads) {
            acc.extend_from_slice(head);
        }
        next = r.y1();
    }
    assert_eq!(next, h, "every canvas row is emitted");
    super::reference::Canvas {
        size: [w, h],
        origin: plan.origin(),
        heads,
    }
}

/// Stitch `patches` (in the given order) with a fresh stitcher; the assembled canvas.
pub(crate) fn stitch_all(
    params: StitchParams,
    patches: Vec<PatchPrediction>,
) -> super::reference::Canvas {
    let plan = params.plan.clone();
    let mut stitcher = Stitcher::new(params).expect("window fits");
    let mut rows = Vec::new();
    for p in patches {
        rows.extend(stitcher.push(p).expect("valid patch"));
    }
    let (rest, _) = stitcher.finish().expect("all patches arrived");
    rows.extend(rest);
    assemble(&plan, &rows)
}

/// The stitcher on its own thread, driven as the pipeline's stitch stage drives it: batches of
/// patches from `input`, pushed with [`Stitcher::push_with`]; each item of final rows is written
/// to `store` (when given) and sent on `output` as soon as it is made. Returns the counters and
/// the finished store's path. On error both channel ends are dropped, so the producer's next
/// `send` and the consumer's next `recv` fail.
pub(crate) fn spawn_rows(
    mut stitcher: Stitcher,
    input: Receiver<Vec<PatchPrediction>>,
    output: Sender<CanvasRows>,
    mut store: Option<ProbabilityStore>,
) -> JoinHandle<Result<(StitchMetrics, Option<PathBuf>), StitchError>> {
    std::thread::spawn(move || {
        let mut emit = |rows: CanvasRows| -> Result<(), StitchError> {
            if let Some(store) = &mut store {
                store.write_rows(&rows)?;
            }
            output.send(rows).map_err(|_| StitchError::OutputClosed)
        };
        for batch in &input {
            for patch in batch {
                stitcher.push_with(patch, &mut emit)?;
            }
        }
        let metrics = stitcher.finish_with(&mut emit)?;
        let path = store.map(ProbabilityStore::finish).transpose()?;
        Ok((metrics, path))
    })
}

//! Shared test helpers: specs, synthetic blobs, a `findContours`-like border tracer, readers.

use std::collections::{BTreeSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

use mtseg_export::{Format, SlideExportSpec, Task};
use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};

/// A spec for slide `stem` writing `outputs` into `dir` (names `<stem>[_layers].<ext>`).
pub(crate) fn spec(dir: &Path, stem: &str, outputs: &[(Task, Format)]) -> SlideExportSpec {
    let paths = outputs
        .iter()
        .map(|&(task, format)| (task, format, output_path(dir, stem, task, format, false)))
        .collect();
    SlideExportSpec {
        slide_path: PathBuf::from(format!("/slides/{stem}.svs")),
        stem: stem.to_owned(),
        paths,
        overwrite: false,
        gzip_geojson: false,
        scale_factor: [2.0, 2.0],
        processing_size: [200, 150],
        processing_mpp: Some([0.5, 0.5]),
        baseline_mpp: Some([0.25, 0.25]),
        nuclei_classes: ["Background", "Neoplastic", "Inflammatory"]
            .map(String::from)
            .to_vec(),
        layer_classes: ["Background", "Other Tissue", "Basal Epithelium"]
            .map(String::from)
            .to_vec(),
        save_instance_map: true,
        save_layer_map: true,
        provenance: serde_json::json!({"config_sha256": "abc", "versions": {"mtseg": "0.1.0"}}),
    }
}

/// The path the helpers give an output.
pub(crate) fn output_path(
    dir: &Path,
    stem: &str,
    task: Task,
    format: Format,
    gzip: bool,
) -> PathBuf {
    let suffix = match task {
        Task::Nuclei => "",
        Task::Layers => "_layers",
    };
    match format {
        Format::AnnotationStore => dir.join(format!("{stem}{suffix}.db")),
        Format::QuPath if gzip => dir.join(format!("{stem}{suffix}.geojson.gz")),
        Format::QuPath => dir.join(format!("{stem}{suffix}.geojson")),
        Format::Zarr => dir.join(format!("{stem}.zarr")),
    }
}

/// Names in a directory, sorted.
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A small deterministic generator (no external RNG needed).
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub(crate) fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

/// A blob: a set of pixels `[x, y]`.
pub(crate) type Blob = BTreeSet<[i64; 2]>;

/// A random blob in a `size × size` box at `origin`: a union of random discs, then its
/// largest 8-connected component.
pub(crate) fn random_blob(rng: &mut Lcg, origin: [i64; 2], size: i64) -> Blob {
    let mut pixels = Blob::new();
    for _ in 0..1 + rng.below(4) {
        let r = 1 + rng.below((size / 3).max(1) as u64);
        let cx = r + rng.below((size - 2 * r).max(1) as u64);
        let cy = r + rng.below((size - 2 * r).max(1) as u64);
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                if (x - cx).pow(2) + (y - cy).pow(2) <= r * r + rng.below(2) {
                    pixels.insert([origin[0] + x, origin[1] + y]);
                }
            }
        }
    }
    // Random single-pixel spurs and necks.
    for _ in 0..rng.below(3) {
        let &start = pixels
            .iter()
            .nth(rng.below(pixels.len() as u64) as usize)
            .unwrap();
        let (dx, dy) = [(1, 0), (0, 1), (1, 1), (-1, 0)][rng.below(4) as usize];
        for k in 1..=rng.below(4) {
            let p = [start[0] + k * dx, start[1] + k * dy];
            if (0..size).contains(&(p[0] - origin[0])) && (0..size).contains(&(p[1] - origin[1])) {
                pixels.insert(p);
            }
        }
    }
    largest_component(&pixels)
}

fn neighbours8(p: [i64; 2]) -> impl Iterator<Item = [i64; 2]> {
    (-1..=1).flat_map(move |dy| {
        (-1..=1)
            .filter(move |&dx| (dx, dy) != (0, 0))
            .map(move |dx| [p[0] + dx, p[1] + dy])
    })
}

pub(crate) fn largest_component(pixels: &Blob) -> Blob {
    let mut seen = Blob::new();
    let mut best = Blob::new();
    for &p in pixels {
        if seen.contains(&p) {
            continue;
        }
        let mut component = Blob::new();
        let mut queue = VecDeque::from([p]);
        seen.insert(p);
        while let Some(q) = queue.pop_front() {
            component.insert(q);
            for n in neighbours8(q) {
                if pixels.contains(&n) && seen.insert(n) {
                    queue.push_back(n);
                }
            }
        }
        if component.len() > best.len() {
            best = component;
        }
    }
    best
}

/// The blob with its holes (background not 4-connected to the outside) filled.
pub(crate) fn fill_holes(blob: &Blob) -> Blob {
    let x0 = blob.iter().map(|p| p[0]).min().unwrap() - 1;
    let x1 = blob.iter().map(|p| p[0]).max().unwrap() + 1;
    let y0 = blob.iter().map(|p| p[1]).min().unwrap() - 1;
    let y1 = blob.iter().map(|p| p[1]).max().unwrap() + 1;
    let mut outside = Blob::new();
    let mut queue = VecDeque::from([[x0, y0]]);
    outside.insert([x0, y0]);
    while let Some([x, y]) = queue.pop_front() {
        for n in [[x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]] {
            let inside_box = (x0..=x1).contains(&n[0]) && (y0..=y1).contains(&n[1]);
            if inside_box && !blob.contains(&n) && outside.insert(n) {
                queue.push_back(n);
            }
        }
    }
    (y0..=y1)
        .flat_map(|y| (x0..=x1).map(move |x| [x, y]))
        .filter(|p| !outside.contains(p))
        .collect()
}

/// Outer border of an 8-connected blob through pixel centres (Moore tracing, Jacob's stop),
/// with the points of straight runs dropped (`CHAIN_APPROX_SIMPLE`).
pub(crate) fn trace_contour(blob: &Blob) -> Vec<[i32; 2]> {
    const D: [[i64; 2]; 8] = [
        [1, 0],
        [1, 1],
        [0, 1],
        [-1, 1],
        [-1, 0],
        [-1, -1],
        [0, -1],
        [1, -1],
    ];
    let start = *blob.iter().min_by_key(|p| (p[1], p[0])).unwrap();
    let (mut p, mut b) = (start, [start[0] - 1, start[1]]);
    let mut points = vec![start];
    let mut first_move = None;
    loop {
        let rel = [b[0] - p[0], b[1] - p[1]];
        let mut d = D.iter().position(|&v| v == rel).unwrap();
        let mut found = None;
        for _ in 0..8 {
            let nd = (d + 1) % 8;
            let q = [p[0] + D[nd][0], p[1] + D[nd][1]];
            if blob.contains(&q) {
                found = Some((q, [p[0] + D[d][0], p[1] + D[d][1]]));
                break;
            }
            d = nd;
        }
        let Some((q, nb)) = found else { break };
        // Stop when the walk is about to repeat its first move.
        if p == start && first_move == Some(q) {
            break;
        }
        if first_move.is_none() {
            first_move = Some(q);
        }
        p = q;
        b = nb;
        points.push(p);
        assert!(points.len() < 100_000, "tracing did not stop");
    }
    // A closing revisit of the start with another backtrack: drop a trailing start point.
    while points.len() > 1 && points.last() == Some(&start) {
        points.pop();
    }
    let n = points.len();
    let kept: Vec<[i64; 2]> = (0..n)
        .filter(|&i| {
            if n < 3 {
                return true;
            }
            let a = points[(i + n - 1) % n];
            let c = points[(i + 1) % n];
            let q = points[i];
            [q[0] - a[0], q[1] - a[1]] != [c[0] - q[0], c[1] - q[1]]
        })
        .map(|i| points[i])
        .collect();
    kept.iter().map(|&[x, y]| [x as i32, y as i32]).collect()
}

/// `[x0, y0, x1, y1]` (exclusive) and centroid of a blob.
pub(crate) fn box_and_centroid(blob: &Blob) -> ([i32; 4], [f64; 2]) {
    let x0 = blob.iter().map(|p| p[0]).min().unwrap();
    let x1 = blob.iter().map(|p| p[0]).max().unwrap() + 1;
    let y0 = blob.iter().map(|p| p[1]).min().unwrap();
    let y1 = blob.iter().map(|p| p[1]).max().unwrap() + 1;
    let n = blob.len() as f64;
    let cx = blob.iter().map(|p| p[0] as f64).sum::<f64>() / n;
    let cy = blob.iter().map(|p| p[1] as f64).sum::<f64>() / n;
    ([x0 as i32, y0 as i32, x1 as i32, y1 as i32], [cx, cy])
}

/// `count` random nuclei on a grid of 20-pixel cells inside a `width`-wide slide, with their
/// blobs, ids 1.., every third without a type when `typed` is false.
pub(crate) fn random_nuclei(
    seed: u64,
    count: usize,
    width: i64,
    typed: bool,
) -> Vec<(MergedItem<NucleusInstance>, Blob)> {
    let mut rng = Lcg(seed);
    let per_row = (width / 20).max(1);
    (0..count)
        .map(|i| {
            let origin = [(i as i64 % per_row) * 20 + 2, (i as i64 / per_row) * 20 + 2];
            let blob = random_blob(&mut rng, origin, 16);
            let (bbox, centroid) = box_and_centroid(&blob);
            let type_id = typed.then(|| 1 + rng.below(2) as u32);
            let id = i as u64 + 1;
            let nucleus = NucleusInstance {
                label: id as i32,
                contour: trace_contour(&blob),
                bbox,
                centroid,
                type_id,
                type_prob: typed.then(|| 0.5 + (rng.below(50) as f64) / 100.0),
            };
            (merged(id, nucleus), blob)
        })
        .collect()
}

/// A final instance as `instmerge` hands it out: id `id`, from tile 0.
pub(crate) fn merged<T>(id: u64, item: T) -> MergedItem<T> {
    MergedItem {
        id,
        tile_index: 0,
        item,
    }
}

/// Layer polygons: a few rectangles, types 1 and 2.
pub(crate) fn layer_records() -> Vec<MergedItem<LayerRegion>> {
    (0..3)
        .map(|i| {
            let x0 = 10 + 60 * i;
            let contour = vec![[x0, 100], [x0 + 40, 100], [x0 + 40, 140], [x0, 140]];
            let layer = LayerRegion {
                contour,
                bbox: [x0, 100, x0 + 41, 141],
                type_id: 1 + (i as u8 % 2),
            };
            merged(i as u64 + 1, layer)
        })
        .collect()
}

/// Decode little-endian WKB Polygon / MultiPolygon into polygons of closed rings.
pub(crate) fn decode_wkb(bytes: &[u8]) -> Vec<Vec<Vec<[f64; 2]>>> {
    let mut at = 0usize;
    let u32_at = |at: &mut usize| {
        let v = u32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap());
        *at += 4;
        v
    };
    let f64_at = |at: &mut usize| {
        let v = f64::from_le_bytes(bytes[*at..*at + 8].try_into().unwrap());
        *at += 8;
        v
    };
    let polygon = |at: &mut usize| {
        assert_eq!(bytes[*at], 1, "little endian");
        *at += 1;
        assert_eq!(u32_at(at), 3, "polygon");
        (0..u32_at(at))
            .map(|_| (0..u32_at(at)).map(|_| [f64_at(at), f64_at(at)]).collect())
            .collect::<Vec<Vec<[f64; 2]>>>()
    };
    assert_eq!(bytes[0], 1);
    let kind = u32::from_le_bytes(bytes[1..5].try_into().unwrap());
    let out = if kind == 3 {
        vec![polygon(&mut at)]
    } else {
        assert_eq!(kind, 6, "multipolygon");
        at = 5;
        let n = u32_at(&mut at);
        (0..n).map(|_| polygon(&mut at)).collect()
    };
    assert_eq!(at, bytes.len(), "trailing WKB bytes");
    out
}

/// zlib-decompress.
pub(crate) fn unzlib(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Read a `.geojson` or `.geojson.gz`.
pub(crate) fn read_geojson(path: &Path) -> serde_json::Value {
    let raw = std::fs::read(path).unwrap();
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(raw).unwrap()
    };
    serde_json::from_str(&text).unwrap()
}

/// Twice the signed area of a closed ring.
pub(crate) fn ring_area(ring: &[[f64; 2]]) -> f64 {
    ring.windows(2)
        .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
        .sum::<f64>()
        / 2.0
}

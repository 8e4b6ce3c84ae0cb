//! Write, read back, compare with the instances written.

use std::sync::Arc;

use mtseg_export::{Format, SlideExporter, Task, ZarrOutputLayout, annotation_key};
use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};
use rusqlite::Connection;
use zarrs::array::{Array, ArraySubset};
use zarrs::filesystem::FilesystemStore;

use crate::support::*;

const ALL_NUCLEI: [(Task, Format); 3] = [
    (Task::Nuclei, Format::AnnotationStore),
    (Task::Nuclei, Format::QuPath),
    (Task::Nuclei, Format::Zarr),
];

/// A small layout so that the maps have several shards and the tables several chunks.
const SMALL: ZarrOutputLayout = ZarrOutputLayout {
    map_chunk: [16, 16],
    shard_chunks_x: 3,
    table_chunk_rows: 16,
    zstd_level: 1,
};

/// Fewer, larger files (zarrs fsyncs every file it writes, which is slow on some disks).
const MEDIUM: ZarrOutputLayout = ZarrOutputLayout {
    map_chunk: [32, 32],
    shard_chunks_x: 2,
    table_chunk_rows: 1024,
    zstd_level: 1,
};

/// Write `records` in batches of 5, declaring rows final as the grid advances.
fn write_all(exporter: &mut SlideExporter, records: &[MergedItem<NucleusInstance>]) {
    for batch in records.chunks(5) {
        exporter.write_nuclei(batch).unwrap();
        let top_of_next = batch
            .last()
            .map(|r| (r.item.bbox[1] / 20 * 20) as u64)
            .unwrap();
        exporter.rows_final(top_of_next).unwrap();
    }
}

#[test]
fn annotation_store_matches_tiatoolbox_schema_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let nuclei = random_nuclei(1, 40, 200, true);
    let records: Vec<MergedItem<NucleusInstance>> = nuclei.iter().map(|(r, _)| r.clone()).collect();
    let spec = spec(dir.path(), "s1", &ALL_NUCLEI[..1]);
    let mut exporter = SlideExporter::create(spec).unwrap();
    exporter.write_nuclei(&records).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(summary.nuclei, 40);
    assert_eq!(listing(dir.path()), ["s1.db"]);

    let conn = Connection::open(dir.path().join("s1.db")).unwrap();
    let columns: Vec<(String, String, bool)> = conn
        .prepare("PRAGMA table_info(annotations)")
        .unwrap()
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected = [
        ("id", "INTEGER", false),
        ("key", "TEXT", false),
        ("objtype", "TEXT", false),
        ("cx", "FLOAT", true),
        ("cy", "FLOAT", true),
        ("geometry", "BLOB", false),
        ("properties", "TEXT", false),
        ("area", "FLOAT", true),
    ];
    let got: Vec<(&str, &str, bool)> = columns
        .iter()
        .map(|(n, t, nn)| (n.as_str(), t.as_str(), *nn))
        .collect();
    assert_eq!(got, expected);
    let metadata: Vec<(String, String)> = conn
        .prepare("SELECT key, value FROM metadata ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(metadata[0], ("version".into(), "\"1.0.1\"".into()));
    assert_eq!(metadata[1], ("compression".into(), "\"zlib\"".into()));
    assert_eq!(metadata[2], ("compression_level".into(), "9".into()));
    assert_eq!(metadata[3].0, "mtseg_provenance");
    let provenance: serde_json::Value = serde_json::from_str(&metadata[3].1).unwrap();
    assert_eq!(provenance["config_sha256"], "abc");

    let mut rows = conn
        .prepare(
            "SELECT a.id, key, objtype, cx, cy, geometry, properties, area, \
             min_x, max_x, min_y, max_y FROM annotations a JOIN rtree r ON a.id = r.id ORDER BY a.id",
        )
        .unwrap();
    let rows: Vec<_> = rows
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, f64>(7)?,
                [
                    r.get::<_, f64>(8)?,
                    r.get::<_, f64>(9)?,
                    r.get::<_, f64>(10)?,
                    r.get::<_, f64>(11)?,
                ],
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 40);
    let mut simple = 0;
    for ((row_id, key, objtype, cx, cy, blob, props, area, [min_x, max_x, min_y, max_y]), record) in
        rows.iter().zip(&records)
    {
        assert_eq!(*row_id, record.id as i64);
        assert_eq!(
            *key,
            annotation_key("s1", Task::Nuclei, record.id).to_string()
        );
        let polygons = decode_wkb(&unzlib(blob));
        assert_eq!(
            objtype,
            if polygons.len() == 1 {
                "Polygon"
            } else {
                "MultiPolygon"
            }
        );
        let shell = &polygons[0][0];
        assert_eq!(shell.first(), shell.last(), "closed ring");
        // A simple contour is stored vertex for vertex, scaled.
        let scaled: Vec<[f64; 2]> = record
            .item
            .contour
            .iter()
            .map(|&[x, y]| [f64::from(x) * 2.0, f64::from(y) * 2.0])
            .collect();
        if polygons.len() == 1 && polygons[0].len() == 1 && shell[..shell.len() - 1] == scaled[..] {
            simple += 1;
            assert!((area - ring_area(shell).abs()).abs() < 1e-9);
        }
        assert!(*area > 0.0);
        // rtree holds the bounds (as float32, rounded outwards).
        let xs = polygons.iter().flat_map(|p| p[0].iter().map(|q| q[0]));
        let ys = polygons.iter().flat_map(|p| p[0].iter().map(|q| q[1]));
        let (gx0, gx1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let (gy0, gy1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        assert!(*min_x <= gx0 && *max_x >= gx1 && *min_y <= gy0 && *max_y >= gy1);
        assert!((min_x - gx0).abs() < 1e-3 && (max_y - gy1).abs() < 1e-3);
        assert!(*cx > gx0 && *cx < gx1 && *cy > gy0 && *cy < gy1);
        let names = ["Background", "Neoplastic", "Inflammatory"];
        let expected_props = format!(
            "{{\"box\":[{},{},{},{}],\"centroid\":[{:?},{:?}],\"prob\":{:?},\"type\":\"{}\"}}",
            record.item.bbox[0],
            record.item.bbox[1],
            record.item.bbox[2],
            record.item.bbox[3],
            record.item.centroid[0],
            record.item.centroid[1],
            record.item.type_prob.unwrap(),
            names[record.item.type_id.unwrap() as usize]
        );
        assert_eq!(*props, expected_props);
    }
    assert!(
        simple >= 20,
        "most random blobs have simple contours ({simple}/40)"
    );
}

#[test]
fn geojson_plain_and_gzipped_are_closed_polygon_detections() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let nuclei = random_nuclei(2, 30, 200, true);
        let records: Vec<MergedItem<NucleusInstance>> =
            nuclei.iter().map(|(r, _)| r.clone()).collect();
        let mut spec = spec(
            dir.path(),
            "s2",
            &[
                (Task::Nuclei, Format::QuPath),
                (Task::Layers, Format::QuPath),
            ],
        );
        spec.gzip_geojson = gzip;
        for entry in &mut spec.paths {
            entry.2 = output_path(dir.path(), "s2", entry.0, Format::QuPath, gzip);
        }
        let mut exporter = SlideExporter::create(spec).unwrap();
        exporter.write_nuclei(&records).unwrap();
        exporter.write_layers(&layer_records()).unwrap();
        exporter.finish().unwrap();
        let path = output_path(dir.path(), "s2", Task::Nuclei, Format::QuPath, gzip);
        let json = read_geojson(&path);
        assert_eq!(json["type"], "FeatureCollection");
        let features = json["features"].as_array().unwrap();
        assert_eq!(features.len(), 30);
        for (feature, record) in features.iter().zip(&records) {
            assert_eq!(feature["type"], "Feature");
            assert_eq!(
                feature["id"].as_str().unwrap(),
                annotation_key("s2", Task::Nuclei, record.id).to_string()
            );
            let props = &feature["properties"];
            assert_eq!(props["objectType"], "detection");
            assert_eq!(props["isLocked"], false);
            let class = record.item.type_id.unwrap() as usize;
            assert_eq!(
                props["classification"]["name"],
                ["Background", "Neoplastic", "Inflammatory"][class]
            );
            // TIAToolbox's tab20 rule with 3 classes: entries 0, 10, 19.
            let colour = [[31, 119, 180], [140, 86, 75], [158, 218, 229]][class];
            assert_eq!(props["classification"]["color"], serde_json::json!(colour));
            assert_eq!(
                props["measurements"]["prob"].as_f64(),
                record.item.type_prob
            );
            assert!(props["measurements"]["area_px"].as_f64().unwrap() > 0.0);
            let geometry = &feature["geometry"];
            let polygons: Vec<&serde_json::Value> = match geometry["type"].as_str().unwrap() {
                "Polygon" => vec![&geometry["coordinates"]],
                "MultiPolygon" => geometry["coordinates"].as_array().unwrap().iter().collect(),
                other => panic!("unexpected geometry {other}"),
            };
            for polygon in polygons {
                for ring in polygon.as_array().unwrap() {
                    let ring = ring.as_array().unwrap();
                    assert!(ring.len() >= 4);
                    assert_eq!(ring.first(), ring.last());
                }
            }
        }
        let layers = read_geojson(&output_path(
            dir.path(),
            "s2",
            Task::Layers,
            Format::QuPath,
            gzip,
        ));
        let layer_features = layers["features"].as_array().unwrap();
        assert_eq!(layer_features.len(), 3);
        assert_eq!(layer_features[0]["properties"]["objectType"], "annotation");
        assert_eq!(
            layer_features[0]["properties"]["classification"]["name"],
            "Other Tissue"
        );
        assert_eq!(
            layer_features[0]["geometry"]["coordinates"][0][2],
            serde_json::json!([100.0, 280.0])
        );
    }
}

fn open_array(store: &Arc<FilesystemStore>, path: &str) -> Array<FilesystemStore> {
    Array::open(store.clone(), path).unwrap()
}

fn read_all<T: zarrs::array::ElementOwned>(array: &Array<FilesystemStore>) -> Vec<T> {
    let subset = ArraySubset::new_with_shape(array.shape().to_vec());
    array.retrieve_array_subset::<Vec<T>>(&subset).unwrap()
}

#[test]
fn layer_map_keeps_the_holes_of_a_layer_empty() {
    // TIAToolbox's `_get_layer_info` gives a ring of class 2 as two class-2 polygons (outer
    // border and hole border, both through class-2 pixels); what lies in the hole (a class-1
    // island) comes after them
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "ring", &[(Task::Layers, Format::Zarr)]);
    let mut exporter = SlideExporter::create_with_layout(spec, SMALL).unwrap();
    let square = |a: i32, b: i32| vec![[a, a], [a, b], [b, b], [b, a]];
    let record = |id, contour: Vec<[i32; 2]>, type_id| {
        let layer = LayerRegion {
            bbox: [10, 10, 51, 51],
            contour,
            type_id,
        };
        merged(id, layer)
    };
    exporter
        .write_layers(&[
            record(1, square(10, 50), 2),
            record(2, square(19, 30), 2),
            record(3, square(23, 26), 1),
        ])
        .unwrap();
    exporter.finish().unwrap();
    let store = Arc::new(FilesystemStore::new(dir.path().join("ring.zarr")).unwrap());
    let map: Vec<u8> = read_all(&open_array(&store, "/layer_segmentation/layer_map"));
    let at = |x: usize, y: usize| map[y * 200 + x];
    assert_eq!(
        (at(10, 10), at(19, 19), at(30, 25), at(50, 50)),
        (2, 2, 2, 2)
    );
    assert_eq!(
        (at(20, 20), at(29, 22), at(22, 29)),
        (0, 0, 0),
        "the hole is empty"
    );
    assert_eq!(
        (at(23, 23), at(26, 26)),
        (1, 1),
        "the island in it is drawn"
    );
    let count = |v: u8| map.iter().filter(|&&p| p == v).count();
    assert_eq!((count(2), count(1)), (41 * 41 - 10 * 10, 4 * 4));
}

#[test]
fn zarr_maps_equal_the_blobs_and_tables_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let nuclei = random_nuclei(3, 60, 200, true);
    let records: Vec<MergedItem<NucleusInstance>> = nuclei.iter().map(|(r, _)| r.clone()).collect();
    let spec = spec(
        dir.path(),
        "s3",
        &[(Task::Nuclei, Format::Zarr), (Task::Layers, Format::Zarr)],
    );
    let mut exporter = SlideExporter::create_with_layout(spec, SMALL).unwrap();
    let probabilities = exporter.probabilities_dir().unwrap();
    std::fs::create_dir(&probabilities).unwrap();
    std::fs::write(probabilities.join("marker"), "stitch was here").unwrap();
    write_all(&mut exporter, &records);
    assert!(
        exporter.map_buffer_bytes() <= 2 * 3 * 16 * 16 * 4 * 13,
        "bounded map buffer"
    );
    exporter.write_layers(&layer_records()).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!((summary.nuclei, summary.layers), (60, 3));
    assert_eq!(summary.files.len(), 1);
    assert_eq!(summary.files[0].tasks, [Task::Nuclei, Task::Layers]);
    assert_eq!(listing(dir.path()), ["s3.zarr"]);
    let root = dir.path().join("s3.zarr");
    assert!(root.join("probabilities/marker").is_file());

    let store = Arc::new(FilesystemStore::new(&root).unwrap());
    let map = open_array(&store, "/nuclei_segmentation/instance_map");
    assert_eq!(map.shape(), [150, 200]);
    let values: Vec<u32> = read_all(&map);
    for (record, blob) in &nuclei {
        let expected = fill_holes(blob);
        let got: std::collections::BTreeSet<[i64; 2]> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| u64::from(**v) == record.id)
            .map(|(i, _)| [(i % 200) as i64, (i / 200) as i64])
            .collect();
        assert_eq!(
            got,
            expected.iter().copied().filter(|p| p[1] < 150).collect(),
            "nucleus {}",
            record.id
        );
    }
    assert_eq!(*values.iter().max().unwrap(), 60);

    let ids: Vec<u64> = read_all(&open_array(&store, "/nuclei_segmentation/id"));
    assert_eq!(ids, (1..=60).collect::<Vec<u64>>());
    let boxes: Vec<i32> = read_all(&open_array(&store, "/nuclei_segmentation/box"));
    let centroids: Vec<f64> = read_all(&open_array(&store, "/nuclei_segmentation/centroid"));
    let types: Vec<u32> = read_all(&open_array(&store, "/nuclei_segmentation/type"));
    let probs: Vec<f32> = read_all(&open_array(&store, "/nuclei_segmentation/prob"));
    let offsets: Vec<u64> = read_all(&open_array(&store, "/nuclei_segmentation/contour_offsets"));
    let points: Vec<i32> = read_all(&open_array(&store, "/nuclei_segmentation/contour_points"));
    assert_eq!(offsets.len(), 61);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(boxes[4 * i..4 * i + 4], record.item.bbox);
        assert_eq!(centroids[2 * i..2 * i + 2], record.item.centroid);
        assert_eq!(types[i], record.item.type_id.unwrap());
        assert_eq!(probs[i], record.item.type_prob.unwrap() as f32);
        let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
        assert_eq!(points[2 * a..2 * b], *record.item.contour.as_flattened());
    }

    let layer_map: Vec<u8> = read_all(&open_array(&store, "/layer_segmentation/layer_map"));
    assert_eq!(layer_map[120 * 200 + 30], 1);
    assert_eq!(layer_map[120 * 200 + 90], 2);
    assert_eq!(layer_map.iter().filter(|v| **v != 0).count(), 3 * 41 * 41);

    let root_meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("zarr.json")).unwrap()).unwrap();
    let mtseg = &root_meta["attributes"]["mtseg"];
    assert_eq!(mtseg["scale_factor"], serde_json::json!([2.0, 2.0]));
    assert_eq!(mtseg["provenance"]["config_sha256"], "abc");
    assert_eq!(
        mtseg["tasks"],
        serde_json::json!(["nuclei_segmentation", "layer_segmentation"])
    );
    let group: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("nuclei_segmentation/zarr.json")).unwrap())
            .unwrap();
    assert_eq!(group["attributes"]["count"], 60);
    assert_eq!(group["attributes"]["classes"][1], "Neoplastic");
}

#[test]
fn no_type_head_gives_null_properties_and_missing_markers() {
    let dir = tempfile::tempdir().unwrap();
    let nuclei = random_nuclei(4, 5, 200, false);
    let records: Vec<MergedItem<NucleusInstance>> = nuclei.iter().map(|(r, _)| r.clone()).collect();
    let mut spec = spec(dir.path(), "kumar", &ALL_NUCLEI);
    spec.nuclei_classes.clear();
    let mut exporter = SlideExporter::create(spec).unwrap();
    exporter.write_nuclei(&records).unwrap();
    exporter.finish().unwrap();
    let conn = Connection::open(dir.path().join("kumar.db")).unwrap();
    let props: String = conn
        .query_row("SELECT properties FROM annotations WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(props.ends_with(",\"prob\":null,\"type\":null}"), "{props}");
    let json = read_geojson(&dir.path().join("kumar.geojson"));
    let props = &json["features"][0]["properties"];
    assert!(props.get("classification").is_none());
    assert!(props["measurements"].get("prob").is_none());
    let store = Arc::new(FilesystemStore::new(dir.path().join("kumar.zarr")).unwrap());
    let types: Vec<u32> = read_all(&open_array(&store, "/nuclei_segmentation/type"));
    assert!(types.iter().all(|t| *t == u32::MAX));
    let probs: Vec<f32> = read_all(&open_array(&store, "/nuclei_segmentation/prob"));
    assert!(probs.iter().all(|p| p.is_nan()));
}

#[test]
fn unnamed_class_ids_are_stored_as_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut record = random_nuclei(5, 1, 200, true).remove(0).0;
    record.item.type_id = Some(7);
    let spec = spec(dir.path(), "s5", &ALL_NUCLEI[..2]);
    let mut exporter = SlideExporter::create(spec).unwrap();
    exporter.write_nuclei(&[record]).unwrap();
    exporter.finish().unwrap();
    let conn = Connection::open(dir.path().join("s5.db")).unwrap();
    let props: String = conn
        .query_row("SELECT properties FROM annotations", [], |r| r.get(0))
        .unwrap();
    assert!(props.ends_with(",\"type\":7}"), "{props}");
    let json = read_geojson(&dir.path().join("s5.geojson"));
    assert_eq!(
        json["features"][0]["properties"]["classification"]["name"],
        "7"
    );
}

#[test]
fn invalid_contours_become_valid_polygons() {
    let dir = tempfile::tempdir().unwrap();
    let contours: Vec<Vec<[i32; 2]>> = vec![
        vec![[10, 10]],                               // single pixel
        vec![[20, 10], [25, 10]],                     // line
        vec![[30, 10], [34, 10], [34, 13], [34, 10]], // L-shaped line
        vec![
            [40, 10],
            [41, 9],
            [42, 10],
            [43, 9],
            [44, 10],
            [43, 11],
            [42, 10],
            [41, 11],
        ], // figure eight
        vec![
            [50, 10],
            [52, 10],
            [52, 11],
            [55, 11],
            [52, 11],
            [52, 12],
            [50, 12],
        ], // spur
    ];
    let records: Vec<MergedItem<NucleusInstance>> = contours
        .into_iter()
        .enumerate()
        .map(|(i, contour)| {
            let nucleus = NucleusInstance {
                label: i as i32 + 1,
                bbox: [0, 0, 1, 1],
                centroid: [0.0, 0.0],
                contour,
                type_id: Some(1),
                type_prob: Some(1.0),
            };
            merged(i as u64 + 1, nucleus)
        })
        .collect();
    let spec = spec(dir.path(), "bad", &ALL_NUCLEI);
    let mut exporter = SlideExporter::create(spec).unwrap();
    exporter.write_nuclei(&records).unwrap();
    let summary = exporter.finish().unwrap();
    assert_eq!(summary.pixel_square_polygons, 3);
    assert_eq!(summary.split_polygons, 2);
    let conn = Connection::open(dir.path().join("bad.db")).unwrap();
    let rows: Vec<(String, f64, Vec<u8>)> = conn
        .prepare("SELECT objtype, area, geometry FROM annotations ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Areas at baseline (scale 2 x 2): pixel squares 4 px² each; the figure eight's two diamonds
    // (2 px² each); the square of the spur (2 x 2 px).
    let expect = [
        ("Polygon", 4.0),
        ("Polygon", 24.0),
        ("Polygon", 32.0),
        ("MultiPolygon", 16.0),
        ("Polygon", 16.0),
    ];
    for ((objtype, area, blob), (t, a)) in rows.iter().zip(expect) {
        assert_eq!((objtype.as_str(), *area), (t, a));
        let polygons = decode_wkb(&unzlib(blob));
        let wkb_area: f64 = polygons
            .iter()
            .map(|p| {
                ring_area(&p[0]).abs() - p[1..].iter().map(|h| ring_area(h).abs()).sum::<f64>()
            })
            .sum();
        assert_eq!(wkb_area, a);
    }
}

#[test]
fn reruns_write_identical_files() {
    let nuclei = random_nuclei(6, 25, 200, true);
    let records: Vec<MergedItem<NucleusInstance>> = nuclei.iter().map(|(r, _)| r.clone()).collect();
    let outputs = [
        (Task::Nuclei, Format::AnnotationStore),
        (Task::Nuclei, Format::QuPath),
        (Task::Layers, Format::AnnotationStore),
    ];
    let run = || {
        let dir = tempfile::tempdir().unwrap();
        let mut exporter = SlideExporter::create(spec(dir.path(), "same", &outputs)).unwrap();
        exporter.write_nuclei(&records).unwrap();
        exporter.write_layers(&layer_records()).unwrap();
        exporter.finish().unwrap();
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        (
            read("same.db"),
            read("same.geojson"),
            read("same_layers.db"),
        )
    };
    let first = run();
    let second = run();
    assert!(first.0 == second.0, ".db bytes differ between runs");
    assert!(first.1 == second.1, "GeoJSON bytes differ between runs");
    assert!(first.2 == second.2, "layer .db bytes differ between runs");
}

#[test]
fn rasterised_contours_give_back_the_blob_pixels() {
    // The instance map is the contour filled: for a traced blob, exactly its pixels (holes
    // filled). Checked through the Zarr output on many random blobs, one per slide row.
    let dir = tempfile::tempdir().unwrap();
    let nuclei = random_nuclei(7, 150, 200, false);
    let mut spec = spec(dir.path(), "blobs", &[(Task::Nuclei, Format::Zarr)]);
    spec.processing_size = [200, 160];
    let records: Vec<MergedItem<NucleusInstance>> = nuclei.iter().map(|(r, _)| r.clone()).collect();
    let mut exporter = SlideExporter::create_with_layout(spec, MEDIUM).unwrap();
    write_all(&mut exporter, &records);
    exporter.finish().unwrap();
    let store = Arc::new(FilesystemStore::new(dir.path().join("blobs.zarr")).unwrap());
    let values: Vec<u32> = read_all(&open_array(&store, "/nuclei_segmentation/instance_map"));
    let mut expected = vec![0u32; values.len()];
    for (record, blob) in &nuclei {
        for p in fill_holes(blob) {
            if p[1] < 160 {
                expected[(p[1] * 200 + p[0]) as usize] = record.id as u32;
            }
        }
    }
    assert!(values == expected, "instance map differs from the blobs");
}

#[test]
fn files_do_not_depend_on_threads_or_batches() {
    // Records are prepared on the rayon pool a step (256) at a time and written in order: one
    // record per call on one thread and one call of 700 on four threads give the same bytes.
    let nuclei = random_nuclei(8, 700, 1000, true);
    let records: Vec<MergedItem<NucleusInstance>> = nuclei.iter().map(|(r, _)| r.clone()).collect();
    let outputs = [
        (Task::Nuclei, Format::AnnotationStore),
        (Task::Nuclei, Format::QuPath),
    ];
    let run = |threads: usize, batch: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path(), "same", &outputs);
        spec.processing_size = [1000, 800];
        let summary = pool.install(|| {
            let mut exporter = SlideExporter::create(spec).unwrap();
            for chunk in records.chunks(batch) {
                exporter.write_nuclei(chunk).unwrap();
            }
            exporter.finish().unwrap()
        });
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        (summary, read("same.db"), read("same.geojson"))
    };
    let (one, db_one, geojson_one) = run(1, 1);
    let (four, db_four, geojson_four) = run(4, 700);
    assert_eq!(one.nuclei, 700);
    assert!(one.split_polygons + one.pixel_square_polygons > 0);
    let counts = |s: &mtseg_export::ExportSummary| {
        let records: Vec<u64> = s.files.iter().map(|f| f.records).collect();
        (s.nuclei, s.split_polygons, s.pixel_square_polygons, records)
    };
    assert_eq!(counts(&one), counts(&four));
    assert!(db_one == db_four, ".db bytes depend on threads or batches");
    assert!(
        geojson_one == geojson_four,
        "GeoJSON bytes depend on threads or batches"
    );
}

//! The Zarr V3 store of one slide: dense label maps and per-instance tables, in a layout any
//! Zarr V3 reader (zarr-python 3, zarrs, ...) reads without Python pickles.
//!
//! ```text
//! <stem>.zarr/zarr.json                          root group; attributes.mtseg = {format, slide,
//!                                                stem, processing_size, processing_mpp,
//!                                                baseline_mpp, scale_factor, coordinates, tasks,
//!                                                software, provenance}
//! nuclei_segmentation/zarr.json                  group; attributes {task, classes, count,
//!                                                type_missing, arrays}
//! nuclei_segmentation/instance_map   u32 (H, W)  nucleus id per pixel, 0 = background
//!                                                (only with save_instance_map)
//! nuclei_segmentation/id             u64 (N,)    instance ids, increasing
//! nuclei_segmentation/box            i32 (N, 4)  [x0, y0, x1, y1], exclusive end
//! nuclei_segmentation/centroid       f64 (N, 2)  [x, y]
//! nuclei_segmentation/type           u32 (N,)    class id; 4294967295 = no type head
//! nuclei_segmentation/prob           f32 (N,)    type probability; NaN = no type head
//! nuclei_segmentation/contour_offsets u64 (N+1,) nucleus i's points are
//!                                                contour_points[offsets[i]:offsets[i+1]]
//! nuclei_segmentation/contour_points i32 (M, 2)  [x, y], all contours end to end
//! layer_segmentation/layer_map       u8 (H, W)   layer class per pixel (only with save_layer_map)
//! layer_segmentation/id, box, type (u32), contour_offsets, contour_points   as above
//! probabilities/...                              written by the stitch stage, if asked
//! ```
//!
//! Everything is at the processing resolution in the slide frame (H, W from
//! `processing_size`); multiply by `scale_factor` for baseline pixels. Contours are the instances'
//! contours as given (not the repaired polygons of the `.db`). The maps are the instances'
//! contours filled (`crate::polygon_raster`): for a nucleus traced by `cv2.findContours` that is
//! exactly its pixels. Where instances overlap, the later one wins, except that a layer
//! polygon toggles the pixels strictly inside it that already hold its class back to 0: the
//! border of a hole, which TIAToolbox's `_get_layer_info` gives as a polygon of its own with
//! the class's type, empties the hole again (the layer map is the class of each pixel). Maps
//! are sharded (one shard row = 256 rows × 2048 columns, inner chunks 256 × 256) with zstd;
//! tables are chunked by 65 536 rows with zstd. The store is written under a temporary name and renamed when complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtseg_postproc::{LayerRegion, NucleusInstance};
use serde_json::{Map, Value, json};
use zarrs::array::{DataType, FillValue, data_type};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

use crate::atomic_file::{TempOutput, sync_tree};
use crate::export_errors::ExportError;
use crate::export_names::Task;
use crate::export_spec::SlideExportSpec;
use crate::polygon_raster::for_each_span;
use crate::zarr_label_map::{LabelMapWriter, ZarrOutputLayout};
use crate::zarr_tables::{TableArray, TableSpec};

/// `type` value of a nucleus without a type head.
pub(crate) const TYPE_MISSING: u32 = u32::MAX;

/// Format tag in the root attributes.
const FORMAT_TAG: &str = "mtseg-export-zarr/1";

/// The tables shared by both tasks.
#[derive(Debug)]
struct CommonTables {
    id: TableArray<u64>,
    bbox: TableArray<i32>,
    class: TableArray<u32>,
    offsets: TableArray<u64>,
    points: TableArray<i32>,
    points_written: u64,
}

#[derive(Debug)]
struct NucleiGroup {
    map: Option<LabelMapWriter<u32>>,
    common: CommonTables,
    centroid: TableArray<f64>,
    prob: TableArray<f32>,
    attributes: Map<String, Value>,
}

#[derive(Debug)]
struct LayersGroup {
    map: Option<LabelMapWriter<u8>>,
    common: CommonTables,
    attributes: Map<String, Value>,
}

/// Writes one Zarr store (one or both tasks).
#[derive(Debug)]
pub(crate) struct ZarrOutput {
    nuclei: Option<NucleiGroup>,
    layers: Option<LayersGroup>,
    store: Arc<FilesystemStore>,
    root_attributes: Map<String, Value>,
    /// Declared last: the temporary store is removed after the arrays are dropped.
    temp: TempOutput,
}

fn attrs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn describe(text: &str) -> Map<String, Value> {
    attrs(&[("description", json!(text))])
}

impl ZarrOutput {
    /// Create the temporary store with its groups, arrays and metadata.
    pub(crate) fn create(
        final_path: &Path,
        tasks: &[Task],
        spec: &SlideExportSpec,
        layout: ZarrOutputLayout,
    ) -> Result<Self, ExportError> {
        let temp = TempOutput::new(final_path)?;
        let root = temp.temp_path().to_path_buf();
        std::fs::create_dir(&root).map_err(|e| ExportError::io("create", &root, e))?;
        let store = Arc::new(
            FilesystemStore::new(&root).map_err(|e| ExportError::zarr("open store", &root, e))?,
        );
        let root_attributes = attrs(&[(
            "mtseg",
            json!({
                "format": FORMAT_TAG,
                "slide": spec.slide_path.to_string_lossy(),
                "stem": spec.stem,
                "processing_size": spec.processing_size,
                "processing_mpp": spec.processing_mpp,
                "baseline_mpp": spec.baseline_mpp,
                "scale_factor": spec.scale_factor,
                "coordinates": "processing-resolution pixels [x, y] in the slide frame; \
                                multiply by scale_factor for baseline pixels",
                "tasks": tasks.iter().map(|t| t.name()).collect::<Vec<_>>(),
                "software": {"mtseg-export": env!("CARGO_PKG_VERSION"), "zarrs": "0.23"},
                "provenance": spec.provenance,
            }),
        )]);
        write_group(&store, &root, "/", root_attributes.clone())?;
        let mut output = Self {
            nuclei: None,
            layers: None,
            store,
            root_attributes,
            temp,
        };
        for &task in tasks {
            match task {
                Task::Nuclei => output.nuclei = Some(output.create_nuclei(spec, layout)?),
                Task::Layers => output.layers = Some(output.create_layers(spec, layout)?),
            }
        }
        Ok(output)
    }

    fn create_nuclei(
        &self,
        spec: &SlideExportSpec,
        layout: ZarrOutputLayout,
    ) -> Result<NucleiGroup, ExportError> {
        let group = Task::Nuclei.name();
        let attributes = attrs(&[
            ("task", json!(group)),
            ("classes", json!(spec.nuclei_classes)),
            ("count", json!(0)),
            ("type_missing", json!(TYPE_MISSING)),
            ("instance_map", json!(spec.save_instance_map)),
        ]);
        write_group(
            &self.store,
            self.temp.temp_path(),
            &format!("/{group}"),
            attributes.clone(),
        )?;
        let map = if spec.save_instance_map {
            Some(LabelMapWriter::create(
                &self.store,
                self.temp.temp_path(),
                &format!("/{group}/instance_map"),
                spec.processing_size,
                layout,
                (data_type::uint32(), FillValue::from(0u32)),
                describe("nucleus id per pixel (0 = background), processing resolution"),
            )?)
        } else {
            None
        };
        let t = Tables {
            store: &self.store,
            root: self.temp.temp_path(),
            group,
            layout,
        };
        Ok(NucleiGroup {
            map,
            common: t.common()?,
            centroid: t.table(
                "centroid",
                Some(2),
                &["instance", "xy"],
                "centroid [x, y], processing-resolution pixels",
                data_type::float64(),
                0.0f64,
                FillValue::from(0.0f64),
            )?,
            prob: t.table(
                "prob",
                None,
                &["instance"],
                "type probability; NaN without a type head",
                data_type::float32(),
                f32::NAN,
                FillValue::from(0.0f32),
            )?,
            attributes,
        })
    }

    fn create_layers(
        &self,
        spec: &SlideExportSpec,
        layout: ZarrOutputLayout,
    ) -> Result<LayersGroup, ExportError> {
        let group = Task::Layers.name();
        let attributes = attrs(&[
            ("task", json!(group)),
            ("classes", json!(spec.layer_classes)),
            ("count", json!(0)),
            ("layer_map", json!(spec.save_layer_map)),
        ]);
        write_group(
            &self.store,
            self.temp.temp_path(),
            &format!("/{group}"),
            attributes.clone(),
        )?;
        let map = if spec.save_layer_map {
            Some(LabelMapWriter::create(
                &self.store,
                self.temp.temp_path(),
                &format!("/{group}/layer_map"),
                spec.processing_size,
                layout,
                (data_type::uint8(), FillValue::from(0u8)),
                describe("layer class per pixel (0 = background), processing resolution"),
            )?)
        } else {
            None
        };
        let t = Tables {
            store: &self.store,
            root: self.temp.temp_path(),
            group,
            layout,
        };
        Ok(LayersGroup {
            map,
            common: t.common()?,
            attributes,
        })
    }

    /// Where the stitch stage may write a `probabilities` hierarchy (inside the temporary store).
    pub(crate) fn probabilities_dir(&self) -> PathBuf {
        self.temp.temp_path().join("probabilities")
    }

    /// The final path.
    pub(crate) fn final_path(&self) -> &Path {
        self.temp.final_path()
    }

    /// The tasks held, in group order.
    pub(crate) fn tasks(&self) -> Vec<Task> {
        let mut tasks = Vec::new();
        if self.nuclei.is_some() {
            tasks.push(Task::Nuclei);
        }
        if self.layers.is_some() {
            tasks.push(Task::Layers);
        }
        tasks
    }

    /// Whether the store holds `task`.
    pub(crate) fn has(&self, task: Task) -> bool {
        match task {
            Task::Nuclei => self.nuclei.is_some(),
            Task::Layers => self.layers.is_some(),
        }
    }

    /// Records written (all tasks).
    pub(crate) fn records(&self) -> u64 {
        self.nuclei.as_ref().map_or(0, |g| g.common.id.rows())
            + self.layers.as_ref().map_or(0, |g| g.common.id.rows())
    }

    /// Bytes of map tiles held.
    pub(crate) fn buffer_bytes(&self) -> u64 {
        self.nuclei
            .as_ref()
            .and_then(|g| g.map.as_ref())
            .map_or(0, LabelMapWriter::buffer_bytes)
            + self
                .layers
                .as_ref()
                .and_then(|g| g.map.as_ref())
                .map_or(0, LabelMapWriter::buffer_bytes)
    }

    /// Add nucleus `id` (`points` = its contour widened to `i64`).
    pub(crate) fn write_nucleus(
        &mut self,
        id: u64,
        nucleus: &NucleusInstance,
        points: &[[i64; 2]],
    ) -> Result<(), ExportError> {
        let Some(group) = self.nuclei.as_mut() else {
            return Ok(());
        };
        if let Some(map) = group.map.as_mut() {
            let value = u32::try_from(id).expect("checked by the exporter");
            rasterise(map, points, value)?;
        }
        group.common.push(
            id,
            nucleus.bbox,
            nucleus.type_id.unwrap_or(TYPE_MISSING),
            &nucleus.contour,
        )?;
        group.centroid.push(&nucleus.centroid)?;
        group
            .prob
            .push(&[nucleus.type_prob.map_or(f32::NAN, |p| p as f32)])
    }

    /// Add layer polygon `id`.
    pub(crate) fn write_layer(
        &mut self,
        id: u64,
        layer: &LayerRegion,
        points: &[[i64; 2]],
    ) -> Result<(), ExportError> {
        let Some(group) = self.layers.as_mut() else {
            return Ok(());
        };
        if let Some(map) = group.map.as_mut() {
            rasterise_layer(map, points, layer.type_id)?;
        }
        group
            .common
            .push(id, layer.bbox, u32::from(layer.type_id), &layer.contour)
    }

    /// Write and free the map rows above `y`.
    pub(crate) fn rows_final(&mut self, y: u64) -> Result<(), ExportError> {
        if let Some(map) = self.nuclei.as_mut().and_then(|g| g.map.as_mut()) {
            map.rows_final(y)?;
        }
        if let Some(map) = self.layers.as_mut().and_then(|g| g.map.as_mut()) {
            map.rows_final(y)?;
        }
        Ok(())
    }

    /// Write everything left, the final shapes and counts, and fsync the store.
    pub(crate) fn finalize(&mut self) -> Result<(), ExportError> {
        let root = self.temp.temp_path().to_path_buf();
        if let Some(group) = self.nuclei.as_mut() {
            if let Some(map) = group.map.as_mut() {
                map.finish()?;
            }
            group.common.finish()?;
            group.centroid.finish()?;
            group.prob.finish()?;
            group
                .attributes
                .insert("count".into(), json!(group.common.id.rows()));
            write_group(
                &self.store,
                &root,
                &format!("/{}", Task::Nuclei.name()),
                group.attributes.clone(),
            )?;
        }
        if let Some(group) = self.layers.as_mut() {
            if let Some(map) = group.map.as_mut() {
                map.finish()?;
            }
            group.common.finish()?;
            group
                .attributes
                .insert("count".into(), json!(group.common.id.rows()));
            write_group(
                &self.store,
                &root,
                &format!("/{}", Task::Layers.name()),
                group.attributes.clone(),
            )?;
        }
        write_group(&self.store, &root, "/", self.root_attributes.clone())?;
        sync_tree(&root)
    }

    /// Rename the finalised store into place.
    pub(crate) fn commit(&mut self, overwrite: bool) -> Result<(), ExportError> {
        self.temp.commit(overwrite)
    }
}

/// Fill the pixels of a contour in a label map.
fn rasterise<T: zarrs::array::Element + Copy + Default>(
    map: &mut LabelMapWriter<T>,
    points: &[[i64; 2]],
    value: T,
) -> Result<(), ExportError> {
    let mut result = Ok(());
    for_each_span(points, |y, x0, x1| {
        if result.is_ok() {
            result = map.fill_span(y, x0, x1, value);
        }
    });
    result
}

/// Draw a layer polygon into the layer map: the pixels on its boundary are set to `value`, the
/// pixels strictly inside are toggled between `value` and 0. The polygons of one class are
/// the borders of that class's mask, a hole's border being a polygon of its own (TIAToolbox's
/// `_get_layer_info`, RETR_TREE), so a hole, inside two of them, goes back to 0 while the
/// class pixels around it (on its border) stay; what lies in the hole comes later (ids follow
/// the first contour point, row-major) and is drawn over it.
fn rasterise_layer(
    map: &mut LabelMapWriter<u8>,
    points: &[[i64; 2]],
    value: u8,
) -> Result<(), ExportError> {
    let boundary = boundary_pixels(points);
    let mut result = Ok(());
    let mut b = 0;
    for_each_span(points, |y, x0, x1| {
        if result.is_err() {
            return;
        }
        while b < boundary.len() && (boundary[b][0], boundary[b][1]) < (y, x0) {
            b += 1;
        }
        let mut x = x0;
        while result.is_ok() && b < boundary.len() && boundary[b][0] == y && boundary[b][1] <= x1 {
            let bx = boundary[b][1];
            if bx > x {
                result = map.toggle_span(y, x, bx - 1, value);
            }
            x = bx + 1;
            b += 1;
        }
        if result.is_ok() && x <= x1 {
            result = map.toggle_span(y, x, x1, value);
        }
    });
    result?;
    for [y, x] in boundary {
        map.fill_span(y, x, x, value)?;
    }
    Ok(())
}

/// The pixels `[y, x]` whose centres lie on the polygon's edges (every lattice point of every
/// edge), sorted and without repeats.
fn boundary_pixels(points: &[[i64; 2]]) -> Vec<[i64; 2]> {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let n = points.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ([ax, ay], [bx, by]) = (points[i], points[(i + 1) % n]);
        let (dx, dy) = (bx - ax, by - ay);
        let g = gcd(dx.abs(), dy.abs()).max(1);
        out.extend((0..=g).map(|k| [ay + dy / g * k, ax + dx / g * k]));
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl CommonTables {
    fn push(
        &mut self,
        id: u64,
        bbox: [i32; 4],
        class: u32,
        contour: &[[i32; 2]],
    ) -> Result<(), ExportError> {
        self.id.push(&[id])?;
        self.bbox.push(&bbox)?;
        self.class.push(&[class])?;
        self.points.push(contour.as_flattened())?;
        self.points_written += contour.len() as u64;
        self.offsets.push(&[self.points_written])
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        self.id.finish()?;
        self.bbox.finish()?;
        self.class.finish()?;
        self.offsets.finish()?;
        self.points.finish()
    }
}

/// Where the tables of one group are created.
struct Tables<'a> {
    store: &'a Arc<FilesystemStore>,
    root: &'a Path,
    group: &'static str,
    layout: ZarrOutputLayout,
}

impl Tables<'_> {
    #[allow(clippy::too_many_arguments)]
    fn table<T: zarrs::array::Element + Copy>(
        &self,
        name: &str,
        columns: Option<u64>,
        dimension_names: &[&str],
        description: &str,
        data_type: DataType,
        fill: T,
        fill_value: FillValue,
    ) -> Result<TableArray<T>, ExportError> {
        let path = format!("/{}/{name}", self.group);
        TableArray::create(
            self.store,
            self.root,
            TableSpec {
                path: &path,
                columns,
                dimension_names,
                chunk_rows: self.layout.table_chunk_rows,
                zstd_level: self.layout.zstd_level,
                attributes: describe(description),
            },
            data_type,
            fill,
            fill_value,
        )
    }

    fn common(&self) -> Result<CommonTables, ExportError> {
        let mut offsets = self.table(
            "contour_offsets",
            None,
            &["instance_plus_one"],
            "contour_points[contour_offsets[i]:contour_offsets[i+1]] is the contour of row i",
            data_type::uint64(),
            0u64,
            FillValue::from(0u64),
        )?;
        offsets.push(&[0])?;
        Ok(CommonTables {
            id: self.table(
                "id",
                None,
                &["instance"],
                "record id (the value in the map), increasing",
                data_type::uint64(),
                0u64,
                FillValue::from(0u64),
            )?,
            bbox: self.table(
                "box",
                Some(4),
                &["instance", "x0_y0_x1_y1"],
                "bounding box [x0, y0, x1, y1], exclusive end, processing-resolution pixels",
                data_type::int32(),
                0i32,
                FillValue::from(0i32),
            )?,
            class: self.table(
                "type",
                None,
                &["instance"],
                "class id (index into the group's classes attribute)",
                data_type::uint32(),
                0u32,
                FillValue::from(0u32),
            )?,
            offsets,
            points: self.table(
                "contour_points",
                Some(2),
                &["point", "xy"],
                "contour points [x, y] (border pixel centres), all contours end to end",
                data_type::int32(),
                0i32,
                FillValue::from(0i32),
            )?,
            points_written: 0,
        })
    }
}

/// Create (or rewrite) a group's metadata.
fn write_group(
    store: &Arc<FilesystemStore>,
    root: &Path,
    path: &str,
    attributes: Map<String, Value>,
) -> Result<(), ExportError> {
    GroupBuilder::new()
        .attributes(attributes)
        .build(store.clone(), path)
        .map_err(|e| ExportError::zarr("create group", root.join(path.trim_start_matches('/')), e))?
        .store_metadata()
        .map_err(|e| {
            ExportError::zarr(
                "write group metadata",
                root.join(path.trim_start_matches('/')),
                e,
            )
        })
}

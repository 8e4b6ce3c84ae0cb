//! [`SlideExporter`]: one slide's final nuclei and layers in, every configured file out.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};
use rayon::prelude::*;
use serde::Serialize;

use crate::annotation_keys::annotation_key;
use crate::annotation_store::{AnnotationStoreWriter, StoreRow};
use crate::atomic_file::size_on_disk;
use crate::class_colours::class_colour;
use crate::export_errors::ExportError;
use crate::export_names::{Format, Task};
use crate::export_spec::{ExportSummary, FileSummary, SlideExportSpec, check_outputs};
use crate::polygon_geometry::{Repair, ValidGeometry};
use crate::python_json::to_python_json;
use crate::qupath_geojson::{FeatureJson, FeatureProperties, GeojsonWriter};
use crate::zarr_label_map::ZarrOutputLayout;
use crate::zarr_output::ZarrOutput;

/// Writes one slide's nuclei and layers to every configured format.
///
/// Created with [`SlideExporter::create`] (everything goes to temporary names next to the final
/// paths), fed with [`write_nuclei`](Self::write_nuclei) / [`write_layers`](Self::write_layers)
/// and [`rows_final`](Self::rows_final), closed with [`finish`](Self::finish), which renames
/// the files into place. Dropped without `finish` (an error upstream, a panic), it removes every
/// temporary file and directory: nothing ever appears under a final name half-written.
///
/// It is the single writer of each of its files; records are written in the order they arrive.
#[derive(Debug)]
pub struct SlideExporter {
    spec: SlideExportSpec,
    stores: Vec<(Task, AnnotationStoreWriter)>,
    geojsons: Vec<(Task, GeojsonWriter)>,
    zarrs: Vec<ZarrOutput>,
    last_nucleus: Option<u64>,
    last_layer: Option<u64>,
    nuclei: u64,
    layers: u64,
    final_row: u64,
    split_polygons: u64,
    pixel_square_polygons: u64,
    /// Test hook: fail the record after this many records (nuclei and layers).
    #[cfg(test)]
    pub(crate) fail_after: Option<u64>,
}

/// `.db` properties of a nucleus, in TIAToolbox's key order.
#[derive(Serialize)]
struct NucleusProperties<'a> {
    #[serde(rename = "box")]
    bbox: [i32; 4],
    centroid: [f64; 2],
    prob: Option<f64>,
    #[serde(rename = "type")]
    class: ClassValue<'a>,
}

/// `.db` properties of a layer polygon.
#[derive(Serialize)]
struct LayerProperties<'a> {
    #[serde(rename = "box")]
    bbox: [i32; 4],
    #[serde(rename = "type")]
    class: ClassValue<'a>,
}

/// A class name, a class id without a name, or no class (`null`).
#[derive(Serialize)]
#[serde(untagged)]
enum ClassValue<'a> {
    Name(&'a str),
    Id(u32),
    Missing,
}

fn class_value(classes: &[String], id: Option<u32>) -> ClassValue<'_> {
    match id {
        None => ClassValue::Missing,
        Some(id) => classes
            .get(id as usize)
            .map_or(ClassValue::Id(id), |name| ClassValue::Name(name)),
    }
}

/// QuPath classification `(name, colour)` of class `id`.
fn classification(classes: &[String], id: u32) -> (Cow<'_, str>, [u8; 3]) {
    let name = classes
        .get(id as usize)
        .map_or_else(|| Cow::Owned(id.to_string()), |n| Cow::Borrowed(n.as_str()));
    (name, class_colour(id, classes.len()))
}

/// Records per step of [`SlideExporter::write_records`]: the next step is prepared on the rayon
/// pool while this one is written (small enough to start writing early, large enough for the
/// pool to split).
const STEP: usize = 256;

/// A record type the exporter writes: nuclei or layer polygons.
trait ExportRecord: Sync {
    /// Its task.
    const TASK: Task;
    /// Its contour (processing resolution, slide frame).
    fn contour(&self) -> &[[i32; 2]];
    /// Its `.db` properties, Python's compact JSON.
    fn store_properties(&self, classes: &[String]) -> String;
    /// What its GeoJSON feature says besides the geometry.
    fn feature_properties<'a>(&self, classes: &'a [String]) -> FeatureProperties<'a>;
    /// Add it to a Zarr store (`points` = its contour widened to `i64`).
    fn write_zarr(
        &self,
        zarr: &mut ZarrOutput,
        id: u64,
        points: &[[i64; 2]],
    ) -> Result<(), ExportError>;
}

impl ExportRecord for NucleusInstance {
    const TASK: Task = Task::Nuclei;

    fn contour(&self) -> &[[i32; 2]] {
        &self.contour
    }

    fn store_properties(&self, classes: &[String]) -> String {
        to_python_json(&NucleusProperties {
            bbox: self.bbox,
            centroid: self.centroid,
            prob: self.type_prob,
            class: class_value(classes, self.type_id),
        })
    }

    fn feature_properties<'a>(&self, classes: &'a [String]) -> FeatureProperties<'a> {
        FeatureProperties {
            object_type: "detection",
            classification: self.type_id.map(|class| classification(classes, class)),
            prob: self.type_prob,
        }
    }

    fn write_zarr(
        &self,
        zarr: &mut ZarrOutput,
        id: u64,
        points: &[[i64; 2]],
    ) -> Result<(), ExportError> {
        zarr.write_nucleus(id, self, points)
    }
}

impl ExportRecord for LayerRegion {
    const TASK: Task = Task::Layers;

    fn contour(&self) -> &[[i32; 2]] {
        &self.contour
    }

    fn store_properties(&self, classes: &[String]) -> String {
        to_python_json(&LayerProperties {
            bbox: self.bbox,
            class: class_value(classes, Some(u32::from(self.type_id))),
        })
    }

    fn feature_properties<'a>(&self, classes: &'a [String]) -> FeatureProperties<'a> {
        FeatureProperties {
            object_type: "annotation",
            classification: Some(classification(classes, u32::from(self.type_id))),
            prob: None,
        }
    }

    fn write_zarr(
        &self,
        zarr: &mut ZarrOutput,
        id: u64,
        points: &[[i64; 2]],
    ) -> Result<(), ExportError> {
        zarr.write_layer(id, self, points)
    }
}

/// What the preparing threads need to know (owned: the writing side holds the exporter).
#[derive(Debug)]
struct Preparer {
    stem: String,
    task: Task,
    scale: [f64; 2],
    classes: Vec<String>,
    /// A `.db` takes the records.
    store: bool,
    /// A GeoJSON takes the records.
    geojson: bool,
}

/// One record made ready for the vector outputs.
#[derive(Debug)]
struct Prepared {
    repair: Repair,
    /// Polygons of the geometry.
    parts: usize,
    row: Option<std::io::Result<StoreRow>>,
    feature: Option<serde_json::Result<FeatureJson>>,
}

impl Preparer {
    /// The geometry, key, `.db` row and GeoJSON feature of record `id` (its contour was
    /// checked to be non-empty).
    fn prepare<T: ExportRecord>(&self, id: u64, record: &T) -> Prepared {
        let geometry = ValidGeometry::from_contour(record.contour(), self.scale)
            .expect("the contour was checked to be non-empty");
        let key = annotation_key(&self.stem, self.task, id).to_string();
        let feature = self
            .geojson
            .then(|| FeatureJson::new(&key, &geometry, &record.feature_properties(&self.classes)));
        let row = self
            .store
            .then(|| StoreRow::new(key, &geometry, record.store_properties(&self.classes)));
        Prepared {
            repair: geometry.repair,
            parts: geometry.polygons.len(),
            row,
            feature,
        }
    }
}

impl SlideExporter {
    /// Check the outputs ([`check_outputs`]) and create every output under its temporary name,
    /// with the default Zarr layout.
    ///
    /// # Errors
    /// Those of [`check_outputs`]; file-system, SQLite and Zarr errors creating the temporary
    /// outputs (with their path). On error nothing is left behind.
    pub fn create(spec: SlideExportSpec) -> Result<Self, ExportError> {
        Self::create_with_layout(spec, ZarrOutputLayout::default())
    }

    /// As [`create`](Self::create), with the Zarr chunking and compression given.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_with_layout(
        spec: SlideExportSpec,
        layout: ZarrOutputLayout,
    ) -> Result<Self, ExportError> {
        check_outputs(&spec)?;
        let mut exporter = Self {
            stores: Vec::new(),
            geojsons: Vec::new(),
            zarrs: Vec::new(),
            last_nucleus: None,
            last_layer: None,
            nuclei: 0,
            layers: 0,
            final_row: 0,
            split_polygons: 0,
            pixel_square_polygons: 0,
            #[cfg(test)]
            fail_after: None,
            spec,
        };
        let paths = exporter.spec.paths.clone();
        for (task, format, path) in &paths {
            match format {
                Format::AnnotationStore => exporter.stores.push((
                    *task,
                    AnnotationStoreWriter::create(path, &exporter.spec.provenance)?,
                )),
                Format::QuPath => exporter.geojsons.push((
                    *task,
                    GeojsonWriter::create(path, exporter.spec.gzip_geojson)?,
                )),
                Format::Zarr => {
                    if exporter.zarrs.iter().any(|z| z.final_path() == path) {
                        continue;
                    }
                    let tasks: Vec<Task> = paths
                        .iter()
                        .filter(|(_, f, p)| *f == Format::Zarr && p == path)
                        .map(|(t, _, _)| *t)
                        .collect();
                    exporter
                        .zarrs
                        .push(ZarrOutput::create(path, &tasks, &exporter.spec, layout)?);
                }
            }
        }
        tracing::debug!(slide = %exporter.spec.slide_path.display(), outputs = paths.len(), "export started");
        Ok(exporter)
    }

    /// Where the stitch stage may write a `probabilities` Zarr hierarchy: a path inside the
    /// (temporary) Zarr store that does not exist yet. Whatever is written there moves with the
    /// store at [`finish`](Self::finish) (to `<store>/probabilities`) or is removed with it.
    /// `None` without a Zarr output.
    #[must_use]
    pub fn probabilities_dir(&self) -> Option<PathBuf> {
        self.zarrs.first().map(ZarrOutput::probabilities_dir)
    }

    /// Bytes of dense-map tiles held in memory now (see the crate docs, "Memory").
    #[must_use]
    pub fn map_buffer_bytes(&self) -> u64 {
        self.zarrs.iter().map(ZarrOutput::buffer_bytes).sum()
    }

    fn invalid(&self, task: Task, id: u64, reason: String) -> ExportError {
        ExportError::InvalidRecord {
            slide: self.spec.slide_path.clone(),
            task,
            id,
            reason,
        }
    }

    /// Whether a dense map of `task` is being written (the only thing `rows_final` constrains).
    fn map_saved(&self, task: Task) -> bool {
        let saved = match task {
            Task::Nuclei => self.spec.save_instance_map,
            Task::Layers => self.spec.save_layer_map,
        };
        saved && self.zarrs.iter().any(|z| z.has(task))
    }

    /// The id of the last record of `task` written.
    fn last_id(&self, task: Task) -> Option<u64> {
        match task {
            Task::Nuclei => self.last_nucleus,
            Task::Layers => self.last_layer,
        }
    }

    /// Checks of one record, `pending` records of the batch before it having passed them.
    #[cfg_attr(not(test), allow(unused_variables))]
    fn check_record(
        &self,
        task: Task,
        id: u64,
        last: Option<u64>,
        contour: &[[i32; 2]],
        pending: u64,
    ) -> Result<(), ExportError> {
        if id == 0 {
            return Err(self.invalid(task, id, "id 0 is the background of the maps".into()));
        }
        if let Some(previous) = last
            && id <= previous
        {
            return Err(ExportError::RecordOrder {
                slide: self.spec.slide_path.clone(),
                task,
                id,
                previous,
            });
        }
        let Some(top) = contour.iter().map(|p| i64::from(p[1])).min() else {
            return Err(self.invalid(task, id, "the contour has no point".into()));
        };
        if self.final_row > 0 && top < self.final_row as i64 && self.map_saved(task) {
            return Err(ExportError::RowsAlreadyFinal {
                slide: self.spec.slide_path.clone(),
                task,
                id,
                row: top,
                final_row: self.final_row,
            });
        }
        #[cfg(test)]
        if let Some(n) = self.fail_after {
            let written = self.nuclei + self.layers + pending;
            if written >= n {
                return Err(ExportError::io(
                    "write (injected fault)",
                    self.spec.paths[0].2.clone(),
                    std::io::Error::other("injected"),
                ));
            }
        }
        if task == Task::Nuclei
            && self.spec.save_instance_map
            && id > u64::from(u32::MAX)
            && self.zarrs.iter().any(|z| z.has(task))
        {
            return Err(self.invalid(
                task,
                id,
                "ids above 4294967295 do not fit the u32 instance map".into(),
            ));
        }
        Ok(())
    }

    /// How many records of `batch` pass their checks before the first that fails, and that
    /// failure.
    fn check_batch<T: ExportRecord>(
        &self,
        batch: &[MergedItem<T>],
    ) -> (usize, Option<ExportError>) {
        let mut last = self.last_id(T::TASK);
        for (k, record) in batch.iter().enumerate() {
            if let Err(e) =
                self.check_record(T::TASK, record.id, last, record.item.contour(), k as u64)
            {
                return (k, Some(e));
            }
            last = Some(record.id);
        }
        (batch.len(), None)
    }

    /// What the preparing threads need for records of `task`, or `None` when no `.db` or
    /// GeoJSON takes them.
    fn preparer(&self, task: Task) -> Option<Preparer> {
        let store = self.stores.iter().any(|(t, _)| *t == task);
        let geojson = self.geojsons.iter().any(|(t, _)| *t == task);
        (store || geojson).then(|| Preparer {
            stem: self.spec.stem.clone(),
            task,
            scale: self.spec.scale_factor,
            classes: match task {
                Task::Nuclei => self.spec.nuclei_classes.clone(),
                Task::Layers => self.spec.layer_classes.clone(),
            },
            store,
            geojson,
        })
    }

    /// Check a batch, then prepare its records' rows and features on the rayon pool, `STEP`
    /// records at a time, while the previous step's are written in order (so the files are
    /// the same as written one record at a time). Records before the first failing one are
    /// written, then its error is returned.
    fn write_records<T: ExportRecord>(
        &mut self,
        batch: &[MergedItem<T>],
    ) -> Result<(), ExportError> {
        let (valid, error) = self.check_batch(batch);
        let steps: Vec<&[MergedItem<T>]> = batch[..valid].chunks(STEP).collect();
        match self.preparer(T::TASK) {
            None => {
                for step in &steps {
                    self.write_prepared(step, None)?;
                }
            }
            Some(preparer) => {
                let prepare = |step: &[MergedItem<T>]| -> Vec<Prepared> {
                    step.par_iter()
                        .map(|r| preparer.prepare(r.id, &r.item))
                        .collect()
                };
                let mut ready = steps.first().map(|step| prepare(step));
                for (k, step) in steps.iter().enumerate() {
                    let current = ready.take();
                    let (next, written) = rayon::join(
                        || steps.get(k + 1).map(|s| prepare(s)),
                        || self.write_prepared(step, current),
                    );
                    written?;
                    ready = next;
                }
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// Write checked records in order, with their prepared rows and features (`None`: no
    /// `.db` or GeoJSON takes them).
    fn write_prepared<T: ExportRecord>(
        &mut self,
        records: &[MergedItem<T>],
        prepared: Option<Vec<Prepared>>,
    ) -> Result<(), ExportError> {
        let task = T::TASK;
        let mut prepared = prepared.map(Vec::into_iter);
        for MergedItem { id, item, .. } in records {
            let id = *id;
            if let Some(p) = prepared.as_mut().and_then(Iterator::next) {
                match p.repair {
                    Repair::None => {}
                    Repair::SplitLoops => {
                        self.split_polygons += 1;
                        tracing::debug!(%task, id, parts = p.parts, "self-touching contour split into its loops");
                    }
                    Repair::PixelSquares => {
                        self.pixel_square_polygons += 1;
                        tracing::debug!(%task, id, "degenerate contour replaced by its pixel squares");
                    }
                }
                if let Some(row) = &p.row {
                    for (_, store) in self.stores.iter_mut().filter(|(t, _)| *t == task) {
                        let row = row.as_ref().map_err(|e| {
                            ExportError::io(
                                "compress a geometry for",
                                store.temp_path(),
                                std::io::Error::new(e.kind(), e.to_string()),
                            )
                        })?;
                        store.append(row)?;
                    }
                }
                if let Some(feature) = &p.feature {
                    for (_, geojson) in self.geojsons.iter_mut().filter(|(t, _)| *t == task) {
                        let feature = feature.as_ref().map_err(|e| {
                            ExportError::io(
                                "serialise a feature for",
                                geojson.temp_path(),
                                std::io::Error::other(e.to_string()),
                            )
                        })?;
                        geojson.append(feature)?;
                    }
                }
            }
            if !self.zarrs.is_empty() {
                let points: Vec<[i64; 2]> = item
                    .contour()
                    .iter()
                    .map(|&[x, y]| [i64::from(x), i64::from(y)])
                    .collect();
                for zarr in &mut self.zarrs {
                    item.write_zarr(zarr, id, &points)?;
                }
            }
            match task {
                Task::Nuclei => {
                    self.last_nucleus = Some(id);
                    self.nuclei += 1;
                }
                Task::Layers => {
                    self.last_layer = Some(id);
                    self.layers += 1;
                }
            }
        }
        Ok(())
    }

    /// Write final nuclei, as `instmerge` hands them out (ids increasing, across calls too).
    ///
    /// Each nucleus's [`MergedItem::id`] must be > 0: it is the value of the nucleus's pixels in
    /// the Zarr instance map and the seed of its annotation key. The [`NucleusInstance`] must be
    /// in the **slide frame** at the **processing resolution** (the canvas offset already added,
    /// [`NucleusInstance::translate`]), with TIAToolbox's conventions: contour points are the
    /// centres of the border pixels (`cv2.findContours` output, `[x, y]`, not closed: the first
    /// point is not repeated), `bbox` is `[x0, y0, x1, y1]` with exclusive `x1, y1`, `centroid`
    /// is `[x, y]` in the pixel-index frame (no `+0.5`). `type_id` indexes
    /// [`SlideExportSpec::nuclei_classes`]; `type_id` and `type_prob` are `None` without a type
    /// head. The `label` and [`MergedItem::tile_index`] are not written.
    ///
    /// The geometry, key, compressed `.db` row and GeoJSON feature of each nucleus are computed
    /// on the rayon pool (the current one, else the global one), overlapping the ordered writes;
    /// the files are the same whatever the thread count.
    ///
    /// # Errors
    /// [`ExportError::InvalidRecord`] (id 0, empty contour, id above `u32::MAX` with an
    /// instance map), [`ExportError::RecordOrder`], [`ExportError::RowsAlreadyFinal`], and write
    /// errors. The nuclei of the batch before the failing one are written. After an error the
    /// exporter should be dropped (which removes the partial files).
    pub fn write_nuclei(
        &mut self,
        batch: &[MergedItem<NucleusInstance>],
    ) -> Result<(), ExportError> {
        self.write_records(batch)
    }

    /// Write tissue-layer polygons (HoVer-Net+ `layer_segmentation`), as `instmerge` hands them
    /// out (ids > 0, increasing, across calls too).
    ///
    /// Same coordinate conventions as [`write_nuclei`](Self::write_nuclei); `type_id` indexes
    /// [`SlideExportSpec::layer_classes`]. As in TIAToolbox's `_get_layer_info`, a class may have
    /// several polygons, each with the box of the whole class, and a hole of a layer arrives as a
    /// polygon of its own with the same type (QUIRK kept in the `.db` and GeoJSON). The Zarr
    /// layer map reads the polygons of a class even-odd: a hole, inside two of them, stays
    /// background.
    ///
    /// # Errors
    /// As [`write_nuclei`](Self::write_nuclei).
    pub fn write_layers(&mut self, batch: &[MergedItem<LayerRegion>]) -> Result<(), ExportError> {
        self.write_records(batch)
    }

    /// Declare that no later record of a task with a dense map (`instance_map`, `layer_map`)
    /// touches rows `< y` (processing resolution, slide frame): the map shard rows above `y` are
    /// written and freed. Records of a task without a map are not constrained. A `y` below an
    /// earlier one is ignored.
    ///
    /// # Errors
    /// Zarr write errors.
    pub fn rows_final(&mut self, y: u64) -> Result<(), ExportError> {
        if y <= self.final_row {
            return Ok(());
        }
        self.final_row = y;
        for zarr in &mut self.zarrs {
            zarr.rows_final(y)?;
        }
        Ok(())
    }

    /// Finish every output (remaining map rows, table shapes, `COMMIT`, closing the GeoJSON
    /// collection), fsync it, then rename each into place (replacing an existing output only
    /// now, with `overwrite`).
    ///
    /// # Errors
    /// Any write, fsync or rename error; then no temporary is left, and only outputs renamed
    /// before the failing one exist under their final names (each complete).
    pub fn finish(mut self) -> Result<ExportSummary, ExportError> {
        for (_, store) in &mut self.stores {
            store.finalize()?;
        }
        for (_, geojson) in &mut self.geojsons {
            geojson.finalize()?;
        }
        for zarr in &mut self.zarrs {
            zarr.finalize()?;
        }
        let overwrite = self.spec.overwrite;
        let mut files: Vec<(PathBuf, FileSummary)> = Vec::new();
        for (task, store) in &mut self.stores {
            store.commit(overwrite)?;
            files.push(summary(
                store.final_path(),
                Format::AnnotationStore,
                vec![*task],
                store.records(),
            ));
        }
        for (task, geojson) in &mut self.geojsons {
            geojson.commit(overwrite)?;
            files.push(summary(
                geojson.final_path(),
                Format::QuPath,
                vec![*task],
                geojson.records(),
            ));
        }
        for zarr in &mut self.zarrs {
            zarr.commit(overwrite)?;
            files.push(summary(
                zarr.final_path(),
                Format::Zarr,
                zarr.tasks(),
                zarr.records(),
            ));
        }
        // In the order of spec.paths (a Zarr store once).
        let mut ordered = Vec::new();
        for (_, _, path) in &self.spec.paths {
            if let Some(k) = files.iter().position(|(p, _)| p == path) {
                ordered.push(files.remove(k).1);
            }
        }
        let result = ExportSummary {
            nuclei: self.nuclei,
            layers: self.layers,
            split_polygons: self.split_polygons,
            pixel_square_polygons: self.pixel_square_polygons,
            files: ordered,
        };
        if result.split_polygons + result.pixel_square_polygons > 0 {
            tracing::warn!(
                slide = %self.spec.slide_path.display(),
                split = result.split_polygons,
                pixel_squares = result.pixel_square_polygons,
                "invalid contours were repaired into valid polygons"
            );
        }
        tracing::debug!(slide = %self.spec.slide_path.display(), nuclei = result.nuclei, layers = result.layers, "export finished");
        Ok(result)
    }
}

fn summary(path: &Path, format: Format, tasks: Vec<Task>, records: u64) -> (PathBuf, FileSummary) {
    (
        path.to_path_buf(),
        FileSummary {
            path: path.to_path_buf(),
            format,
            tasks,
            records,
            bytes: size_on_disk(path),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> SlideExportSpec {
        let paths = [
            (Format::AnnotationStore, "f.db"),
            (Format::QuPath, "f.geojson"),
            (Format::Zarr, "f.zarr"),
        ]
        .map(|(format, name)| (Task::Nuclei, format, dir.join(name)))
        .to_vec();
        SlideExportSpec {
            slide_path: "f.svs".into(),
            stem: "f".into(),
            paths,
            overwrite: true,
            gzip_geojson: true,
            scale_factor: [1.0, 1.0],
            processing_size: [100, 100],
            processing_mpp: None,
            baseline_mpp: None,
            nuclei_classes: Vec::new(),
            layer_classes: Vec::new(),
            save_instance_map: true,
            save_layer_map: false,
            provenance: serde_json::Value::Null,
        }
    }

    fn nucleus(id: u64) -> MergedItem<NucleusInstance> {
        let x = (id as i32 % 10) * 10;
        let y = (id as i32 / 10) * 10;
        MergedItem {
            id,
            tile_index: 0,
            item: NucleusInstance {
                label: id as i32,
                contour: vec![[x, y], [x + 3, y], [x + 3, y + 3], [x, y + 3]],
                bbox: [x, y, x + 4, y + 4],
                centroid: [f64::from(x) + 1.5, f64::from(y) + 1.5],
                type_id: None,
                type_prob: None,
            },
        }
    }

    #[test]
    fn injected_write_fault_leaves_old_outputs_and_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.db"), "previous run").unwrap();
        let mut exporter = SlideExporter::create(spec(dir.path())).unwrap();
        exporter.fail_after = Some(25);
        let batch: Vec<_> = (1..=40).map(nucleus).collect();
        let err = exporter.write_nuclei(&batch).unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(exporter.nuclei, 25);
        drop(exporter);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f.db"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f.db")).unwrap(),
            "previous run"
        );
    }

    #[test]
    fn records_before_a_failing_one_are_written_across_steps() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        spec.processing_size = [100, 1000];
        let mut exporter = SlideExporter::create(spec).unwrap();
        let mut batch: Vec<_> = (1..=700).map(nucleus).collect();
        batch[600].id = 5; // out of order, two steps in
        let err = exporter.write_nuclei(&batch).unwrap_err();
        assert!(
            matches!(
                err,
                ExportError::RecordOrder {
                    id: 5,
                    previous: 600,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!((exporter.nuclei, exporter.last_nucleus), (600, Some(600)));
        assert!(exporter.stores.iter().all(|(_, s)| s.records() == 600));
        assert!(exporter.geojsons.iter().all(|(_, g)| g.records() == 600));
        assert!(exporter.zarrs.iter().all(|z| z.records() == 600));
    }

    #[test]
    fn summary_lists_files_in_spec_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut exporter = SlideExporter::create(spec(dir.path())).unwrap();
        exporter
            .write_nuclei(&(1..=12).map(nucleus).collect::<Vec<_>>())
            .unwrap();
        let summary = exporter.finish().unwrap();
        let formats: Vec<Format> = summary.files.iter().map(|f| f.format).collect();
        assert_eq!(
            formats,
            [Format::AnnotationStore, Format::QuPath, Format::Zarr]
        );
        assert!(summary.files.iter().all(|f| f.records == 12 && f.bytes > 0));
        assert_eq!(summary.nuclei, 12);
    }
}

//! The real outputs: the export crate's [`SlideExporter`] (SQLite AnnotationStore, QuPath
//! GeoJSON, Zarr V3) behind the [`SlideOutput`] trait.

use std::path::PathBuf;

use mtseg_export::{Format, SlideExportSpec, SlideExporter, Task};
use mtseg_instmerge::MergedItem;
use mtseg_io_config::OutputFormat;
use mtseg_postproc::{LayerRegion, NucleusInstance};

use crate::slide_output::{OutputError, OutputProvider, SlideOutput, SlideOutputSpec};

/// Writes every configured format with the export crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExportOutputs;

/// The export crate's spec for a slide.
pub fn export_spec(spec: &SlideOutputSpec) -> SlideExportSpec {
    let task = |name: &str| {
        if name == Task::Layers.name() {
            Task::Layers
        } else {
            Task::Nuclei
        }
    };
    let has_layers = !spec.layer_classes.is_empty()
        && spec
            .paths
            .iter()
            .any(|(t, f, _)| t == Task::Layers.name() || (*f == OutputFormat::Zarr && t == "all"));
    let mut paths = Vec::new();
    for (t, format, path) in &spec.paths {
        match format {
            OutputFormat::AnnotationStore => {
                paths.push((task(t), Format::AnnotationStore, path.clone()));
            }
            OutputFormat::QuPath => paths.push((task(t), Format::QuPath, path.clone())),
            OutputFormat::Zarr => {
                paths.push((Task::Nuclei, Format::Zarr, path.clone()));
                if has_layers {
                    paths.push((Task::Layers, Format::Zarr, path.clone()));
                }
            }
        }
    }
    SlideExportSpec {
        slide_path: spec.slide.clone(),
        stem: spec.stem.clone(),
        paths,
        overwrite: spec.overwrite,
        gzip_geojson: spec.gzip_geojson,
        scale_factor: spec.scale_factor,
        processing_size: spec.processing_size,
        processing_mpp: spec.processing_mpp,
        baseline_mpp: spec.baseline_mpp,
        nuclei_classes: spec.nuclei_classes.clone(),
        layer_classes: spec.layer_classes.clone(),
        save_instance_map: spec.save_maps,
        save_layer_map: spec.save_maps && has_layers,
        provenance: spec.provenance.clone(),
    }
}

struct ExportOutput(SlideExporter);

impl SlideOutput for ExportOutput {
    fn nuclei(&mut self, items: &[MergedItem<NucleusInstance>]) -> Result<(), OutputError> {
        Ok(self.0.write_nuclei(items)?)
    }

    fn layers(&mut self, items: &[MergedItem<LayerRegion>]) -> Result<(), OutputError> {
        Ok(self.0.write_layers(items)?)
    }

    fn rows_final(&mut self, y: u64) -> Result<(), OutputError> {
        Ok(self.0.rows_final(y)?)
    }

    fn probabilities_dir(&self) -> Option<PathBuf> {
        self.0.probabilities_dir()
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
        let summary = self.0.finish()?;
        Ok(summary.files.into_iter().map(|f| f.path).collect())
    }
}

impl OutputProvider for ExportOutputs {
    fn create(&self, spec: &SlideOutputSpec) -> Result<Box<dyn SlideOutput>, OutputError> {
        Ok(Box::new(ExportOutput(SlideExporter::create(export_spec(
            spec,
        ))?)))
    }
}

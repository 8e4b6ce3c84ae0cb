//! The real outputs: the export crate's [`SlideExporter`] (SQLite AnnotationStore, QuPath
//! GeoJSON, Zarr V3) behind the [`SlideOutput`] trait.

use std::path::PathBuf;

use mtseg_export::{SlideExportSpec, SlideExporter};
use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};

use crate::slide_output::{OutputError, OutputProvider, SlideOutput};

/// Writes every configured format with the export crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExportOutputs;

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
    fn create(&self, spec: &SlideExportSpec) -> Result<Box<dyn SlideOutput>, OutputError> {
        Ok(Box::new(ExportOutput(SlideExporter::create(spec.clone())?)))
    }
}

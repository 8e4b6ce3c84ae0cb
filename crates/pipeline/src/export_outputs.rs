//! The real outputs: the export crate's [`SlideExporter`] (SQLite AnnotationStore, QuPath
//! GeoJSON, Zarr V3) behind the [`SlideOutput`] trait.

use std::path::PathBuf;

use mtseg_export::{LayerRecord, NucleusRecord, SlideExportSpec, SlideExporter};
use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};

use crate::slide_output::{OutputError, OutputProvider, SlideOutput};

/// Writes every configured format with the export crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExportOutputs;

/// The export crate's record of a final nucleus.
pub(crate) fn nucleus_record(m: &MergedItem<NucleusInstance>) -> NucleusRecord {
    NucleusRecord {
        id: m.id,
        contour: m.item.contour.clone(),
        bbox: m.item.bbox,
        centroid: m.item.centroid,
        type_id: m.item.type_id,
        type_prob: m.item.type_prob,
    }
}

struct ExportOutput(SlideExporter);

impl SlideOutput for ExportOutput {
    fn nuclei(&mut self, items: &[MergedItem<NucleusInstance>]) -> Result<(), OutputError> {
        let records: Vec<NucleusRecord> = items.iter().map(nucleus_record).collect();
        Ok(self.0.write_nuclei(&records)?)
    }

    fn layers(&mut self, items: &[MergedItem<LayerRegion>]) -> Result<(), OutputError> {
        let records: Vec<LayerRecord> = items
            .iter()
            .map(|m| LayerRecord {
                id: m.id,
                contour: m.item.contour.clone(),
                bbox: m.item.bbox,
                type_id: u32::from(m.item.type_id),
            })
            .collect();
        Ok(self.0.write_layers(&records)?)
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

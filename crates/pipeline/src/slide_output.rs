//! Where a slide's final instances go: the [`SlideOutput`] trait (the export crate's writers
//! behind it in a real run, memory in tests) and the [`OutputProvider`] that makes one per
//! slide.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mtseg_export::SlideExportSpec;
use mtseg_instmerge::MergedItem;
use mtseg_postproc::{LayerRegion, NucleusInstance};

/// An output error, with its cause chain (the export crate's errors name the file).
pub type OutputError = Box<dyn std::error::Error + Send + Sync>;

/// The writers of one slide. Calls come from one thread, in this order: any number of
/// `nuclei` / `layers` / `rows_final`, then `finish`. Dropping it without `finish` must leave
/// nothing under a final name.
pub trait SlideOutput: Send {
    /// Final nuclei, ascending id, slide coordinates at the processing resolution.
    ///
    /// # Errors
    /// A write error (naming the file).
    fn nuclei(&mut self, items: &[MergedItem<NucleusInstance>]) -> Result<(), OutputError>;
    /// Final layer polygons, ascending id, slide coordinates.
    ///
    /// # Errors
    /// A write error.
    fn layers(&mut self, items: &[MergedItem<LayerRegion>]) -> Result<(), OutputError>;
    /// No later instance touches a slide row above `y` (processing resolution).
    ///
    /// # Errors
    /// A write error.
    fn rows_final(&mut self, y: u64) -> Result<(), OutputError>;
    /// Where the stitched probability maps go (a directory inside a temporary output), if
    /// this output keeps them.
    fn probabilities_dir(&self) -> Option<PathBuf>;
    /// Completes every file and moves it to its final name; returns the final paths.
    ///
    /// # Errors
    /// A write or rename error.
    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError>;
}

/// Makes the outputs of each slide.
pub trait OutputProvider: Send + Sync {
    /// Opens the outputs of one slide (under temporary names).
    ///
    /// # Errors
    /// Why not, naming the path.
    fn create(&self, spec: &SlideExportSpec) -> Result<Box<dyn SlideOutput>, OutputError>;
}

/// Everything one slide produced, kept in memory (tests and library use).
#[derive(Debug, Clone, Default)]
pub struct CollectedSlide {
    /// The spec the pipeline gave.
    pub spec: Option<SlideExportSpec>,
    /// Nuclei in the order they came.
    pub nuclei: Vec<MergedItem<NucleusInstance>>,
    /// Layer polygons in the order they came.
    pub layers: Vec<MergedItem<LayerRegion>>,
    /// The `rows_final` calls.
    pub rows_final: Vec<u64>,
    /// Whether `finish` was called.
    pub finished: bool,
}

/// An [`OutputProvider`] that keeps everything in memory, one [`CollectedSlide`] per slide in
/// creation order.
#[derive(Debug, Clone, Default)]
pub struct MemoryOutputs {
    slides: Arc<Mutex<Vec<CollectedSlide>>>,
}

impl MemoryOutputs {
    /// A copy of what was collected so far.
    pub fn collected(&self) -> Vec<CollectedSlide> {
        self.slides
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

struct MemoryOutput {
    slides: Arc<Mutex<Vec<CollectedSlide>>>,
    index: usize,
}

impl MemoryOutput {
    fn with(&self, f: impl FnOnce(&mut CollectedSlide)) {
        let mut s = self
            .slides
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s[self.index]);
    }
}

impl SlideOutput for MemoryOutput {
    fn nuclei(&mut self, items: &[MergedItem<NucleusInstance>]) -> Result<(), OutputError> {
        self.with(|s| s.nuclei.extend_from_slice(items));
        Ok(())
    }
    fn layers(&mut self, items: &[MergedItem<LayerRegion>]) -> Result<(), OutputError> {
        self.with(|s| s.layers.extend_from_slice(items));
        Ok(())
    }
    fn rows_final(&mut self, y: u64) -> Result<(), OutputError> {
        self.with(|s| s.rows_final.push(y));
        Ok(())
    }
    fn probabilities_dir(&self) -> Option<PathBuf> {
        None
    }
    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
        self.with(|s| s.finished = true);
        Ok(Vec::new())
    }
}

impl OutputProvider for MemoryOutputs {
    fn create(&self, spec: &SlideExportSpec) -> Result<Box<dyn SlideOutput>, OutputError> {
        let mut slides = self
            .slides
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slides.push(CollectedSlide {
            spec: Some(spec.clone()),
            ..CollectedSlide::default()
        });
        Ok(Box::new(MemoryOutput {
            slides: Arc::clone(&self.slides),
            index: slides.len() - 1,
        }))
    }
}

//! The oracle test model ([`OracleModel`]) as a pipeline [`ModelProvider`]: one oracle for the
//! whole run that renders, for each patch, the HoVer-Net (or, with layers, HoVer-Net+) targets of
//! the known labels under the patch's place on the slide, which it reads from the batch. Shared
//! by the pipeline's end-to-end tests and its end-to-end bench, which include this file with
//! `#[path]`. It counts the models it builds ([`OracleProvider::loads`]).

// Each including target uses its own part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mtseg_infer::LoadError;
use mtseg_pipeline::{ModelFactory, ModelProvider};
use mtseg_test_models::{LabelSource, OracleModel};

/// Makes an oracle over `source` for every slide, from the slide's patch grid.
pub(crate) struct OracleProvider {
    source: Arc<dyn LabelSource>,
    layers: bool,
    loads: Arc<AtomicUsize>,
}

impl OracleProvider {
    /// HoVer-Net heads (np, hv, tp) rendered from `source`.
    pub(crate) fn new(source: Arc<dyn LabelSource>) -> Self {
        Self {
            source,
            layers: false,
            loads: Arc::default(),
        }
    }

    /// Models built so far (one per run).
    pub(crate) fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// HoVer-Net+ heads: an `ls` head too, from `source`'s layer raster.
    pub(crate) fn with_layers(mut self) -> Self {
        self.layers = true;
        self
    }
}

impl ModelProvider for OracleProvider {
    fn factory(&self) -> Result<ModelFactory, LoadError> {
        let source = Arc::clone(&self.source);
        let layers = self.layers;
        let loads = Arc::clone(&self.loads);
        Ok(Box::new(move || {
            loads.fetch_add(1, Ordering::SeqCst);
            let m = OracleModel::from_batches(source)
                .layers(layers)
                .build()
                .map_err(|e| LoadError::InvalidArchitecture {
                    detail: e.to_string(),
                })?;
            Ok(Box::new(m) as Box<dyn mtseg_infer::Model>)
        }))
    }
}

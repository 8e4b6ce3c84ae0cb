//! The oracle test model ([`OracleModel`]) as a pipeline [`ModelProvider`]: per slide, an oracle
//! whose patch `i` renders the HoVer-Net (or, with layers, HoVer-Net+) targets of the known
//! labels under that slide's grid box `i`. Shared by the pipeline's end-to-end tests and its
//! end-to-end bench, which include this file with `#[path]`.

// Each including target uses its own part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use mtseg_infer::LoadError;
use mtseg_pipeline::{ModelFactory, ModelProvider, SlideModelContext};
use mtseg_test_models::{LabelSource, OracleModel};

/// Makes an oracle over `source` for every slide, from the slide's patch grid.
pub(crate) struct OracleProvider {
    source: Arc<dyn LabelSource>,
    layers: bool,
}

impl OracleProvider {
    /// HoVer-Net heads (np, hv, tp) rendered from `source`.
    pub(crate) fn new(source: Arc<dyn LabelSource>) -> Self {
        Self {
            source,
            layers: false,
        }
    }

    /// HoVer-Net+ heads: an `ls` head too, from `source`'s layer raster.
    pub(crate) fn with_layers(mut self) -> Self {
        self.layers = true;
        self
    }
}

impl ModelProvider for OracleProvider {
    fn factory(&self, ctx: &SlideModelContext<'_>) -> Result<ModelFactory, LoadError> {
        let grid = ctx.grid.clone();
        let source = Arc::clone(&self.source);
        let layers = self.layers;
        Ok(Box::new(move || {
            let m = OracleModel::builder(source, move |i| {
                grid.get(i).map(|b| [b.input[0], b.input[1]])
            })
            .layers(layers)
            .build()
            .map_err(|e| LoadError::InvalidArchitecture {
                detail: e.to_string(),
            })?;
            Ok(Box::new(m) as Box<dyn mtseg_infer::Model>)
        }))
    }
}

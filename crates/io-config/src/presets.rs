//! The IO configs of TIAToolbox's five pretrained HoVer-Net models, copied from TIAToolbox 2.1.3's
//! `tiatoolbox/data/pretrained_model.yaml` (architecture kwargs and `ioconfig` kwargs).
//!
//! All five read and write at the same resolution (TIAToolbox's `output_resolutions` equal the
//! input one) and use `margin = 128`.

use mtseg_types::{Architecture, Size2};

use crate::model_io::{ModelIo, ResolutionSpec};

/// A named, complete model setup: architecture, IO shapes and class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// The TIAToolbox name, e.g. `hovernet_fast-pannuke`.
    pub name: &'static str,
    /// The network.
    pub architecture: Architecture,
    /// Resolution, patch shapes, stride, post-processing tile and margin.
    pub io: ModelIo,
    /// Nucleus class names, index = class id (empty when the model has no type head).
    pub nuclei_classes: &'static [&'static str],
    /// Tissue-layer class names (HoVer-Net+ only), index = class id.
    pub layer_classes: &'static [&'static str],
}

const PANNUKE: &[&str] = &[
    "Background",
    "Neoplastic",
    "Inflammatory",
    "Connective",
    "Dead",
    "Non-Neoplastic Epithelial",
];
const MONUSAC: &[&str] = &[
    "Background",
    "Epithelial",
    "Lymphocyte",
    "Macrophage",
    "Neutrophil",
];
const CONSEP: &[&str] = &[
    "Background",
    "Epithelial",
    "Inflammatory",
    "Spindle-Shaped",
    "Miscellaneous",
];
const OED_NUCLEI: &[&str] = &["Background", "Other", "Epithelial"];
const OED_LAYERS: &[&str] = &[
    "Background",
    "Other Tissue",
    "Basal Epithelium",
    "(Core) Epithelium",
    "Keratin",
];

fn io(mpp: f64, input: u64, output: u64, tile: u64) -> ModelIo {
    ModelIo {
        resolution: ResolutionSpec::Mpp(mpp),
        patch_input: Size2::square(input),
        patch_output: Size2::square(output),
        stride: Size2::square(output),
        tile_shape: Size2::square(tile),
        margin: 128,
    }
}

/// The names of all presets, in the order TIAToolbox's yaml lists them.
pub const PRESET_NAMES: [&str; 5] = [
    "hovernet_fast-pannuke",
    "hovernet_fast-monusac",
    "hovernet_original-consep",
    "hovernet_original-kumar",
    "hovernetplus-oed",
];

/// The preset called `name`, or `None` if there is none.
pub fn preset(name: &str) -> Option<Preset> {
    let p = match name {
        "hovernet_fast-pannuke" => Preset {
            name: PRESET_NAMES[0],
            architecture: Architecture::HoVerNetFast { num_types: Some(6) },
            io: io(0.25, 256, 164, 1024),
            nuclei_classes: PANNUKE,
            layer_classes: &[],
        },
        "hovernet_fast-monusac" => Preset {
            name: PRESET_NAMES[1],
            architecture: Architecture::HoVerNetFast { num_types: Some(5) },
            io: io(0.25, 256, 164, 1024),
            nuclei_classes: MONUSAC,
            layer_classes: &[],
        },
        "hovernet_original-consep" => Preset {
            name: PRESET_NAMES[2],
            architecture: Architecture::HoVerNetOriginal { num_types: Some(5) },
            io: io(0.25, 270, 80, 1024),
            nuclei_classes: CONSEP,
            layer_classes: &[],
        },
        "hovernet_original-kumar" => Preset {
            name: PRESET_NAMES[3],
            architecture: Architecture::HoVerNetOriginal { num_types: None },
            io: io(0.25, 270, 80, 2048),
            nuclei_classes: &[],
            layer_classes: &[],
        },
        "hovernetplus-oed" => Preset {
            name: PRESET_NAMES[4],
            architecture: Architecture::HoVerNetPlus {
                num_types: 3,
                num_layers: 5,
            },
            io: io(0.5, 256, 164, 2048),
            nuclei_classes: OED_NUCLEI,
            layer_classes: OED_LAYERS,
        },
        _ => return None,
    };
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_preset_exists_and_is_consistent() {
        for name in PRESET_NAMES {
            let p = preset(name).expect("listed preset");
            assert_eq!(p.name, name);
            assert!(p.io.stride.height <= p.io.patch_output.height);
            assert!(p.io.patch_output.height <= p.io.patch_input.height);
            match p.architecture {
                Architecture::HoVerNetFast { num_types }
                | Architecture::HoVerNetFastSlim { num_types, .. }
                | Architecture::HoVerNetOriginal { num_types } => {
                    assert_eq!(num_types.map_or(0, |n| n as usize), p.nuclei_classes.len());
                }
                Architecture::HoVerNetPlus {
                    num_types,
                    num_layers,
                } => {
                    assert_eq!(num_types as usize, p.nuclei_classes.len());
                    assert_eq!(num_layers as usize, p.layer_classes.len());
                }
                Architecture::TorchScript { .. } => panic!("no TorchScript preset"),
            }
        }
        assert!(preset("hovernet").is_none());
    }

    #[test]
    fn shapes_match_pretrained_model_yaml() {
        let p = preset("hovernet_original-kumar").unwrap();
        assert_eq!(p.io.patch_input, Size2::square(270));
        assert_eq!(p.io.patch_output, Size2::square(80));
        assert_eq!(p.io.tile_shape, Size2::square(2048));
        let p = preset("hovernetplus-oed").unwrap();
        assert_eq!(p.io.resolution, ResolutionSpec::Mpp(0.5));
        assert_eq!(p.io.tile_shape, Size2::square(2048));
        let p = preset("hovernet_original-consep").unwrap();
        assert_eq!(p.io.tile_shape, Size2::square(1024));
    }
}

//! The state-dict layout of TIAToolbox's HoVer-Net / HoVer-Net+: every tensor name and shape, in
//! PyTorch's registration order (the order of `model.state_dict()`), and the layer geometry that
//! the native model is built from.
//!
//! The slim variant ([`Architecture::HoVerNetFastSlim`]) has the same tensors, names and order
//! with every channel count divided by its width divisor ([`Geometry::width_divisor`]); the tables
//! below hold the full widths and [`encoder`], [`decoder`], [`dense_channels`] and [`stem`] divide
//! them.

use mtseg_types::Architecture;

/// One tensor a model needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorSpec {
    /// State-dict name, e.g. `d0.units.1.preact/bn.running_mean`.
    pub(crate) name: String,
    /// Shape.
    pub(crate) shape: Vec<usize>,
}

/// Encoder blocks: (name, in channels, [c1, c2, c3], unit count, stride).
const ENCODER: [(&str, usize, [usize; 3], usize, usize); 4] = [
    ("d0", 64, [64, 64, 256], 3, 1),
    ("d1", 256, [128, 128, 512], 4, 2),
    ("d2", 512, [256, 256, 1024], 6, 2),
    ("d3", 1024, [512, 512, 2048], 3, 2),
];

/// Decoder stages u3 and u2: (name, conva in, conva out, dense units, convf channels).
const DECODER: [(&str, usize, usize, usize, usize); 2] =
    [("u3", 1024, 256, 8, 512), ("u2", 512, 128, 4, 256)];

/// Dense unit channels: conv1 (1×1) out, conv2 (k×k, 4 groups) out.
const DENSE_CH: (usize, usize) = (128, 32);
/// Groups of the dense unit's second convolution.
pub(crate) const DENSE_GROUPS: usize = 4;
/// Full-width channels of conv0 (out), conv_bot (in, out) and u1.conva (in, out).
const STEM: Stem = Stem {
    conv0: 64,
    conv_bot: (2048, 1024),
    u1_conva: (256, 64),
};

/// Channels of the layers outside the residual and dense blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stem {
    /// conv0 output channels.
    pub(crate) conv0: usize,
    /// conv_bot input and output channels.
    pub(crate) conv_bot: (usize, usize),
    /// u1.conva input and output channels (= u0.bn channels).
    pub(crate) u1_conva: (usize, usize),
}

/// [`ENCODER`] with channels divided by `geo.width_divisor`.
pub(crate) fn encoder(geo: Geometry) -> [(&'static str, usize, [usize; 3], usize, usize); 4] {
    let d = geo.width_divisor;
    ENCODER.map(|(n, cin, ch, count, stride)| (n, cin / d, ch.map(|c| c / d), count, stride))
}

/// [`DECODER`] with channels divided by `geo.width_divisor`.
pub(crate) fn decoder(geo: Geometry) -> [(&'static str, usize, usize, usize, usize); 2] {
    let d = geo.width_divisor;
    DECODER.map(|(n, cin, cout, units, cf)| (n, cin / d, cout / d, units, cf / d))
}

/// [`DENSE_CH`] divided by `geo.width_divisor`.
pub(crate) fn dense_channels(geo: Geometry) -> (usize, usize) {
    let d = geo.width_divisor;
    (DENSE_CH.0 / d, DENSE_CH.1 / d)
}

/// conv0, conv_bot and u1.conva channels divided by `geo.width_divisor`.
pub(crate) fn stem(geo: Geometry) -> Stem {
    let d = geo.width_divisor;
    Stem {
        conv0: STEM.conv0 / d,
        conv_bot: (STEM.conv_bot.0 / d, STEM.conv_bot.1 / d),
        u1_conva: (STEM.u1_conva.0 / d, STEM.u1_conva.1 / d),
    }
}

/// Geometry of a HoVer-Net flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// "fast" mode: TF-same padding before conv0 (and decoder kernel 3) — else "original".
    pub(crate) fast: bool,
    /// Decoder kernel size (5 original, 3 fast).
    pub(crate) ksize: usize,
    /// Centre-crop amounts of d0 and d1 before the skip additions.
    pub(crate) crops: [usize; 2],
    /// Every channel count is TIAToolbox's divided by this (1 for the published networks).
    pub(crate) width_divisor: usize,
}

impl Geometry {
    pub(crate) const FAST: Self = Self {
        fast: true,
        ksize: 3,
        crops: [92, 36],
        width_divisor: 1,
    };
    pub(crate) const ORIGINAL: Self = Self {
        fast: false,
        ksize: 5,
        crops: [184, 72],
        width_divisor: 1,
    };

    /// Fast mode with channels divided by `width_divisor`.
    pub(crate) const fn fast_slim(width_divisor: usize) -> Self {
        Self {
            width_divisor,
            ..Self::FAST
        }
    }
}

/// Geometry and decoder branches (head name, out channels, in `self.decoder` order) of a native
/// architecture; `None` for TorchScript.
pub(crate) fn layout(arch: &Architecture) -> Option<(Geometry, Vec<(&'static str, usize)>)> {
    let branches = |t: Option<u32>, l: Option<u32>| {
        let mut v = Vec::new();
        if let Some(t) = t {
            v.push(("tp", t as usize));
        }
        v.push(("np", 2));
        v.push(("hv", 2));
        if let Some(l) = l {
            v.push(("ls", l as usize));
        }
        v
    };
    match arch {
        Architecture::HoVerNetFast { num_types } => {
            Some((Geometry::FAST, branches(*num_types, None)))
        }
        Architecture::HoVerNetOriginal { num_types } => {
            Some((Geometry::ORIGINAL, branches(*num_types, None)))
        }
        Architecture::HoVerNetFastSlim {
            num_types,
            width_divisor,
        } => Some((
            Geometry::fast_slim(*width_divisor as usize),
            branches(*num_types, None),
        )),
        Architecture::HoVerNetPlus {
            num_types,
            num_layers,
        } => Some((
            Geometry::FAST,
            branches(Some(*num_types), Some(*num_layers)),
        )),
        Architecture::TorchScript { .. } => None,
    }
}

struct Builder(Vec<TensorSpec>);

impl Builder {
    fn push(&mut self, name: String, shape: Vec<usize>) {
        self.0.push(TensorSpec { name, shape });
    }
    fn conv(&mut self, name: &str, cin: usize, cout: usize, k: usize, groups: usize, bias: bool) {
        self.push(format!("{name}.weight"), vec![cout, cin / groups, k, k]);
        if bias {
            self.push(format!("{name}.bias"), vec![cout]);
        }
    }
    fn bn(&mut self, name: &str, c: usize) {
        for leaf in ["weight", "bias", "running_mean", "running_var"] {
            self.push(format!("{name}.{leaf}"), vec![c]);
        }
        self.push(format!("{name}.num_batches_tracked"), vec![]);
    }
}

/// Every tensor of `arch`'s state dict in `state_dict()` order; empty for TorchScript.
pub(crate) fn expected_tensors(arch: &Architecture) -> Vec<TensorSpec> {
    let Some((geo, branches)) = layout(arch) else {
        return Vec::new();
    };
    let mut b = Builder(Vec::new());
    let stem = stem(geo);
    let dense = dense_channels(geo);
    b.conv("conv0./", 3, stem.conv0, 7, 1, false);
    b.bn("conv0.bn", stem.conv0);
    for (name, cin, ch, count, stride) in encoder(geo) {
        let mut c = cin;
        for u in 0..count {
            let p = format!("{name}.units.{u}");
            if u > 0 {
                b.bn(&format!("{p}.preact/bn"), c);
            }
            b.conv(&format!("{p}.conv1"), c, ch[0], 1, 1, false);
            b.bn(&format!("{p}.conv1/bn"), ch[0]);
            b.conv(&format!("{p}.conv2"), ch[0], ch[1], 3, 1, false);
            b.bn(&format!("{p}.conv2/bn"), ch[1]);
            b.conv(&format!("{p}.conv3"), ch[1], ch[2], 1, 1, false);
            c = ch[2];
        }
        if cin != ch[2] || stride != 1 {
            b.conv(&format!("{name}.shortcut"), cin, ch[2], 1, 1, false);
        }
        b.bn(&format!("{name}.blk_bna.bn"), ch[2]);
    }
    b.conv("conv_bot", stem.conv_bot.0, stem.conv_bot.1, 1, 1, false);
    let k = geo.ksize;
    for (head, out) in branches {
        let p = format!("decoder.{head}");
        for (stage, cin, cout, units, cf) in decoder(geo) {
            b.conv(&format!("{p}.{stage}.conva"), cin, cout, k, 1, false);
            let mut c = cout;
            for u in 0..units {
                let q = format!("{p}.{stage}.dense.units.{u}");
                b.bn(&format!("{q}.preact_bna/bn"), c);
                b.conv(&format!("{q}.conv1"), c, dense.0, 1, 1, false);
                b.bn(&format!("{q}.conv1/bn"), dense.0);
                b.conv(
                    &format!("{q}.conv2"),
                    dense.0,
                    dense.1,
                    k,
                    DENSE_GROUPS,
                    false,
                );
                c += dense.1;
            }
            b.bn(&format!("{p}.{stage}.dense.blk_bna.bn"), c);
            b.conv(&format!("{p}.{stage}.convf"), cf, cf, 1, 1, false);
        }
        let (u1_in, u1_out) = stem.u1_conva;
        b.conv(&format!("{p}.u1.conva"), u1_in, u1_out, k, 1, false);
        b.bn(&format!("{p}.u0.bn"), u1_out);
        b.conv(&format!("{p}.u0.conv"), u1_out, out, 1, 1, true);
    }
    b.push("upsample2x.unpool_mat".into(), vec![2, 2]);
    b.0
}

/// The native architecture that a set of (name, shape) pairs matches exactly, if any: used to
/// say "the file matches hovernet original (5 types) instead" in load errors.
pub(crate) fn guess_architecture<'a>(
    shape_of: impl Fn(&str) -> Option<&'a [usize]>,
    count: usize,
) -> Option<Architecture> {
    let out = |head: &str| {
        shape_of(&format!("decoder.{head}.u0.conv.weight")).and_then(|s| s.first().copied())
    };
    let k = shape_of("decoder.np.u3.conva.weight").and_then(|s| s.get(2).copied())?;
    let types = out("tp").and_then(|t| u32::try_from(t).ok());
    let layers = out("ls").and_then(|t| u32::try_from(t).ok());
    let conv0 = shape_of("conv0./.weight").and_then(|s| s.first().copied())?;
    let divisor = u32::try_from(STEM.conv0 / conv0.max(1)).ok()?;
    let arch = match (k, types, layers, divisor) {
        (3, Some(t), Some(l), 1) => Architecture::HoVerNetPlus {
            num_types: t,
            num_layers: l,
        },
        (3, t, None, 1) => Architecture::HoVerNetFast { num_types: t },
        (5, t, None, 1) => Architecture::HoVerNetOriginal { num_types: t },
        (3, t, None, d) if d != 1 && Architecture::WIDTH_DIVISORS.contains(&d) => {
            Architecture::hovernet_fast(t, d)
        }
        _ => return None,
    };
    let spec = expected_tensors(&arch);
    let matches = spec.len() == count
        && spec
            .iter()
            .all(|t| shape_of(&t.name) == Some(t.shape.as_slice()));
    matches.then_some(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_names() {
        let fast = expected_tensors(&Architecture::HoVerNetFast { num_types: Some(6) });
        assert_eq!(fast[0].name, "conv0./.weight");
        assert_eq!(fast[0].shape, [64, 3, 7, 7]);
        assert!(
            fast.iter()
                .any(|t| t.name == "decoder.np.u3.dense.units.3.conv1/bn.weight")
        );
        assert!(
            fast.iter()
                .any(|t| t.name == "d0.units.1.preact/bn.running_mean")
        );
        assert!(!fast.iter().any(|t| t.name == "d0.units.0.preact/bn.weight"));
        let grouped = fast
            .iter()
            .find(|t| t.name == "decoder.hv.u2.dense.units.0.conv2.weight");
        assert_eq!(grouped.map(|t| t.shape.clone()), Some(vec![32, 32, 3, 3]));
        let plus = expected_tensors(&Architecture::HoVerNetPlus {
            num_types: 3,
            num_layers: 5,
        });
        let none = expected_tensors(&Architecture::HoVerNetOriginal { num_types: None });
        assert!(plus.len() > fast.len() && fast.len() > none.len());
    }

    #[test]
    fn guesses_its_own_layout() {
        for arch in [
            Architecture::HoVerNetFast { num_types: Some(6) },
            Architecture::HoVerNetFastSlim {
                num_types: Some(4),
                width_divisor: 8,
            },
            Architecture::HoVerNetFastSlim {
                num_types: None,
                width_divisor: 2,
            },
            Architecture::HoVerNetOriginal { num_types: None },
            Architecture::HoVerNetPlus {
                num_types: 3,
                num_layers: 5,
            },
        ] {
            let spec = expected_tensors(&arch);
            let f = |n: &str| {
                spec.iter()
                    .find(|t| t.name == n)
                    .map(|t| t.shape.as_slice())
            };
            assert_eq!(guess_architecture(f, spec.len()), Some(arch));
        }
    }

    #[test]
    fn slim_divides_every_channel_and_keeps_names() {
        let full = expected_tensors(&Architecture::HoVerNetFast { num_types: Some(4) });
        for d in Architecture::WIDTH_DIVISORS.into_iter().filter(|&d| d != 1) {
            let slim = expected_tensors(&Architecture::HoVerNetFastSlim {
                num_types: Some(4),
                width_divisor: d,
            });
            assert_eq!(slim.len(), full.len());
            let d = d as usize;
            for (f, s) in full.iter().zip(&slim) {
                assert_eq!(f.name, s.name);
                let expect: Vec<usize> = match f.name.as_str() {
                    // input RGB, head outputs and the upsampling matrix keep their sizes
                    "conv0./.weight" => vec![f.shape[0] / d, 3, 7, 7],
                    "upsample2x.unpool_mat" => f.shape.clone(),
                    n if n.ends_with(".u0.conv.weight") => {
                        vec![f.shape[0], f.shape[1] / d, 1, 1]
                    }
                    n if n.ends_with(".u0.conv.bias") || n.ends_with("num_batches_tracked") => {
                        f.shape.clone()
                    }
                    // grouped convolution: per-group input channels divide too
                    _ if f.shape.len() == 4 => {
                        vec![f.shape[0] / d, f.shape[1] / d, f.shape[2], f.shape[3]]
                    }
                    _ => vec![f.shape[0] / d],
                };
                assert_eq!(s.shape, expect, "{}", s.name);
            }
        }
        let d8 = expected_tensors(&Architecture::HoVerNetFastSlim {
            num_types: Some(4),
            width_divisor: 8,
        });
        let grouped = d8
            .iter()
            .find(|t| t.name == "decoder.hv.u3.dense.units.7.conv2.weight");
        assert_eq!(grouped.map(|t| t.shape.clone()), Some(vec![4, 4, 3, 3]));
    }
}

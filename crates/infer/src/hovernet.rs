//! Native HoVer-Net (fast / original / fast with reduced widths) and HoVer-Net+ in libtorch.

use std::path::Path;

use tch::{Kind, Tensor};

use mtseg_types::{Architecture, HeadSpec};

use crate::errors::{InferError, LoadError};
use crate::head_transform::{input_tensor, logits_to_pending, to_nhwc_vec};
use crate::heads::{HeadOutputs, HeadTensor, PendingOutputs};
use crate::hovernet_blocks::{
    Conv, ConvSpec, DenseBlock, ParamSource, ResidualBlock, centre_crop, conv_relu,
    to_channels_last, upsample2x,
};
use crate::hovernet_spec::{DENSE_GROUPS, Geometry, decoder, encoder, layout};
use crate::model::{BatchView, Model, check_patch_size};
use crate::params::ForwardOptions;
use crate::weights::WeightSet;

/// One decoder branch (TIAToolbox `_create_decoder_branch`): u3, u2, u1, u0.
struct Branch {
    /// u3.conva; `None` when merged into [`HoVerNet::merged_u3_conva`].
    u3_conva: Option<Conv>,
    u3_dense: DenseBlock,
    u3_convf: Conv,
    u2_conva: Conv,
    u2_dense: DenseBlock,
    u2_convf: Conv,
    /// u1.conva (TF-same padding) with u0.bn folded in or kept beside it.
    u1_conva: Conv,
    u0_conv: Conv,
}

/// A HoVer-Net or HoVer-Net+ network with TIAToolbox's weights, on one device.
///
/// Built by [`crate::load_model`] (or [`HoVerNet::load`]); the [`Model::forward`] output equals
/// TIAToolbox's `infer_batch` within float rounding.
pub struct HoVerNet {
    arch: Architecture,
    heads: Vec<HeadSpec>,
    geometry: Geometry,
    device: tch::Device,
    kind: Kind,
    channels_last: bool,
    conv0: Conv,
    encoder: Vec<ResidualBlock>,
    conv_bot: Conv,
    /// u3.conva of all branches as one convolution (when [`ForwardOptions::merge_head_convs`]).
    merged_u3_conva: Option<Conv>,
    /// Branches in TIAToolbox's `self.decoder` order (tp, np, hv[, ls]) with their head index
    /// in [`HoVerNet::heads`].
    branches: Vec<(usize, Branch)>,
}

impl std::fmt::Debug for HoVerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoVerNet")
            .field("arch", &self.arch)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl HoVerNet {
    /// Reads `path` (`.pth` or `.safetensors`), checks it against `arch` and builds the network on
    /// `device` with element type `kind`: Float; BFloat16 (CPU, through oneDNN, or CUDA); Half
    /// (CUDA). Outputs are float32 whatever the kind.
    ///
    /// # Errors
    /// Any [`LoadError`] of [`WeightSet::read`] and [`WeightSet::check`];
    /// [`LoadError::InvalidArchitecture`] for [`Architecture::TorchScript`].
    pub fn load(
        path: &Path,
        arch: &Architecture,
        device: tch::Device,
        kind: Kind,
        options: &ForwardOptions,
    ) -> Result<Self, LoadError> {
        let weights = WeightSet::read(path)?;
        Self::from_weights(weights, arch, device, kind, options)
    }

    /// Like [`HoVerNet::load`], from weights already read.
    ///
    /// # Errors
    /// As [`HoVerNet::load`].
    pub fn from_weights(
        weights: WeightSet,
        arch: &Architecture,
        device: tch::Device,
        kind: Kind,
        options: &ForwardOptions,
    ) -> Result<Self, LoadError> {
        arch.validate()?;
        let Some((geometry, branch_names)) = layout(arch) else {
            return Err(LoadError::InvalidArchitecture {
                detail: format!("{arch} is not a native architecture"),
            });
        };
        weights.check(arch)?;
        let _guard = tch::no_grad_guard();
        let mut p = ParamSource {
            weights,
            device,
            kind,
            channels_last: options.channels_last,
            fold: options.fold_batch_norm,
        };
        let conv0 = p.conv(
            "conv0./",
            ConvSpec {
                tf_same: geometry.fast,
                ..ConvSpec::valid(7)
            },
            Some("conv0.bn"),
        )?;
        let encoder_spec = encoder(geometry);
        let mut encoder = Vec::with_capacity(encoder_spec.len());
        for (name, cin, ch, count, stride) in encoder_spec {
            encoder.push(ResidualBlock::load(
                &mut p,
                name,
                cin,
                ch,
                count,
                stride as i64,
            )?);
        }
        let conv_bot = p.conv("conv_bot", ConvSpec::valid(1), None)?;
        let k = geometry.ksize as i64;
        let heads = arch.heads();
        let mut branches = Vec::with_capacity(branch_names.len());
        for (head, _) in &branch_names {
            let q = format!("decoder.{head}");
            let [(u3, _, _, n3, _), (u2, _, _, n2, _)] = decoder(geometry);
            let b = Branch {
                u3_conva: Some(p.conv(&format!("{q}.{u3}.conva"), ConvSpec::valid(k), None)?),
                u3_dense: DenseBlock::load(
                    &mut p,
                    &format!("{q}.{u3}.dense"),
                    n3,
                    k,
                    DENSE_GROUPS as i64,
                )?,
                u3_convf: p.conv(&format!("{q}.{u3}.convf"), ConvSpec::valid(1), None)?,
                u2_conva: p.conv(&format!("{q}.{u2}.conva"), ConvSpec::valid(k), None)?,
                u2_dense: DenseBlock::load(
                    &mut p,
                    &format!("{q}.{u2}.dense"),
                    n2,
                    k,
                    DENSE_GROUPS as i64,
                )?,
                u2_convf: p.conv(&format!("{q}.{u2}.convf"), ConvSpec::valid(1), None)?,
                u1_conva: p.conv(
                    &format!("{q}.u1.conva"),
                    ConvSpec::same(k, 1),
                    Some(&format!("{q}.u0.bn")),
                )?,
                u0_conv: p.conv(
                    &format!("{q}.u0.conv"),
                    ConvSpec {
                        bias: true,
                        ..ConvSpec::valid(1)
                    },
                    None,
                )?,
            };
            let index = heads
                .iter()
                .position(|h| h.kind.name() == *head)
                .unwrap_or(0);
            branches.push((index, b));
        }
        let merged_u3_conva = if options.merge_head_convs && branches.len() > 1 {
            let convs: Vec<&Conv> = branches
                .iter()
                .filter_map(|(_, b)| b.u3_conva.as_ref())
                .collect();
            let merged = Conv::merge(&convs).map_err(|e| LoadError::Torch {
                path: p.weights.path().to_owned(),
                detail: e.to_string(),
            })?;
            for (_, b) in &mut branches {
                b.u3_conva = None;
            }
            Some(merged)
        } else {
            None
        };
        tracing::debug!(arch = %arch, ?device, ?kind, fold = options.fold_batch_norm, "hovernet loaded");
        Ok(Self {
            arch: arch.clone(),
            heads,
            geometry,
            device,
            kind,
            channels_last: options.channels_last,
            conv0,
            encoder,
            conv_bot,
            merged_u3_conva,
            branches,
        })
    }

    /// The architecture.
    #[must_use]
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// Raw head logits (NCHW, element type of the model) in [`HoVerNet::heads`] order.
    fn forward_raw(&self, x: &Tensor) -> Result<Vec<Tensor>, InferError> {
        let x = if self.channels_last {
            to_channels_last(x)?
        } else {
            x.shallow_clone()
        };
        let d0 = conv_relu(&self.conv0, &x)?;
        let d0 = self.encoder[0].forward(&d0)?;
        let d1 = self.encoder[1].forward(&d0)?;
        let d2 = self.encoder[2].forward(&d1)?;
        let d3 = self.conv_bot.forward(&self.encoder[3].forward(&d2)?)?;
        let [c0, c1] = self.geometry.crops.map(|c| c as i64);
        let d0 = centre_crop(&d0, c0, c0)?;
        let d1 = centre_crop(&d1, c1, c1)?;
        let mut u3_in = upsample2x(&d3)?;
        let u3_in = u3_in.f_add_(&d2)?;
        let merged = match &self.merged_u3_conva {
            Some(c) => Some(c.forward(&u3_in)?),
            None => None,
        };
        let mut out: Vec<Option<Tensor>> = (0..self.heads.len()).map(|_| None).collect();
        let mut start = 0;
        for (index, b) in &self.branches {
            let u3 = match (&b.u3_conva, &merged) {
                (Some(c), _) => c.forward(&u3_in)?,
                (None, Some(m)) => {
                    // u3.conva output channels (256 / width divisor) = the dense block's input.
                    let n = decoder(self.geometry)[0].2 as i64;
                    let t = m.f_narrow(1, start, n)?;
                    start += n;
                    t
                }
                (None, None) => {
                    return Err(InferError::Torch {
                        detail: "decoder u3.conva missing".into(),
                    });
                }
            };
            let u3 = b.u3_convf.forward(&b.u3_dense.forward(&u3)?)?;
            let mut u2 = upsample2x(&u3)?;
            let u2 = u2.f_add_(&d1)?;
            let u2 = b
                .u2_convf
                .forward(&b.u2_dense.forward(&b.u2_conva.forward(&u2)?)?)?;
            let mut u1 = upsample2x(&u2)?;
            let u1 = u1.f_add_(&d0)?;
            let u0 = conv_relu(&b.u1_conva, &u1)?;
            out[*index] = Some(b.u0_conv.forward(&u0)?);
        }
        out.into_iter()
            .map(|t| {
                t.ok_or_else(|| InferError::Torch {
                    detail: "a head was not computed".into(),
                })
            })
            .collect()
    }

    /// Raw head logits, NHWC float32, with the raw channel counts (np 2, hv 2, tp `num_types`,
    /// ls `num_layers`), in head order: what TIAToolbox's network returns before `infer_batch`'s
    /// softmax / argmax. For tests (argmax tie counting) and debugging.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn forward_logits(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError> {
        check_patch_size(self.input_size(), &batch)?;
        let _guard = tch::no_grad_guard();
        let x = input_tensor(&batch, self.device, self.kind, true)?;
        let raw = self.forward_raw(&x)?;
        let heads = raw
            .iter()
            .zip(&self.heads)
            .map(|(t, h)| {
                let (data, shape) = to_nhwc_vec(&t.f_to_kind(Kind::Float)?)?;
                Ok(HeadTensor {
                    kind: h.kind,
                    shape,
                    data,
                })
            })
            .collect::<Result<_, InferError>>()?;
        Ok(HeadOutputs {
            indices: batch.indices().to_vec(),
            heads,
        })
    }
}

impl Model for HoVerNet {
    fn heads(&self) -> &[HeadSpec] {
        &self.heads
    }

    fn input_size(&self) -> usize {
        self.arch.input_size() as usize
    }

    fn output_size(&self) -> usize {
        self.arch.output_size() as usize
    }

    fn forward(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError> {
        self.forward_pending(batch).map(PendingOutputs::finish)
    }

    fn forward_pending(&mut self, batch: BatchView<'_>) -> Result<PendingOutputs, InferError> {
        check_patch_size(self.input_size(), &batch)?;
        let _guard = tch::no_grad_guard();
        if batch.is_empty() {
            return logits_to_pending(&batch, &self.heads, Vec::new(), self.output_size());
        }
        let x = input_tensor(&batch, self.device, self.kind, true)?;
        let raw = self.forward_raw(&x)?;
        logits_to_pending(&batch, &self.heads, raw, self.output_size())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::hovernet_spec::expected_tensors;
    use crate::raw_tensor::RawTensor;

    /// Deterministic weights for `arch`: small values, BN statistics near (0, 1).
    fn synthetic_weights(arch: &Architecture) -> WeightSet {
        let mut state = 0x2545_f491_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let list = expected_tensors(arch)
            .into_iter()
            .map(|t| {
                let n: usize = t.shape.iter().product();
                let fan_in: usize = t.shape.iter().skip(1).product::<usize>().max(1);
                let values: Vec<f32> = if t.name.ends_with("running_var") {
                    (0..n).map(|_| 1.0 + 0.5 * next().abs()).collect()
                } else if t.name.ends_with("bn.weight") {
                    (0..n).map(|_| 1.0 + 0.2 * next()).collect()
                } else if t.name == "upsample2x.unpool_mat" {
                    vec![1.0; n]
                } else {
                    let gain = 2.0 * (3.0 / fan_in as f32).sqrt();
                    (0..n).map(|_| gain * next()).collect()
                };
                (
                    t.name,
                    RawTensor {
                        shape: t.shape,
                        values,
                    },
                )
            })
            .collect();
        WeightSet::from_list(Path::new("synthetic.safetensors"), list)
    }

    #[test]
    fn slim_network_loads_and_runs_with_every_forward_option() {
        let arch = Architecture::hovernet_fast(Some(4), 8);
        let pixels: Vec<u8> = (0..2 * 256 * 256 * 3)
            .map(|i| ((i * 37 + i / 769) % 256) as u8)
            .collect();
        let batch = BatchView::new(&pixels, &[7, 8], 256, 256).unwrap();
        let mut outputs = Vec::new();
        let merged = ForwardOptions {
            merge_head_convs: true,
            ..ForwardOptions::default()
        };
        for options in [
            ForwardOptions::reference(),
            ForwardOptions::default(),
            merged,
        ] {
            let mut net = HoVerNet::from_weights(
                synthetic_weights(&arch),
                &arch,
                tch::Device::Cpu,
                Kind::Float,
                &options,
            )
            .unwrap();
            assert_eq!(net.architecture(), &arch);
            outputs.push(net.forward_logits(batch).unwrap());
        }
        let reference = &outputs[0];
        let shapes: Vec<_> = reference.heads.iter().map(|h| (h.kind, h.shape)).collect();
        assert_eq!(
            shapes,
            [
                (crate::HeadKind::Np, [2, 164, 164, 2]),
                (crate::HeadKind::Hv, [2, 164, 164, 2]),
                (crate::HeadKind::Tp, [2, 164, 164, 4]),
            ]
        );
        for (a, b) in outputs[1..]
            .iter()
            .flat_map(|o| o.heads.iter().zip(&reference.heads))
        {
            let scale = b.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
            let diff = a
                .data
                .iter()
                .zip(&b.data)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-4 * scale,
                "{}: max diff {diff} (scale {scale})",
                a.kind
            );
        }
    }

    #[test]
    fn slim_weights_refused_for_another_divisor() {
        let w = synthetic_weights(&Architecture::hovernet_fast(Some(4), 8));
        let e = HoVerNet::from_weights(
            w,
            &Architecture::hovernet_fast(Some(4), 4),
            tch::Device::Cpu,
            Kind::Float,
            &ForwardOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("conv0./.weight"), "{e}");
        assert!(e.contains("hovernet fast, width / 8 (4 types)"), "{e}");
    }
}

//! HoVer-Net building blocks in libtorch, layer for layer as TIAToolbox 2.1.3
//! (`tiatoolbox/models/architecture/hovernet.py`, `utils.py`): convolutions with TF-same
//! padding, BatchNorm (eps 1e-5), pre-activation residual units, dense units with grouped
//! convolutions, centre crops and nearest 2× upsampling.
//!
//! BatchNorm folding happens here, at load time: a BN that directly follows a convolution
//! (`conv0./ → conv0.bn`, `conv1 → conv1/bn`, `conv2 → conv2/bn`, `u1.conva → u0.bn`) is merged
//! into it in f64: `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`. BNs that follow an addition or a
//! concatenation (`preact/bn`, `preact_bna/bn`, `blk_bna.bn`) cannot be folded and stay.

use tch::{Kind, Tensor};

use crate::errors::{InferError, LoadError};
use crate::raw_tensor::RawTensor;
use crate::weights::WeightSet;

/// BatchNorm epsilon of every TIAToolbox HoVer-Net BN.
pub(crate) const BN_EPS: f64 = 1e-5;

/// Where parameters come from and how they are placed: device, element type, memory format.
pub(crate) struct ParamSource {
    pub(crate) weights: WeightSet,
    pub(crate) device: tch::Device,
    pub(crate) kind: Kind,
    pub(crate) channels_last: bool,
    pub(crate) fold: bool,
}

impl ParamSource {
    fn raw(&mut self, name: &str) -> Result<RawTensor, LoadError> {
        // `WeightSet::check` ran before: a missing tensor here is a bug, reported, not a panic.
        self.weights
            .take(name)
            .ok_or_else(|| LoadError::MissingTensor {
                path: self.weights.path().to_owned(),
                tensor: name.to_owned(),
                expected: Box::new([]),
                architecture: "the native model".into(),
                looks_like: None,
            })
    }

    fn tensor(&self, values: &[f32], shape: &[usize]) -> Result<Tensor, LoadError> {
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_slice(values)
            .and_then(|t| t.f_reshape(shape.as_slice()))
            .and_then(|t| t.f_to_device(self.device))
            .and_then(|t| t.f_to_kind(self.kind))
            .and_then(|t| {
                if self.channels_last && shape.len() == 4 {
                    to_channels_last(&t)
                } else {
                    Ok(t)
                }
            })
            .map_err(|e| LoadError::Torch {
                path: self.weights.path().to_owned(),
                detail: e.to_string(),
            })?;
        Ok(t)
    }

    /// Convolution `name` (`name.weight`, optional `name.bias`), optionally followed by BN `bn`.
    pub(crate) fn conv(
        &mut self,
        name: &str,
        spec: ConvSpec,
        bn: Option<&str>,
    ) -> Result<Conv, LoadError> {
        let w = self.raw(&format!("{name}.weight"))?;
        let b = if spec.bias {
            Some(self.raw(&format!("{name}.bias"))?)
        } else {
            None
        };
        let (w, b, bn) = match bn {
            Some(bn_name) if self.fold => {
                let p = self.bn_raw(bn_name)?;
                let (w, b) = fold(&w, b.as_ref(), &p);
                (w, Some(b), None)
            }
            Some(bn_name) => (w, b, Some(self.bn(bn_name)?)),
            None => (w, b, None),
        };
        let weight = self.tensor(&w.values, &w.shape)?;
        let bias = b.map(|b| self.tensor(&b.values, &b.shape)).transpose()?;
        Ok(Conv {
            weight,
            bias,
            spec,
            bn,
        })
    }

    fn bn_raw(&mut self, name: &str) -> Result<[RawTensor; 4], LoadError> {
        let _ = self.weights.take(&format!("{name}.num_batches_tracked"));
        Ok([
            self.raw(&format!("{name}.weight"))?,
            self.raw(&format!("{name}.bias"))?,
            self.raw(&format!("{name}.running_mean"))?,
            self.raw(&format!("{name}.running_var"))?,
        ])
    }

    /// BatchNorm `name` (eval mode).
    pub(crate) fn bn(&mut self, name: &str) -> Result<Bn, LoadError> {
        let [g, b, m, v] = self.bn_raw(name)?;
        Ok(Bn {
            weight: self.tensor(&g.values, &g.shape)?,
            bias: self.tensor(&b.values, &b.shape)?,
            mean: self.tensor(&m.values, &m.shape)?,
            var: self.tensor(&v.values, &v.shape)?,
        })
    }
}

/// Folds BN `[γ, β, μ, σ²]` into convolution weight `w` (and bias `b`), in f64.
#[allow(clippy::cast_possible_truncation)]
fn fold(w: &RawTensor, b: Option<&RawTensor>, bn: &[RawTensor; 4]) -> (RawTensor, RawTensor) {
    let [g, beta, mean, var] = bn;
    let cout = w.shape[0];
    let per = w.values.len() / cout.max(1);
    let mut wf = w.values.clone();
    let mut bf = vec![0f32; cout];
    for o in 0..cout {
        let scale = f64::from(g.values[o]) / (f64::from(var.values[o]) + BN_EPS).sqrt();
        for x in &mut wf[o * per..(o + 1) * per] {
            *x = (f64::from(*x) * scale) as f32;
        }
        let b0 = b.map_or(0.0, |b| f64::from(b.values[o]));
        bf[o] = ((b0 - f64::from(mean.values[o])) * scale + f64::from(beta.values[o])) as f32;
    }
    (
        RawTensor {
            shape: w.shape.clone(),
            values: wf,
        },
        RawTensor {
            shape: vec![cout],
            values: bf,
        },
    )
}

/// A strided view with channels-last memory (same values, NCHW shape).
pub(crate) fn to_channels_last(t: &Tensor) -> Result<Tensor, tch::TchError> {
    t.f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_permute([0, 3, 1, 2])
}

/// How a convolution is applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSpec {
    pub(crate) ksize: i64,
    pub(crate) stride: i64,
    pub(crate) groups: i64,
    /// TF "same" padding computed from the input height (TIAToolbox `TFSamepaddingLayer`);
    /// otherwise "valid".
    pub(crate) tf_same: bool,
    pub(crate) bias: bool,
}

impl ConvSpec {
    pub(crate) fn valid(ksize: i64) -> Self {
        Self {
            ksize,
            stride: 1,
            groups: 1,
            tf_same: false,
            bias: false,
        }
    }
    pub(crate) fn same(ksize: i64, stride: i64) -> Self {
        Self {
            ksize,
            stride,
            groups: 1,
            tf_same: true,
            bias: false,
        }
    }
}

/// A convolution, with its BN folded in, kept beside it, or absent.
pub(crate) struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    spec: ConvSpec,
    bn: Option<Bn>,
}

impl Conv {
    /// One convolution computing all of `convs` (same input, same geometry, no separate BN):
    /// output channels concatenated in order.
    pub(crate) fn merge(convs: &[&Self]) -> Result<Self, tch::TchError> {
        let w: Vec<&Tensor> = convs.iter().map(|c| &c.weight).collect();
        let weight = Tensor::f_cat(&w, 0)?;
        let bias = if convs.iter().all(|c| c.bias.is_some()) {
            let b: Vec<&Tensor> = convs.iter().filter_map(|c| c.bias.as_ref()).collect();
            Some(Tensor::f_cat(&b, 0)?)
        } else {
            None
        };
        let spec = convs.first().map_or(ConvSpec::valid(1), |c| c.spec);
        Ok(Self {
            weight,
            bias,
            spec,
            bn: None,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, InferError> {
        let mut padding = 0;
        let padded;
        let mut input = x;
        if self.spec.tf_same {
            let h = x.size().get(2).copied().unwrap_or(0);
            let (k, s) = (self.spec.ksize, self.spec.stride);
            let pad = if h % s == 0 {
                (k - s).max(0)
            } else {
                (k - h % s).max(0)
            };
            let (before, after) = (pad / 2, pad - pad / 2);
            if before == after {
                padding = before;
            } else {
                padded = x.f_constant_pad_nd([before, after, before, after])?;
                input = &padded;
            }
        }
        let y = input.f_conv2d(
            &self.weight,
            self.bias.as_ref(),
            [self.spec.stride, self.spec.stride],
            [padding, padding],
            [1, 1],
            self.spec.groups,
        )?;
        match &self.bn {
            Some(bn) => bn.forward(&y),
            None => Ok(y),
        }
    }
}

/// Eval-mode BatchNorm.
pub(crate) struct Bn {
    weight: Tensor,
    bias: Tensor,
    mean: Tensor,
    var: Tensor,
}

impl Bn {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, InferError> {
        Ok(x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.mean),
            Some(&self.var),
            false,
            0.1,
            BN_EPS,
            true,
        )?)
    }

    /// BN then ReLU (in place on the BN's output).
    pub(crate) fn forward_relu(&self, x: &Tensor) -> Result<Tensor, InferError> {
        let mut y = self.forward(x)?;
        Ok(y.f_relu_()?)
    }
}

/// Conv (with BN folded or kept) then ReLU in place.
pub(crate) fn conv_relu(conv: &Conv, x: &Tensor) -> Result<Tensor, InferError> {
    let mut y = conv.forward(x)?;
    Ok(y.f_relu_()?)
}

/// One pre-activation bottleneck unit of a residual block.
pub(crate) struct ResidualUnit {
    preact: Option<Bn>,
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
}

/// TIAToolbox `ResidualBlock`.
pub(crate) struct ResidualBlock {
    units: Vec<ResidualUnit>,
    shortcut: Option<Conv>,
    bna: Bn,
}

impl ResidualBlock {
    /// Loads block `name` with `count` units of channels `ch` from `cin` channels, first stride `stride`.
    pub(crate) fn load(
        p: &mut ParamSource,
        name: &str,
        cin: usize,
        ch: [usize; 3],
        count: usize,
        stride: i64,
    ) -> Result<Self, LoadError> {
        let mut units = Vec::with_capacity(count);
        for u in 0..count {
            let q = format!("{name}.units.{u}");
            let preact = if u > 0 {
                Some(p.bn(&format!("{q}.preact/bn"))?)
            } else {
                None
            };
            let conv1 = p.conv(
                &format!("{q}.conv1"),
                ConvSpec::valid(1),
                Some(&format!("{q}.conv1/bn")),
            )?;
            let s = if u == 0 { stride } else { 1 };
            let conv2 = p.conv(
                &format!("{q}.conv2"),
                ConvSpec::same(3, s),
                Some(&format!("{q}.conv2/bn")),
            )?;
            let conv3 = p.conv(&format!("{q}.conv3"), ConvSpec::valid(1), None)?;
            units.push(ResidualUnit {
                preact,
                conv1,
                conv2,
                conv3,
            });
        }
        let shortcut = if cin != ch[2] || stride != 1 {
            let spec = ConvSpec {
                stride,
                ..ConvSpec::valid(1)
            };
            Some(p.conv(&format!("{name}.shortcut"), spec, None)?)
        } else {
            None
        };
        let bna = p.bn(&format!("{name}.blk_bna.bn"))?;
        Ok(Self {
            units,
            shortcut,
            bna,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, InferError> {
        let mut sc = match &self.shortcut {
            Some(c) => c.forward(x)?,
            None => x.shallow_clone(),
        };
        let mut x = x.shallow_clone();
        for u in &self.units {
            let y = match &u.preact {
                Some(bn) => bn.forward_relu(&x)?,
                None => x.shallow_clone(),
            };
            let y = conv_relu(&u.conv1, &y)?;
            let y = conv_relu(&u.conv2, &y)?;
            let mut y = u.conv3.forward(&y)?;
            x = y.f_add_(&sc)?;
            sc = x.shallow_clone();
        }
        self.bna.forward_relu(&x)
    }
}

/// Centre crop by `dh`, `dw` pixels (`dh/2` from the top, the rest from the bottom).
pub(crate) fn centre_crop(x: &Tensor, dh: i64, dw: i64) -> Result<Tensor, InferError> {
    let s = x.size();
    let (h, w) = (s[2], s[3]);
    Ok(x.f_narrow(2, dh / 2, h - dh)?.f_narrow(3, dw / 2, w - dw)?)
}

/// Nearest-neighbour 2× upsampling (TIAToolbox `UpSample2x`, a Kronecker product with ones).
pub(crate) fn upsample2x(x: &Tensor) -> Result<Tensor, InferError> {
    let s = x.size();
    Ok(x.f_upsample_nearest2d([s[2] * 2, s[3] * 2], 2.0, 2.0)?)
}

struct DenseUnit {
    preact: Bn,
    conv1: Conv,
    conv2: Conv,
}

/// TIAToolbox `DenseBlock` (valid convolutions, grouped second convolution).
pub(crate) struct DenseBlock {
    units: Vec<DenseUnit>,
    bna: Bn,
}

impl DenseBlock {
    pub(crate) fn load(
        p: &mut ParamSource,
        name: &str,
        count: usize,
        ksize: i64,
        groups: i64,
    ) -> Result<Self, LoadError> {
        let mut units = Vec::with_capacity(count);
        for u in 0..count {
            let q = format!("{name}.units.{u}");
            let preact = p.bn(&format!("{q}.preact_bna/bn"))?;
            let conv1 = p.conv(
                &format!("{q}.conv1"),
                ConvSpec::valid(1),
                Some(&format!("{q}.conv1/bn")),
            )?;
            let conv2 = p.conv(
                &format!("{q}.conv2"),
                ConvSpec {
                    groups,
                    ..ConvSpec::valid(ksize)
                },
                None,
            )?;
            units.push(DenseUnit {
                preact,
                conv1,
                conv2,
            });
        }
        let bna = p.bn(&format!("{name}.blk_bna.bn"))?;
        Ok(Self { units, bna })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, InferError> {
        let mut x = x.shallow_clone();
        for u in &self.units {
            let y = u.preact.forward_relu(&x)?;
            let y = conv_relu(&u.conv1, &y)?;
            let new = u.conv2.forward(&y)?;
            let (xs, ns) = (x.size(), new.size());
            let prev = centre_crop(&x, xs[2] - ns[2], xs[3] - ns[3])?;
            x = Tensor::f_cat(&[prev, new], 1)?;
        }
        self.bna.forward_relu(&x)
    }
}

impl From<tch::TchError> for InferError {
    fn from(e: tch::TchError) -> Self {
        Self::Torch {
            detail: e.to_string(),
        }
    }
}

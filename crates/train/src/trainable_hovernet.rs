//! The trainable HoVer-Net fast (channels divided by a width divisor) in `tch`: TIAToolbox's layers
//! (`tiatoolbox/models/architecture/hovernet.py`), with its state-dict names, so that the saved
//! weights load into `mtseg_infer`'s native [`mtseg_infer::Architecture::HoVerNetFastSlim`].
//!
//! Variables live in a [`nn::VarStore`] under TIAToolbox's names (`conv0./.weight`,
//! `d1.units.2.conv2/bn.running_var`, `decoder.np.u3.dense.units.0.conv1.weight`, ...); BatchNorm
//! runs in training mode (batch statistics, running averages updated with momentum 0.1) or in
//! eval mode (running statistics), eps 1e-5, as PyTorch's `BatchNorm2d`.

use mtseg_infer::Architecture;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// Full-width encoder blocks: (name, in channels, [c1, c2, c3], units, stride).
const ENCODER: [(&str, i64, [i64; 3], usize, i64); 4] = [
    ("d0", 64, [64, 64, 256], 3, 1),
    ("d1", 256, [128, 128, 512], 4, 2),
    ("d2", 512, [256, 256, 1024], 6, 2),
    ("d3", 1024, [512, 512, 2048], 3, 2),
];
/// Full-width decoder stages: (name, conva in, conva out, dense units, convf channels).
const DECODER: [(&str, i64, i64, usize, i64); 2] =
    [("u3", 1024, 256, 8, 512), ("u2", 512, 128, 4, 256)];
/// Dense unit conv1 / conv2 output channels (full width) and conv2 groups.
const DENSE: (i64, i64, i64) = (128, 32, 4);
/// Decoder kernel size (fast mode).
const KSIZE: i64 = 3;

/// Raw head logits, NCHW, 164 x 164 for a 256 x 256 input.
#[derive(Debug)]
pub struct HeadLogits {
    /// Nucleus / background, 2 channels.
    pub np: Tensor,
    /// Horizontal and vertical maps, 2 channels.
    pub hv: Tensor,
    /// Type logits, `num_types` channels.
    pub tp: Tensor,
}

/// The path `root` / each dot-separated part of `name` (TIAToolbox names contain `/`, never a
/// dot inside a part).
fn sub<'a>(root: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    name.split('.').fold(root.clone(), |p, part| p / part)
}

/// A convolution without implicit padding; `same` pads as TensorFlow's "SAME" (TIAToolbox's
/// `TFSamepaddingLayer`: the extra pixel of an odd padding goes after).
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    ksize: i64,
    stride: i64,
    groups: i64,
    same: bool,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    fn new(
        root: &nn::Path<'_>,
        name: &str,
        cin: i64,
        cout: i64,
        ksize: i64,
        stride: i64,
        groups: i64,
        bias: bool,
        same: bool,
    ) -> Self {
        let p = sub(root, name);
        // He (Kaiming) normal, fan-in: what HoVer-Net's reference training code uses.
        let weight = p.var(
            "weight",
            &[cout, cin / groups, ksize, ksize],
            nn::init::DEFAULT_KAIMING_NORMAL,
        );
        let bias = bias.then(|| p.var("bias", &[cout], nn::Init::Const(0.0)));
        Self {
            weight,
            bias,
            ksize,
            stride,
            groups,
            same,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let padded;
        let mut input = x;
        if self.same {
            let h = x.size()[2];
            let (k, s) = (self.ksize, self.stride);
            let pad = if h % s == 0 {
                (k - s).max(0)
            } else {
                (k - h % s).max(0)
            };
            padded = x.constant_pad_nd([pad / 2, pad - pad / 2, pad / 2, pad - pad / 2]);
            input = &padded;
        }
        input.conv2d(
            &self.weight,
            self.bias.as_ref(),
            [self.stride, self.stride],
            [0, 0],
            [1, 1],
            self.groups,
        )
    }
}

fn bn(root: &nn::Path<'_>, name: &str, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        sub(root, name),
        c,
        nn::BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        },
    )
}

fn bn_relu(b: &nn::BatchNorm, x: &Tensor, train: bool) -> Tensor {
    b.forward_t(x, train).relu()
}

#[derive(Debug)]
struct ResidualUnit {
    preact: Option<nn::BatchNorm>,
    conv1: Conv,
    bn1: nn::BatchNorm,
    conv2: Conv,
    bn2: nn::BatchNorm,
    conv3: Conv,
}

#[derive(Debug)]
struct ResidualBlock {
    units: Vec<ResidualUnit>,
    shortcut: Option<Conv>,
    bna: nn::BatchNorm,
}

impl ResidualBlock {
    fn new(
        root: &nn::Path<'_>,
        name: &str,
        cin: i64,
        ch: [i64; 3],
        count: usize,
        stride: i64,
    ) -> Self {
        let mut units = Vec::with_capacity(count);
        let mut c = cin;
        for u in 0..count {
            let q = format!("{name}.units.{u}");
            let s = if u == 0 { stride } else { 1 };
            units.push(ResidualUnit {
                preact: (u > 0).then(|| bn(root, &format!("{q}.preact/bn"), c)),
                conv1: Conv::new(root, &format!("{q}.conv1"), c, ch[0], 1, 1, 1, false, false),
                bn1: bn(root, &format!("{q}.conv1/bn"), ch[0]),
                conv2: Conv::new(
                    root,
                    &format!("{q}.conv2"),
                    ch[0],
                    ch[1],
                    3,
                    s,
                    1,
                    false,
                    true,
                ),
                bn2: bn(root, &format!("{q}.conv2/bn"), ch[1]),
                conv3: Conv::new(
                    root,
                    &format!("{q}.conv3"),
                    ch[1],
                    ch[2],
                    1,
                    1,
                    1,
                    false,
                    false,
                ),
            });
            c = ch[2];
        }
        let shortcut = (cin != ch[2] || stride != 1).then(|| {
            Conv::new(
                root,
                &format!("{name}.shortcut"),
                cin,
                ch[2],
                1,
                stride,
                1,
                false,
                false,
            )
        });
        Self {
            units,
            shortcut,
            bna: bn(root, &format!("{name}.blk_bna.bn"), ch[2]),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut sc = match &self.shortcut {
            Some(c) => c.forward(x),
            None => x.shallow_clone(),
        };
        let mut x = x.shallow_clone();
        for u in &self.units {
            let y = match &u.preact {
                Some(b) => bn_relu(b, &x, train),
                None => x.shallow_clone(),
            };
            let y = bn_relu(&u.bn1, &u.conv1.forward(&y), train);
            let y = bn_relu(&u.bn2, &u.conv2.forward(&y), train);
            x = u.conv3.forward(&y) + &sc;
            sc = x.shallow_clone();
        }
        bn_relu(&self.bna, &x, train)
    }
}

#[derive(Debug)]
struct DenseUnit {
    preact: nn::BatchNorm,
    conv1: Conv,
    bn1: nn::BatchNorm,
    conv2: Conv,
}

#[derive(Debug)]
struct DenseBlock {
    units: Vec<DenseUnit>,
    bna: nn::BatchNorm,
}

impl DenseBlock {
    fn new(root: &nn::Path<'_>, name: &str, cin: i64, count: usize, div: i64) -> Self {
        let (c1, c2, groups) = (DENSE.0 / div, DENSE.1 / div, DENSE.2);
        let mut c = cin;
        let mut units = Vec::with_capacity(count);
        for u in 0..count {
            let q = format!("{name}.units.{u}");
            units.push(DenseUnit {
                preact: bn(root, &format!("{q}.preact_bna/bn"), c),
                conv1: Conv::new(root, &format!("{q}.conv1"), c, c1, 1, 1, 1, false, false),
                bn1: bn(root, &format!("{q}.conv1/bn"), c1),
                conv2: Conv::new(
                    root,
                    &format!("{q}.conv2"),
                    c1,
                    c2,
                    KSIZE,
                    1,
                    groups,
                    false,
                    false,
                ),
            });
            c += c2;
        }
        Self {
            units,
            bna: bn(root, &format!("{name}.blk_bna.bn"), c),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for u in &self.units {
            let y = bn_relu(&u.preact, &x, train);
            let y = bn_relu(&u.bn1, &u.conv1.forward(&y), train);
            let new = u.conv2.forward(&y);
            let (xs, ns) = (x.size(), new.size());
            let prev = centre_crop(&x, xs[2] - ns[2], xs[3] - ns[3]);
            x = Tensor::cat(&[prev, new], 1);
        }
        bn_relu(&self.bna, &x, train)
    }
}

#[derive(Debug)]
struct Branch {
    u3_conva: Conv,
    u3_dense: DenseBlock,
    u3_convf: Conv,
    u2_conva: Conv,
    u2_dense: DenseBlock,
    u2_convf: Conv,
    u1_conva: Conv,
    u0_bn: nn::BatchNorm,
    u0_conv: Conv,
}

impl Branch {
    fn new(root: &nn::Path<'_>, head: &str, out: i64, div: i64) -> Self {
        let p = format!("decoder.{head}");
        let [(u3, c3in, c3, n3, f3), (u2, c2in, c2, n2, f2)] = DECODER;
        let (u1_in, u1_out) = (256 / div, 64 / div);
        Self {
            u3_conva: Conv::new(
                root,
                &format!("{p}.{u3}.conva"),
                c3in / div,
                c3 / div,
                KSIZE,
                1,
                1,
                false,
                false,
            ),
            u3_dense: DenseBlock::new(root, &format!("{p}.{u3}.dense"), c3 / div, n3, div),
            u3_convf: Conv::new(
                root,
                &format!("{p}.{u3}.convf"),
                f3 / div,
                f3 / div,
                1,
                1,
                1,
                false,
                false,
            ),
            u2_conva: Conv::new(
                root,
                &format!("{p}.{u2}.conva"),
                c2in / div,
                c2 / div,
                KSIZE,
                1,
                1,
                false,
                false,
            ),
            u2_dense: DenseBlock::new(root, &format!("{p}.{u2}.dense"), c2 / div, n2, div),
            u2_convf: Conv::new(
                root,
                &format!("{p}.{u2}.convf"),
                f2 / div,
                f2 / div,
                1,
                1,
                1,
                false,
                false,
            ),
            u1_conva: Conv::new(
                root,
                &format!("{p}.u1.conva"),
                u1_in,
                u1_out,
                KSIZE,
                1,
                1,
                false,
                true,
            ),
            u0_bn: bn(root, &format!("{p}.u0.bn"), u1_out),
            u0_conv: Conv::new(
                root,
                &format!("{p}.u0.conv"),
                u1_out,
                out,
                1,
                1,
                1,
                true,
                false,
            ),
        }
    }

    fn forward(&self, d: &[Tensor; 4], train: bool) -> Tensor {
        let u3 = upsample2x(&d[3]) + &d[2];
        let u3 = self.u3_conva.forward(&u3);
        let u3 = self.u3_convf.forward(&self.u3_dense.forward(&u3, train));
        let u2 = upsample2x(&u3) + &d[1];
        let u2 = self.u2_conva.forward(&u2);
        let u2 = self.u2_convf.forward(&self.u2_dense.forward(&u2, train));
        let u1 = upsample2x(&u2) + &d[0];
        let u1 = self.u1_conva.forward(&u1);
        self.u0_conv.forward(&bn_relu(&self.u0_bn, &u1, train))
    }
}

/// Centre crop by `dh`, `dw` pixels (`dh / 2` from the top, the rest from the bottom).
fn centre_crop(x: &Tensor, dh: i64, dw: i64) -> Tensor {
    let s = x.size();
    x.narrow(2, dh / 2, s[2] - dh).narrow(3, dw / 2, s[3] - dw)
}

/// Nearest-neighbour 2x upsampling (TIAToolbox's `UpSample2x`).
fn upsample2x(x: &Tensor) -> Tensor {
    let s = x.size();
    x.upsample_nearest2d([s[2] * 2, s[3] * 2], 2.0, 2.0)
}

/// HoVer-Net fast with channels divided by `width_divisor`, heads tp, np, hv.
#[derive(Debug)]
pub struct TrainableHoVerNet {
    conv0: Conv,
    conv0_bn: nn::BatchNorm,
    encoder: Vec<ResidualBlock>,
    conv_bot: Conv,
    /// tp, np, hv (TIAToolbox's `self.decoder` order).
    branches: [Branch; 3],
    num_types: i64,
    width_divisor: i64,
}

impl TrainableHoVerNet {
    /// Creates the variables under `root` (He-normal convolutions, BN weight 1 bias 0, head biases
    /// 0), with `num_types` type classes (background included).
    ///
    /// # Panics
    /// When `width_divisor` is not one of [`Architecture::WIDTH_DIVISORS`] (1, 2, 4 or 8: the
    /// channels would not divide).
    #[must_use]
    pub fn new(root: &nn::Path<'_>, num_types: i64, width_divisor: i64) -> Self {
        assert!(
            u32::try_from(width_divisor).is_ok_and(|d| Architecture::WIDTH_DIVISORS.contains(&d)),
            "width divisor {width_divisor} is not one of {:?}",
            Architecture::WIDTH_DIVISORS
        );
        let div = width_divisor;
        let conv0 = Conv::new(root, "conv0./", 3, 64 / div, 7, 1, 1, false, true);
        let conv0_bn = bn(root, "conv0.bn", 64 / div);
        let encoder = ENCODER
            .iter()
            .map(|&(name, cin, ch, count, stride)| {
                ResidualBlock::new(root, name, cin / div, ch.map(|c| c / div), count, stride)
            })
            .collect();
        let conv_bot = Conv::new(
            root,
            "conv_bot",
            2048 / div,
            1024 / div,
            1,
            1,
            1,
            false,
            false,
        );
        let branches = [
            Branch::new(root, "tp", num_types, div),
            Branch::new(root, "np", 2, div),
            Branch::new(root, "hv", 2, div),
        ];
        Self {
            conv0,
            conv0_bn,
            encoder,
            conv_bot,
            branches,
            num_types,
            width_divisor,
        }
    }

    /// Type classes (tp channels).
    #[must_use]
    pub fn num_types(&self) -> i64 {
        self.num_types
    }

    /// The width divisor.
    #[must_use]
    pub fn width_divisor(&self) -> i64 {
        self.width_divisor
    }

    /// The forward pass on `x`, NCHW float in 0..255 (divided by 255 here, as TIAToolbox's
    /// `forward`); BatchNorm in training mode when `train`.
    #[must_use]
    pub fn forward_t(&self, x: &Tensor, train: bool) -> HeadLogits {
        // channels-last (NHWC-strided) activations: oneDNN's fast convolutions, about 1.4x
        // faster on CPU for the same values
        let x = (x.to_kind(Kind::Float) / 255.0)
            .permute([0, 2, 3, 1])
            .contiguous()
            .permute([0, 3, 1, 2]);
        let d0 = bn_relu(&self.conv0_bn, &self.conv0.forward(&x), train);
        let d0 = self.encoder[0].forward(&d0, train);
        let d1 = self.encoder[1].forward(&d0, train);
        let d2 = self.encoder[2].forward(&d1, train);
        let d3 = self.conv_bot.forward(&self.encoder[3].forward(&d2, train));
        let d = [centre_crop(&d0, 92, 92), centre_crop(&d1, 36, 36), d2, d3];
        let [tp, np, hv] = [0, 1, 2].map(|i| self.branches[i].forward(&d, train));
        HeadLogits { np, hv, tp }
    }
}

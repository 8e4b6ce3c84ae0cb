//! Where a model runs (`cpu`, `cuda:N`, `auto`) and in which float precision.

use std::fmt;
use std::str::FromStr;

use crate::errors::ParseError;

/// The device a model runs on, as the run config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU (libtorch's intra-op thread pool).
    Cpu,
    /// CUDA device N.
    Cuda(u32),
    /// `cuda:0` when libtorch sees a CUDA device, else the CPU.
    #[default]
    Auto,
}

impl FromStr for Device {
    type Err = ParseError;

    /// Parses "cpu", "auto", "cuda" (= "cuda:0") or "cuda:N", case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "device",
            value: s.to_owned(),
            expected: "\"cpu\", \"auto\" or \"cuda:N\"",
        };
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse().map(Self::Cuda).map_err(|_| err())
                }
                _ => Err(err()),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// Float precision of the forward. Outputs are always float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// float32 everywhere, as TIAToolbox (the default; the only choice on CPU).
    #[default]
    Fp32,
    /// bfloat16 weights and activations (CUDA only, opt-in; results differ beyond rounding).
    Bf16,
    /// float16 weights and activations (CUDA only, opt-in; results differ beyond rounding).
    Fp16,
}

impl FromStr for Precision {
    type Err = ParseError;

    /// Parses "fp32", "bf16" or "fp16" (also "float32", "bfloat16", "float16"), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" | "f32" => Ok(Self::Fp32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "fp16" | "float16" | "f16" | "half" => Ok(Self::Fp16),
            _ => Err(ParseError {
                what: "precision",
                value: s.to_owned(),
                expected: "\"fp32\", \"bf16\" or \"fp16\"",
            }),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        })
    }
}

#[cfg(feature = "torch")]
pub(crate) mod torch_device {
    //! Resolving a [`Device`] / [`Precision`] against what libtorch sees.
    use super::{Device, Precision};
    use crate::errors::LoadError;

    /// The libtorch device for `device`, or [`LoadError::CudaUnavailable`].
    pub(crate) fn resolve(device: Device) -> Result<tch::Device, LoadError> {
        let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        match device {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Auto if count > 0 => Ok(tch::Device::Cuda(0)),
            Device::Auto => Ok(tch::Device::Cpu),
            Device::Cuda(n) if (n as usize) < count => Ok(tch::Device::Cuda(n as usize)),
            Device::Cuda(_) => Err(LoadError::CudaUnavailable {
                requested: device.to_string(),
                available: count,
                libtorch_has_cuda: tch::utils::has_cuda(),
            }),
        }
    }

    /// The libtorch element type for `precision` on `device`, or [`LoadError::PrecisionNeedsCuda`].
    pub(crate) fn kind(precision: Precision, device: tch::Device) -> Result<tch::Kind, LoadError> {
        let kind = match precision {
            Precision::Fp32 => return Ok(tch::Kind::Float),
            Precision::Bf16 => tch::Kind::BFloat16,
            Precision::Fp16 => tch::Kind::Half,
        };
        if device.is_cuda() {
            Ok(kind)
        } else {
            Err(LoadError::PrecisionNeedsCuda {
                precision: precision.to_string(),
                device: format!("{device:?}").to_lowercase(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<Device>().ok(), Some(Device::Cpu));
        assert_eq!("AUTO".parse::<Device>().ok(), Some(Device::Auto));
        assert_eq!("cuda".parse::<Device>().ok(), Some(Device::Cuda(0)));
        assert_eq!("cuda:3".parse::<Device>().ok(), Some(Device::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:99999999999"] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn parses_precisions() {
        assert_eq!("bf16".parse::<Precision>().ok(), Some(Precision::Bf16));
        assert_eq!("FP16".parse::<Precision>().ok(), Some(Precision::Fp16));
        assert_eq!("fp32".parse::<Precision>().ok(), Some(Precision::Fp32));
        assert!(
            "int8"
                .parse::<Precision>()
                .unwrap_err()
                .to_string()
                .contains("int8")
        );
    }
}

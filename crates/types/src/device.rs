//! [`Device`] and [`Precision`]: where a model runs and in which float precision.
//!
//! One grammar for `[model] device` in the run config and the CLI's `--device` flag, both of
//! which call [`Device::from_str`](std::str::FromStr::from_str).

use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// The device a model runs on.
///
/// Parsed from `cpu`, `auto`, `cuda` (= `cuda:0`) or `cuda:N` (N decimal digits, fitting a
/// `u32`), ASCII case-insensitive, surrounding spaces ignored. [`Display`](fmt::Display) writes
/// the canonical form, which parses back to the same value.
///
/// ```
/// use mtseg_types::Device;
/// assert_eq!("cuda".parse::<Device>()?, Device::Cuda(0));
/// assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
/// let e = "gpu".parse::<Device>().unwrap_err();
/// assert_eq!(e.to_string(), r#"invalid device `gpu`: expected "cpu", "auto", "cuda" or "cuda:N""#);
/// # Ok::<(), mtseg_types::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(u32),
    /// `cuda:0` when a CUDA device is usable, else the CPU (the default).
    #[default]
    Auto,
}

const DEVICE_FORMS: &str = r#"expected "cpu", "auto", "cuda" or "cuda:N""#;

impl FromStr for Device {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse().map(Self::Cuda).map_err(|_| {
                        ParseError::new(
                            "device",
                            s,
                            format!("CUDA device number {n} is too large (at most {})", u32::MAX),
                        )
                    })
                }
                _ => Err(ParseError::new("device", s, DEVICE_FORMS)),
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

/// Float precision of the forward pass. Outputs are float32 whatever the precision.
///
/// Parsed from `fp32`, `bf16` or `fp16`, ASCII case-insensitive, surrounding spaces ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// float32 everywhere, as TIAToolbox (the default; the only choice on the CPU).
    #[default]
    Fp32,
    /// bfloat16 weights and activations (CUDA only, opt-in; results differ beyond rounding).
    Bf16,
    /// float16 weights and activations (CUDA only, opt-in; results differ beyond rounding).
    Fp16,
}

impl Precision {
    /// Every precision, in the order of [`Precision::NAMES`].
    pub const ALL: [Self; 3] = [Self::Fp32, Self::Bf16, Self::Fp16];
    /// The names the grammar accepts.
    pub const NAMES: [&'static str; 3] = ["fp32", "bf16", "fp16"];

    /// The canonical name ("fp32", "bf16", "fp16").
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        }
    }
}

impl FromStr for Precision {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|p| p.name() == lower)
            .ok_or_else(|| ParseError::new("precision", s, r#"expected "fp32", "bf16" or "fp16""#))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        for (text, device) in [
            ("cpu", Device::Cpu),
            ("auto", Device::Auto),
            ("cuda", Device::Cuda(0)),
            ("cuda:0", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
            ("CUDA:12", Device::Cuda(12)),
            (" Cpu ", Device::Cpu),
            ("cuda:4294967295", Device::Cuda(u32::MAX)),
        ] {
            assert_eq!(text.parse::<Device>(), Ok(device), "{text:?}");
        }
    }

    #[test]
    fn bad_devices_name_the_input_and_the_forms() {
        for bad in [
            "", "gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:x", "cuda: 1", "cuda:1.0", "cuda1",
            "cpu:0", "mps",
        ] {
            let e = bad.parse::<Device>().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid device `{bad}`: {DEVICE_FORMS}"),
                "{bad:?}"
            );
        }
        let e = "cuda:99999999999".parse::<Device>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid device `cuda:99999999999`: CUDA device number 99999999999 is too large \
             (at most 4294967295)"
        );
    }

    #[test]
    fn devices_display_in_their_canonical_form_and_parse_back() {
        for d in [Device::Cpu, Device::Auto, Device::Cuda(0), Device::Cuda(7)] {
            assert_eq!(d.to_string().parse::<Device>(), Ok(d));
        }
        assert_eq!(Device::Cuda(0).to_string(), "cuda:0");
        assert_eq!(Device::default(), Device::Auto);
    }

    #[test]
    fn precisions_parse() {
        assert_eq!("fp32".parse(), Ok(Precision::Fp32));
        assert_eq!("BF16".parse(), Ok(Precision::Bf16));
        assert_eq!(" fp16".parse(), Ok(Precision::Fp16));
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse(), Ok(p));
        }
        for bad in ["int8", "float32", "half", ""] {
            let e = bad.parse::<Precision>().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(r#"invalid precision `{bad}`: expected "fp32", "bf16" or "fp16""#)
            );
        }
    }
}

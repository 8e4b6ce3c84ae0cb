//! Where a model runs, in libtorch's terms: a [`Device`] and [`Precision`] (their grammar lives
//! in `mtseg-types`) resolved against the CUDA devices libtorch sees and, for bf16 on a CPU, the
//! CPU's instruction set.

use std::sync::OnceLock;

use mtseg_types::{Device, Precision};

use crate::errors::LoadError;

/// The CUDA devices libtorch sees (0 without CUDA).
pub fn cuda_device_count() -> usize {
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

/// The libtorch device for `device`, or [`LoadError::CudaUnavailable`].
pub(crate) fn resolve(device: Device) -> Result<tch::Device, LoadError> {
    let count = cuda_device_count();
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

/// The libtorch element type for `precision` on `device`, or [`LoadError::PrecisionNeedsCuda`]
/// for fp16 on a CPU.
///
/// bf16 runs on CPUs too (oneDNN's bf16 convolutions). A warning says when it is expected to be
/// slower than fp32: without AMX (`amx_bf16`), as measured on an avx512_bf16 CPU (0.75x fp32's
/// speed: `vdpbf16ps` does no more flops per cycle than fp32 FMAs there), and much slower where
/// the CPU has neither flag (emulated). fp16 is refused on a CPU: libtorch's CPU fp16
/// convolutions measured about 2x slower than fp32 (`benches/RESULTS.md`).
pub(crate) fn kind(precision: Precision, device: tch::Device) -> Result<tch::Kind, LoadError> {
    match (precision, device.is_cuda()) {
        (Precision::Fp32, _) => Ok(tch::Kind::Float),
        (Precision::Bf16, true) => Ok(tch::Kind::BFloat16),
        (Precision::Bf16, false) => {
            match cpu_bf16() {
                Some(CpuBf16::Emulated) => tracing::warn!(
                    "precision bf16 on a CPU without avx512_bf16 / amx_bf16: it runs emulated, \
                     much slower than fp32; use precision = \"fp32\" on this machine"
                ),
                Some(CpuBf16::Avx512) => tracing::warn!(
                    "precision bf16 on a CPU with avx512_bf16 but no AMX: measured slower than \
                     fp32 (0.75x); it pays off with AMX (amx_bf16) or on a GPU"
                ),
                Some(CpuBf16::Amx) | None => {}
            }
            Ok(tch::Kind::BFloat16)
        }
        (Precision::Fp16, true) => Ok(tch::Kind::Half),
        (Precision::Fp16, false) => Err(LoadError::PrecisionNeedsCuda {
            precision: precision.to_string(),
            device: format!("{device:?}").to_lowercase(),
        }),
    }
}

/// The CPU's bf16 instructions, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuBf16 {
    /// AMX tiles with bf16 (`amx_bf16`).
    Amx,
    /// AVX-512 bf16 dot products (`avx512_bf16`), no AMX.
    Avx512,
    /// Neither: oneDNN emulates bf16.
    Emulated,
}

/// The CPU's bf16 instructions from /proc/cpuinfo's flags; `None` where that cannot be read
/// (not Linux, no /proc).
pub(crate) fn cpu_bf16() -> Option<CpuBf16> {
    static FLAGS: OnceLock<Option<CpuBf16>> = OnceLock::new();
    *FLAGS.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .map(|s| cpuinfo_bf16(&s))
    })
}

/// The bf16 instructions a /proc/cpuinfo text lists among its first CPU's flags.
fn cpuinfo_bf16(cpuinfo: &str) -> CpuBf16 {
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "flags").then_some(value)
        })
        .map(|f| f.split_whitespace().collect())
        .unwrap_or_default();
    if flags.contains(&"amx_bf16") {
        CpuBf16::Amx
    } else if flags.contains(&"avx512_bf16") {
        CpuBf16::Avx512
    } else {
        CpuBf16::Emulated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_flags_are_read_from_the_flags_line_only() {
        let with = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\nbugs\t\t: x\n";
        let amx = "flags\t\t: fpu amx_tile amx_bf16\n";
        let without = "processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni\n";
        let elsewhere = "model name\t: avx512_bf16 lookalike\nflags\t\t: fpu avx2\n";
        let prefix = "flags\t\t: fpu avx512_bf16x\n";
        assert_eq!(cpuinfo_bf16(with), CpuBf16::Avx512);
        assert_eq!(cpuinfo_bf16(amx), CpuBf16::Amx);
        assert_eq!(cpuinfo_bf16(without), CpuBf16::Emulated);
        assert_eq!(cpuinfo_bf16(elsewhere), CpuBf16::Emulated);
        assert_eq!(cpuinfo_bf16(prefix), CpuBf16::Emulated);
        assert_eq!(cpuinfo_bf16(""), CpuBf16::Emulated);
    }

    #[test]
    fn precisions_resolve_per_device() {
        let cpu = tch::Device::Cpu;
        assert_eq!(kind(Precision::Fp32, cpu).unwrap(), tch::Kind::Float);
        assert_eq!(kind(Precision::Bf16, cpu).unwrap(), tch::Kind::BFloat16);
        let e = kind(Precision::Fp16, cpu).unwrap_err();
        assert!(matches!(e, LoadError::PrecisionNeedsCuda { .. }), "{e}");
        let cuda = tch::Device::Cuda(0);
        assert_eq!(kind(Precision::Bf16, cuda).unwrap(), tch::Kind::BFloat16);
        assert_eq!(kind(Precision::Fp16, cuda).unwrap(), tch::Kind::Half);
    }
}

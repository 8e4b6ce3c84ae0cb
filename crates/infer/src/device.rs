//! Where a model runs, in libtorch's terms: a [`Device`] and [`Precision`] (their grammar lives
//! in `mtseg-types`) resolved against the CUDA devices libtorch sees.

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

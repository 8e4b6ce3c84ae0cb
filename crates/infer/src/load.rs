//! `load_model`: from [`ModelParams`] to a ready [`Model`] on the resolved device.

use mtseg_types::Architecture;

use crate::device as torch_device;
use crate::errors::LoadError;
use crate::hovernet::HoVerNet;
use crate::model::Model;
use crate::params::ModelParams;
use crate::torchscript::TorchScriptModel;

/// Loads the model `params` describes: checks the architecture, resolves the device (`auto` →
/// `cuda:0` if libtorch sees one, else CPU) and the precision, sets libtorch's intra-op threads if
/// asked, then reads the weights (native) or the TorchScript module.
///
/// # Errors
/// [`LoadError::CudaUnavailable`], [`LoadError::PrecisionNeedsCuda`] (fp16 on a CPU) before any
/// file is read; then the weight and format errors of [`HoVerNet::load`] /
/// [`TorchScriptModel::load`].
pub fn load_model(params: &ModelParams) -> Result<Box<dyn Model>, LoadError> {
    params.architecture.validate()?;
    let device = torch_device::resolve(params.device)?;
    if params.device == crate::Device::Auto {
        tracing::info!(?device, "device auto resolved");
    }
    let kind = torch_device::kind(params.precision, device)?;
    if let Some(n) = params.options.intra_op_threads {
        tch::set_num_threads(i32::try_from(n.get()).unwrap_or(i32::MAX));
    }
    match &params.architecture {
        Architecture::TorchScript { .. } => Ok(Box::new(TorchScriptModel::load(
            &params.weights,
            &params.architecture,
            device,
            kind,
        )?)),
        arch => Ok(Box::new(HoVerNet::load(
            &params.weights,
            arch,
            device,
            kind,
            &params.options,
        )?)),
    }
}

//! Saving a trained network as `.safetensors` in TIAToolbox's state-dict layout (what
//! `mtseg_infer` loads), and loading such a file back into a [`TrainableHoVerNet`]'s variables.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mtseg_infer::{Architecture, WeightSet};
use safetensors::{Dtype, tensor::TensorView};
use tch::{Kind, Tensor, nn};

use crate::TrainError;

/// The infer architecture of a network with `num_types` classes and `width_divisor`.
#[must_use]
pub fn architecture(num_types: i64, width_divisor: i64) -> Architecture {
    Architecture::hovernet_fast(
        u32::try_from(num_types).ok(),
        u32::try_from(width_divisor).unwrap_or(0),
    )
}

/// Writes the variables of `vars` to `path` as float32 safetensors, adding what PyTorch's state
/// dict also holds (each BatchNorm's `num_batches_tracked` = `steps`, and
/// `upsample2x.unpool_mat`), with `metadata` in the header; then reads the file back and checks
/// it against `arch` tensor by tensor, as `mtseg_infer` will.
///
/// # Errors
/// [`TrainError::Io`] on writing; [`TrainError::Load`] when the file does not fit `arch`.
pub fn save_safetensors(
    vars: &nn::VarStore,
    arch: &Architecture,
    steps: usize,
    metadata: &BTreeMap<String, String>,
    path: &Path,
) -> Result<(), TrainError> {
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>, Dtype)> = BTreeMap::new();
    let f32_bytes = |t: &Tensor| -> (Vec<usize>, Vec<u8>, Dtype) {
        let t = t
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let n: usize = shape.iter().product();
        let mut v = vec![0f32; n];
        t.copy_data(&mut v, n);
        (
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Dtype::F32,
        )
    };
    for (name, t) in vars.variables() {
        if let Some(base) = name.strip_suffix(".running_mean") {
            let steps = i64::try_from(steps).unwrap_or(i64::MAX);
            tensors.insert(
                format!("{base}.num_batches_tracked"),
                (Vec::new(), steps.to_le_bytes().to_vec(), Dtype::I64),
            );
        }
        tensors.insert(name, f32_bytes(&t));
    }
    tensors.insert(
        "upsample2x.unpool_mat".into(),
        f32_bytes(&Tensor::ones([2, 2], (Kind::Float, tch::Device::Cpu))),
    );
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (shape, bytes, dtype))| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| TrainError::Data {
                    path: path.to_owned(),
                    detail: format!("tensor {n}: {e}"),
                })
        })
        .collect::<Result<_, _>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    safetensors::serialize_to_file(views, Some(meta), path).map_err(|e| TrainError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    WeightSet::read(path)?.check(arch)?;
    Ok(())
}

/// Copies the tensors of the weights file `path` into the same-named variables of `vars`
/// (running statistics included); `num_batches_tracked` and `upsample2x.unpool_mat` are skipped.
///
/// # Errors
/// [`TrainError::Load`] when the file cannot be read; [`TrainError::Data`] when a variable has
/// no tensor of its shape in the file.
pub fn load_into(vars: &mut nn::VarStore, path: &Path) -> Result<(), TrainError> {
    let weights = WeightSet::read(path)?;
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vars.variables() {
        let raw = weights.get(&name).ok_or_else(|| TrainError::Data {
            path: path.to_owned(),
            detail: format!("no tensor {name}"),
        })?;
        let shape: Vec<i64> = raw.shape.iter().map(|&d| d as i64).collect();
        if shape != var.size() {
            return Err(TrainError::Data {
                path: path.to_owned(),
                detail: format!(
                    "tensor {name} is {shape:?}, the network has {:?}",
                    var.size()
                ),
            });
        }
        let src = Tensor::from_slice(&raw.values).view(shape.as_slice());
        var.copy_(&src.to_device(var.device()));
    }
    Ok(())
}

//! TorchScript backend: a `torch.jit.trace` / `torch.jit.script` export of an architecture we do
//! not implement natively, run under the same head contract. The heads and the output size come
//! from the config ([`Architecture::TorchScript`]).
//!
//! Module contract: input NCHW float32 in 0..255 (the module divides by 255 itself, as
//! TIAToolbox's networks do); output the raw head logits NCHW `[n, raw_channels, out, out]`, as a
//! tuple or list in the declared head order, a dict keyed by head name, or a single tensor when
//! one head is declared. The same softmax / argmax as for native models is applied here.

use std::path::Path;

use tch::{CModule, IValue, Kind, Tensor};

use mtseg_types::{Architecture, HeadSpec};

use crate::errors::{InferError, LoadError};
use crate::head_transform::{input_tensor, logits_to_pending};
use crate::heads::{HeadOutputs, PendingOutputs};
use crate::model::{BatchView, Model, check_patch_size};

/// A loaded TorchScript module with declared heads.
pub struct TorchScriptModel {
    module: CModule,
    heads: Vec<HeadSpec>,
    input_size: usize,
    output_size: usize,
    device: tch::Device,
    kind: Kind,
}

impl std::fmt::Debug for TorchScriptModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchScriptModel")
            .field("heads", &self.heads)
            .field("input_size", &self.input_size)
            .field("output_size", &self.output_size)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl TorchScriptModel {
    /// Loads the module at `path` onto `device`, in eval mode, cast to `kind`.
    ///
    /// # Errors
    /// [`LoadError::InvalidArchitecture`] when `arch` is not [`Architecture::TorchScript`] or its
    /// heads are invalid; [`LoadError::Io`] when the file cannot be opened;
    /// [`LoadError::UnsupportedFormat`] when libtorch cannot load it as TorchScript.
    pub fn load(
        path: &Path,
        arch: &Architecture,
        device: tch::Device,
        kind: Kind,
    ) -> Result<Self, LoadError> {
        arch.validate()?;
        let Architecture::TorchScript {
            heads,
            input_size,
            output_size,
        } = arch
        else {
            return Err(LoadError::InvalidArchitecture {
                detail: format!("{arch} is not a TorchScript architecture"),
            });
        };
        std::fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut module =
            CModule::load_on_device(path, device).map_err(|e| LoadError::UnsupportedFormat {
                path: path.to_owned(),
                detail: format!(
                    "libtorch cannot load it as TorchScript: {}",
                    first_line(&e.to_string())
                ),
            })?;
        module.f_set_eval().map_err(|e| LoadError::Torch {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        if kind != Kind::Float {
            // bf16 (CPU or CUDA) or fp16 (CUDA): parameters and buffers cast; the input is cast
            // by `input_tensor` (0..255 integers are exact in bf16), the outputs back to f32 by
            // `logits_to_pending`.
            module.to(device, kind, false);
        }
        tracing::debug!(path = %path.display(), ?device, "torchscript model loaded");
        Ok(Self {
            module,
            heads: heads.clone(),
            input_size: *input_size as usize,
            output_size: *output_size as usize,
            device,
            kind,
        })
    }

    fn split_outputs(&self, out: IValue) -> Result<Vec<Tensor>, InferError> {
        let bad = |what: &str| InferError::Torch {
            detail: format!(
                "TorchScript module returned {what}; expected {} head tensors",
                self.heads.len()
            ),
        };
        let list = match out {
            IValue::Tensor(t) if self.heads.len() == 1 => vec![t],
            IValue::Tuple(v) | IValue::GenericList(v) => v
                .into_iter()
                .map(|v| match v {
                    IValue::Tensor(t) => Ok(t),
                    _ => Err(bad("a non-tensor item")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            IValue::TensorList(v) => v,
            IValue::GenericDict(items) => {
                let mut by_name: Vec<(String, Tensor)> = Vec::new();
                for (k, v) in items {
                    if let (IValue::String(k), IValue::Tensor(t)) = (k, v) {
                        by_name.push((k, t));
                    }
                }
                self.heads
                    .iter()
                    .map(|h| {
                        let i = by_name
                            .iter()
                            .position(|(k, _)| k == h.kind.name())
                            .ok_or_else(|| bad(&format!("a dict without key '{}'", h.kind)))?;
                        Ok::<_, InferError>(by_name.swap_remove(i).1)
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            _ => return Err(bad("an unsupported value")),
        };
        if list.len() != self.heads.len() {
            return Err(bad(&format!("{} tensors", list.len())));
        }
        Ok(list)
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

impl Model for TorchScriptModel {
    fn heads(&self) -> &[HeadSpec] {
        &self.heads
    }

    fn input_size(&self) -> usize {
        self.input_size
    }

    fn output_size(&self) -> usize {
        self.output_size
    }

    fn forward(&mut self, batch: BatchView<'_>) -> Result<HeadOutputs, InferError> {
        self.forward_pending(batch).map(PendingOutputs::finish)
    }

    fn forward_pending(&mut self, batch: BatchView<'_>) -> Result<PendingOutputs, InferError> {
        check_patch_size(self.input_size, &batch)?;
        let _guard = tch::no_grad_guard();
        if batch.is_empty() {
            return logits_to_pending(&batch, &self.heads, Vec::new(), self.output_size);
        }
        let x = input_tensor(&batch, self.device, self.kind, false)?;
        let out = self.module.forward_is(&[IValue::Tensor(x)])?;
        let raw = self.split_outputs(out)?;
        logits_to_pending(&batch, &self.heads, raw, self.output_size)
    }
}

//! Weight files as named float32 tensors, read without libtorch, and checked against an
//! architecture's state-dict layout before any model is built.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mtseg_types::Architecture;

use crate::errors::LoadError;
use crate::hovernet_spec::{expected_tensors, guess_architecture};
use crate::raw_tensor::RawTensor;
use crate::{weights_pth, weights_safetensors};

/// The tensors of a weights file, by state-dict name, in file order.
#[derive(Debug, Clone, Default)]
pub struct WeightSet {
    path: PathBuf,
    names: Vec<String>,
    tensors: HashMap<String, RawTensor>,
}

impl WeightSet {
    /// Reads a TIAToolbox `.pth` (a `torch.save`d state dict, possibly nested under a key such as
    /// `"state_dict"`) or a `.safetensors` file. The format is told by the file's first bytes, not
    /// its name. A `module.` prefix on every name (DataParallel) is removed.
    ///
    /// # Errors
    /// [`LoadError::Io`], [`LoadError::Corrupt`] (truncated file), [`LoadError::UnsupportedFormat`],
    /// [`LoadError::UnsupportedDtype`].
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let list = if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            weights_pth::read(path, &bytes)?
        } else if bytes.starts_with(&[0x80]) && bytes.len() > 2 && bytes[1] <= 5 {
            return Err(LoadError::UnsupportedFormat {
                path: path.to_owned(),
                detail: "legacy (pre-1.6, non-zip) torch.save format; re-save it with torch.save(torch.load(f), f) \
                         in torch >= 1.6, or convert it to .safetensors"
                    .into(),
            });
        } else if bytes.len() >= 9 && bytes[8] == b'{' {
            weights_safetensors::read(path, &bytes)?
        } else {
            return Err(LoadError::UnsupportedFormat {
                path: path.to_owned(),
                detail: "neither a torch.save zip archive (.pth) nor a safetensors file".into(),
            });
        };
        Ok(Self::from_list(path, list))
    }

    /// A set from (name, tensor) pairs, as if read from `path`.
    #[must_use]
    pub fn from_list(path: &Path, mut list: Vec<(String, RawTensor)>) -> Self {
        if !list.is_empty() && list.iter().all(|(n, _)| n.starts_with("module.")) {
            for (n, _) in &mut list {
                n.replace_range(.."module.".len(), "");
            }
        }
        let names = list.iter().map(|(n, _)| n.clone()).collect();
        Self {
            path: path.to_owned(),
            names,
            tensors: list.into_iter().collect(),
        }
    }

    /// The file the tensors came from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in file order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The tensor called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.get(name)
    }

    /// Removes and returns the tensor called `name`.
    pub fn take(&mut self, name: &str) -> Option<RawTensor> {
        self.tensors.remove(name)
    }

    /// Number of tensors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Checks that the set holds exactly the tensors of `arch` (TIAToolbox's `strict=True`): the
    /// first missing or mis-shaped tensor in state-dict order is reported, then any extra one.
    /// When the file matches another native architecture the error says which.
    ///
    /// # Errors
    /// [`LoadError::MissingTensor`], [`LoadError::ShapeMismatch`], [`LoadError::UnexpectedTensor`].
    pub fn check(&self, arch: &Architecture) -> Result<(), LoadError> {
        let spec = expected_tensors(arch);
        let looks_like = || {
            guess_architecture(
                |n| self.tensors.get(n).map(|t| t.shape.as_slice()),
                self.len(),
            )
            .filter(|a| a != arch)
            .map(|a| a.to_string().into_boxed_str())
        };
        for t in &spec {
            match self.tensors.get(&t.name) {
                None => {
                    return Err(LoadError::MissingTensor {
                        path: self.path.clone(),
                        tensor: t.name.clone(),
                        expected: t.shape.clone().into(),
                        architecture: arch.to_string().into(),
                        looks_like: looks_like(),
                    });
                }
                Some(found) if found.shape != t.shape => {
                    return Err(LoadError::ShapeMismatch {
                        path: self.path.clone(),
                        tensor: t.name.clone(),
                        expected: t.shape.clone().into(),
                        found: found.shape.clone().into(),
                        architecture: arch.to_string().into(),
                        looks_like: looks_like(),
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self
            .names
            .iter()
            .find(|n| !spec.iter().any(|t| &t.name == *n))
        {
            return Err(LoadError::UnexpectedTensor {
                path: self.path.clone(),
                tensor: extra.clone(),
                architecture: arch.to_string().into(),
                looks_like: looks_like(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_module_prefix() {
        let t = RawTensor {
            shape: vec![1],
            values: vec![1.0],
        };
        let w = WeightSet::from_list(
            Path::new("x"),
            vec![("module.a".into(), t.clone()), ("module.b".into(), t)],
        );
        assert_eq!(w.names(), ["a", "b"]);
        assert!(w.get("a").is_some());
    }
}

//! Outputs written under a temporary name next to the final one and renamed into place when
//! complete ([`TempOutput`]), so nothing ever appears half-written under a final name.
//!
//! The temporary name is `.<final file name>.partial-<pid>-<n>` in the final path's directory
//! (same file system, so the rename is atomic for files). A [`TempOutput`] dropped before
//! [`TempOutput::commit`] removes its temporary file or directory. An existing final *file* is
//! replaced atomically by `rename(2)`; an existing final *directory* (a Zarr store) is first
//! moved aside to `.<name>.old-<pid>-<n>`, then the new one is renamed in and the old one
//! removed, so at every moment the final name holds either the old or the new complete store
//! (or, for an instant, nothing).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::export_errors::ExportError;

/// Per-process counter that keeps temporary names of one process apart.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The directory `path` goes to (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<file name of path>.<kind>-<pid>-<n>` in the directory of `path`, unique in this process.
pub(crate) fn unique_sibling(path: &Path, kind: &str) -> PathBuf {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{kind}-{}-{n}", std::process::id()));
    parent_dir(path).join(name)
}

/// Remove a file or a directory tree; a missing path is not an error.
pub(crate) fn remove_path(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `fsync` a file or directory.
pub(crate) fn sync_path(path: &Path) -> Result<(), ExportError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| ExportError::io("fsync", path, e))
}

/// Threads used to fsync the files of a store (fsyncs on one file system are batched by its
/// journal, so issuing them in parallel costs little more than one).
const SYNC_THREADS: usize = 8;

/// `fsync` every file and directory under `root` (a Zarr store), and `root` itself.
pub(crate) fn sync_tree(root: &Path) -> Result<(), ExportError> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| ExportError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ExportError::io("list", &dir, e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| ExportError::io("stat", &path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                files.push(path);
            }
        }
        dirs.push(dir);
    }
    // Files first, then the directories (so that their entries are durable too).
    dirs.reverse();
    for group in [files, dirs] {
        let per_thread = group.len().div_ceil(SYNC_THREADS).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = group
                .chunks(per_thread)
                .map(|paths| scope.spawn(move || paths.iter().try_for_each(|p| sync_path(p))))
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("an fsync thread panicked"))
        })?;
    }
    Ok(())
}

/// Bytes of a file, or of every file under a directory.
pub(crate) fn size_on_disk(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| size_on_disk(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A file or directory being written under a temporary name; see the module docs.
#[derive(Debug)]
pub(crate) struct TempOutput {
    final_path: PathBuf,
    temp_path: PathBuf,
    /// Not yet committed: remove the temporary on drop.
    pending: bool,
}

impl TempOutput {
    /// Reserve a temporary name for `final_path` (nothing is created; a stale temporary of the
    /// same name, left by a crashed process with this pid, is removed).
    pub(crate) fn new(final_path: &Path) -> Result<Self, ExportError> {
        let temp_path = unique_sibling(final_path, "partial");
        remove_path(&temp_path).map_err(|e| ExportError::io("remove stale", &temp_path, e))?;
        Ok(Self {
            final_path: final_path.to_path_buf(),
            temp_path,
            pending: true,
        })
    }

    /// The temporary path to write to.
    pub(crate) fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// The final path.
    pub(crate) fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Move the (complete, synced) temporary to the final path and sync the directory.
    ///
    /// # Errors
    /// [`ExportError::OutputExists`] when the final path appeared meanwhile and `overwrite` is
    /// off; rename errors.
    pub(crate) fn commit(&mut self, overwrite: bool) -> Result<(), ExportError> {
        let existing = self.final_path.symlink_metadata().ok();
        match existing {
            Some(_) if !overwrite => {
                return Err(ExportError::OutputExists {
                    path: self.final_path.clone(),
                });
            }
            Some(meta) if meta.is_dir() => self.replace_dir()?,
            _ => std::fs::rename(&self.temp_path, &self.final_path)
                .map_err(|e| ExportError::io("rename into place", &self.final_path, e))?,
        }
        self.pending = false;
        sync_path(&parent_dir(&self.final_path))
    }

    /// Move the old directory aside, the new one in, and remove the old one.
    fn replace_dir(&mut self) -> Result<(), ExportError> {
        let old = unique_sibling(&self.final_path, "old");
        std::fs::rename(&self.final_path, &old)
            .map_err(|e| ExportError::io("move the old output aside", &self.final_path, e))?;
        if let Err(e) = std::fs::rename(&self.temp_path, &self.final_path) {
            // Put the old output back; the new one stays temporary and is removed on drop.
            let _ = std::fs::rename(&old, &self.final_path);
            return Err(ExportError::io("rename into place", &self.final_path, e));
        }
        if let Err(err) = remove_path(&old) {
            tracing::warn!(path = %old.display(), %err, "could not remove the replaced output");
        }
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if self.pending
            && let Err(err) = remove_path(&self.temp_path)
        {
            tracing::warn!(path = %self.temp_path.display(), %err, "could not remove a partial output");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_siblings_and_unique() {
        let a = unique_sibling(Path::new("out/slide.db"), "partial");
        let b = unique_sibling(Path::new("out/slide.db"), "partial");
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("out")));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".slide.db.partial-"), "{name}");
        assert_eq!(parent_dir(Path::new("x.db")), PathBuf::from("."));
    }

    #[test]
    fn uncommitted_temp_is_removed_and_committed_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("a.txt");
        std::fs::write(&final_path, "old").unwrap();
        {
            let t = TempOutput::new(&final_path).unwrap();
            std::fs::write(t.temp_path(), "new").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut t = TempOutput::new(&final_path).unwrap();
        std::fs::write(t.temp_path(), "new").unwrap();
        assert!(matches!(
            t.commit(false),
            Err(ExportError::OutputExists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&final_path).unwrap(), "old");
        t.commit(true).unwrap();
        assert_eq!(std::fs::read_to_string(&final_path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn directories_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("s.zarr");
        std::fs::create_dir(&final_path).unwrap();
        std::fs::write(final_path.join("old"), "x").unwrap();
        let mut t = TempOutput::new(&final_path).unwrap();
        std::fs::create_dir(t.temp_path()).unwrap();
        std::fs::write(t.temp_path().join("new"), "y").unwrap();
        t.commit(true).unwrap();
        assert!(final_path.join("new").exists());
        assert!(!final_path.join("old").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

//! The inputs of a run one by one: each slide with the overrides its manifest row gives
//! ([`SlideInput`]), and the per-slide view of `[input]` ([`InputConfig::mask_for`],
//! [`InputConfig::mpp_for`], [`InputConfig::shard_slides`], [`InputConfig::choose_shard`]).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::run_config::{InputConfig, MaskSpec};
use crate::shard::{Shard, ShardChoice, ShardError, ShardSource};

/// Where a slide was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlideOrigin {
    /// `[input] slides` of the config.
    Slides,
    /// A row of an `[input] manifest` file.
    Manifest {
        /// The manifest file, as `[input] manifest` names it.
        file: PathBuf,
        /// 1-based line of the row (of its first line, for a CSV row with a quoted line break).
        line: usize,
    },
}

impl fmt::Display for SlideOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Slides => f.write_str("[input] slides"),
            Self::Manifest { file, line } => write!(f, "{}:{line}", file.display()),
        }
    }
}

/// One input of a run: a slide (or, in patch mode, an image) and what its manifest row says
/// about it. Values left `None` fall back to `[input]` ([`InputConfig::mask_for`],
/// [`InputConfig::mpp_for`]) or, for the stem, to the file name ([`SlideInput::stem`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SlideInput {
    /// The file (manifest entries joined to the manifest's directory).
    pub path: PathBuf,
    /// The manifest's `mask` cell: a mask image (joined to the manifest's directory), or
    /// `auto` / `none`; overrides `[input] mask` for this slide.
    pub mask: Option<MaskSpec>,
    /// The manifest's `mpp` cell: microns per pixel used when the slide carries no resolution;
    /// overrides `[input] mpp` for this slide.
    pub mpp: Option<f64>,
    /// The manifest's `stem` cell: the stem of this slide's output files.
    pub stem: Option<String>,
    /// Where the slide was listed, for messages.
    pub origin: SlideOrigin,
}

impl SlideInput {
    /// A slide with no overrides, as listed in `[input] slides`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mask: None,
            mpp: None,
            stem: None,
            origin: SlideOrigin::Slides,
        }
    }

    /// The stem of this slide's outputs (`<stem>.db`, `<stem>.geojson`, ...), also what `{stem}`
    /// in `[input] mask` stands for: the manifest's `stem` if given, else the file name without
    /// its last extension (`"slide"` for a path with no file name).
    pub fn stem(&self) -> String {
        match &self.stem {
            Some(s) => s.clone(),
            None => file_stem(&self.path),
        }
    }
}

/// The file name of `path` without its last extension (`"slide"` when there is none).
pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "slide".to_string(), |s| s.to_string_lossy().into_owned())
}

impl InputConfig {
    /// The tissue mask choice for `slide`: its manifest's `mask` cell, else `[input] mask`.
    pub fn mask_for<'a>(&'a self, slide: &'a SlideInput) -> &'a MaskSpec {
        slide.mask.as_ref().unwrap_or(&self.mask)
    }

    /// Microns per pixel for `slide` when the file carries none: its manifest's `mpp` cell,
    /// else `[input] mpp`.
    pub fn mpp_for(&self, slide: &SlideInput) -> Option<f64> {
        slide.mpp.or(self.mpp)
    }

    /// The positions in [`InputConfig::slides`] of the slides `shard` runs, in order (all of
    /// them for `None`). Slide `k` belongs to shard `k % count`; more shards than slides leaves
    /// some shards empty.
    pub fn shard_slides(&self, shard: Option<Shard>) -> Vec<usize> {
        match shard {
            None => (0..self.slides.len()).collect(),
            Some(s) => s.indices(self.slides.len()).collect(),
        }
    }

    /// The shard this process runs, first match wins: `flag` (the CLI's `--shard`),
    /// `[input] shard`, the Slurm job array variables as `env` reads them
    /// ([`Shard::from_slurm_env`]; pass `|name| std::env::var(name).ok()`), else `None` (all
    /// slides). The environment is read only when neither of the first two is given.
    ///
    /// # Errors
    /// [`Shard::from_slurm_env`]'s, when the environment is read and describes no shard.
    pub fn choose_shard(
        &self,
        flag: Option<Shard>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ShardChoice>, ShardError> {
        let (shard, source) = match (flag, self.shard) {
            (Some(s), _) => (s, ShardSource::Flag),
            (None, Some(s)) => (s, ShardSource::Config),
            (None, None) => match Shard::from_slurm_env(env)? {
                Some(s) => (s, ShardSource::SlurmEnv),
                None => return Ok(None),
            },
        };
        Ok(Some(ShardChoice { shard, source }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_is_the_given_one_or_the_file_stem() {
        let mut s = SlideInput::new("a/b/slide-1.ome.tiff");
        assert_eq!(s.stem(), "slide-1.ome");
        s.stem = Some("case 7".into());
        assert_eq!(s.stem(), "case 7");
        assert_eq!(SlideInput::new("/").stem(), "slide");
    }

    #[test]
    fn origin_names_the_manifest_line() {
        let o = SlideOrigin::Manifest {
            file: "cohort/slides.csv".into(),
            line: 12,
        };
        assert_eq!(o.to_string(), "cohort/slides.csv:12");
        assert_eq!(SlideOrigin::Slides.to_string(), "[input] slides");
    }
}

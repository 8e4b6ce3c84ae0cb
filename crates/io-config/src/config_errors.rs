//! Errors of reading and validating a run config: each names the file, and where it can, the line,
//! the column, the key and the closest valid key.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a config file a problem sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl Location {
    /// The line and column of byte `offset` in `source`.
    pub fn of_offset(source: &str, offset: usize) -> Self {
        let offset = offset.min(source.len());
        let before = &source[..floor_char_boundary(source, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An error in a run config file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    Read {
        /// The config file.
        path: PathBuf,
        /// What the operating system said.
        reason: String,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    Invalid {
        /// The config file the problem is in.
        path: PathBuf,
        /// Where, when known.
        location: Option<Location>,
        /// The dotted key, e.g. `io.stride`, when known.
        key: Option<String>,
        /// What is wrong, in lower case.
        message: String,
        /// A suggestion such as the closest valid key.
        hint: Option<String>,
    },
    /// A row of an `[input] manifest` file is wrong.
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line of the row (its first line, for a CSV row with a quoted line break).
        line: usize,
        /// The CSV column the problem is in (`slide`, `mask`, `mpp`, `stem`, or the unknown
        /// name of a header field), when it is one column's.
        column: Option<String>,
        /// What is wrong, in lower case.
        message: String,
    },
}

impl ConfigError {
    /// A semantic error about `key` at `location` in `path`.
    pub(crate) fn at(
        path: &Path,
        location: Option<Location>,
        key: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            location,
            key: Some(key.to_string()),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint to an [`ConfigError::Invalid`] error.
    pub(crate) fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let Self::Invalid { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    /// The dotted key the error is about, if known.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => key.as_deref(),
            Self::Read { .. } | Self::Manifest { .. } => None,
        }
    }

    /// The 1-based line the error is about (in the config, or the manifest for
    /// [`ConfigError::Manifest`]), if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { location, .. } => location.as_ref().map(|l| l.line),
            Self::Manifest { line, .. } => Some(*line),
            Self::Read { .. } => None,
        }
    }

    /// The manifest column a [`ConfigError::Manifest`] error is about, if it is one column's.
    pub fn manifest_column(&self) -> Option<&str> {
        match self {
            Self::Manifest { column, .. } => column.as_deref(),
            Self::Read { .. } | Self::Invalid { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", path.display())
            }
            Self::Invalid {
                path,
                location,
                key,
                message,
                hint,
            } => {
                write!(f, "{}", path.display())?;
                if let Some(loc) = location {
                    write!(f, ":{}:{}", loc.line, loc.column)?;
                }
                write!(f, ": ")?;
                if let Some(key) = key {
                    write!(f, "key `{key}`: ")?;
                }
                write!(f, "{message}")?;
                if let Some(hint) = hint {
                    write!(f, "\n  hint: {hint}")?;
                }
                Ok(())
            }
            Self::Manifest {
                path,
                line,
                column,
                message,
            } => {
                write!(f, "{}:{line}: ", path.display())?;
                if let Some(column) = column {
                    write!(f, "column `{column}`: ")?;
                }
                write!(f, "{message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The closest candidate to `word` by Jaro-Winkler similarity, if it is close enough to be a
/// plausible typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The names between backticks in a serde message such as
/// "unknown field `strde`, expected one of `stride`, `margin`".
pub(crate) fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// The dotted table name (`io`, `pipeline`, ...) in force at byte `offset` of a TOML `source`:
/// the last `[header]` line before the offset.
pub(crate) fn table_at(source: &str, offset: usize) -> Option<String> {
    // Only lines that end before the offset's own line: a header's own span is not inside itself.
    let before = &source[..floor_char_boundary(source, offset.min(source.len()))];
    let before = &before[..before.rfind('\n').map_or(0, |i| i + 1)];
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.strip_prefix('['))
        .and_then(|l| l.split(']').next())
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_of_offset_counts_lines_and_columns() {
        let src = "a = 1\n[io]\nstride = 0\n";
        let off = src.find("stride").unwrap();
        assert_eq!(
            Location::of_offset(src, off),
            Location { line: 3, column: 1 }
        );
        assert_eq!(Location::of_offset(src, 0), Location { line: 1, column: 1 });
    }

    #[test]
    fn closest_finds_typos_and_rejects_unrelated_words() {
        let keys = ["stride", "margin", "tile_shape", "resolution"];
        assert_eq!(closest("strde", keys), Some("stride"));
        assert_eq!(closest("tileshape", keys), Some("tile_shape"));
        assert_eq!(closest("zzzzzz", keys), None);
    }

    #[test]
    fn backticked_names_are_extracted() {
        let m = "unknown field `strde`, expected one of `stride`, `margin`";
        assert_eq!(backticked(m), vec!["strde", "stride", "margin"]);
    }

    #[test]
    fn table_at_finds_the_enclosing_header() {
        let src = "[model]\nx = 1\n[io]\nstride = 3\n";
        assert_eq!(
            table_at(src, src.find("stride").unwrap()).as_deref(),
            Some("io")
        );
        assert_eq!(
            table_at(src, src.find("x =").unwrap()).as_deref(),
            Some("model")
        );
        assert_eq!(table_at("a = 1", 3), None);
    }

    #[test]
    fn display_names_file_line_key_and_hint() {
        let e = ConfigError::at(
            Path::new("c.toml"),
            Some(Location { line: 4, column: 1 }),
            "io.strde",
            "unknown key",
        )
        .with_hint("did you mean `stride`?");
        assert_eq!(
            e.to_string(),
            "c.toml:4:1: key `io.strde`: unknown key\n  hint: did you mean `stride`?"
        );
    }
}

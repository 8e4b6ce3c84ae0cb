//! `[input] manifest` files: a plain list of paths, or a CSV with a header row that gives a slide
//! per row with its own mask, mpp and output stem.
//!
//! **Which grammar.** The first line that is not blank and does not start with `#` decides: it
//! is a CSV header when one of its comma-separated fields is `slide` (any case, spaces and
//! quotes around it ignored); anything else is a plain list. So a plain list whose first entry
//! is a file named exactly `slide` (no extension) must list it as `./slide`.
//!
//! **Plain list.** One path or glob per line, relative to the manifest's directory; blank lines
//! and lines starting with `#` are ignored.
//!
//! **CSV** (RFC 4180: fields with commas or quotes are quoted, `""` is a quote inside a quoted
//! field). Columns, in any order: `slide` (required: a path or glob, relative to the manifest's
//! directory), `mask` (a mask image relative to the manifest's directory, or `auto` / `none`),
//! `mpp` (a positive number), `stem` (the output file stem). An empty cell, or a row shorter
//! than the header, means "use `[input]`'s value" (for `stem`: the slide's file stem). Spaces
//! around fields are ignored; rows whose cells are all empty and lines whose first non-blank
//! character is `#` (outside a quoted field) are skipped. A glob row gives every file it matches the row's mask, mpp and stem.
//!
//! Any bad row is an error naming the manifest, the 1-based line and the column: an unknown or
//! repeated column, a row with more fields than the header, a missing slide, an mpp that is not
//! a positive number, a stem that is a path, and two rows with the same output stem (their
//! outputs would overwrite each other).

use std::collections::HashMap;
use std::path::Path;

use crate::config_errors::{ConfigError, closest};
use crate::input_slides::{SlideInput, SlideOrigin};
use crate::run_config::{MaskSpec, glob_paths, is_glob};

/// The columns of a CSV manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Slide,
    Mask,
    Mpp,
    Stem,
}

impl Column {
    const ALL: [Column; 4] = [Self::Slide, Self::Mask, Self::Mpp, Self::Stem];

    fn name(self) -> &'static str {
        match self {
            Self::Slide => "slide",
            Self::Mask => "mask",
            Self::Mpp => "mpp",
            Self::Stem => "stem",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// The slides of the manifest `file` whose text is `text`, in order (globs expanded and sorted
/// in place).
///
/// # Errors
/// [`ConfigError::Manifest`] naming the file, line and (CSV) column of the first bad row.
pub(crate) fn parse_manifest(file: &Path, text: &str) -> Result<Vec<SlideInput>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let dir = file.parent().unwrap_or(Path::new(""));
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(is_csv_header) {
        Csv { file, dir }.parse(text)
    } else {
        plain_list(file, dir, text)
    }
}

/// Whether `line` (the first line that is not blank or a comment) is a CSV header.
fn is_csv_header(line: &str) -> bool {
    line.split(',').any(|f| {
        f.trim()
            .trim_matches('"')
            .trim()
            .eq_ignore_ascii_case("slide")
    })
}

fn row_error(file: &Path, line: usize, column: Option<Column>, message: String) -> ConfigError {
    ConfigError::Manifest {
        path: file.to_path_buf(),
        line,
        column: column.map(|c| c.name().to_string()),
        message,
    }
}

/// The plain grammar: one path or glob per line.
fn plain_list(file: &Path, dir: &Path, text: &str) -> Result<Vec<SlideInput>, ConfigError> {
    let mut slides = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let origin = SlideOrigin::Manifest {
            file: file.to_path_buf(),
            line: n + 1,
        };
        let p = dir.join(line);
        let paths = if is_glob(line) {
            glob_paths(&p.to_string_lossy()).map_err(|e| row_error(file, n + 1, None, e))?
        } else {
            vec![p]
        };
        slides.extend(paths.into_iter().map(|path| SlideInput {
            origin: origin.clone(),
            ..SlideInput::new(path)
        }));
    }
    Ok(slides)
}

/// `text` with every comment line (its first non-blank character is `#`, outside a quoted
/// field) emptied, its line break kept, so that byte offsets still give the right line.
fn blank_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quotes = false;
    for line in text.split_inclusive('\n') {
        if !in_quotes && line.trim_start().starts_with('#') {
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
            // `""` inside a quoted field counts twice, so the parity says whether the line
            // ends inside quotes.
            in_quotes ^= line.matches('"').count() % 2 == 1;
        }
    }
    out
}

/// The 1-based line of the record that starts at `position` in `text`: the first line at or
/// after its byte offset that is not empty. (The `csv` crate's line numbers skip empty lines.)
fn line_at(text: &str, position: Option<&csv::Position>) -> usize {
    let offset = position.map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
    let offset = offset.min(text.len());
    let start = text.as_bytes()[offset..]
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .map_or(text.len(), |i| offset + i);
    text.as_bytes()[..start]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The CSV grammar.
struct Csv<'a> {
    file: &'a Path,
    dir: &'a Path,
}

impl Csv<'_> {
    fn parse(&self, text: &str) -> Result<Vec<SlideInput>, ConfigError> {
        let text = blank_comments(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut header: Option<Vec<Column>> = None;
        let mut slides = Vec::new();
        // Output stem -> the line that first gave it.
        let mut stems: HashMap<String, usize> = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = line_at(&text, e.position());
                row_error(self.file, line, None, format!("not valid CSV: {e}"))
            })?;
            let line = line_at(&text, record.position());
            if record.iter().all(str::is_empty) {
                continue;
            }
            let Some(columns) = &header else {
                header = Some(self.header(&record, line)?);
                continue;
            };
            if record.len() > columns.len() {
                return Err(row_error(
                    self.file,
                    line,
                    None,
                    format!(
                        "the row has {} fields but the header names {} columns ({}); quote a \
                         field that holds a comma",
                        record.len(),
                        columns.len(),
                        columns
                            .iter()
                            .map(|c| c.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let cell = |c: Column| {
                columns
                    .iter()
                    .position(|&k| k == c)
                    .and_then(|i| record.get(i))
                    .filter(|v| !v.is_empty())
            };
            for slide in self.row(line, cell)? {
                let stem = slide.stem();
                if let Some(first) = stems.insert(stem.clone(), line) {
                    let column = if slide.stem.is_some() {
                        Column::Stem
                    } else {
                        Column::Slide
                    };
                    let message = if first == line {
                        format!(
                            "the glob matches several files with the output stem `{stem}` \
                             (their outputs would overwrite each other); list them one per row \
                             with their own stems"
                        )
                    } else {
                        let hint = if slide.stem.is_some() {
                            "give each row its own stem"
                        } else {
                            "add a `stem` column to tell them apart"
                        };
                        format!(
                            "output stem `{stem}` is already used by line {first} (their \
                             outputs would overwrite each other); {hint}"
                        )
                    };
                    return Err(row_error(self.file, line, Some(column), message));
                }
                slides.push(slide);
            }
        }
        Ok(slides)
    }

    /// The columns named by the header row.
    fn header(&self, record: &csv::StringRecord, line: usize) -> Result<Vec<Column>, ConfigError> {
        let mut columns: Vec<Column> = Vec::with_capacity(record.len());
        for (i, name) in record.iter().enumerate() {
            let Some(c) = Column::parse(name) else {
                let names = Column::ALL.map(Column::name);
                let mut message = if name.is_empty() {
                    format!("column {} of the header has no name", i + 1)
                } else {
                    format!("unknown column `{name}`")
                };
                message += &format!("; the columns are {}", names.join(", "));
                if let Some(c) = closest(&name.to_ascii_lowercase(), names) {
                    message += &format!(" (did you mean `{c}`?)");
                }
                return Err(ConfigError::Manifest {
                    path: self.file.to_path_buf(),
                    line,
                    column: Some(name.to_string()),
                    message,
                });
            };
            if columns.contains(&c) {
                return Err(row_error(
                    self.file,
                    line,
                    Some(c),
                    format!("column `{}` is named twice in the header", c.name()),
                ));
            }
            columns.push(c);
        }
        if !columns.contains(&Column::Slide) {
            return Err(row_error(
                self.file,
                line,
                Some(Column::Slide),
                "the header has no `slide` column".to_string(),
            ));
        }
        Ok(columns)
    }

    /// The slides of one data row (several when its `slide` is a glob).
    fn row<'r>(
        &self,
        line: usize,
        cell: impl Fn(Column) -> Option<&'r str>,
    ) -> Result<Vec<SlideInput>, ConfigError> {
        let err = |c: Column, message: String| row_error(self.file, line, Some(c), message);
        let slide = cell(Column::Slide)
            .ok_or_else(|| err(Column::Slide, "the row has no slide path".to_string()))?;
        let mask = cell(Column::Mask).map(|m| match m {
            "auto" => MaskSpec::Auto,
            "none" => MaskSpec::None,
            path => MaskSpec::Path(self.dir.join(path).to_string_lossy().into_owned()),
        });
        let mpp = match cell(Column::Mpp) {
            None => None,
            Some(text) => match text.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Some(x),
                Ok(_) => {
                    return Err(err(
                        Column::Mpp,
                        format!("must be a positive number of microns per pixel, got `{text}`"),
                    ));
                }
                Err(_) => {
                    return Err(err(
                        Column::Mpp,
                        format!("`{text}` is not a number of microns per pixel"),
                    ));
                }
            },
        };
        let stem = match cell(Column::Stem) {
            None => None,
            Some(s) if s.contains(['/', '\\']) || s == "." || s == ".." => {
                return Err(err(
                    Column::Stem,
                    format!(
                        "`{s}` is not a file name: a stem names the outputs inside [output] dir"
                    ),
                ));
            }
            Some(s) => Some(s.to_string()),
        };
        let joined = self.dir.join(slide);
        let paths = if is_glob(slide) {
            glob_paths(&joined.to_string_lossy()).map_err(|e| err(Column::Slide, e))?
        } else {
            vec![joined]
        };
        let origin = SlideOrigin::Manifest {
            file: self.file.to_path_buf(),
            line,
        };
        Ok(paths
            .into_iter()
            .map(|path| SlideInput {
                path,
                mask: mask.clone(),
                mpp,
                stem: stem.clone(),
                origin: origin.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A field as a spreadsheet writes it: quoted when it holds a comma, quote or line break.
    fn quote(field: &str) -> String {
        if field.contains([',', '"', '\n']) {
            format!("\"{}\"", field.replace('"', "\"\""))
        } else {
            field.to_string()
        }
    }

    /// A file name with commas, quotes and spaces inside (not at its ends, which are trimmed)
    /// and no glob characters.
    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9 ,\"._-]{0,12}[a-z]"
    }

    proptest! {
        /// Whatever the names and the column order, a quoted CSV reads back what was written.
        #[test]
        fn quoted_csv_reads_back_what_was_written(
            rows in proptest::collection::vec(
                (name(), proptest::option::of(name()), proptest::option::of(1u32..4000)),
                1..8,
            ),
            order in Just(Column::ALL).prop_shuffle(),
        ) {
            let header: Vec<&str> = order.iter().map(|c| c.name()).collect();
            let mut text = header.join(",") + "\n";
            for (i, (slide, stem, mpp)) in rows.iter().enumerate() {
                // unique stems: the row number is part of each
                let stem = stem.as_ref().map(|s| format!("{s}{i}"));
                let cells: Vec<String> = order
                    .iter()
                    .map(|c| match c {
                        Column::Slide => quote(slide),
                        Column::Stem => stem.as_deref().map(quote).unwrap_or_default(),
                        Column::Mpp => mpp.map(|m| format!("{}", f64::from(m) / 1000.0)).unwrap_or_default(),
                        Column::Mask => String::new(),
                    })
                    .collect();
                text += &(cells.join(",") + "\n");
            }
            let file = Path::new("cohort/list.csv");
            // Unnamed slides may share a file stem; that is checked elsewhere.
            let got = match parse_manifest(file, &text) {
                Err(ConfigError::Manifest { message, .. }) if message.contains("already used") => {
                    return Ok(());
                }
                other => other.unwrap(),
            };
            prop_assert_eq!(got.len(), rows.len());
            for (i, (s, (slide, stem, mpp))) in got.iter().zip(&rows).enumerate() {
                prop_assert_eq!(&s.path, &Path::new("cohort").join(slide));
                prop_assert_eq!(s.stem.clone(), stem.as_ref().map(|t| format!("{t}{i}")));
                prop_assert_eq!(s.mpp, mpp.map(|m| f64::from(m) / 1000.0));
                prop_assert_eq!(&s.mask, &None);
                prop_assert_eq!(
                    &s.origin,
                    &SlideOrigin::Manifest { file: file.to_path_buf(), line: i + 2 }
                );
            }
        }
    }

    #[test]
    fn the_header_decides_the_grammar() {
        for csv in ["slide", "slide,mask", " \"Slide\" ,mpp", "mask, slide"] {
            assert!(is_csv_header(csv), "{csv}");
        }
        for plain in ["slides.svs", "a,b.svs", "slide.svs", "my slide"] {
            assert!(!is_csv_header(plain), "{plain}");
        }
    }

    #[test]
    fn comment_lines_are_emptied_outside_quotes_only() {
        let text = "# a\nslide\n\"x\n# not a comment\"\n  # b\r\nlast";
        assert_eq!(
            blank_comments(text),
            "\nslide\n\"x\n# not a comment\"\n\nlast"
        );
    }
}

//! [`MemoryLimit`]: the memory budget of a run (`[pipeline] memory_limit`), with its one
//! grammar.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// The memory budget of a run.
///
/// # Grammar
///
/// ASCII case-insensitive, spaces around the text and between number and unit ignored:
///
/// - a byte size: a decimal number (`digits` or `digits.digits`) and an optional unit: none or
///   `B` (bytes), `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` (powers of 1000), `KiB`, `MiB`, `GiB`,
///   `TiB` (powers of 1024). `"512MiB"`, `"2GB"`, `"1.5 GiB"`, `"1073741824"`.
/// - a percentage of the RAM this process may use: a number in (0, 100] and `%`. `"25%"`.
///
/// Rounding: a byte size is computed exactly and rounded to the nearest byte, halves up
/// (`"1.5"` is 2 bytes, `"0.5KiB"` is 512); a percentage is resolved by
/// [`MemoryLimit::to_bytes`] rounding down, so it never exceeds its share.
///
/// Zero is refused: `"0"`, `"0GiB"`, `"0%"` and sizes that round to 0 bytes (`"0.4"`) are
/// errors, since no stage can work in zero bytes and reading "0" as "no limit" would turn a
/// typo into an unbounded run. Signs, exponents, thousands separators and `"unlimited"` are not
/// part of the grammar; [`MemoryLimit::Unlimited`] exists for code (tests, tools) only.
///
/// ```
/// use mtseg_types::MemoryLimit;
/// assert_eq!("2GB".parse::<MemoryLimit>()?, MemoryLimit::Bytes(2_000_000_000));
/// assert_eq!("512 mib".parse::<MemoryLimit>()?, MemoryLimit::Bytes(512 << 20));
/// assert_eq!("25%".parse::<MemoryLimit>()?, MemoryLimit::PercentOfRam(25.0));
/// let e = "0".parse::<MemoryLimit>().unwrap_err();
/// assert!(e.to_string().contains("zero bytes"), "{e}");
/// # Ok::<(), mtseg_types::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    /// A fixed number of bytes.
    Bytes(u64),
    /// A percentage, in (0, 100], of the RAM this process may use (physical RAM or its cgroup
    /// limit, whichever is smaller; measured by the `stitch` crate).
    PercentOfRam(f64),
    /// No limit. Not in the grammar: for tests and tools, never from a run config.
    Unlimited,
}

/// What the error text lists as accepted.
const FORMS: &str = r#"give a size such as "512MiB", "2GB", "1.5 GiB" or "1073741824" (bytes), or a percentage of RAM such as "25%""#;

impl MemoryLimit {
    /// The limit in bytes. A percentage is taken of `usable_ram()` (called only for a
    /// percentage) and rounded down; [`MemoryLimit::Unlimited`] is `u64::MAX`.
    #[must_use]
    pub fn to_bytes(self, usable_ram: impl FnOnce() -> u64) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes,
            // f64 holds every byte count below 2^53 (8 PiB) exactly; the product is rounded
            // down so that the share is never exceeded.
            Self::PercentOfRam(percent) => (usable_ram() as f64 * percent / 100.0).floor() as u64,
            Self::Unlimited => u64::MAX,
        }
    }
}

impl FromStr for MemoryLimit {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseError::new("memory limit", text, reason);
        let trimmed = text.trim();
        if let Some(percent) = trimmed.strip_suffix('%') {
            let number = percent.trim_end();
            let Some((int, frac)) = split_decimal(number) else {
                return Err(err(if number.is_empty() {
                    format!("no number before `%`; {FORMS}")
                } else {
                    format!("`{number}` is not a number; {FORMS}")
                }));
            };
            let p: f64 = format!("{int}.{}", if frac.is_empty() { "0" } else { frac })
                .parse()
                .map_err(|_| err(format!("`{number}` is not a number; {FORMS}")))?;
            if p == 0.0 {
                return Err(err(format!(
                    "a limit of 0% leaves no memory to work with; {FORMS}"
                )));
            }
            if p > 100.0 {
                return Err(err(format!(
                    "a percentage of RAM must be at most 100%, got {number}%"
                )));
            }
            return Ok(Self::PercentOfRam(p));
        }
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let Some((int, frac)) = split_decimal(number) else {
            return Err(err(if number.is_empty() {
                format!("no number; {FORMS}")
            } else {
                format!("`{number}` is not a number; {FORMS}")
            }));
        };
        let unit = unit.trim_start();
        let scale: u128 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => {
                return Err(err(format!(
                    "unknown unit `{unit}`; units are B, KB, MB, GB, TB (powers of 1000), \
                     KiB, MiB, GiB, TiB (powers of 1024) or %"
                )));
            }
        };
        let too_large = || err(format!("more than {} bytes", u64::MAX));
        // Exact decimal arithmetic: int * scale + frac * scale / 10^len(frac), rounded half up.
        if int.len() > 20 || frac.len() > 20 {
            return Err(if int.len() > 20 {
                too_large()
            } else {
                err(format!(
                    "at most 20 digits after the decimal point; {FORMS}"
                ))
            });
        }
        let int_value: u128 = int.parse().map_err(|_| too_large())?;
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| too_large())?
        };
        let denominator = 10u128.pow(frac.len() as u32);
        let frac_bytes = (frac_value * scale + denominator / 2) / denominator;
        let bytes = int_value
            .checked_mul(scale)
            .and_then(|b| b.checked_add(frac_bytes))
            .ok_or_else(too_large)?;
        let bytes = u64::try_from(bytes).map_err(|_| too_large())?;
        if bytes == 0 {
            return Err(err(format!(
                "a limit of zero bytes leaves no memory to work with; {FORMS}"
            )));
        }
        Ok(Self::Bytes(bytes))
    }
}

/// `digits` or `digits.digits` split at the point, `None` for anything else.
fn split_decimal(number: &str) -> Option<(&str, &str)> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = !int.is_empty() && digits(int) && digits(frac) && !(number.ends_with('.'));
    ok.then_some((int, frac))
}

impl fmt::Display for MemoryLimit {
    /// The grammar's form: bytes in the largest binary unit that divides them exactly
    /// ("2GiB", "1536MiB", "1000B"), a percentage as "25%", and "unlimited".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Bytes(bytes) => {
                let unit = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")]
                    .into_iter()
                    .find(|&(shift, _)| bytes != 0 && bytes % (1u64 << shift) == 0);
                match unit {
                    Some((shift, name)) => write!(f, "{}{name}", bytes >> shift),
                    None => write!(f, "{bytes}B"),
                }
            }
            Self::PercentOfRam(percent) => write!(f, "{percent}%"),
            Self::Unlimited => f.write_str("unlimited"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MemoryLimit, String> {
        text.parse::<MemoryLimit>().map_err(|e| e.to_string())
    }

    #[test]
    fn byte_sizes_parse_with_decimal_and_binary_units() {
        for (text, bytes) in [
            ("1073741824", 1 << 30),
            ("1024B", 1024),
            ("512MiB", 512 << 20),
            ("512 MiB", 512 << 20),
            ("512mib", 512 << 20),
            ("2GB", 2_000_000_000),
            ("2g", 2_000_000_000),
            ("1.5 GiB", 3 << 29),
            ("1.5GiB", 3 << 29),
            ("8GiB", 8 << 30),
            ("512 MB", 512_000_000),
            ("1k", 1000),
            ("1KiB", 1024),
            ("2TiB", 2 << 40),
            ("3tb", 3_000_000_000_000),
            (" 4 GiB ", 4 << 30),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse(text), Ok(MemoryLimit::Bytes(bytes)), "{text:?}");
        }
    }

    #[test]
    fn fractional_bytes_round_to_the_nearest_byte_halves_up() {
        assert_eq!(parse("1.5"), Ok(MemoryLimit::Bytes(2)));
        assert_eq!(parse("1.49"), Ok(MemoryLimit::Bytes(1)));
        assert_eq!(parse("0.5KiB"), Ok(MemoryLimit::Bytes(512)));
        // 0.1 GiB = 107374182.4 bytes: down; 0.3 GiB = 322122547.2: down; exact, no float error.
        assert_eq!(parse("0.1GiB"), Ok(MemoryLimit::Bytes(107_374_182)));
        assert_eq!(parse("0.3GiB"), Ok(MemoryLimit::Bytes(322_122_547)));
        // 1.0000000005 GB = 1000000000.5 bytes: half up.
        assert_eq!(
            parse("1.0000000005GB"),
            Ok(MemoryLimit::Bytes(1_000_000_001))
        );
    }

    #[test]
    fn zero_is_refused_with_its_reason() {
        for zero in ["0", "0B", "0GiB", "0.0 MB", "0.4", "0.00000000000001GB"] {
            let e = parse(zero).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "invalid memory limit `{zero}`: a limit of zero bytes"
                )),
                "{e}"
            );
            assert!(e.contains("\"512MiB\""), "{e}");
        }
        for zero in ["0%", "0.0%"] {
            let e = parse(zero).unwrap_err();
            assert!(e.contains("a limit of 0% leaves no memory"), "{e}");
        }
    }

    #[test]
    fn percentages_parse_and_resolve_rounding_down() {
        assert_eq!(parse("25%"), Ok(MemoryLimit::PercentOfRam(25.0)));
        assert_eq!(parse("12.5 %"), Ok(MemoryLimit::PercentOfRam(12.5)));
        assert_eq!(parse("100%"), Ok(MemoryLimit::PercentOfRam(100.0)));
        let limit = MemoryLimit::PercentOfRam(25.0);
        assert_eq!(limit.to_bytes(|| 8 << 30), 2 << 30);
        assert_eq!(limit.to_bytes(|| 7), 1);
        assert_eq!(MemoryLimit::PercentOfRam(50.0).to_bytes(|| 3), 1);
        assert_eq!(MemoryLimit::PercentOfRam(100.0).to_bytes(|| 1000), 1000);
        assert_eq!(MemoryLimit::Bytes(5).to_bytes(|| panic!("no probe")), 5);
        assert_eq!(
            MemoryLimit::Unlimited.to_bytes(|| panic!("no probe")),
            u64::MAX
        );
        let e = parse("150%").unwrap_err();
        assert_eq!(
            e,
            "invalid memory limit `150%`: a percentage of RAM must be at most 100%, got 150%"
        );
    }

    #[test]
    fn malformed_limits_name_the_input_and_the_accepted_forms() {
        for (bad, reason) in [
            ("", "no number"),
            ("lots", "no number"),
            ("GiB", "no number"),
            ("-3", "no number"),
            ("+3GB", "no number"),
            ("1e9", "unknown unit `e9`"),
            ("8 parsecs", "unknown unit `parsecs`"),
            ("8XB", "unknown unit `XB`"),
            ("1,000", "unknown unit `,000`"),
            ("unlimited", "no number"),
            ("1.", "`1.` is not a number"),
            (".5GiB", "`.5` is not a number"),
            ("1.2.3", "`1.2.3` is not a number"),
            ("abc%", "`abc` is not a number"),
            ("-5%", "`-5` is not a number"),
            ("%", "no number before `%`"),
            (
                "18446744073709551616",
                "more than 18446744073709551615 bytes",
            ),
            ("20000000TiB", "more than 18446744073709551615 bytes"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid memory limit `{bad}`: {reason}")),
                "{bad:?}: {e}"
            );
        }
        let e = parse("lots").unwrap_err();
        assert!(e.contains(r#""1.5 GiB""#) && e.contains(r#""25%""#), "{e}");
    }

    #[test]
    fn display_is_in_the_grammar_and_parses_back() {
        for limit in [
            MemoryLimit::Bytes(2 << 30),
            MemoryLimit::Bytes(1536 << 20),
            MemoryLimit::Bytes(1000),
            MemoryLimit::Bytes(3 << 40),
            MemoryLimit::PercentOfRam(12.5),
        ] {
            assert_eq!(
                limit.to_string().parse::<MemoryLimit>(),
                Ok(limit),
                "{limit}"
            );
        }
        assert_eq!(MemoryLimit::Bytes(2 << 30).to_string(), "2GiB");
        assert_eq!(MemoryLimit::Bytes(1000).to_string(), "1000B");
        assert_eq!(MemoryLimit::Unlimited.to_string(), "unlimited");
    }
}

//! Parsing of `[pipeline] memory_limit`: a byte size ("8GiB", "512 MB", "1073741824") or a
//! percentage of the memory available to the process ("50%").

use crate::run_config::MemoryLimit;

/// Parses a memory limit; the error text says what forms are accepted.
pub(crate) fn parse_memory_limit(text: &str) -> Result<MemoryLimit, String> {
    let t = text.trim();
    if let Some(pct) = t.strip_suffix('%') {
        let v: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage such as \"50%\""))?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(format!("a percentage must be in (0, 100], got {v}%"));
        }
        return Ok(MemoryLimit::FractionOfRam(v / 100.0));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| {
        format!("`{text}` is not a size such as \"8GiB\", \"512MB\", \"1073741824\" or \"50%\"")
    })?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0_f64.powi(4),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB or %"
            ));
        }
    };
    let bytes = v * mult;
    if !(1.0..1e18).contains(&bytes) {
        return Err(format!("`{text}` is not a usable memory size"));
    }
    Ok(MemoryLimit::Bytes(bytes as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_percentages_parse() {
        assert_eq!(parse_memory_limit("8GiB"), Ok(MemoryLimit::Bytes(8 << 30)));
        assert_eq!(
            parse_memory_limit("512 MB"),
            Ok(MemoryLimit::Bytes(512_000_000))
        );
        assert_eq!(parse_memory_limit("1024"), Ok(MemoryLimit::Bytes(1024)));
        assert_eq!(
            parse_memory_limit("1.5GiB"),
            Ok(MemoryLimit::Bytes(3 << 29))
        );
        assert_eq!(
            parse_memory_limit("50%"),
            Ok(MemoryLimit::FractionOfRam(0.5))
        );
    }

    #[test]
    fn bad_sizes_are_rejected_with_the_accepted_forms() {
        assert!(parse_memory_limit("lots").unwrap_err().contains("8GiB"));
        assert!(
            parse_memory_limit("8 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_memory_limit("0%").is_err());
        assert!(parse_memory_limit("150%").is_err());
        assert!(parse_memory_limit("0").is_err());
    }
}

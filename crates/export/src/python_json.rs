//! Compact JSON as Python writes it: `json.dumps(obj, separators=(",", ":"))`, i.e.
//! `ensure_ascii` (non-ASCII characters as lowercase `\uXXXX`, surrogate pairs above U+FFFF) and
//! floats in `repr` form (`0.93`, `12.0`, `1e-05`, `1e+16`). TIAToolbox stores the `.db`
//! properties this way, so for the same values the text is byte-identical.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

/// A [`serde_json`] formatter with Python's string escaping and float formatting.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return CompactFormatter.write_string_fragment(writer, fragment);
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Serialise `value` as Python's compact `json.dumps` would.
pub(crate) fn to_python_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(128);
    write_python_json(&mut out, value).expect("writing JSON to a Vec cannot fail");
    String::from_utf8(out).expect("the formatter writes ASCII only")
}

/// Write `value` to `writer` as Python's compact `json.dumps` would.
pub(crate) fn write_python_json<W: Write, T: Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> io::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, PythonFormatter);
    value.serialize(&mut serializer).map_err(io::Error::other)
}

/// Python's `repr(float)` of a finite value (shortest round-trip digits).
pub(crate) fn python_float_repr(value: f64) -> String {
    if !value.is_finite() {
        // JSON has no such numbers; Python would write NaN / Infinity.
        return "null".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7", "1e16", "0e0".
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    let mut out = String::from(sign);
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (point - n) as usize));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exponent.abs()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_python_repr() {
        for (v, s) in [
            (0.93, "0.93"),
            (12.0, "12.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123_456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (2.5e100, "2.5e+100"),
            (1.0 / 3.0, "0.3333333333333333"),
            (-1234.5, "-1234.5"),
        ] {
            assert_eq!(python_float_repr(v), s, "{v}");
        }
    }

    #[test]
    fn strings_are_ascii_escaped() {
        let text = to_python_json(&serde_json::json!({"type": "Épith\u{e9}lium 🙂\n\"q\""}));
        assert_eq!(
            text,
            r#"{"type":"\u00c9pith\u00e9lium \ud83d\ude42\n\"q\""}"#
        );
    }
}

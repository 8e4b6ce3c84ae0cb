//! The error of every grammar in this crate.

/// A string that is not a valid device, precision, head name or memory limit.
///
/// Its text names what was parsed, the input as given and what is accepted, e.g.
/// ``invalid device `gpu`: expected "cpu", "auto", "cuda" or "cuda:N"``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid {what} `{value}`: {reason}")]
pub struct ParseError {
    /// What was being parsed: "device", "precision", "head", "memory limit".
    pub what: &'static str,
    /// The text that was given.
    pub value: String,
    /// Why it was refused, with the accepted forms.
    pub reason: String,
}

impl ParseError {
    /// An error for `value`, parsed as `what`.
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

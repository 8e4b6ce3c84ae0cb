//! The head contract: [`HeadKind`] names a model output, [`HeadSpec`] says how many channels
//! the network computes for it.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// One output head of a multi-task segmentation model, in TIAToolbox's head contract.
///
/// The values a head carries after inference are those of TIAToolbox's `infer_batch`: `np` =
/// softmax over 2 channels, channel 1 kept; `hv` = the 2 raw channels; `tp` and `ls` = the
/// argmax class id as a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeadKind {
    /// Nuclear pixels: softmax of 2 logits, channel 1 kept (probability of "nucleus").
    Np,
    /// Horizontal and vertical distance maps: 2 raw channels.
    Hv,
    /// Nucleus type: argmax over `num_types` logits.
    Tp,
    /// Tissue layer (HoVer-Net+): argmax over `num_layers` logits.
    Ls,
}

impl HeadKind {
    /// All heads, in TIAToolbox's output order.
    pub const ALL: [Self; 4] = [Self::Np, Self::Hv, Self::Tp, Self::Ls];

    /// The config, state-dict and output name ("np", "hv", "tp", "ls").
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Np => "np",
            Self::Hv => "hv",
            Self::Tp => "tp",
            Self::Ls => "ls",
        }
    }

    /// The head with exactly this name, if it is one of the four.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }

    /// Channels of this head after inference (softmax / argmax): np 1, hv 2, tp 1, ls 1.
    #[must_use]
    pub fn output_channels(self) -> usize {
        match self {
            Self::Hv => 2,
            Self::Np | Self::Tp | Self::Ls => 1,
        }
    }
}

impl FromStr for HeadKind {
    type Err = ParseError;

    /// Parses "np", "hv", "tp" or "ls", ASCII case-insensitive, surrounding spaces ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(&s.trim().to_ascii_lowercase())
            .ok_or_else(|| ParseError::new("head", s, "heads are np, hv, tp and ls"))
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A head as a model declares it: its kind and how many channels the network computes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeadSpec {
    /// Which head.
    pub kind: HeadKind,
    /// Channels of the raw network output (logits): np 2, hv 2, tp `num_types`, ls `num_layers`.
    pub raw_channels: u32,
}

impl HeadSpec {
    /// A head spec.
    #[must_use]
    pub fn new(kind: HeadKind, raw_channels: u32) -> Self {
        Self { kind, raw_channels }
    }

    /// The raw channel count the head contract requires, if fixed: 2 for np and hv, none for tp
    /// and ls (their class count).
    #[must_use]
    pub fn required_raw_channels(kind: HeadKind) -> Option<u32> {
        match kind {
            HeadKind::Np | HeadKind::Hv => Some(2),
            HeadKind::Tp | HeadKind::Ls => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in HeadKind::ALL {
            assert_eq!(HeadKind::from_name(k.name()), Some(k));
            assert_eq!(k.name().parse(), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(HeadKind::from_name("xx"), None);
        assert_eq!(" TP".parse(), Ok(HeadKind::Tp));
        assert_eq!(
            "xx".parse::<HeadKind>().unwrap_err().to_string(),
            "invalid head `xx`: heads are np, hv, tp and ls"
        );
    }

    #[test]
    fn output_channels_follow_the_contract() {
        let ch: Vec<usize> = HeadKind::ALL.iter().map(|h| h.output_channels()).collect();
        assert_eq!(ch, [1, 2, 1, 1]);
        assert_eq!(HeadSpec::required_raw_channels(HeadKind::Hv), Some(2));
        assert_eq!(HeadSpec::required_raw_channels(HeadKind::Tp), None);
    }
}

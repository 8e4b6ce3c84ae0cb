//! Shards: one cohort split over the tasks of a Slurm job array (or any set of processes), each
//! task running every `count`-th slide.
//!
//! The rule: slide `k` (its 0-based position in [`crate::InputConfig::slides`], the config's
//! `slides` then the manifest's rows, globs expanded, in order) belongs to shard `k % count`.
//! Round robin keeps the shards within one slide of each other in size, and a shard's slides
//! stay the same for as long as the slide list does. A shard may be empty (more shards than
//! slides).
//!
//! Which shard a process runs, first match wins: the CLI's `--shard` flag, `[input] shard`, the
//! Slurm array environment ([`Shard::from_slurm_env`]), else all slides
//! ([`crate::InputConfig::choose_shard`]).

use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count` (`0 <= index < count`), written `"index/count"`.
///
/// ```
/// use mtseg_io_config::Shard;
/// let s: Shard = "1/3".parse().unwrap();
/// assert_eq!((s.index(), s.count()), (1, 3));
/// assert_eq!(s.indices(7).collect::<Vec<_>>(), vec![1, 4]);
/// assert!("3/3".parse::<Shard>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

/// Where the shard a process runs was chosen ([`crate::InputConfig::choose_shard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    /// The CLI's `--shard` flag.
    Flag,
    /// `[input] shard` in the config.
    Config,
    /// The Slurm job array variables (`SLURM_ARRAY_TASK_*`).
    SlurmEnv,
}

impl fmt::Display for ShardSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flag => "--shard",
            Self::Config => "[input] shard",
            Self::SlurmEnv => "the Slurm job array (SLURM_ARRAY_TASK_ID)",
        })
    }
}

/// The shard a process runs, and where it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardChoice {
    /// The shard.
    pub shard: Shard,
    /// Where it came from (for the run's log).
    pub source: ShardSource,
}

/// A shard that cannot be used: bad `"i/N"` text or a Slurm environment that does not describe
/// a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The text is not `"i/N"` with whole numbers.
    #[error("invalid shard `{text}`: expected \"i/N\" (shard i of N, 0 <= i < N), e.g. \"0/4\"")]
    Syntax {
        /// The text given.
        text: String,
    },
    /// `N` is zero.
    #[error("invalid shard `{text}`: the shard count must be at least 1")]
    ZeroCount {
        /// The text given.
        text: String,
    },
    /// `i` is not below `N`.
    #[error(
        "invalid shard `{index}/{count}`: the index must be below the count (shards are \
         numbered 0 to {last})",
        last = .count.saturating_sub(1)
    )]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The count given.
        count: usize,
    },
    /// `SLURM_ARRAY_TASK_ID` is set but another array variable is not.
    #[error(
        "SLURM_ARRAY_TASK_ID is set but {name} is not: cannot tell this task's shard (give \
         --shard i/N)"
    )]
    SlurmMissing {
        /// The variable that is not set.
        name: &'static str,
    },
    /// A Slurm array variable is not a whole number (or the count or step is zero).
    #[error("{name}={value:?} is not {expected} (give --shard i/N)")]
    SlurmValue {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be, e.g. "a whole number >= 1".
        expected: &'static str,
    },
    /// The task id is not `min + k * step` with `0 <= k < count` (e.g. an array given as a list
    /// such as `--array=1,4,9`).
    #[error(
        "SLURM_ARRAY_TASK_ID={id} does not fit SLURM_ARRAY_TASK_MIN={min}, \
         SLURM_ARRAY_TASK_STEP={step} and SLURM_ARRAY_TASK_COUNT={count}: the shard index \
         (id - min) / step must be a whole number from 0 to count - 1 (an array such as \
         --array=0-9 or --array=1-19:2 works; for others give --shard i/N)"
    )]
    SlurmIdOutOfRange {
        /// `SLURM_ARRAY_TASK_ID`.
        id: u64,
        /// `SLURM_ARRAY_TASK_MIN`.
        min: u64,
        /// `SLURM_ARRAY_TASK_STEP`.
        step: u64,
        /// `SLURM_ARRAY_TASK_COUNT`.
        count: u64,
    },
}

impl Shard {
    /// The Slurm variables [`Shard::from_slurm_env`] reads.
    pub const SLURM_VARIABLES: [&'static str; 4] = [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
    ];

    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`ShardError::ZeroCount`] when `count` is 0; [`ShardError::IndexOutOfRange`] when
    /// `index >= count`.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroCount {
                text: format!("{index}/{count}"),
            });
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// This shard's index, `0 <= index < count`.
    pub fn index(self) -> usize {
        self.index
    }

    /// How many shards the slides are split into (at least 1).
    pub fn count(self) -> usize {
        self.count
    }

    /// Whether slide `k` (0-based position in the slide list) belongs to this shard:
    /// `k % count == index`.
    pub fn contains(self, k: usize) -> bool {
        k % self.count == self.index
    }

    /// The positions of this shard's slides in a list of `total` slides, in order.
    pub fn indices(self, total: usize) -> impl Iterator<Item = usize> {
        (self.index..total).step_by(self.count)
    }

    /// The shard of this task of a Slurm job array, from its environment as `get` reads it
    /// (pass `|name| std::env::var(name).ok()`).
    ///
    /// The shard index is `(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`
    /// and the count `SLURM_ARRAY_TASK_COUNT`, so an array need not start at 0: `--array=1-7`
    /// gives shards 0/7 to 6/7, `--array=3-9:2` (tasks 3, 5, 7, 9) shards 0/4 to 3/4. An empty
    /// value counts as unset.
    ///
    /// # Errors
    /// `Ok(None)` when `SLURM_ARRAY_TASK_ID` is unset (not an array task). When it is set:
    /// [`ShardError::SlurmMissing`] if one of the other three is unset,
    /// [`ShardError::SlurmValue`] if one is not a whole number (or the count or step is 0),
    /// [`ShardError::SlurmIdOutOfRange`] if the id is not `min + k * step` with `k < count`.
    pub fn from_slurm_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ShardError> {
        let [id_name, count_name, min_name, step_name] = Self::SLURM_VARIABLES;
        let read = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
        let Some(id_text) = read(id_name) else {
            return Ok(None);
        };
        let number = |name: &'static str, value: String, min: u64| {
            let expected = if min == 0 {
                "a whole number >= 0"
            } else {
                "a whole number >= 1"
            };
            match value.trim().parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(ShardError::SlurmValue {
                    name,
                    value,
                    expected,
                }),
            }
        };
        let id = number(id_name, id_text, 0)?;
        let other = |name: &'static str, min: u64| {
            let value = read(name).ok_or(ShardError::SlurmMissing { name })?;
            number(name, value, min)
        };
        let count = other(count_name, 1)?;
        let min = other(min_name, 0)?;
        let step = other(step_name, 1)?;
        let out_of_range = ShardError::SlurmIdOutOfRange {
            id,
            min,
            step,
            count,
        };
        let Some(offset) = id.checked_sub(min) else {
            return Err(out_of_range);
        };
        if offset % step != 0 || offset / step >= count {
            return Err(out_of_range);
        }
        let (Ok(index), Ok(count)) = (usize::try_from(offset / step), usize::try_from(count))
        else {
            return Err(out_of_range);
        };
        Self::new(index, count).map(Some)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// Parses `"i/N"` (spaces around either number allowed), `0 <= i < N`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || ShardError::Syntax {
            text: text.to_string(),
        };
        let (i, n) = text.split_once('/').ok_or_else(syntax)?;
        let whole = |s: &str| {
            let s = s.trim();
            // `parse::<usize>` accepts a leading `+`; the grammar does not.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            s.parse::<usize>().map_err(|_| syntax())
        };
        let (index, count) = (whole(i)?, whole(n)?);
        if count == 0 {
            return Err(ShardError::ZeroCount {
                text: text.to_string(),
            });
        }
        Self::new(index, count)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn slurm(id: &str, count: &str, min: &str, step: &str) -> Result<Option<Shard>, ShardError> {
        Shard::from_slurm_env(env(&[
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_COUNT", count),
            ("SLURM_ARRAY_TASK_MIN", min),
            ("SLURM_ARRAY_TASK_STEP", step),
        ]))
    }

    #[test]
    fn parses_i_of_n_and_prints_it_back() {
        for (text, index, count) in [("0/1", 0, 1), ("3/4", 3, 4), (" 2 / 10 ", 2, 10)] {
            let s: Shard = text.parse().unwrap();
            assert_eq!((s.index(), s.count()), (index, count), "{text}");
            assert_eq!(s.to_string(), format!("{index}/{count}"));
        }
    }

    #[test]
    fn bad_shard_texts_say_what_is_wrong() {
        for text in [
            "", "3", "1/", "/4", "a/4", "1/b", "-1/4", "+1/4", "1/4/5", "1.0/4",
        ] {
            let e = text.parse::<Shard>().unwrap_err();
            assert_eq!(
                e,
                ShardError::Syntax {
                    text: text.to_string()
                },
                "{text}"
            );
            assert!(e.to_string().contains("expected \"i/N\""), "{e}");
        }
        let e = "0/0".parse::<Shard>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid shard `0/0`: the shard count must be at least 1"
        );
        let e = "4/4".parse::<Shard>().unwrap_err();
        assert_eq!(e, ShardError::IndexOutOfRange { index: 4, count: 4 });
        assert!(e.to_string().contains("numbered 0 to 3"), "{e}");
        assert_eq!(
            Shard::new(0, 0),
            Err(ShardError::ZeroCount { text: "0/0".into() })
        );
        assert_eq!(
            Shard::new(5, 2),
            Err(ShardError::IndexOutOfRange { index: 5, count: 2 })
        );
    }

    #[test]
    fn slurm_arrays_from_zero_from_one_and_with_a_step() {
        // --array=0-3
        let got: Vec<Shard> = (0..4)
            .map(|id| slurm(&id.to_string(), "4", "0", "1").unwrap().unwrap())
            .collect();
        assert_eq!(
            got,
            (0..4)
                .map(|i| Shard::new(i, 4).unwrap())
                .collect::<Vec<_>>()
        );
        // --array=1-7
        assert_eq!(
            slurm("1", "7", "1", "1"),
            Ok(Some(Shard::new(0, 7).unwrap()))
        );
        assert_eq!(
            slurm("7", "7", "1", "1"),
            Ok(Some(Shard::new(6, 7).unwrap()))
        );
        // --array=3-9:2 runs tasks 3, 5, 7, 9
        let got: Vec<usize> = [3, 5, 7, 9]
            .iter()
            .map(|id| {
                slurm(&id.to_string(), "4", "3", "2")
                    .unwrap()
                    .unwrap()
                    .index()
            })
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3]);
    }

    #[test]
    fn no_array_task_is_no_shard() {
        assert_eq!(Shard::from_slurm_env(|_| None), Ok(None));
        // a job that is not an array has SLURM_JOB_ID but no SLURM_ARRAY_TASK_ID
        assert_eq!(
            Shard::from_slurm_env(env(&[("SLURM_JOB_ID", "12"), ("SLURM_ARRAY_TASK_ID", "")])),
            Ok(None)
        );
    }

    #[test]
    fn ids_that_do_not_fit_name_the_variables() {
        for (id, count, min, step) in [
            ("2", "4", "3", "1"),  // below min
            ("4", "4", "3", "2"),  // between two steps
            ("11", "4", "3", "2"), // past the last task
            ("9", "3", "1", "1"),  // a list such as --array=1,4,9
        ] {
            let e = slurm(id, count, min, step).unwrap_err();
            assert!(matches!(e, ShardError::SlurmIdOutOfRange { .. }), "{e:?}");
            let text = e.to_string();
            for name in Shard::SLURM_VARIABLES {
                assert!(text.contains(name), "{text}");
            }
            assert!(
                text.contains(&format!("SLURM_ARRAY_TASK_ID={id}")),
                "{text}"
            );
        }
    }

    #[test]
    fn missing_or_bad_slurm_values_name_the_variable() {
        let e = Shard::from_slurm_env(env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap_err();
        assert_eq!(
            e,
            ShardError::SlurmMissing {
                name: "SLURM_ARRAY_TASK_COUNT"
            }
        );
        let e = Shard::from_slurm_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ]))
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_STEP is not"),
            "{e}"
        );
        let e = slurm("x", "4", "0", "1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "SLURM_ARRAY_TASK_ID=\"x\" is not a whole number >= 0 (give --shard i/N)"
        );
        let e = slurm("0", "4", "0", "0").unwrap_err();
        assert!(
            matches!(
                e,
                ShardError::SlurmValue {
                    name: "SLURM_ARRAY_TASK_STEP",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = slurm("0", "0", "0", "1").unwrap_err();
        assert!(
            matches!(
                e,
                ShardError::SlurmValue {
                    name: "SLURM_ARRAY_TASK_COUNT",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = slurm("0", "4", "-1", "1").unwrap_err();
        assert!(
            matches!(
                e,
                ShardError::SlurmValue {
                    name: "SLURM_ARRAY_TASK_MIN",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    proptest! {
        /// Every slide is in exactly one shard, and shard sizes differ by at most one.
        #[test]
        fn round_robin_covers_every_slide_once(total in 0usize..200, count in 1usize..40) {
            let mut seen = vec![0u32; total];
            let mut sizes = Vec::new();
            for index in 0..count {
                let shard = Shard::new(index, count).unwrap();
                let mine: Vec<usize> = shard.indices(total).collect();
                prop_assert!(mine.windows(2).all(|w| w[0] < w[1]));
                for &k in &mine {
                    prop_assert!(shard.contains(k));
                    seen[k] += 1;
                }
                sizes.push(mine.len());
            }
            prop_assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{sizes:?}");
        }

        /// Every task of an array `--array=min-max:step` gets a different shard, together all
        /// of them.
        #[test]
        fn every_slurm_task_gets_its_own_shard(min in 0u64..50, step in 1u64..5, count in 1u64..30) {
            let mut got: Vec<usize> = (0..count)
                .map(|k| {
                    let id = min + k * step;
                    let s = slurm(&id.to_string(), &count.to_string(), &min.to_string(), &step.to_string())
                        .unwrap()
                        .unwrap();
                    assert_eq!(s.count() as u64, count);
                    s.index()
                })
                .collect();
            got.sort_unstable();
            prop_assert_eq!(got, (0..count as usize).collect::<Vec<_>>());
        }
    }
}

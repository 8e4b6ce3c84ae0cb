//! The memory budget: a byte limit from the run config (`[pipeline] memory_limit`) and
//! reservations against it that give their bytes back when dropped.
//!
//! Every consumer whose size depends on the slide reserves: the stitch window, out-of-order
//! patches waiting for their turn, canvas rows handed downstream (each [`crate::CanvasRows`]
//! carries its reservation, [`HeldMemory`], until it is dropped), the in-RAM full canvas and the
//! Zarr writers' shard-row buffers. What is not tracked does not depend on the slide size (see
//! the crate docs, "Memory").
//!
//! A reservation either fails at once ([`MemoryBudget::try_reserve`]) or waits for other holders
//! to give bytes back ([`MemoryBudget::reserve_waiting`]): the stitch stage waits so for the
//! consumer of its rows to drop earlier rows, which is how back-pressure reaches it through the
//! budget as well as through the bounded channel.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;

/// How the memory limit was written in the config.
///
/// Parsed from `"8GiB"`, `"512MB"`, `"1000000"` (bytes), `"50%"` (of the RAM this process may use,
/// see [`usable_ram_bytes`]) or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    /// A fixed number of bytes.
    Bytes(u64),
    /// A percentage (0 < p <= 100) of the usable RAM.
    PercentOfRam(f64),
    /// No limit (tests and tools; a run config always has a limit).
    Unlimited,
}

impl MemoryLimit {
    /// The limit in bytes; a percentage is taken of [`usable_ram_bytes`].
    #[must_use]
    pub fn resolve_bytes(self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::PercentOfRam(percent) => {
                let ram = usable_ram_bytes() as f64;
                (ram * percent / 100.0).floor() as u64
            }
            Self::Unlimited => u64::MAX,
        }
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(bytes) => write!(f, "{bytes} bytes"),
            Self::PercentOfRam(percent) => write!(f, "{percent}% of RAM"),
            Self::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A memory limit string that could not be parsed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
#[error(
    "invalid [pipeline] memory_limit {text:?}: expected bytes with an optional unit \
     (\"8GiB\", \"512MB\", \"1000000\"), a percentage of RAM (\"50%\") or \"unlimited\""
)]
pub struct MemoryLimitParseError {
    /// The text that was given.
    pub text: String,
}

impl FromStr for MemoryLimit {
    type Err = MemoryLimitParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || MemoryLimitParseError {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("unlimited") {
            return Ok(Self::Unlimited);
        }
        if let Some(percent) = trimmed.strip_suffix('%') {
            let p: f64 = percent.trim().parse().map_err(|_| err())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(err());
            }
            return Ok(Self::PercentOfRam(p));
        }
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let value: f64 = number.parse().map_err(|_| err())?;
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(err()),
        };
        if !value.is_finite() || value < 0.0 {
            return Err(err());
        }
        Ok(Self::Bytes((value * scale).round() as u64))
    }
}

/// The RAM this process may use: physical RAM (sysinfo), lowered to the cgroup memory limit
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`) of this process and its parents when smaller.
#[must_use]
pub fn usable_ram_bytes() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let physical = system.total_memory();
    let cgroup = read_cgroup_limit(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup"));
    match cgroup {
        Some(limit) if limit < physical || physical == 0 => limit,
        _ => physical,
    }
}

/// The smallest memory limit of the cgroup named in `proc_cgroup` (the text of
/// `/proc/self/cgroup`) and its ancestors, under the cgroup file system mounted at `cgroup_root`.
/// `None` when no limit is set or nothing can be read.
fn read_cgroup_limit(proc_cgroup: &Path, cgroup_root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc_cgroup).ok()?;
    let mut best: Option<u64> = None;
    let mut consider = |value: Option<u64>| {
        if let Some(v) = value {
            best = Some(best.map_or(v, |b| b.min(v)));
        }
    };
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup v2 (unified hierarchy): memory.max, "max" when unlimited.
            for dir in ancestors(cgroup_root, relative) {
                consider(read_limit_file(&dir.join("memory.max")));
            }
            // A hybrid layout mounts the unified tree at /sys/fs/cgroup/unified.
            for dir in ancestors(&cgroup_root.join("unified"), relative) {
                consider(read_limit_file(&dir.join("memory.max")));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            // cgroup v1: memory.limit_in_bytes, a huge number when unlimited.
            for dir in ancestors(&cgroup_root.join("memory"), relative) {
                consider(read_limit_file(&dir.join("memory.limit_in_bytes")));
            }
        }
    }
    best
}

/// `root/relative` and each of its parents up to `root`.
fn ancestors(root: &Path, relative: &str) -> Vec<std::path::PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut dir = root.to_path_buf();
    for part in relative.split('/').filter(|p| !p.is_empty()) {
        dir = dir.join(part);
        dirs.push(dir.clone());
    }
    dirs
}

/// A cgroup limit file: a number, or `max`; values at or above 2^60 mean "no limit" (v1 writes
/// `PAGE_COUNTER_MAX` pages).
fn read_limit_file(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: u64 = text.trim().parse().ok()?;
    (value < (1u64 << 60)).then_some(value)
}

/// A reservation was refused: the budget would be exceeded.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
#[error(
    "memory budget exceeded: {consumer} needs {requested} more bytes, but {used} of the \
     {limit} bytes of [pipeline] memory_limit are in use; raise [pipeline] memory_limit"
)]
pub struct MemoryRefused {
    /// Who asked.
    pub consumer: String,
    /// Bytes asked for.
    pub requested: u64,
    /// Bytes reserved at the time.
    pub used: u64,
    /// The limit in bytes.
    pub limit: u64,
}

#[derive(Debug, Default)]
struct BudgetState {
    used: u64,
    peak: u64,
    /// Counts the shrinks that gave bytes back (wakes waiting reservations).
    releases: u64,
}

#[derive(Debug)]
struct BudgetInner {
    limit: u64,
    state: Mutex<BudgetState>,
    released: Condvar,
}

/// A shared byte budget. Cloning gives another handle on the same budget.
///
/// ```
/// use mtseg_stitch::{MemoryBudget, MemoryLimit};
/// let budget = MemoryBudget::new(MemoryLimit::Bytes(1000));
/// let mut window = budget.try_reserve(600, "stitch window").unwrap();
/// assert!(budget.try_reserve(600, "full canvas").is_err());
/// window.shrink(600);
/// assert_eq!(budget.used(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

impl MemoryBudget {
    /// A budget with the given limit (a percentage is resolved now).
    #[must_use]
    pub fn new(limit: MemoryLimit) -> Self {
        Self::with_bytes(limit.resolve_bytes())
    }

    /// A budget of `limit` bytes.
    #[must_use]
    pub fn with_bytes(limit: u64) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                limit,
                state: Mutex::new(BudgetState::default()),
                released: Condvar::new(),
            }),
        }
    }

    /// A budget that refuses nothing.
    #[must_use]
    pub fn unlimited() -> Self {
        Self::with_bytes(u64::MAX)
    }

    /// The limit in bytes.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Bytes reserved now.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.state().used
    }

    /// The most bytes reserved at once so far.
    #[must_use]
    pub fn peak(&self) -> u64 {
        self.state().peak
    }

    /// Reserve `bytes` for `consumer` (named in the error when refused).
    ///
    /// # Errors
    /// [`MemoryRefused`] when the reservation would exceed the limit.
    pub fn try_reserve(
        &self,
        bytes: u64,
        consumer: &str,
    ) -> Result<MemoryReservation, MemoryRefused> {
        let mut reservation = self.empty_reservation(consumer);
        reservation.try_grow(bytes)?;
        Ok(reservation)
    }

    /// Reserve `bytes` for `consumer`, waiting while the budget is full for other holders to
    /// give bytes back. It waits as long as some reservation of this budget shrinks at least
    /// once every `stall`; `Duration::ZERO` does not wait (as [`MemoryBudget::try_reserve`]).
    ///
    /// # Errors
    /// [`MemoryRefused`] at once when `bytes` exceeds the whole limit, or after `stall` passed
    /// with no bytes given back.
    pub fn reserve_waiting(
        &self,
        bytes: u64,
        consumer: &str,
        stall: Duration,
    ) -> Result<MemoryReservation, MemoryRefused> {
        let mut reservation = self.empty_reservation(consumer);
        reservation.grow_waiting(bytes, stall)?;
        Ok(reservation)
    }

    /// A reservation of zero bytes, to grow later.
    #[must_use]
    pub fn empty_reservation(&self, consumer: &str) -> MemoryReservation {
        MemoryReservation {
            budget: self.clone(),
            consumer: consumer.to_owned(),
            size: 0,
        }
    }

    fn state(&self) -> MutexGuard<'_, BudgetState> {
        // A poisoned lock only means another thread panicked while adding two integers; the
        // counters are still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Bytes held against a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct MemoryReservation {
    budget: MemoryBudget,
    consumer: String,
    size: u64,
}

impl MemoryReservation {
    /// Bytes held.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hold `bytes` more.
    ///
    /// # Errors
    /// [`MemoryRefused`] when the budget would be exceeded; the reservation is unchanged then.
    pub fn try_grow(&mut self, bytes: u64) -> Result<(), MemoryRefused> {
        let mut state = self.budget.state();
        let limit = self.budget.inner.limit;
        match state.used.checked_add(bytes) {
            Some(total) if total <= limit => {
                state.used = total;
                state.peak = state.peak.max(total);
                self.size += bytes;
                Ok(())
            }
            _ => Err(MemoryRefused {
                consumer: self.consumer.clone(),
                requested: bytes,
                used: state.used,
                limit,
            }),
        }
    }

    /// Hold `bytes` more, waiting while the budget is full (see
    /// [`MemoryBudget::reserve_waiting`]).
    ///
    /// # Errors
    /// [`MemoryRefused`] when `bytes` exceeds the limit, or when `stall` passed with no bytes
    /// given back; the reservation is unchanged then.
    pub fn grow_waiting(&mut self, bytes: u64, stall: Duration) -> Result<(), MemoryRefused> {
        let inner = &self.budget.inner;
        let mut state = self.budget.state();
        let mut seen = state.releases;
        // `None`: a stall too long to represent, i.e. wait for as long as it takes.
        let mut deadline = Instant::now().checked_add(stall);
        loop {
            match state.used.checked_add(bytes) {
                Some(total) if total <= inner.limit => {
                    state.used = total;
                    state.peak = state.peak.max(total);
                    self.size += bytes;
                    return Ok(());
                }
                _ => {}
            }
            let now = Instant::now();
            if bytes > inner.limit || deadline.is_some_and(|d| now >= d) {
                return Err(MemoryRefused {
                    consumer: self.consumer.clone(),
                    requested: bytes,
                    used: state.used,
                    limit: inner.limit,
                });
            }
            state = match deadline {
                Some(d) => {
                    inner
                        .released
                        .wait_timeout(state, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => inner
                    .released
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            if state.releases != seen {
                seen = state.releases;
                deadline = Instant::now().checked_add(stall);
            }
        }
    }

    /// Give back `bytes` (at most what is held).
    pub fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.size);
        if bytes == 0 {
            return;
        }
        let mut state = self.budget.state();
        state.used -= bytes;
        state.releases = state.releases.wrapping_add(1);
        self.size -= bytes;
        drop(state);
        self.budget.inner.released.notify_all();
    }

    /// The budget this reservation holds bytes of.
    #[must_use]
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Hold exactly `bytes`.
    ///
    /// # Errors
    /// [`MemoryRefused`] when growing would exceed the budget.
    pub fn try_resize(&mut self, bytes: u64) -> Result<(), MemoryRefused> {
        if bytes >= self.size {
            self.try_grow(bytes - self.size)
        } else {
            self.shrink(self.size - bytes);
            Ok(())
        }
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        self.shrink(self.size);
    }
}

/// Bytes of a [`MemoryBudget`] held by a value (e.g. [`crate::CanvasRows`]) for as long as it
/// lives; given back when the value is dropped.
///
/// It does not take part in the value's identity: a clone holds nothing (the clone's memory is
/// the cloner's to account for), and any two compare equal.
#[derive(Debug, Default)]
pub struct HeldMemory(Option<MemoryReservation>);

impl HeldMemory {
    /// Nothing held.
    #[must_use]
    pub fn none() -> Self {
        Self(None)
    }

    /// Hold `reservation` until dropped.
    #[must_use]
    pub fn new(reservation: MemoryReservation) -> Self {
        Self(Some(reservation))
    }

    /// Bytes held.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, MemoryReservation::size)
    }

    /// Take the reservation out (to hand it to a new owner, or to drop it early).
    pub fn take(&mut self) -> Option<MemoryReservation> {
        self.0.take()
    }
}

impl From<MemoryReservation> for HeldMemory {
    fn from(reservation: MemoryReservation) -> Self {
        Self::new(reservation)
    }
}

impl Clone for HeldMemory {
    fn clone(&self) -> Self {
        Self::none()
    }
}

impl PartialEq for HeldMemory {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!(
            "8GiB".parse::<MemoryLimit>().unwrap(),
            MemoryLimit::Bytes(8 << 30)
        );
        assert_eq!(
            "512 MB".parse::<MemoryLimit>().unwrap(),
            MemoryLimit::Bytes(512_000_000)
        );
        assert_eq!(
            "1000".parse::<MemoryLimit>().unwrap(),
            MemoryLimit::Bytes(1000)
        );
        assert_eq!(
            "50%".parse::<MemoryLimit>().unwrap(),
            MemoryLimit::PercentOfRam(50.0)
        );
        assert_eq!(
            "unlimited".parse::<MemoryLimit>().unwrap(),
            MemoryLimit::Unlimited
        );
        for bad in ["", "8XB", "150%", "0%", "-3", "GiB"] {
            let err = bad.parse::<MemoryLimit>().unwrap_err();
            assert!(err.to_string().contains("memory_limit"), "{err}");
        }
    }

    #[test]
    fn percent_resolves_below_ram() {
        let ram = usable_ram_bytes();
        assert!(ram > 0);
        let half = MemoryLimit::PercentOfRam(50.0).resolve_bytes();
        assert!(half <= ram / 2 + 1 && half + 1 >= ram / 2);
    }

    #[test]
    fn reservations_return_on_drop() {
        let budget = MemoryBudget::with_bytes(100);
        let a = budget.try_reserve(60, "a").unwrap();
        let err = budget.try_reserve(50, "full canvas").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[pipeline] memory_limit"), "{msg}");
        assert!(msg.contains("full canvas") && msg.contains("50") && msg.contains("100"));
        let mut b = budget.try_reserve(40, "b").unwrap();
        assert_eq!(budget.used(), 100);
        assert!(b.try_grow(1).is_err());
        assert_eq!(b.size(), 40);
        b.try_resize(10).unwrap();
        assert_eq!(budget.used(), 70);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.peak(), 100);
    }

    #[test]
    fn waiting_reservations_get_released_bytes() {
        let budget = MemoryBudget::with_bytes(100);
        let held = budget.try_reserve(80, "rows downstream").unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        let got = budget
            .reserve_waiting(50, "next rows", Duration::from_secs(10))
            .unwrap();
        assert_eq!(got.size(), 50);
        releaser.join().unwrap();
        assert_eq!(budget.used(), 50);
        // Nothing is given back: refused after the stall time.
        let started = Instant::now();
        let err = budget
            .reserve_waiting(60, "more rows", Duration::from_millis(30))
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(err.to_string().contains("[pipeline] memory_limit"), "{err}");
        // More than the whole limit: refused at once, even with no stall limit.
        let started = Instant::now();
        assert!(
            budget
                .reserve_waiting(101, "too big", Duration::MAX)
                .is_err()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(got);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn held_memory_is_not_part_of_the_value() {
        let budget = MemoryBudget::with_bytes(100);
        let held = HeldMemory::new(budget.try_reserve(30, "rows").unwrap());
        assert_eq!(held.bytes(), 30);
        let copy = held.clone();
        assert_eq!(copy.bytes(), 0);
        assert_eq!(copy, held);
        assert_eq!(budget.used(), 30);
        drop(held);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn cgroup_v1_and_v2_limits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        // v2: the limit on a parent applies to the child.
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/memory.max"), "1048576\n").unwrap();
        std::fs::write(root.join("a/b/memory.max"), "max\n").unwrap();
        let proc_v2 = dir.path().join("cgroup_v2");
        std::fs::write(&proc_v2, "0::/a/b\n").unwrap();
        assert_eq!(read_cgroup_limit(&proc_v2, &root), Some(1_048_576));
        // v1: the memory controller's limit; the "unlimited" value is ignored.
        std::fs::create_dir_all(root.join("memory/job")).unwrap();
        std::fs::write(
            root.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(root.join("memory/job/memory.limit_in_bytes"), "2097152\n").unwrap();
        let proc_v1 = dir.path().join("cgroup_v1");
        std::fs::write(&proc_v1, "5:cpu:/\n4:memory:/job\n").unwrap();
        assert_eq!(read_cgroup_limit(&proc_v1, &root), Some(2_097_152));
        // Nothing readable: no limit.
        assert_eq!(read_cgroup_limit(&dir.path().join("none"), &root), None);
    }
}

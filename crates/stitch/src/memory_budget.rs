//! The memory budget: a byte limit from the run config (`[pipeline] memory_limit`) and
//! reservations against it that give their bytes back when dropped.
//!
//! Every consumer whose size depends on the slide reserves: the stitch window, out-of-order
//! patches waiting for their turn, canvas rows handed downstream (each [`crate::CanvasRows`]
//! carries its reservation, [`HeldMemory`], until it is dropped), the probability store's
//! shard-row buffer, and what the caller reserves itself (the pipeline's post-processing row
//! window). What is not tracked does not depend on the slide size (see the crate docs, "Memory").
//!
//! A reservation either fails at once ([`MemoryBudget::try_reserve`]) or waits for other holders
//! to give bytes back ([`MemoryBudget::reserve_waiting`]): the stitcher waits so for the
//! consumer of its rows to drop earlier rows, which is how back-pressure reaches it through the
//! budget as well as through a bounded channel.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mtseg_types::MemoryLimit;
use thiserror::Error;

/// The RAM this process may use: physical RAM, lowered to the memory limit of its cgroup (v2
/// `memory.max` or v1 `memory.limit_in_bytes`, as `sysinfo` reads them under `/sys/fs/cgroup`)
/// when that is smaller. A [`MemoryLimit::PercentOfRam`] is a share of this.
#[must_use]
pub fn usable_ram_bytes() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let physical = system.total_memory();
    if physical == 0 {
        // Nothing readable (sysinfo asserts a refreshed total before reading cgroup limits).
        return 0;
    }
    system
        .cgroup_limits()
        .map_or(physical, |cgroup| cgroup.total_memory.min(physical))
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
/// assert!(budget.try_reserve(600, "canvas rows").is_err());
/// window.shrink(600);
/// assert_eq!(budget.used(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

impl MemoryBudget {
    /// A budget with the given limit (a percentage is resolved now, of [`usable_ram_bytes`]).
    #[must_use]
    pub fn new(limit: MemoryLimit) -> Self {
        Self::with_bytes(limit.to_bytes(usable_ram_bytes))
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
    fn percent_resolves_below_ram() {
        let ram = usable_ram_bytes();
        assert!(ram > 0);
        let half = MemoryBudget::new(MemoryLimit::PercentOfRam(50.0)).limit();
        assert!(half <= ram / 2 + 1 && half + 1 >= ram / 2);
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        assert!(ram <= system.total_memory());
        if let Some(cgroup) = system.cgroup_limits() {
            assert_eq!(ram, cgroup.total_memory.min(system.total_memory()));
        }
    }

    #[test]
    fn reservations_return_on_drop() {
        let budget = MemoryBudget::with_bytes(100);
        let a = budget.try_reserve(60, "a").unwrap();
        let err = budget.try_reserve(50, "canvas rows").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[pipeline] memory_limit"), "{msg}");
        assert!(msg.contains("canvas rows") && msg.contains("50") && msg.contains("100"));
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
}

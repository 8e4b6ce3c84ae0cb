//! libtorch's CPU threads wait passively between parallel regions.
//!
//! libtorch (the PyPI build) runs its intra-op threads on GNU OpenMP, whose idle threads spin
//! for a while (`OMP_WAIT_POLICY` unset: ~300k iterations) before they sleep. The pipeline gives
//! libtorch every core while reading, stitching and post-processing run on the same cores; a
//! spinning OpenMP thread then takes a core from them, and a descheduled one stalls the
//! forward's barrier. On 2 cores, 2 libtorch threads beside the other stages made the cheap
//! model's run 113 s instead of 41 s with `OMP_WAIT_POLICY=PASSIVE` (README, "Threads").
//!
//! libgomp reads the variable once, when it is loaded, before `main`: setting it from inside
//! the process is too late. So the binary starts itself again, once, with the variable set,
//! unless the user set it (any value is kept).

use std::ffi::OsString;

/// The variable libgomp reads.
const VAR: &str = "OMP_WAIT_POLICY";

/// Whether the process must restart with `OMP_WAIT_POLICY=PASSIVE`: only when the variable is
/// unset.
pub(crate) fn needs_restart(current: Option<OsString>) -> bool {
    current.is_none()
}

/// The wait policy this process runs with, as `--dry-run` prints it.
pub(crate) fn current_policy() -> String {
    std::env::var(VAR).unwrap_or_else(|_| "unset: spinning".into())
}

/// Restarts the binary with `OMP_WAIT_POLICY=PASSIVE` (same arguments, same process id) when
/// the variable is unset. Returns only when nothing had to be done, or when the restart failed
/// (then the run goes on with OpenMP's default policy, after a warning).
pub(crate) fn ensure_passive_wait() {
    if !needs_restart(std::env::var_os(VAR)) {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: cannot set {VAR}=PASSIVE (no path to this binary: {e})");
            return;
        }
    };
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(args).env(VAR, "PASSIVE").exec();
    eprintln!("warning: cannot restart with {VAR}=PASSIVE ({err}); libtorch's threads will spin");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unset_policy_restarts() {
        assert!(needs_restart(None));
        assert!(!needs_restart(Some("ACTIVE".into())));
        assert!(!needs_restart(Some("PASSIVE".into())));
        assert!(!needs_restart(Some(OsString::new())));
    }
}

//! Link settings shared by the build scripts of the crates that link libtorch (`mtseg-infer`,
//! `mtseg-pipeline`, `mtseg-train` with their `torch` feature, and `mtseg-cli`).
//!
//! # Place in the build
//!
//! ```text
//! torch-sys (links = "tch") --DEP_TCH_LIBTORCH_LIB--> <crate>/build.rs --> mtseg_torch_link::emit*
//!     --cargo:rustc-link-arg--> the crate's binaries, tests and benches
//! ```
//!
//! Two settings are emitted:
//!
//! - `-Wl,-rpath,<libtorch lib dir>`, so binaries, test and bench binaries run without
//!   `LD_LIBRARY_PATH`;
//! - where `libtorch_cuda.so` exists in that folder, `-Wl,--no-as-needed,-ltorch_cuda,--as-needed`:
//!   no symbol of it is referenced directly, so `--as-needed` would drop it and CUDA would look
//!   absent at run time.
//!
//! # Example
//!
//! The `main` of the `build.rs` of a crate whose `torch` feature enables `dep:torch-sys` is this
//! one call (with `mtseg-torch-link` in its `[build-dependencies]`):
//!
//! ```no_run
//! mtseg_torch_link::emit_if_torch_feature();
//! ```
//!
//! # Choices a reader might question
//!
//! - **The linking crate needs `torch-sys` as a direct dependency.** Cargo passes a `links`
//!   crate's metadata (`DEP_TCH_LIBTORCH_LIB`) only to the build scripts of its direct dependents,
//!   so this helper reads the variable in the calling build script's environment; it cannot get
//!   it through a dependency of its own.
//! - **A missing `DEP_TCH_LIBTORCH_LIB` is a warning, not an error**: the build still succeeds and
//!   the binaries run with `LD_LIBRARY_PATH` set.

use std::path::Path;

/// The variable through which `torch-sys` (`links = "tch"`) tells its direct dependents' build
/// scripts where libtorch's libraries are.
const LIBTORCH_LIB_VAR: &str = "DEP_TCH_LIBTORCH_LIB";

/// Emits the link settings (see the crate docs) when the calling package is built with its
/// `torch` feature, and only the rerun triggers otherwise. For crates whose `torch` feature
/// enables `dep:torch-sys`; call it from `build.rs`.
pub fn emit_if_torch_feature() {
    print_rerun_triggers();
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        print_link_args();
    }
}

/// Emits the link settings (see the crate docs) unconditionally. For crates that always link
/// libtorch (a non-optional `torch-sys` dependency); call it from `build.rs`.
pub fn emit() {
    print_rerun_triggers();
    print_link_args();
}

fn print_rerun_triggers() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={LIBTORCH_LIB_VAR}");
}

fn print_link_args() {
    let Some(lib) = std::env::var_os(LIBTORCH_LIB_VAR) else {
        println!("cargo:warning={LIBTORCH_LIB_VAR} is not set; binaries will need LD_LIBRARY_PATH");
        return;
    };
    for arg in link_args(Path::new(&lib)) {
        println!("cargo:rustc-link-arg={arg}");
    }
}

/// The linker arguments for libtorch's library folder `lib`.
fn link_args(lib: &Path) -> Vec<String> {
    let mut args = vec![format!("-Wl,-rpath,{}", lib.display())];
    if lib.join("libtorch_cuda.so").exists() {
        args.push("-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::link_args;

    #[test]
    fn cuda_library_is_kept_only_where_it_exists() {
        let dir = std::env::temp_dir().join(format!("mtseg-torch-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rpath = format!("-Wl,-rpath,{}", dir.display());
        assert_eq!(link_args(&dir), std::slice::from_ref(&rpath));
        std::fs::write(dir.join("libtorch_cuda.so"), b"").unwrap();
        assert_eq!(
            link_args(&dir),
            [
                rpath,
                "-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_owned()
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

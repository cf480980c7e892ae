//! Build-script support for crates that use ringfeed with its `tch`
//! feature: one call in `build.rs` links the crate's binaries (bins, tests,
//! examples, benches) to the libtorch that torch-sys built against.
//!
//! torch-sys links libtorch but cannot give the binaries of the crates
//! above it the two flags they need: an rpath to libtorch's `lib/`, so they
//! run without `LD_LIBRARY_PATH` (without it they fail at start with
//! "libtorch_cpu.so: cannot open shared object file"), and `libtorch_cuda`
//! linked with `--no-as-needed`, which rustc's default `--as-needed` would
//! drop because no symbol refers to it, leaving CUDA silently unavailable.
//! Link arguments never propagate from a dependency, so each crate that
//! builds binaries prints them from its own build script:
//!
//! ```toml
//! [build-dependencies]
//! ringfeed-build = { path = "../ringfeed/build-support" }
//! ```
//!
//! ```no_run
//! // build.rs, in `fn main() { … }`:
//! ringfeed_build::link_libtorch();
//! ```
//!
//! Where libtorch is, in order:
//!
//! 1. what ringfeed's build script reports to the crates that depend on it
//!    directly (`DEP_RINGFEED_LIBTORCH_LIB`): the directory torch-sys
//!    linked, however torch-sys found it. When ringfeed says it was built
//!    without `tch` (`DEP_RINGFEED_TCH=off`), nothing links libtorch and
//!    nothing is printed, so the call can stay in `build.rs` whether or not
//!    a feature of the calling crate turns `tch` on;
//! 2. torch-sys' own report to its direct dependents
//!    (`DEP_TCH_LIBTORCH_LIB`);
//! 3. torch-sys' rules, for a crate that does not depend on ringfeed
//!    directly: `LIBTORCH_USE_PYTORCH` (the active Python's torch),
//!    `LIBTORCH_LIB` or `LIBTORCH` (plus `lib/`), `/usr/lib/libtorch.so`.
//!
//! If none gives a directory holding libtorch, the build fails with a
//! message saying how to install it (`scripts/install-libtorch.sh` in the
//! ringfeed repository puts it in `.libtorch/`; torch-sys itself needs
//! `LIBTORCH` pointing there).
//!
//! The call prints `cargo:rerun-if-env-changed` lines, so, as for any
//! build script that prints one, cargo reruns the calling `build.rs` only
//! when those variables (or files it names itself) change.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables torch-sys reads (and the helper after it); a change reruns the
/// calling build script.
const WATCHED: [&str; 4] = ["LIBTORCH", "LIBTORCH_LIB", "LIBTORCH_USE_PYTORCH", "VIRTUAL_ENV"];

/// Prints the link arguments that put libtorch's `lib/` in the rpath of
/// the calling package's binaries and keep `libtorch_cuda` linked when the
/// libtorch has CUDA; prints nothing when ringfeed is built without `tch`.
///
/// # Panics
///
/// When libtorch is needed and cannot be found, or the directory found does
/// not hold it, with a message saying what was looked at and how to install
/// it: a build error, not a binary that fails to start.
pub fn link_libtorch() {
    match libtorch_lib() {
        Ok(Some(lib)) => print_link_args(&lib),
        Ok(None) => {}
        Err(message) => panic!("{message}"),
    }
}

/// The libtorch library directory the calling package's binaries link
/// against, found as the crate docs list; `Ok(None)` when ringfeed reports
/// it was built without `tch`.
///
/// # Errors
///
/// A message for the user when no libtorch is found, or the directory found
/// does not hold it.
pub fn libtorch_lib() -> Result<Option<PathBuf>, String> {
    for name in WATCHED {
        println!("cargo:rerun-if-env-changed={name}");
    }
    let (lib, from) = if let Some(lib) = env::var_os("DEP_RINGFEED_LIBTORCH_LIB") {
        (PathBuf::from(lib), "ringfeed's build (DEP_RINGFEED_LIBTORCH_LIB)".to_owned())
    } else if env::var("DEP_RINGFEED_TCH").is_ok_and(|v| v == "off") {
        return Ok(None);
    } else if let Some(lib) = env::var_os("DEP_TCH_LIBTORCH_LIB") {
        (PathBuf::from(lib), "torch-sys' build (DEP_TCH_LIBTORCH_LIB)".to_owned())
    } else {
        from_environment()?
    };
    if !holds_libtorch(&lib) {
        return Err(format!(
            "libtorch is not in {} (from {from}): no libtorch_cpu library there.\n{}",
            lib.display(),
            how_to_install()
        ));
    }
    Ok(Some(lib))
}

/// Prints the rpath and, when `lib` has CUDA, the `--no-as-needed` link of
/// `libtorch_cuda`, for every binary of the calling package.
pub fn print_link_args(lib: &Path) {
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// torch-sys' own lookup, for a package that does not depend on ringfeed
/// (or torch-sys) directly.
fn from_environment() -> Result<(PathBuf, String), String> {
    if env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        return python_torch_lib().map(|lib| (lib, "LIBTORCH_USE_PYTORCH".to_owned()));
    }
    let named =
        |var: &str| env::var_os(var).map(|root: OsString| (PathBuf::from(root).join("lib"), var.to_owned()));
    if let Some(found) = named("LIBTORCH_LIB").or_else(|| named("LIBTORCH")) {
        return Ok(found);
    }
    if Path::new("/usr/lib/libtorch.so").exists() {
        return Ok((PathBuf::from("/usr/lib"), "/usr/lib/libtorch.so".to_owned()));
    }
    Err(format!(
        "cannot tell where libtorch is: this package depends on neither ringfeed nor torch-sys \
         directly, and LIBTORCH, LIBTORCH_LIB and LIBTORCH_USE_PYTORCH are unset.\n{}",
        how_to_install()
    ))
}

/// The library directory of the active Python's torch, as torch-sys asks
/// for it under `LIBTORCH_USE_PYTORCH`.
fn python_torch_lib() -> Result<PathBuf, String> {
    let python = if env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let script = "from torch.utils import cpp_extension\nfor p in cpp_extension.library_paths(): print(p)";
    let output = Command::new(python)
        .args(["-c", script])
        .output()
        .map_err(|e| format!("LIBTORCH_USE_PYTORCH is set but {python} did not run: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().next() {
        Some(lib) if output.status.success() => Ok(PathBuf::from(lib.trim())),
        _ => Err(format!(
            "LIBTORCH_USE_PYTORCH is set but {python} has no torch: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

fn holds_libtorch(lib: &Path) -> bool {
    ["libtorch_cpu.so", "libtorch_cpu.dylib"].iter().any(|name| lib.join(name).exists())
}

/// How to get libtorch, naming the install script of the ringfeed checkout
/// this helper was built from.
fn how_to_install() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    format!(
        "Install libtorch 2.13.0 with {script} (it goes to {dest}) and set LIBTORCH={dest} \
         in the environment or in your .cargo/config.toml [env]; or point LIBTORCH at another \
         libtorch 2.13.0, or set LIBTORCH_USE_PYTORCH=1 to use the active Python's torch.",
        script = root.join("scripts/install-libtorch.sh").display(),
        dest = root.join(".libtorch").display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_is_recognised_by_its_cpu_library() {
        let dir = env::temp_dir().join(format!("ringfeed-build-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!holds_libtorch(&dir));
        std::fs::write(dir.join("libtorch_cpu.so"), b"").unwrap();
        assert!(holds_libtorch(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_install_hint_names_this_checkout() {
        let hint = how_to_install();
        assert!(hint.contains("scripts/install-libtorch.sh"), "{hint}");
        assert!(hint.contains(".libtorch"), "{hint}");
    }
}

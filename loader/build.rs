//! With the `tch` feature: gives this package's own binaries (tests,
//! examples) the rpath to libtorch and the `--no-as-needed` link of
//! `libtorch_cuda` (`ringfeed_build::print_link_args`), and reports to the
//! crates that depend on ringfeed (through `links = "ringfeed"`) where
//! libtorch is, as `DEP_RINGFEED_LIBTORCH_LIB`, or `DEP_RINGFEED_TCH=off`
//! without the feature. Link arguments do not propagate to dependents, so
//! their build scripts print them: `ringfeed_build::link_libtorch()` reads
//! that report (build-support/src/lib.rs). The tensor shim itself is
//! compiled by `ringfeed-tensor`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        println!("cargo:tch=off");
        return;
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    // torch-sys (`links = "tch"`) prints `cargo:libtorch_lib=<dir>`, which
    // reaches this script because ringfeed depends on torch-sys directly
    // under `tch`. A missing libtorch already stopped torch-sys's own build
    // script, with its instructions, before this.
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        panic!(
            "torch-sys did not say where libtorch is (no DEP_TCH_LIBTORCH_LIB); \
             feature `tch` supports Linux and macOS libtorch builds only"
        );
    };
    ringfeed_build::print_link_args(&lib);
    println!("cargo:tch=on");
    println!("cargo:libtorch_lib={}", lib.display());
}

//! With the `tch` feature, links this package's tests, benches and
//! examples to libtorch (an rpath, so they start without
//! `LD_LIBRARY_PATH`); nothing otherwise, so that a build without `tch`
//! never looks for libtorch.

fn main() {
    // Features are part of the build script's identity: no rerun rule needed
    // for them; this one keeps cargo from rerunning it on every file change.
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_some() {
        ringfeed_build::link_libtorch();
    }
}

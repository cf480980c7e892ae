//! With the `tch` feature, gives this package's binaries (tests, examples)
//! what torch-sys' own build flags cannot pass on to them: an rpath to
//! libtorch, so they run without `LD_LIBRARY_PATH`, and `libtorch_cuda`
//! linked with `--no-as-needed`, which rustc's default `--as-needed` would
//! otherwise drop because no symbol is used from it directly (leaving CUDA
//! silently unavailable). Binary crates using ringfeed with `tch` need the
//! same two flags; `examples/build.rs` reuses this file.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_TCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    // The same lookup as torch-sys: LIBTORCH_LIB, else LIBTORCH, plus lib/.
    let Some(root) = std::env::var_os("LIBTORCH_LIB").or_else(|| std::env::var_os("LIBTORCH")) else {
        println!("cargo:warning=LIBTORCH is not set: binaries will need LD_LIBRARY_PATH to find libtorch");
        return;
    };
    let lib = std::path::Path::new(&root).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

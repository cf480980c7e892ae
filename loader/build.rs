//! With the `tch` feature, gives this package's binaries (tests, examples)
//! what torch-sys' own build flags cannot pass on to them: an rpath to
//! libtorch, so they run without `LD_LIBRARY_PATH`, and `libtorch_cuda`
//! linked with `--no-as-needed`, which rustc's default `--as-needed` would
//! otherwise drop because no symbol is used from it directly (leaving CUDA
//! silently unavailable). Binary crates using ringfeed with `tch` need the
//! same two flags; the examples and the CLI packages reuse this file.
//!
//! For the `ringfeed` package itself it also compiles
//! `src/sys/tensor_shim.cpp`, the one libtorch call tch lacks (allocating a
//! tensor in pinned host memory; see `src/sys/tensor.rs`); the examples
//! package, which shares this file, gets only the link flags. Without
//! `tch` nothing is compiled.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_TCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    if std::env::var("CARGO_PKG_NAME").is_ok_and(|name| name == "ringfeed") {
        shim::compile();
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

/// The tensor shim, for ringfeed only.
mod shim {
    use std::env;
    use std::path::PathBuf;

    const SHIM: &str = "src/sys/tensor_shim.cpp";

    /// Compiles the shim against the libtorch torch-sys links: torch-sys
    /// (`links = "tch"`) prints `cargo:libtorch_lib=<dir>`, which reaches
    /// this script as `DEP_TCH_LIBTORCH_LIB` because ringfeed depends on
    /// torch-sys directly under `tch`. A missing libtorch already stopped
    /// torch-sys's own build script, with its instructions, before this.
    pub(super) fn compile() {
        println!("cargo:rerun-if-changed={SHIM}");
        println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
        println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
        let Some(lib) = env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
            panic!(
                "torch-sys did not say where libtorch is (no DEP_TCH_LIBTORCH_LIB); \
                 feature `tch` supports Linux and macOS libtorch builds only"
            );
        };
        // As torch-sys: LIBTORCH_INCLUDE names the directory above
        // `include`, else the headers sit next to `lib` (a libtorch archive
        // and a PyTorch wheel's `torch/` directory alike).
        let root = env::var_os("LIBTORCH_INCLUDE").map_or_else(|| lib.join(".."), PathBuf::from);
        let includes = [root.join("include"), root.join("include/torch/csrc/api/include")];
        if !includes[0].join("ATen/ops/empty.h").is_file() {
            panic!(
                "libtorch's headers are not in {} (libtorch lib: {}); set LIBTORCH_INCLUDE",
                includes[0].display(),
                lib.display()
            );
        }
        let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());

        let mut build = cc::Build::new();
        build.cpp(true).pic(true).file(SHIM);
        // -isystem, not -I: cc's -Wall -Wextra stay on for the shim, off for
        // libtorch's headers.
        for dir in &includes {
            build.flag("-isystem").flag(dir);
        }
        build
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .compile("ringfeed_tensor_shim");
    }
}

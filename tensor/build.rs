//! With the `tch` feature: compiles `src/tensor_shim.cpp`, the one libtorch
//! call tch lacks (allocating a tensor in pinned host memory; see
//! `src/slab.rs`), and gives this package's own tests the rpath to libtorch
//! and the `--no-as-needed` link of `libtorch_cuda`
//! (`ringfeed_build::print_link_args`). Without `tch` nothing is compiled.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    let lib = shim::compile();
    ringfeed_build::print_link_args(&lib);
}

/// The tensor shim.
mod shim {
    use std::env;
    use std::path::PathBuf;

    const SHIM: &str = "src/tensor_shim.cpp";

    /// Compiles the shim against the libtorch torch-sys links: torch-sys
    /// (`links = "tch"`) prints `cargo:libtorch_lib=<dir>`, which reaches
    /// this script as `DEP_TCH_LIBTORCH_LIB` because this crate depends on
    /// torch-sys directly under `tch`. A missing libtorch already stopped
    /// torch-sys's own build script, with its instructions, before this.
    /// Returns that libtorch's library directory.
    pub(super) fn compile() -> PathBuf {
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
        lib
    }
}

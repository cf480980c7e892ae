//! Links this package's binaries to libtorch (an rpath, and `libtorch_cuda`
//! kept) when ringfeed is built with `tch`; nothing otherwise. The same
//! line a crate using ringfeed puts in its `build.rs`.

fn main() {
    ringfeed_build::link_libtorch();
}

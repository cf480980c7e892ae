//! The one line a crate using ringfeed with `tch` puts in its build script:
//! an rpath to libtorch for its binaries (and `libtorch_cuda` kept), or
//! nothing when ringfeed is built without `tch`.

fn main() {
    ringfeed_build::link_libtorch();
}

//! Helpers shared by the loader's integration tests: the storage layer's
//! own (`pack/tests/common/`, whose `ringfeed_pack` types are the ones
//! `ringfeed` re-exports) plus images.
#![allow(dead_code, unreachable_pub)]

pub mod images;

#[macro_use]
#[path = "../../../pack/tests/common/mod.rs"]
mod storage;

pub use storage::*;

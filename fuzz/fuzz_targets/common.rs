//! A scratch file per fuzzing process, rewritten for every input.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch directory (kept for the process's life).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("scratch dir")).path()
}

/// Writes `bytes` to `name` in the scratch directory.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("scratch write");
    path
}

/// Opens `path` as a packer source and reads every record: errors are
/// fine, panics and hangs are what the fuzzer looks for.
#[allow(dead_code)]
pub fn drain(source: ringfeed::Result<impl ringfeed::Source>) {
    if let Ok(s) = source {
        for i in 0..s.len() {
            let _ = s.item(i);
            let _ = s.read(i);
        }
    }
}

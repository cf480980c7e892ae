//! Records spread over a list of container files (TFRecord, FFRecord):
//! each file is opened once, scanned once for its framing, and kept open so
//! that records can be read concurrently with `pread`.

use std::fs::File;
use std::path::Path;
use std::path::PathBuf;

use super::detect::container_files;
use crate::error::{Error, Result};

/// The open container files of a source and the records found in them.
#[derive(Debug)]
pub(crate) struct Containers<R> {
    files: Vec<(PathBuf, File)>,
    /// Global index of the first record of each file.
    first: Vec<usize>,
    pub(crate) recs: Vec<R>,
}

impl<R> Containers<R> {
    /// Opens `path` (a file, or a directory of files with one of `exts`)
    /// and lets `scan(file, path, file_index, recs)` append each file's
    /// records.
    pub(crate) fn open(
        path: &Path,
        exts: &[&str],
        mut scan: impl FnMut(&File, &Path, u32, &mut Vec<R>) -> Result<()>,
    ) -> Result<Self> {
        let mut c = Containers { files: Vec::new(), first: Vec::new(), recs: Vec::new() };
        for p in container_files(path, exts)? {
            let file = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
            let idx = u32::try_from(c.files.len())
                .map_err(|_| Error::Config(format!("{} holds too many files", path.display())))?;
            c.first.push(c.recs.len());
            scan(&file, &p, idx, &mut c.recs)?;
            c.files.push((p, file));
        }
        Ok(c)
    }

    /// Path and open file number `idx`.
    pub(crate) fn file(&self, idx: u32) -> (&Path, &File) {
        let (path, file) = &self.files[idx as usize];
        (path, file)
    }

    /// Index within its file of global record `i`, which lives in file `idx`.
    pub(crate) fn index_in_file(&self, i: usize, idx: u32) -> u64 {
        (i - self.first[idx as usize]) as u64
    }
}

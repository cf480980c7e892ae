//! Sorted, deterministic directory walks shared by the directory sources.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A regular file found by [`walk_files`].
#[derive(Debug, Clone)]
pub(crate) struct WalkedFile {
    pub(crate) path: PathBuf,
    /// Path relative to the walk root, `/`-separated.
    pub(crate) rel: String,
    pub(crate) size: u64,
}

/// Lists regular files under `root`, recursively, sorted by path (byte
/// order of each component, like Python's `sorted` on names). Symlinks to
/// files are followed; symlinks to directories are not, so a link cycle
/// cannot make the walk endless. Hidden entries (leading `.`) are skipped.
pub(crate) fn walk_files(root: &Path) -> Result<Vec<WalkedFile>> {
    let mut out = Vec::new();
    walk_into(root, "", &mut out)?;
    Ok(out)
}

fn walk_into(dir: &Path, prefix: &str, out: &mut Vec<WalkedFile>) -> Result<()> {
    for (name, path) in sorted_entries(dir)? {
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let link_meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        if link_meta.is_dir() {
            walk_into(&path, &rel, out)?;
            continue;
        }
        let meta = if link_meta.file_type().is_symlink() {
            match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => return Err(Error::io("follow symlink", &path, e)),
            }
        } else {
            link_meta
        };
        if meta.is_file() {
            out.push(WalkedFile { path, rel, size: meta.len() });
        }
    }
    Ok(())
}

/// Entries of `dir` as (UTF-8 name, path), sorted, hidden ones skipped.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|raw| {
            Error::Config(format!(
                "file name {raw:?} in {} is not UTF-8; rename it to pack this directory",
                dir.display()
            ))
        })?;
        if !name.starts_with('.') {
            entries.push((name, path));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Reads a whole file whose size was seen during the walk.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// Reads a whole file into `out`, which must be exactly the file's size as
/// seen during the walk; a file that changed size since is an error.
pub(crate) fn read_file_into(path: &Path, out: &mut [u8]) -> Result<()> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let changed =
        || Error::Config(format!("{} changed size while being packed; pack a stable copy", path.display()));
    f.read_exact(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof { changed() } else { Error::io("read", path, e) }
    })?;
    let mut probe = [0u8; 1];
    match f.read(&mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => Err(changed()),
        Err(e) => Err(Error::io_at("read", path, out.len() as u64, e)),
    }
}

//! Sorted, deterministic directory walks shared by the directory sources.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::MAX_RECORD_LEN;

/// A regular file found by [`walk_files`].
#[derive(Debug, Clone)]
pub(crate) struct WalkedFile {
    pub(crate) path: PathBuf,
    /// Path relative to the walk root, `/`-separated.
    pub(crate) rel: String,
    /// Size when walked; reads take exactly this many bytes, no more.
    pub(crate) size: u64,
}

/// Lists the regular files under `root` whose names `wanted` accepts,
/// recursively, sorted by path (byte order of each component, like
/// Python's `sorted` on names). Hidden entries (leading `.`) are skipped.
///
/// Symlinks are followed, to files and to directories alike (as
/// torchvision's ImageFolder does); a directory that is one of its own
/// ancestors (a link cycle) is an error, so the walk always ends. The
/// rule for what cannot be packed is one: an entry the source would pack
/// (a directory, or a file `wanted` accepts) that cannot be followed or
/// is not a regular file (a dangling symlink, a link loop, a FIFO, a
/// socket, a device, no permission) stops the walk with an error naming
/// it, and so does a file over the format's record limit, from the size
/// the walk sees, before a byte of it is read. Names `wanted` refuses are
/// skipped without being opened (a dangling link among them included,
/// since it is judged by its own name).
pub(crate) fn walk_files(root: &Path, wanted: impl Fn(&str) -> bool) -> Result<Vec<WalkedFile>> {
    let mut out = Vec::new();
    let meta = fs::metadata(root).map_err(|e| Error::io("open", root, e))?;
    let mut ancestors = vec![(meta.dev(), meta.ino(), root.to_path_buf())];
    walk_into(root, "", &wanted, &mut ancestors, &mut out)?;
    Ok(out)
}

/// A directory on the current path: device, inode and where it was met.
type Ancestor = (u64, u64, PathBuf);

fn walk_into(
    dir: &Path,
    prefix: &str,
    wanted: &dyn Fn(&str) -> bool,
    ancestors: &mut Vec<Ancestor>,
    out: &mut Vec<WalkedFile>,
) -> Result<()> {
    for (name, path) in sorted_entries(dir)? {
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let link_meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        let is_link = link_meta.file_type().is_symlink();
        // A link is taken for what it points to; one that points nowhere
        // is judged by its name like a file (it may have meant either).
        let meta = if is_link { fs::metadata(&path).ok() } else { Some(link_meta) };
        if let Some(meta) = meta.as_ref().filter(|m| m.is_dir()) {
            if let Some((_, _, first)) =
                ancestors.iter().find(|(dev, ino, _)| (*dev, *ino) == (meta.dev(), meta.ino()))
            {
                return Err(Error::Config(format!(
                    "{} leads back to {}, which holds it (a symlink loop); remove the link to pack this tree",
                    path.display(),
                    first.display()
                )));
            }
            ancestors.push((meta.dev(), meta.ino(), path.clone()));
            walk_into(&path, &rel, wanted, ancestors, out)?;
            ancestors.pop();
            continue;
        }
        if !wanted(&name) {
            continue;
        }
        let meta = match meta {
            Some(m) => m,
            // Follow again for the OS's reason (dangling, loop, permission).
            None => {
                let e = fs::metadata(&path).err().unwrap_or_else(|| std::io::ErrorKind::NotFound.into());
                return Err(Error::io("follow symlink", &path, e));
            }
        };
        if !meta.is_file() {
            return Err(not_regular(&path, &meta));
        }
        if meta.len() > MAX_RECORD_LEN {
            return Err(Error::Unsupported {
                path,
                reason: format!(
                    "the {}-byte file is larger than the pack format's record limit of {MAX_RECORD_LEN} bytes",
                    meta.len()
                ),
            });
        }
        out.push(WalkedFile { path, rel, size: meta.len() });
    }
    Ok(())
}

/// The error for an entry a source would pack that is not a regular file.
pub(crate) fn not_regular(path: &Path, meta: &fs::Metadata) -> Error {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    };
    Error::Unsupported {
        path: path.to_path_buf(),
        reason: format!("is a {kind}, not a regular file; remove it to pack this tree"),
    }
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

/// Reads a whole file whose size was seen during the walk (`size`); a
/// file that grew since is an error, not an unbounded read.
pub(crate) fn read_file(path: &Path, size: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(size).map_err(|_| Error::Config("file too large".into()))?];
    read_file_into(path, &mut buf)?;
    Ok(buf)
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

//! Startup storms: N processes of one node loading the same checkpoint at
//! once read it from storage once, and hold one copy of it in memory.
//!
//! The first to take a lock file reads the whole file with direct I/O
//! straight into a memfd, checks it (the tensors' CRC32Cs when the file has
//! them), seals it against any change and names it, as `PID FD LEN`, in a
//! locator file next to the lock. The others wait on the lock, open that
//! memfd through `/proc/PID/fd/FD`, check that it is sealed, as long as the
//! file and starts with the file's own header, and map it read-only: no
//! read, no copy, the same verified bytes (sealed memory cannot change, for
//! anyone). The memfd lives as long as the publisher holds the tensors; a
//! process that comes later finds it gone and publishes anew.

use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ringfeed_io::{Memfd, SealedMemfd};

use crate::error::{Error, Result};
use crate::load::{Checkpoint, Tensors};

/// Where a [`Checkpoint::load_shared`] got its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// This process read the file and published its copy.
    Storage,
    /// Another process's published copy, mapped.
    SharedCopy,
    /// Read from the file, nothing published (no lock directory, or no
    /// memfd support).
    StorageUnshared,
}

impl Checkpoint {
    /// Loads every tensor, sharing one read and one copy in memory with
    /// the other processes of this node that load the same file at the
    /// same time (see the module docs). `lock_dir` holds the lock and
    /// locator files (default `/dev/shm`; any directory all the processes
    /// see). The tensors of a shared load are read-only mapped memory.
    pub fn load_shared(&self, lock_dir: Option<&Path>) -> Result<(Tensors, LoadedFrom)> {
        let dir = lock_dir.unwrap_or(Path::new("/dev/shm"));
        let meta = self.source_metadata()?;
        // The file's identity: a changed, replaced or rewritten file gets
        // other names, never a stale copy.
        let key = format!(
            "ringfeed-ckpt-{:x}-{:x}-{:x}-{:x}.{:x}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let lock_path = dir.join(format!("{key}.lock"));
        let where_path = dir.join(format!("{key}.where"));
        let Ok(lock) = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) else {
            return Ok((self.load()?, LoadedFrom::StorageUnshared));
        };
        lock.lock().map_err(|e| Error::io("lock", &lock_path, e))?;
        if let Some(tensors) = self.open_published(&where_path) {
            let _ = lock.unlock();
            return Ok((tensors, LoadedFrom::SharedCopy));
        }
        let published = self.publish(&where_path);
        let _ = lock.unlock();
        match published {
            Ok(Some(tensors)) => Ok((tensors, LoadedFrom::Storage)),
            Ok(None) => Ok((self.load()?, LoadedFrom::StorageUnshared)),
            Err(e) => Err(e),
        }
    }

    /// The copy named in the locator, if its publisher still holds it and
    /// it is this file's: sealed, the file's length, the file's header.
    fn open_published(&self, where_path: &Path) -> Option<Tensors> {
        let text = std::fs::read_to_string(where_path).ok()?;
        let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
        let (pid, fd, len) = (parts.next()??, parts.next()??, parts.next()??);
        if len != self.source_len() {
            return None;
        }
        let sealed = SealedMemfd::open(Path::new(&format!("/proc/{pid}/fd/{fd}"))).ok()?;
        if sealed.len() as u64 != len {
            return None;
        }
        let map = sealed.map().ok()?;
        let head = self.header_bytes().ok()?;
        if map.get(..head.len()) != Some(&head[..]) {
            return None;
        }
        Some(self.tensors_in(map))
    }

    /// Reads the file into a new memfd, checks it, seals it and writes the
    /// locator. `Ok(None)`: this system cannot make a memfd.
    fn publish(&self, where_path: &Path) -> Result<Option<Tensors>> {
        let len = usize::try_from(self.source_len())
            .map_err(|_| Error::Memory { what: "the checkpoint".into(), bytes: self.source_len() })?;
        let Ok(mut memfd) = Memfd::create("ringfeed-ckpt", len) else { return Ok(None) };
        {
            let mut w = memfd.map_mut().map_err(|e| Error::io("map shared memory for", self.path(), e))?;
            self.read_whole(&mut w)?;
        }
        let fd = memfd.as_raw_fd();
        let sealed = memfd.seal().map_err(|e| Error::io("seal shared memory for", self.path(), e))?;
        let map = sealed.map().map_err(|e| Error::io("map shared memory for", self.path(), e))?;
        let tensors = self.tensors_in(map);
        if self.verifies() {
            self.check_tensors(&tensors)?;
        }
        // Named only once sealed and checked.
        let tmp = where_path.with_extension(format!("where.{}", std::process::id()));
        let written = std::fs::write(&tmp, format!("{} {fd} {len}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, where_path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            log::warn!(
                "cannot publish {} in {}: {e}; other processes read it themselves",
                self.path().display(),
                where_path.display()
            );
        }
        Ok(Some(tensors))
    }
}

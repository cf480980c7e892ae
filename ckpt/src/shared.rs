//! Startup storms: N processes of one node loading the same checkpoint at
//! once read it from storage once. The first to take a lock file reads
//! the file (direct I/O) and publishes a copy in shared memory
//! (`/dev/shm` by default); the others wait on the lock and read the copy
//! at memory speed. Every process checks what it got: the tensors'
//! CRC32Cs when the file has them, and a CRC32C of the whole data section
//! that the publisher stored beside the copy, so all get the same bytes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::load::{Checkpoint, Tensors};

/// Where a [`Checkpoint::load_shared`] got its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// This process read the file and published the shared copy.
    Storage,
    /// Another process had published it: read from shared memory.
    SharedCopy,
    /// The shared copy could not be written (no space, no such
    /// directory): read from the file, nothing published.
    StorageUnshared,
}

impl Checkpoint {
    /// Loads every tensor, reading the file from storage only if no other
    /// process on this node has published it in `shm_dir` (default
    /// `/dev/shm`) already; see the module docs. The copy stays there for
    /// later processes (a restarted server, the next replica): remove
    /// `ringfeed-ckpt-*` files from the directory to free the memory.
    pub fn load_shared(&self, shm_dir: Option<&Path>) -> Result<(Tensors, LoadedFrom)> {
        let dir = shm_dir.unwrap_or(Path::new("/dev/shm"));
        let meta = self.source_metadata()?;
        // The file's identity: a changed, replaced or rewritten file gets
        // a new name, never a stale copy.
        let key = format!(
            "ringfeed-ckpt-{:x}-{:x}-{:x}-{:x}.{:x}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let lock_path = dir.join(format!("{key}.lock"));
        let copy_path = dir.join(format!("{key}.data"));
        let sum_path = dir.join(format!("{key}.crc32c"));
        let Ok(lock) = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) else {
            return Ok((self.load()?, LoadedFrom::StorageUnshared));
        };
        lock.lock().map_err(|e| Error::io("lock", &lock_path, e))?;
        // Under the lock: the copy is either complete (renamed into place
        // with its checksum beside it) or absent.
        if let Some(expected) = read_sum(&sum_path)
            && copy_path.metadata().is_ok_and(|m| m.len() == meta.size())
        {
            let _ = lock.unlock();
            let copy = Checkpoint::builder(&copy_path).direct_io(false).verify_checksums(true).build()?;
            let tensors = copy.load()?;
            let actual = data_crc(&tensors);
            if actual != expected {
                return Err(Error::Checksum {
                    path: copy_path,
                    tensor: "(the whole data section)".into(),
                    expected,
                    actual,
                });
            }
            return Ok((tensors, LoadedFrom::SharedCopy));
        }
        let tensors = self.load()?;
        let published = self.publish(&tensors, &copy_path, &sum_path);
        let _ = lock.unlock();
        match published {
            Ok(()) => Ok((tensors, LoadedFrom::Storage)),
            Err(e) => {
                log::warn!(
                    "cannot publish {} in {}: {e}; each process reads it",
                    self.path().display(),
                    dir.display()
                );
                Ok((tensors, LoadedFrom::StorageUnshared))
            }
        }
    }

    /// Writes the file's bytes (header as read, data from `tensors`) to
    /// `copy` through a temporary name, then its checksum file.
    fn publish(&self, tensors: &Tensors, copy: &Path, sum: &Path) -> std::io::Result<()> {
        let tmp = copy.with_extension(format!("tmp.{}", std::process::id()));
        let result = (|| {
            let mut out = File::create(&tmp)?;
            out.write_all(&self.header_bytes()?)?;
            for t in tensors.iter() {
                out.write_all(t.bytes())?;
            }
            out.flush()?;
            drop(out);
            std::fs::rename(&tmp, copy)?;
            let sum_tmp = sum.with_extension(format!("tmp.{}", std::process::id()));
            std::fs::write(&sum_tmp, format!("{:08x}\n", data_crc(tensors)))?;
            std::fs::rename(&sum_tmp, sum)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(copy);
        }
        result
    }
}

/// CRC32C of every tensor's bytes, in file order.
fn data_crc(tensors: &Tensors) -> u32 {
    tensors.iter().fold(0, |crc, t| crc32c::crc32c_append(crc, t.bytes()))
}

fn read_sum(path: &PathBuf) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    u32::from_str_radix(text.trim(), 16).ok()
}

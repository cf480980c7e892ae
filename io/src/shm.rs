//! Sealed shared memory: a memfd that is filled once, then sealed so that
//! neither its size nor its contents can change for anyone, ever. A
//! read-only mapping of a sealed memfd is therefore immutable memory that
//! several processes can share without a copy (the basis of
//! `ringfeed-ckpt`'s startup-storm sharing).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::ptr::NonNull;

/// Seals that make a memfd immutable.
const IMMUTABLE: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// A memfd being filled: `len` bytes, writable through [`Memfd::map_mut`]
/// until [`Memfd::seal`].
#[derive(Debug)]
pub struct Memfd {
    file: File,
    len: usize,
}

/// A sealed memfd: its size and bytes can no longer change.
#[derive(Debug)]
pub struct SealedMemfd {
    file: File,
    len: usize,
}

/// A shared mapping of a memfd: read-write (while filling) or read-only.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Keeps the memfd open as long as the mapping (others may open it
    /// through `/proc/PID/fd/N` while this process lives).
    _file: Option<File>,
}

// A mapping is a plain block of memory owned by this value; `&mut` exists
// only for the writable mapping of an unsealed memfd this process created.
// SAFETY: `&` gives shared reads and `&mut` exclusive access.
unsafe impl Send for Mapping {}
// SAFETY: as above; no interior mutability.
unsafe impl Sync for Mapping {}

impl Memfd {
    /// A new memfd of `len` zero bytes (anonymous: it has no path; other
    /// processes reach it as `/proc/PID/fd/N` of this process).
    pub fn create(name: &str, len: usize) -> io::Result<Memfd> {
        let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        // The result is a new descriptor owned by nothing else, or -1.
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned here alone.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len as u64)?;
        Ok(Memfd { file, len })
    }

    /// The descriptor (for `/proc/PID/fd/N`).
    pub fn as_raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Maps it read-write. The mapping borrows the memfd mutably, so it is
    /// gone before [`seal`](Self::seal) can be called.
    pub fn map_mut(&mut self) -> io::Result<MappingMut<'_>> {
        let map = map(&self.file, self.len, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(MappingMut { map, _memfd: std::marker::PhantomData })
    }

    /// Seals it: no size change, no write, from any process, ever. Fails
    /// (EBUSY) if a writable mapping still exists, which the borrow on
    /// [`map_mut`](Self::map_mut) rules out in this process.
    pub fn seal(self) -> io::Result<SealedMemfd> {
        let seals = IMMUTABLE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor owned by `self`, integer argument.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_ADD_SEALS, seals) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SealedMemfd { file: self.file, len: self.len })
    }
}

/// A writable mapping of a [`Memfd`] being filled.
pub struct MappingMut<'a> {
    map: Mapping,
    _memfd: std::marker::PhantomData<&'a mut Memfd>,
}

impl SealedMemfd {
    /// Opens a sealed memfd another process published at `path` (its
    /// `/proc/PID/fd/N`): an error unless it is a memfd sealed against
    /// writes and resizing.
    pub fn open(path: &Path) -> io::Result<SealedMemfd> {
        let file = File::open(path)?;
        // SAFETY: fcntl on a descriptor owned by `file`, no pointer argument.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 {
            return Err(io::Error::last_os_error());
        }
        if seals & IMMUTABLE != IMMUTABLE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the shared memory is not sealed against changes",
            ));
        }
        let len = usize::try_from(file.metadata()?.len()).map_err(|_| io::ErrorKind::InvalidData)?;
        Ok(SealedMemfd { file, len })
    }

    /// Its size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor (for `/proc/PID/fd/N`).
    pub fn as_raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Maps it read-only; the mapping keeps the memfd open.
    pub fn map(self) -> io::Result<Mapping> {
        let mut m = map(&self.file, self.len, libc::PROT_READ)?;
        // The same descriptor (its number may have been published).
        m._file = Some(self.file);
        Ok(m)
    }
}

fn map(file: &File, len: usize, prot: libc::c_int) -> io::Result<Mapping> {
    if len == 0 {
        return Ok(Mapping { ptr: NonNull::dangling(), len: 0, _file: None });
    }
    // At an address the kernel picks; the result is checked for MAP_FAILED.
    // SAFETY: a new mapping of a descriptor borrowed for the call affects no existing memory.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(Mapping { ptr, len, _file: None })
}

impl Mapping {
    /// The mapped bytes' length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // A read-only mapping is only ever made of a memfd sealed against
        // writes and resizing (checked in `SealedMemfd::open`, done in
        // `Memfd::seal`); a writable one only of this process's unsealed
        // memfd, reachable only through the `MappingMut` that owns it.
        // SAFETY: a live mapping of `len` bytes (or dangling, `len` 0) that cannot change while borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // No borrow of the mapping can outlive `self`.
            // SAFETY: unmaps exactly the mapping `map` made, once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len).finish()
    }
}

impl std::ops::Deref for MappingMut<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl std::ops::DerefMut for MappingMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // The memfd is borrowed mutably by this `MappingMut`: no other
        // mapping of it is made in this process meanwhile, and no other
        // process has its descriptor before it is sealed and published.
        // SAFETY: this process's own unsealed mapping, borrowed exclusively (`&mut self`).
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr.as_ptr(), self.map.len) }
    }
}

impl std::fmt::Debug for MappingMut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappingMut").field("len", &self.map.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_memfd_is_shared_read_only_and_cannot_change() {
        let mut m = Memfd::create("test", 3 * 4096 + 5).unwrap();
        {
            let mut w = m.map_mut().unwrap();
            w.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        }
        let fd = m.as_raw_fd();
        let sealed = m.seal().unwrap();
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{fd}"));
        // Another opener (as another process would) sees the same bytes.
        let other = SealedMemfd::open(&path).unwrap().map().unwrap();
        let mine = sealed.map().unwrap();
        assert_eq!(mine.len(), 3 * 4096 + 5);
        assert!(mine.iter().enumerate().all(|(i, &b)| b == i as u8));
        assert_eq!(&mine[..], &other[..]);
        // Nobody can write or resize it any more.
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        use std::io::Write;
        assert_eq!(f.write(b"x").unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert!(f.set_len(1).is_err());
        // A memfd that is not sealed is refused.
        let open = Memfd::create("open", 10).unwrap();
        let p = format!("/proc/self/fd/{}", open.as_raw_fd());
        assert_eq!(
            SealedMemfd::open(std::path::Path::new(&p)).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // Empty memfds map to nothing.
        let e = Memfd::create("empty", 0).unwrap().seal().unwrap().map().unwrap();
        assert!(e.is_empty());
        let t = std::thread::spawn(move || other.len()).join().unwrap();
        assert_eq!(t, 3 * 4096 + 5);
    }
}

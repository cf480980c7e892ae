//! [`AlignedBuf`]: a zeroed heap block at a chosen alignment, for direct
//! I/O (O_DIRECT wants the memory address aligned too).

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

/// The alignment the allocator gives any block (x86-64 and aarch64 glibc).
const NATURAL: usize = 16;

/// A heap buffer of `len` zeroed bytes whose start is aligned to `align`
/// (a power of two). Large buffers come from the allocator's zeroed
/// path (fresh pages from the kernel, no `memset`), which matters for a
/// multi-GB read: touching the memory twice would cost as much as a
/// fast disk's read.
pub struct AlignedBuf {
    /// The allocation's start.
    base: NonNull<u8>,
    /// Where the aligned bytes start within it.
    offset: usize,
    len: usize,
    /// The alignment of `base + offset`.
    align: usize,
    layout: Layout,
}

// The buffer owns its block exclusively, like a `Vec<u8>`.
// SAFETY: `&` gives only shared reads and `&mut` exclusive access.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above: no interior mutability.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` zeroed bytes aligned to `align`; `None` when the allocator
    /// refuses (or `align` is not a power of two). `len` 0 is allowed.
    pub fn zeroed(len: usize, align: usize) -> Option<AlignedBuf> {
        if !align.is_power_of_two() {
            return None;
        }
        // No huge-page advice: with it, a cold 2.5 GB direct-I/O load ran
        // at 0.70-1.12 GB/s against 1.23-1.54 without (the kernel compacts
        // memory to find 2 MiB pages on each fault: 5.5 s of CPU for 736
        // faults); see docs/BENCHMARKS.md "Checkpoints".
        // Allocated at the allocator's natural alignment and over-sized:
        // a large zeroed block then comes from calloc's fresh-pages path
        // (no memset, nothing touched yet), where an over-aligned layout
        // would be allocated and then cleared byte by byte.
        let extra = if align > NATURAL { align } else { 0 };
        // A zero-size allocation is not allowed: keep one byte.
        let layout = Layout::from_size_align(len.checked_add(extra)?.max(1), align.min(NATURAL)).ok()?;
        // SAFETY: the layout's size is at least 1.
        let base = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
        let offset = base.as_ptr().align_offset(align);
        if offset + len > layout.size() {
            // SAFETY: allocated just above with this layout, freed once.
            unsafe { alloc::dealloc(base.as_ptr(), layout) };
            return None;
        }
        Some(AlignedBuf { base, offset, len, align, layout })
    }

    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The alignment of its start.
    pub fn align(&self) -> usize {
        self.align
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // `offset + len <= layout.size()` was checked in `zeroed`.
        // SAFETY: `len` initialized (zeroed) bytes owned by `self`, borrowed shared.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.offset), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, borrowed exclusively for `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(self.offset), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout, freed once.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("align", &self.align()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::AlignedBuf;

    #[test]
    fn buffers_are_aligned_zeroed_writable_and_sendable() {
        for (len, align) in [
            (0, 4096),
            (1, 512),
            (4096, 4096),
            (5000, 64),
            (3 << 20, 1 << 21),
            (5 << 20, 4096),
            (64 << 20, 4096),
        ] {
            let mut b = AlignedBuf::zeroed(len, align).unwrap();
            assert_eq!((b.len(), b.is_empty()), (len, len == 0));
            assert!(b.align() >= align && b.align().is_power_of_two());
            assert_eq!(b.as_ptr() as usize % align, 0);
            assert!(b.iter().all(|&x| x == 0));
            b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
            let b = std::thread::spawn(move || b).join().unwrap();
            assert!(b.iter().enumerate().all(|(i, &x)| x == i as u8));
        }
        assert!(AlignedBuf::zeroed(16, 3).is_none(), "not a power of two");
        assert!(AlignedBuf::zeroed(usize::MAX - (4 << 20), 4096).is_none(), "the allocator refuses");
    }
}

//! [`tensor_from_aligned`]: a libtorch tensor over memory ringfeed
//! allocated and filled itself (an [`AlignedBuf`] a direct-I/O read went
//! into), handed over with a deleter, so nothing is copied or zeroed twice.
//!
//! [`TensorSlab`](crate::TensorSlab) has libtorch allocate and must zero
//! the memory before viewing it (a full extra pass, and page faults taken
//! on one thread: a 2.5 GB checkpoint loaded at 0.4–0.9 GB/s that way,
//! against 1.35–1.5 GB/s into an `AlignedBuf`). Here the buffer comes from
//! calloc's fresh pages, which the reads fault in, and libtorch receives
//! it as is. Only for ordinary CPU memory: pinned memory (for CUDA) still
//! comes from a slab.

use std::ffi::{CStr, c_char, c_void};

use ringfeed_io::AlignedBuf;
use tch::Tensor;

use crate::Error;

/// `tensor_shim.cpp`.
mod ffi {
    use std::ffi::{c_char, c_void};

    unsafe extern "C" {
        /// A 1-D byte tensor over `len` bytes at `data`, owning them: the
        /// shim calls `drop_owner(owner)` exactly once, when libtorch frees
        /// the storage, or before returning null (with a NUL-terminated
        /// reason in the `err_len` bytes at `err`). Catches every C++
        /// exception.
        pub(super) fn ringfeed_tensor_from_owned(
            data: *mut c_void,
            len: i64,
            owner: *mut c_void,
            drop_owner: extern "C" fn(*mut c_void),
            err: *mut c_char,
            err_len: usize,
        ) -> *mut torch_sys::C_tensor;
    }
}

/// Frees the buffer behind a tensor made by [`tensor_from_aligned`].
extern "C" fn drop_owner(owner: *mut c_void) {
    // SAFETY: `owner` is the `Box::into_raw` of `tensor_from_aligned`, and
    // the shim calls this once per owner (after libtorch's last use of the
    // memory, or on failure before any use), so the box is rebuilt and
    // dropped once. `AlignedBuf` is `Send`: any thread may be the one.
    drop(unsafe { Box::from_raw(owner.cast::<AlignedBuf>()) });
}

/// A 1-D `Uint8` CPU tensor of `buf`'s bytes, which libtorch owns from now
/// on (freed when the last tensor or view of it is dropped). Nothing is
/// copied.
///
/// # Errors
///
/// [`Error::TooLarge`] for a buffer past `i64::MAX` bytes, [`Error::Tch`]
/// when libtorch refuses (the buffer is freed).
pub fn tensor_from_aligned(buf: AlignedBuf) -> Result<Tensor, Error> {
    let len = i64::try_from(buf.len()).map_err(|_| Error::TooLarge { shape: vec![buf.len()] })?;
    let mut owned = Box::new(buf);
    // The block's address: it stays put when the box moves.
    let data = owned.as_mut_ptr().cast::<c_void>();
    let owner = Box::into_raw(owned).cast::<c_void>();
    let mut err = [0u8; 512];
    // The shim owns `owner` from here on, whatever happens (see `ffi`).
    // SAFETY: `data` is valid for `len` bytes until `drop_owner(owner)`
    // frees them, and no Rust reference to them is left (the box was given
    // up); the error buffer is valid for `err.len()` bytes during the call
    // only; the shim catches every C++ exception, so none unwinds here.
    let handle = unsafe {
        ffi::ringfeed_tensor_from_owned(
            data,
            len,
            owner,
            drop_owner,
            err.as_mut_ptr().cast::<c_char>(),
            err.len(),
        )
    };
    if handle.is_null() {
        let reason = CStr::from_bytes_until_nul(&err).map(CStr::to_string_lossy);
        return Err(Error::Tch(reason.map_or_else(|_| "unknown error".to_owned(), |r| r.into_owned())));
    }
    // SAFETY: a non-null handle is a fresh `new at::Tensor` only the new
    // `Tensor` owns; tch's `at_free` deletes the same type.
    Ok(unsafe { Tensor::from_ptr(handle) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn the_tensor_shows_the_buffer_and_outlives_every_rust_handle() {
        let mut buf = AlignedBuf::zeroed(4096 + 8, 4096).unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let t = tensor_from_aligned(buf).unwrap();
        assert_eq!((t.size(), t.kind(), t.device()), (vec![4104], Kind::Uint8, Device::Cpu));
        assert_eq!(t.int64_value(&[4100]), (4100 % 251) as i64);
        // A view kept after the tensor is dropped, used on another thread.
        let view = t.narrow(0, 8, 4096).view_dtype(Kind::Int);
        drop(t);
        let sum = std::thread::spawn(move || view.sum(Kind::Int64).int64_value(&[])).join().unwrap();
        let want: i64 = (8..4104)
            .collect::<Vec<usize>>()
            .chunks(4)
            .map(|c| i64::from(i32::from_ne_bytes([c[0], c[1], c[2], c[3]].map(|i| (i % 251) as u8))))
            .sum();
        assert_eq!(sum, want);
        // libtorch may write it too.
        let mut w = tensor_from_aligned(AlignedBuf::zeroed(16, 64).unwrap()).unwrap();
        let _ = w.fill_(7);
        assert_eq!(w.sum(Kind::Int64).int64_value(&[]), 7 * 16);
    }

    #[test]
    fn empty_buffers_make_empty_tensors() {
        let t = tensor_from_aligned(AlignedBuf::zeroed(0, 4096).unwrap()).unwrap();
        assert_eq!(t.numel(), 0);
    }

    /// Each buffer is freed when its tensor goes: 4.8 GB made and dropped
    /// in turn, every page touched, leaves this process's memory flat.
    #[test]
    fn dropped_tensors_free_their_buffers() {
        let rss = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
        };
        let before = rss();
        for round in 0..300u32 {
            let mut buf = AlignedBuf::zeroed(16 << 20, 4096).unwrap();
            buf.fill(round as u8);
            let t = tensor_from_aligned(buf).unwrap();
            assert_eq!(t.int64_value(&[12345]), i64::from(round as u8));
        }
        let grown = rss().saturating_sub(before);
        assert!(grown < 1 << 30, "RSS grew {grown} bytes over 4.8 GB of tensors made and dropped");
    }
}

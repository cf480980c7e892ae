//! [`TensorSlab`]: a libtorch tensor being filled through a byte view (an
//! image batch a loader's workers decode into, the tensors a checkpoint is
//! read into), handed to its consumer as the same tensor, so nothing is
//! copied.
//!
//! Soundness rests on two invariants:
//!
//! - *Sole handle.* A [`TensorSlab`] holds the only handle to a contiguous
//!   CPU tensor it allocated itself, so a `&mut [u8]` over its memory cannot
//!   alias anything libtorch or the caller can reach. The handle leaves
//!   only through [`TensorSlab::into_tensor`], which gives up the view.
//! - *Written before viewed.* libtorch allocates without initialising, and
//!   a `&[u8]` or `&mut [u8]` over uninitialised bytes is undefined
//!   behaviour even if nothing reads them. So [`TensorSlab::new`] writes
//!   zeros over all the tensor's bytes through the raw pointer
//!   (`ptr::write_bytes`) before it returns, and the one thing it does to
//!   the memory before that, the huge-page advice, takes an address, not a
//!   slice. Every view made later ([`TensorSlab::bytes`],
//!   [`TensorSlab::bytes_mut`]) covers initialised bytes only
//!   ([`TensorSlab::keep_rows`] only shortens it).
//!
//! The zeroing is cheap next to decoding. For a `[64, 3, 224, 224]` f32
//! batch (38.5 MB) it adds one pass over memory the decoder would fault in
//! anyway, 1.5 to 6.5 ms on the 2-core CI machine (depending on its load),
//! against the ~96 ms (64 × 1.5 ms) the batch's decodes take on one core;
//! the page faults it takes (11 to 15 ms with huge pages, 28 to 41 ms
//! without) are the ones the decoder's first writes would take otherwise.
//! Figures: the ignored test `zeroing_cost`.
//!
//! Tensors are allocated by `tensor_shim.cpp` (compiled by `build.rs`):
//! with CUDA available, batches must be *allocated* in pinned host memory,
//! which copies to the GPU asynchronously and at full speed, and tch has no
//! call for that (its `empty` drops `pin_memory`; `pin_memory()` allocates
//! a second tensor and copies). Every allocation, pinned or not, goes
//! through the shim, so the CPU-only tests exercise the FFI.

use std::ffi::{CStr, c_int};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

use crate::Error;

/// `tensor_shim.cpp`.
mod ffi {
    use std::ffi::{c_char, c_int};

    unsafe extern "C" {
        /// A new contiguous CPU tensor of the `ndim` sizes at `sizes` and
        /// `c10::ScalarType` `kind`, uninitialised, in pinned host memory
        /// with CUDA device `device_index` current if `pinned` is non-zero:
        /// an owned `at::Tensor *` (tch's `C_tensor`), or null with a
        /// NUL-terminated reason in the `err_len` bytes at `err`. Catches
        /// every C++ exception.
        pub(super) fn ringfeed_empty_tensor(
            sizes: *const i64,
            ndim: usize,
            kind: c_int,
            pinned: c_int,
            device_index: c_int,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut torch_sys::C_tensor;
    }
}

/// A tensor being filled: the only handle to a contiguous CPU tensor it
/// allocated itself, zeroed before any view of it exists, viewed as bytes
/// until [`into_tensor`](Self::into_tensor) gives it away.
#[derive(Debug)]
pub struct TensorSlab {
    tensor: Tensor,
    /// Bytes of the tensor's elements, all initialised.
    len: usize,
}

/// Whether CUDA is usable, asked once: slabs then live in pinned host
/// memory, which copies to the GPU asynchronously and at full speed.
pub fn pinned() -> bool {
    static PINNED: OnceLock<bool> = OnceLock::new();
    *PINNED.get_or_init(tch::Cuda::is_available)
}

/// This process's CUDA device: torchrun's `LOCAL_RANK`, read once (0 when
/// unset).
pub fn cuda_device() -> Device {
    static RANK: OnceLock<usize> = OnceLock::new();
    Device::Cuda(*RANK.get_or_init(|| parse_local_rank(std::env::var("LOCAL_RANK").ok().as_deref())))
}

/// `LOCAL_RANK`'s value as a device index: 0 when unset or not a number.
fn parse_local_rank(value: Option<&str>) -> usize {
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// `kind` as `c10::ScalarType` numbers it. The same numbers as tch's own,
/// private, `Kind::c_int`; `tensor_shim.cpp` checks them against libtorch's
/// headers when it compiles, and the test `every_kind_round_trips` against
/// the kind tch reads back.
fn scalar_type(kind: Kind) -> c_int {
    match kind {
        Kind::Uint8 => 0,
        Kind::Int8 => 1,
        Kind::Int16 => 2,
        Kind::Int => 3,
        Kind::Int64 => 4,
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::Double => 7,
        Kind::ComplexHalf => 8,
        Kind::ComplexFloat => 9,
        Kind::ComplexDouble => 10,
        Kind::Bool => 11,
        Kind::QInt8 => 12,
        Kind::QUInt8 => 13,
        Kind::QInt32 => 14,
        Kind::BFloat16 => 15,
        Kind::Float8e5m2 => 23,
        Kind::Float8e4m3fn => 24,
        Kind::Float8e5m2fnuz => 25,
        Kind::Float8e4m3fnuz => 26,
    }
}

/// A new tensor of `dims` and `kind` from the shim, its contents
/// uninitialised: in pinned host memory for `pinned_for` (a CUDA device) if
/// given, else in ordinary CPU memory.
fn allocate(dims: &[i64], kind: Kind, pinned_for: Option<Device>) -> Result<Tensor, String> {
    let (pinned, device) = match pinned_for {
        None => (0, 0),
        Some(Device::Cuda(index)) => {
            (1, c_int::try_from(index).map_err(|_| format!("CUDA device {index} is out of range"))?)
        }
        Some(other) => return Err(format!("cannot pin memory for {other:?}")),
    };
    allocate_raw(dims, scalar_type(kind), pinned, device)
}

/// [`allocate`] with the shim's own arguments.
fn allocate_raw(dims: &[i64], kind: c_int, pinned: c_int, device: c_int) -> Result<Tensor, String> {
    let mut err = [0u8; 512];
    // SAFETY: the shim reads `dims.len()` values at `dims.as_ptr()` and
    // writes at most `err.len()` bytes at `err`'s start, both valid for the
    // call and kept by neither side after it; it catches every C++
    // exception, so none unwinds into Rust.
    let handle = unsafe {
        ffi::ringfeed_empty_tensor(
            dims.as_ptr(),
            dims.len(),
            kind,
            pinned,
            device,
            err.as_mut_ptr().cast(),
            err.len(),
        )
    };
    if handle.is_null() {
        let reason = CStr::from_bytes_until_nul(&err).map(CStr::to_string_lossy);
        return Err(reason.map_or_else(|_| "unknown error".to_owned(), |r| r.into_owned()));
    }
    // SAFETY: a non-null handle is a `new at::Tensor` that nothing else
    // holds: it becomes the `Tensor`'s alone, whose drop frees it with
    // tch's `at_free`, a `delete` of the same type (torch_api.h: `typedef
    // torch::Tensor *tensor`, and `torch::Tensor` is `at::Tensor`).
    Ok(unsafe { Tensor::from_ptr(handle) })
}

impl TensorSlab {
    /// A new tensor of `shape` and `kind`, all zeros: in pinned memory for
    /// this process's device ([`cuda_device`]) when CUDA is available, else
    /// on transparent huge pages if `huge_pages` and it is large.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a shape whose byte count overflows, and
    /// [`Error::Allocate`] when libtorch refuses (its message included).
    pub fn new(shape: &[usize], kind: Kind, huge_pages: bool) -> Result<Self, Error> {
        let too_large = || Error::TooLarge { shape: shape.to_vec() };
        let dims = shape.iter().map(|&d| i64::try_from(d)).collect::<Result<Vec<_>, _>>();
        let dims = dims.map_err(|_| too_large())?;
        let len = shape.iter().try_fold(kind.elt_size_in_bytes(), |n, &d| n.checked_mul(d));
        // A slice may not exceed isize::MAX bytes.
        let len = len.filter(|&n| isize::try_from(n).is_ok()).ok_or_else(too_large)?;
        let pin = pinned().then(cuda_device);
        let tensor = allocate(&dims, kind, pin).map_err(|reason| Error::Allocate {
            shape: shape.to_vec(),
            pinned_for: pin,
            reason,
        })?;
        // What the byte view relies on, checked rather than assumed.
        if tensor.device() != Device::Cpu
            || tensor.kind() != kind
            || !tensor.is_contiguous()
            || tensor.numel() * kind.elt_size_in_bytes() != len
        {
            return Err(Error::Unexpected { shape: shape.to_vec() });
        }
        if len > 0 {
            let start = tensor.data_ptr().cast::<u8>();
            if huge_pages && pin.is_none() && len >= 2 << 20 {
                // A [64, 3, 224, 224] f32 batch is 38 MB, above glibc's
                // largest mmap threshold: every batch is fresh memory,
                // page-faulted 9,400 times with 4 KiB pages. With 2 MiB
                // pages an epoch of the 5,000 photos took 85k instead of
                // 768k faults and 40% less system time (7% less CPU in
                // all). Advised before the zeroing below, which takes the
                // faults.
                let _ = ringfeed_io::advise_huge_pages(start as usize, len);
            }
            // SAFETY: `start` is the first of the `len` bytes of a
            // contiguous CPU tensor (checked above), allocated while
            // `tensor` lives and reached by no other handle or reference:
            // the shim's handle is `tensor`'s alone, and no slice over the
            // memory exists yet. Writing bytes needs no initialised
            // contents, and after it all `len` bytes are initialised, as
            // every later view needs (module docs: written before viewed).
            unsafe { std::ptr::write_bytes(start, 0, len) };
        }
        Ok(TensorSlab { tensor, len })
    }

    /// The tensor's memory.
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the tensor is a contiguous CPU tensor of `len` bytes
        // (checked in `new`, kept by `keep_rows`), alive as long as `self`,
        // and all `len` bytes were initialised in `new` before any view of
        // them existed; nothing else holds a handle to it, so nothing
        // writes it while this shared borrow of `self` lasts.
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr().cast::<u8>(), self.len) }
    }

    /// The tensor's memory, for writing.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes` (contiguous, alive, initialised in `new`,
        // sole handle), and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.tensor.data_ptr().cast::<u8>(), self.len) }
    }

    /// Keeps the first `rows` entries of dimension 0 (a view of the same
    /// memory; the old handle is dropped, so the view stays the only one).
    ///
    /// # Errors
    ///
    /// [`Error::Rows`] when `rows` is more than the tensor has.
    pub fn keep_rows(&mut self, rows: usize) -> Result<(), Error> {
        let total = usize::try_from(self.tensor.size().first().copied().unwrap_or(0)).unwrap_or(0);
        if rows > total {
            return Err(Error::Rows { rows, total });
        }
        let length = i64::try_from(rows).map_err(|_| Error::Rows { rows, total })?;
        let narrowed = self.tensor.f_narrow(0, 0, length).map_err(|e| Error::Tch(e.to_string()))?;
        self.len = self.len.checked_div(total).map_or(0, |per_row| per_row * rows);
        self.tensor = narrowed;
        Ok(())
    }

    /// The tensor, for the consumer to own.
    pub fn into_tensor(self) -> Tensor {
        self.tensor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind tch has.
    const KINDS: [Kind; 20] = [
        Kind::Uint8,
        Kind::Int8,
        Kind::Int16,
        Kind::Int,
        Kind::Int64,
        Kind::Half,
        Kind::Float,
        Kind::Double,
        Kind::ComplexHalf,
        Kind::ComplexFloat,
        Kind::ComplexDouble,
        Kind::Bool,
        Kind::QInt8,
        Kind::QUInt8,
        Kind::QInt32,
        Kind::BFloat16,
        Kind::Float8e5m2,
        Kind::Float8e4m3fn,
        Kind::Float8e5m2fnuz,
        Kind::Float8e4m3fnuz,
    ];

    #[test]
    fn u8_batch_is_zeroed_with_its_shape() {
        let slab = TensorSlab::new(&[2, 3, 4, 5], Kind::Uint8, false).unwrap();
        assert_eq!(slab.bytes().len(), 120);
        assert!(slab.bytes().iter().all(|&b| b == 0));
        let t = slab.into_tensor();
        assert_eq!(t.size(), [2, 3, 4, 5]);
        assert_eq!(t.kind(), Kind::Uint8);
        assert_eq!(t.device(), Device::Cpu);
    }

    #[test]
    fn f32_batch_is_zeroed_and_writes_reach_the_tensor() {
        let mut slab = TensorSlab::new(&[2, 3, 2, 2], Kind::Float, false).unwrap();
        assert_eq!(slab.bytes().len(), 24 * 4);
        assert!(slab.bytes().iter().all(|&b| b == 0));
        slab.bytes_mut()[7 * 4..8 * 4].copy_from_slice(&1.5f32.to_ne_bytes());
        let t = slab.into_tensor();
        assert_eq!(t.size(), [2, 3, 2, 2]);
        assert_eq!(t.kind(), Kind::Float);
        assert_eq!(t.double_value(&[0, 1, 1, 1]), 1.5);
        assert_eq!(t.sum(Kind::Double).double_value(&[]), 1.5);
    }

    #[test]
    fn large_batches_are_zeroed_with_and_without_huge_pages() {
        for huge_pages in [false, true] {
            // 2.4 MB, above the huge-page threshold.
            let slab = TensorSlab::new(&[4, 3, 224, 224], Kind::Float, huge_pages).unwrap();
            assert_eq!(slab.bytes().len(), 4 * 3 * 224 * 224 * 4);
            assert!(slab.bytes().iter().all(|&b| b == 0), "huge_pages: {huge_pages}");
        }
    }

    #[test]
    fn zero_size_shapes() {
        for (shape, kind) in [(&[0, 3, 4, 4][..], Kind::Uint8), (&[4, 0], Kind::Float), (&[0], Kind::Float)] {
            let mut slab = TensorSlab::new(shape, kind, true).unwrap();
            assert!(slab.bytes().is_empty());
            assert!(slab.bytes_mut().is_empty());
            slab.keep_rows(0).unwrap();
            assert!(slab.bytes().is_empty());
            let t = slab.into_tensor();
            assert_eq!(t.numel(), 0);
            assert_eq!(t.kind(), kind);
        }
        // No dimensions: a scalar, one element.
        let slab = TensorSlab::new(&[], Kind::Float, false).unwrap();
        assert_eq!(slab.bytes(), [0; 4]);
        assert_eq!(slab.into_tensor().size(), Vec::<i64>::new());
    }

    #[test]
    fn keep_rows_shortens_the_view() {
        let mut slab = TensorSlab::new(&[4, 2], Kind::Uint8, false).unwrap();
        slab.bytes_mut().copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(slab.keep_rows(5).is_err());
        slab.keep_rows(2).unwrap();
        assert_eq!(slab.bytes(), [1, 2, 3, 4]);
        let t = slab.into_tensor();
        assert_eq!(t.size(), [2, 2]);
        assert_eq!(t.int64_value(&[1, 1]), 4);
    }

    #[test]
    fn absurd_shapes_are_errors_not_crashes() {
        // Fits Rust's checks (4 EiB < isize::MAX); libtorch refuses it, and
        // the shim turns its C++ exception into an error.
        let e = TensorSlab::new(&[1 << 62], Kind::Uint8, false).unwrap_err().to_string();
        println!("{e}");
        assert!(e.starts_with("libtorch cannot allocate a [4611686018427387904] tensor"), "{e}");
        assert!(e.len() > "libtorch cannot allocate a [4611686018427387904] tensor: ".len(), "{e}");
        // Caught in Rust: a dimension past i64, and a byte count past usize.
        let e = TensorSlab::new(&[usize::MAX], Kind::Uint8, false).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        let e = TensorSlab::new(&[1 << 40, 1 << 40], Kind::Float, false).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn every_kind_round_trips() {
        let mut allocated = 0;
        for kind in KINDS {
            match allocate(&[3], kind, None) {
                Ok(t) => {
                    assert_eq!(t.kind(), kind);
                    assert_eq!(t.size(), [3]);
                    allocated += 1;
                }
                // libtorch may refuse plain `empty` for quantized types.
                Err(e) => assert!(matches!(kind, Kind::QInt8 | Kind::QUInt8 | Kind::QInt32), "{kind:?}: {e}"),
            }
        }
        assert!(allocated >= 17, "{allocated}");
    }

    #[test]
    fn shim_refuses_unknown_scalar_types() {
        for kind in [-1, 99, c_int::MAX] {
            let e = allocate_raw(&[3], kind, 0, 0).unwrap_err();
            assert_eq!(e, "not a scalar type libtorch knows");
        }
    }

    #[test]
    fn pinned_allocation() {
        if tch::Cuda::is_available() {
            let t = allocate(&[2, 3], Kind::Float, Some(Device::Cuda(0))).unwrap();
            assert_eq!(t.device(), Device::Cpu);
            assert!(t.is_pinned(Device::Cuda(0)));
            let slab = TensorSlab::new(&[2, 3], Kind::Uint8, true).unwrap();
            assert!(slab.bytes().iter().all(|&b| b == 0));
            assert!(slab.into_tensor().is_pinned(Device::Cuda(0)));
        } else {
            // Without CUDA the pinned path fails cleanly.
            let e = allocate(&[2, 3], Kind::Float, Some(Device::Cuda(0))).unwrap_err();
            println!("{e}");
            assert!(!e.is_empty());
        }
        // Past c10's device index (int8), caught in the shim; past c_int,
        // in Rust.
        let e = allocate(&[2], Kind::Uint8, Some(Device::Cuda(1000))).unwrap_err();
        assert_eq!(e, "CUDA device index out of range");
        let e = allocate(&[2], Kind::Uint8, Some(Device::Cuda(usize::MAX))).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        assert!(allocate(&[2], Kind::Uint8, Some(Device::Cpu)).is_err());
    }

    #[test]
    fn local_rank_parsing() {
        assert_eq!(parse_local_rank(None), 0);
        assert_eq!(parse_local_rank(Some("3")), 3);
        assert_eq!(parse_local_rank(Some(" 2\n")), 2);
        assert_eq!(parse_local_rank(Some("")), 0);
        assert_eq!(parse_local_rank(Some("-1")), 0);
        assert_eq!(parse_local_rank(Some("gpu1")), 0);
    }

    #[test]
    fn huge_page_advice_takes_any_range() {
        // Unmapped (page 0), empty, wrapping past the top: errors or
        // nothing, never a crash.
        let _ = ringfeed_io::advise_huge_pages(0, 1 << 20);
        assert!(ringfeed_io::advise_huge_pages(4096, 0).is_ok());
        assert!(ringfeed_io::advise_huge_pages(usize::MAX - 100, 1000).is_ok());
    }

    /// Prints what zeroing a `[64, 3, 224, 224]` f32 batch costs; compare
    /// with the ~96 ms (64 × 1.5 ms) its decodes take on one core. Run:
    /// `cargo test --release -p ringfeed-tensor --features tch --lib zeroing_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints timings"]
    fn zeroing_cost() {
        use std::time::Instant;
        const SHAPE: [usize; 4] = [64, 3, 224, 224];
        const LEN: usize = 64 * 3 * 224 * 224 * 4;
        const ROUNDS: u32 = 30;
        let dims = SHAPE.map(|d| d as i64);
        let time = |name: &str, f: &mut dyn FnMut()| {
            f();
            let t0 = Instant::now();
            for _ in 0..ROUNDS {
                f();
            }
            let ms = t0.elapsed().as_secs_f64() * 1e3 / f64::from(ROUNDS);
            println!("{name:<58} {ms:7.2} ms");
        };
        println!("[64, 3, 224, 224] f32 = {LEN} bytes, mean of {ROUNDS}:");
        time("allocate only (no page touched)", &mut || drop(allocate(&dims, Kind::Float, None).unwrap()));
        for huge_pages in [false, true] {
            time(&format!("TensorSlab::new (allocate + zero), huge_pages={huge_pages}"), &mut || {
                drop(TensorSlab::new(&SHAPE, Kind::Float, huge_pages).unwrap());
            });
            // The decode's writes after the zeroing, as one memset.
            time(
                &format!("TensorSlab::new + fill (zero, then 'decode'), huge_pages={huge_pages}"),
                &mut || {
                    let mut slab = TensorSlab::new(&SHAPE, Kind::Float, huge_pages).unwrap();
                    slab.bytes_mut().fill(0x3f);
                    drop(slab);
                },
            );
        }
        // What the decode's writes cost without the zeroing: the old code.
        time("allocate + fill through the raw pointer (no zeroing)", &mut || {
            let t = allocate(&dims, Kind::Float, None).unwrap();
            // SAFETY: test only: the `LEN` bytes of a fresh contiguous CPU
            // tensor that only `t` holds; written, never read or viewed.
            unsafe { std::ptr::write_bytes(t.data_ptr().cast::<u8>(), 0x3f, LEN) };
        });
        let mut warm = vec![1u8; LEN];
        time("memset of an already-faulted buffer (zeroing's own cost)", &mut || {
            warm.fill(0);
            std::hint::black_box(&mut warm);
        });
    }
}

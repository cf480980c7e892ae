//! Image batches in libtorch-owned memory: a worker allocates the batch's
//! tensor, writes the decoded images straight into it through a byte view,
//! and the consumer receives the same tensor, so nothing is copied.
//!
//! Soundness rests on one invariant: a [`TensorSlab`] holds the only handle
//! to a contiguous CPU tensor it allocated itself, so a `&mut [u8]` over its
//! memory cannot alias anything libtorch or the caller can reach. The
//! handle leaves only through [`TensorSlab::into_tensor`], which gives up
//! the view.

use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

/// A tensor being filled (see the module docs for the invariant).
#[derive(Debug)]
pub(crate) struct TensorSlab {
    tensor: Tensor,
    /// Bytes of the tensor's elements.
    len: usize,
}

/// Whether CUDA is usable, asked once: batches then live in pinned host
/// memory, which copies to the GPU asynchronously and at full speed.
fn pinned() -> bool {
    static PINNED: OnceLock<bool> = OnceLock::new();
    *PINNED.get_or_init(tch::Cuda::is_available)
}

impl TensorSlab {
    /// A new tensor of `shape` and `kind`, in pinned memory when CUDA is
    /// available, else on transparent huge pages if `huge_pages` and it is
    /// large; its contents are unspecified until written.
    pub(crate) fn new(shape: &[usize], kind: Kind, huge_pages: bool) -> Result<Self, String> {
        let dims = shape.iter().map(|&d| i64::try_from(d)).collect::<Result<Vec<_>, _>>();
        let dims = dims.map_err(|_| format!("tensor shape {shape:?} is too large"))?;
        let mut tensor = Tensor::f_empty(dims.as_slice(), (kind, Device::Cpu))
            .map_err(|e| format!("libtorch cannot allocate a {shape:?} tensor: {e}"))?;
        if pinned() {
            tensor = tensor
                .f_pin_memory(Device::Cuda(0))
                .map_err(|e| format!("libtorch cannot pin a {shape:?} tensor: {e}"))?;
        }
        let len = shape.iter().product::<usize>() * kind.elt_size_in_bytes();
        // What the byte view relies on, checked rather than assumed.
        if tensor.device() != Device::Cpu
            || !tensor.is_contiguous()
            || tensor.numel() * kind.elt_size_in_bytes() != len
        {
            return Err(format!("libtorch returned an unexpected tensor for {shape:?}"));
        }
        let mut slab = TensorSlab { tensor, len };
        if huge_pages && !pinned() && len >= 2 << 20 {
            // A [64, 3, 224, 224] f32 batch is 38 MB, above glibc's largest
            // mmap threshold: every batch is fresh memory, page-faulted
            // 9,400 times with 4 KiB pages. With 2 MiB pages an epoch of
            // the 5,000 photos took 85k instead of 768k faults and 40% less
            // system time (7% less CPU in all).
            let _ = super::advise_huge_pages(slab.bytes_mut());
        }
        Ok(slab)
    }

    /// The tensor's memory.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the tensor is a contiguous CPU tensor of `len` bytes
        // (checked in `new`, kept by `keep_rows`), alive as long as `self`;
        // nothing else holds a handle to it, so nothing writes it while
        // this shared borrow of `self` lasts.
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr().cast::<u8>(), self.len) }
    }

    /// The tensor's memory, for writing.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.tensor.data_ptr().cast::<u8>(), self.len) }
    }

    /// Keeps the first `rows` entries of dimension 0 (a view of the same
    /// memory; the old handle is dropped, so the view stays the only one).
    pub(crate) fn keep_rows(&mut self, rows: usize) -> Result<(), String> {
        let total = usize::try_from(self.tensor.size().first().copied().unwrap_or(0)).unwrap_or(0);
        if rows > total {
            return Err(format!("cannot keep {rows} of {total} rows"));
        }
        let narrowed = self.tensor.f_narrow(0, 0, rows as i64).map_err(|e| e.to_string())?;
        self.len = self.len.checked_div(total).map_or(0, |per_row| per_row * rows);
        self.tensor = narrowed;
        Ok(())
    }

    /// The tensor, for the consumer to own.
    pub(crate) fn into_tensor(self) -> Tensor {
        self.tensor
    }
}

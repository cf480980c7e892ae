//! Batch memory. A batch is one contiguous `[N, ...]` buffer whose rows
//! pool threads fill concurrently, each straight into its own row: no
//! per-request buffer, no copy when the batch closes. Rows are handed out
//! as [`RowWriter`]s, each index once, by an atomic counter; the buffer is
//! only seen whole again once every writer is gone (`Arc::try_unwrap`).
//! That disjointness is what the one `unsafe` block here relies on.
//!
//! Buffers are recycled: a [`Batch`] returns its storage to the pool when
//! dropped, and holds a permit of the in-flight semaphore meanwhile, so at
//! most `in_flight` buffers of `max_batch` rows ever exist.
//!
//! With the `tch` feature a buffer can also be a libtorch tensor
//! ([`TensorMem`]), so that the model runs on the very memory the pool
//! wrote (`Batch::tensor`). Its soundness rests on the tensor being the
//! crate's sole handle while rows are written, which holds because a
//! tensor is written only before it is handed out: a [`Batch`] gives out
//! its view only after every [`RowWriter`] is gone, and a tensor that was
//! handed out is never recycled (the model may keep or write it: a
//! `tch::Tensor` can be cloned from a shared reference, so no contract
//! could stop it). For the same reason `Batch::data` never makes a Rust
//! slice over handed-out tensor memory: it copies. libtorch allocates the
//! tensor zero-filled, so every row slice covers initialised elements.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ringfeed_decode::OutputMut;
use tokio::sync::OwnedSemaphorePermit;

use crate::spec::Layout;

/// Owned batch memory of one element type.
#[derive(Debug)]
pub(crate) enum Storage {
    U8(Box<[u8]>),
    F32(Box<[f32]>),
    #[cfg(feature = "tch")]
    Tensor(TensorMem),
}

/// A contiguous, zero-filled CPU tensor of `[rows, ...row_shape]` and its
/// base pointer, taken once at allocation.
#[cfg(feature = "tch")]
#[derive(Debug)]
pub(crate) struct TensorMem {
    tensor: tch::Tensor,
    /// `tensor.data_ptr()`: aligned for its kind (libtorch's CPU allocator
    /// aligns to 64 bytes), valid for `len` elements while `tensor` lives.
    base: *mut std::ffi::c_void,
    f32: bool,
    /// Elements.
    len: usize,
}

// SAFETY: `base` points into the memory `tensor` owns, and `tch::Tensor`
// is `Send`; who may access that memory is governed by `RowBuffer` and
// `Batch` exactly as for a boxed slice.
#[cfg(feature = "tch")]
unsafe impl Send for TensorMem {}

#[cfg(feature = "tch")]
impl TensorMem {
    /// A zero-filled `[rows, ...row_shape]` tensor of `f32` or `u8`.
    pub(crate) fn new(f32: bool, rows: usize, row_shape: [usize; 3]) -> crate::Result<TensorMem> {
        let size =
            [rows, row_shape[0], row_shape[1], row_shape[2]].map(|d| i64::try_from(d).unwrap_or(i64::MAX));
        let kind = if f32 { tch::Kind::Float } else { tch::Kind::Uint8 };
        let tensor = tch::Tensor::f_zeros(size, (kind, tch::Device::Cpu))
            .map_err(|e| crate::Error::Internal(format!("cannot allocate a batch tensor: {e}")))?;
        let len = rows * row_shape.iter().product::<usize>();
        if tensor.numel() != len || !tensor.is_contiguous() {
            return Err(crate::Error::Internal("libtorch gave a batch tensor of another shape".into()));
        }
        let base = tensor.data_ptr();
        Ok(TensorMem { tensor, base, f32, len })
    }

    /// The first `rows` rows, copied out by libtorch into boxed storage.
    fn copy_rows(&self, rows: usize) -> Storage {
        let flat = self.tensor.narrow(0, 0, rows as i64).flatten(0, -1);
        // Same kind and a contiguous CPU tensor: the conversion cannot fail.
        if self.f32 {
            Storage::F32(Vec::<f32>::try_from(&flat).expect("an f32 CPU tensor converts").into_boxed_slice())
        } else {
            Storage::U8(Vec::<u8>::try_from(&flat).expect("a u8 CPU tensor converts").into_boxed_slice())
        }
    }
}

impl Storage {
    pub(crate) fn new(f32: bool, len: usize) -> Storage {
        if f32 {
            Storage::F32(vec![0.0; len].into_boxed_slice())
        } else {
            Storage::U8(vec![0; len].into_boxed_slice())
        }
    }

    /// Like [`new`](Self::new), every page written now, so the memory is
    /// resident from the start (a zeroed allocation is only mapped, and
    /// would show up in RSS when the first batch large enough fills it).
    pub(crate) fn resident(f32: bool, len: usize) -> Storage {
        let mut s = Storage::new(f32, len);
        match &mut s {
            Storage::F32(b) => b.iter_mut().step_by(1024).for_each(|x| *x = std::hint::black_box(0.0)),
            Storage::U8(b) => b.iter_mut().step_by(4096).for_each(|x| *x = std::hint::black_box(0)),
            #[cfg(feature = "tch")]
            Storage::Tensor(_) => {}
        }
        s
    }

    fn copy_row(&mut self, from: usize, to: usize, row_len: usize) {
        match self {
            Storage::U8(b) => b.copy_within(from * row_len..(from + 1) * row_len, to * row_len),
            Storage::F32(b) => b.copy_within(from * row_len..(from + 1) * row_len, to * row_len),
            #[cfg(feature = "tch")]
            Storage::Tensor(m) => {
                // Rows `from > to` never overlap; libtorch copies them.
                let (from, to) = (from as i64, to as i64);
                m.tensor.narrow(0, to, 1).copy_(&m.tensor.narrow(0, from, 1));
            }
        }
    }
}

/// The base pointer of a buffer being filled (from `Box::into_raw`).
#[derive(Debug)]
enum Raw {
    U8(*mut [u8]),
    F32(*mut [f32]),
    /// The tensor itself, owned meanwhile; its base pointer is inside.
    #[cfg(feature = "tch")]
    Tensor(TensorMem),
}

/// A buffer whose rows are being written by pool threads.
#[derive(Debug)]
pub(crate) struct RowBuffer {
    /// `None` once taken back by [`into_storage`](Self::into_storage).
    raw: Option<Raw>,
    row_len: usize,
    rows: usize,
    next: AtomicUsize,
}

// SAFETY: the buffer is plain memory owned by this value; concurrent
// access goes only through `RowWriter`s of distinct rows (see `slot`).
unsafe impl Send for RowBuffer {}
// SAFETY: as above: `&RowBuffer` gives no access to the memory itself.
unsafe impl Sync for RowBuffer {}

impl RowBuffer {
    /// `storage` of at least `rows × row_len` elements.
    pub(crate) fn new(storage: Storage, row_len: usize, rows: usize) -> Arc<RowBuffer> {
        let raw = match storage {
            Storage::U8(b) => {
                assert!(row_len.checked_mul(rows).is_some_and(|n| b.len() >= n));
                Raw::U8(Box::into_raw(b))
            }
            Storage::F32(b) => {
                assert!(row_len.checked_mul(rows).is_some_and(|n| b.len() >= n));
                Raw::F32(Box::into_raw(b))
            }
            #[cfg(feature = "tch")]
            Storage::Tensor(m) => {
                assert!(row_len.checked_mul(rows).is_some_and(|n| m.len >= n));
                Raw::Tensor(m)
            }
        };
        Arc::new(RowBuffer { raw: Some(raw), row_len, rows, next: AtomicUsize::new(0) })
    }

    /// The writer of the next unassigned row, or `None` when all are taken.
    pub(crate) fn writer(self: &Arc<Self>) -> Option<RowWriter> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.rows).then(|| RowWriter { buffer: Arc::clone(self), index })
    }

    /// The memory back, once no writer is left.
    pub(crate) fn into_storage(mut self) -> Storage {
        self.take_storage().expect("storage taken once")
    }

    fn take_storage(&mut self) -> Option<Storage> {
        Some(match self.raw.take()? {
            // SAFETY: the pointer came from `Box::into_raw` in `new` and is
            // taken back once (`raw` is now `None`). `&mut self` means no
            // writer (each holds an `Arc` of the buffer) is alive.
            Raw::U8(p) => Storage::U8(unsafe { Box::from_raw(p) }),
            // SAFETY: as above.
            Raw::F32(p) => Storage::F32(unsafe { Box::from_raw(p) }),
            #[cfg(feature = "tch")]
            Raw::Tensor(m) => Storage::Tensor(m),
        })
    }
}

impl Drop for RowBuffer {
    fn drop(&mut self) {
        drop(self.take_storage());
    }
}

/// The exclusive right to write one row of a [`RowBuffer`].
#[derive(Debug)]
pub(crate) struct RowWriter {
    buffer: Arc<RowBuffer>,
    index: usize,
}

impl RowWriter {
    /// The row's memory.
    pub(crate) fn slot(&mut self) -> OutputMut<'_> {
        let b = &*self.buffer;
        let start = self.index * b.row_len;
        // Why the slices below are sound: `index < rows` (checked in
        // `writer`) and the buffer holds at least `rows × row_len` elements
        // (asserted in `new`), so the range is in bounds; each index is
        // handed to exactly one `RowWriter` (the atomic counter), rows are
        // disjoint, and `&mut self` keeps this writer from lending its row
        // twice; the memory is reclaimed only when no writer holds the
        // `Arc`. So each slice is the only live reference to its elements
        // while it lasts.
        match b.raw.as_ref().expect("live buffer") {
            Raw::U8(p) => {
                let row = p.cast::<u8>().wrapping_add(start);
                // SAFETY: see above: in bounds, disjoint, exclusive for `'_`.
                OutputMut::U8(unsafe { std::slice::from_raw_parts_mut(row, b.row_len) })
            }
            Raw::F32(p) => {
                let row = p.cast::<f32>().wrapping_add(start);
                // SAFETY: see above: in bounds, disjoint, exclusive for `'_`.
                OutputMut::F32(unsafe { std::slice::from_raw_parts_mut(row, b.row_len) })
            }
            // The tensor's memory, with one more reason: the `RowBuffer`
            // owns the only handle to the tensor (a `Batch` view is made
            // only after every writer is gone, and a tensor a `Batch` gave
            // out never returns to the free list), and its elements are
            // initialised and aligned for their kind (see `TensorMem`).
            #[cfg(feature = "tch")]
            Raw::Tensor(m) if m.f32 => {
                let row = m.base.cast::<f32>().wrapping_add(start);
                // SAFETY: see above: in bounds, disjoint, exclusive for `'_`.
                OutputMut::F32(unsafe { std::slice::from_raw_parts_mut(row, b.row_len) })
            }
            #[cfg(feature = "tch")]
            Raw::Tensor(m) => {
                let row = m.base.cast::<u8>().wrapping_add(start);
                // SAFETY: see above: in bounds, disjoint, exclusive for `'_`.
                OutputMut::U8(unsafe { std::slice::from_raw_parts_mut(row, b.row_len) })
            }
        }
    }
}

/// Where buffers go back to when their batch is dropped.
pub(crate) type FreeList = Arc<Mutex<Vec<Storage>>>;

/// Moves the rows listed in `keep` (ascending indices) to the front, in
/// order, so the batch has no holes where requests failed or left.
pub(crate) fn compact(storage: &mut Storage, keep: &[usize], row_len: usize) {
    for (to, &from) in keep.iter().enumerate() {
        if from != to {
            storage.copy_row(from, to, row_len);
        }
    }
}

/// One batch of preprocessed images, handed to the model function: a
/// contiguous `[N, C, H, W]` (or `[N, H, W, C]`) buffer of `u8` or `f32`,
/// row `i` being the `i`-th request of the batch. The model function
/// returns one output per row, in order.
///
/// Its memory goes back to the batcher's pool when it is dropped: drop it
/// as soon as the data has been handed to the model (e.g. copied to the
/// GPU), so the next batch can use it.
///
/// With the `tch` feature a `Batch` holds a `tch::Tensor`, which is `Send`
/// but not `Sync`: move the batch (into `spawn_blocking`, say) rather than
/// share a reference to it across threads.
#[derive(Debug)]
pub struct Batch {
    storage: Option<Storage>,
    rows: usize,
    row_shape: [usize; 3],
    layout: Layout,
    free: FreeList,
    /// The filled rows as a tensor: a view of tensor storage, made with
    /// the batch, or a copy of boxed storage, made on first use.
    #[cfg(feature = "tch")]
    tensor: std::cell::OnceCell<tch::Tensor>,
    /// Tensor storage's rows copied out, made by the first `data()`.
    #[cfg(feature = "tch")]
    copied: std::cell::OnceCell<Storage>,
    _in_flight: OwnedSemaphorePermit,
}

/// A view of batch memory.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum BatchData<'a> {
    /// Raw pixels ([`Normalize::None`](crate::Normalize::None)).
    U8(&'a [u8]),
    /// Normalized values.
    F32(&'a [f32]),
}

impl BatchData<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            BatchData::U8(d) => d.len(),
            BatchData::F32(d) => d.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Batch {
    pub(crate) fn new(
        storage: Storage,
        rows: usize,
        row_shape: [usize; 3],
        layout: Layout,
        free: FreeList,
        in_flight: OwnedSemaphorePermit,
    ) -> Batch {
        #[cfg(feature = "tch")]
        let tensor = std::cell::OnceCell::new();
        #[cfg(feature = "tch")]
        if let Storage::Tensor(m) = &storage {
            // `narrow` of a contiguous tensor along its first dimension is a
            // contiguous view: no copy.
            let _ = tensor.set(m.tensor.narrow(0, 0, rows as i64));
        }
        Batch {
            storage: Some(storage),
            rows,
            row_shape,
            layout,
            free,
            #[cfg(feature = "tch")]
            tensor,
            #[cfg(feature = "tch")]
            copied: std::cell::OnceCell::new(),
            _in_flight: in_flight,
        }
    }

    /// The filled rows as a CPU tensor of [`shape`](Self::shape), `f32`
    /// (`Kind::Float`) or `u8` (`Kind::Uint8`): without a copy when the
    /// batcher was built with
    /// [`tensor_storage(true)`](crate::BatcherBuilder::tensor_storage)
    /// (the pool decoded straight into it), else a copy of
    /// [`data`](Self::data) made on the first call.
    ///
    /// With tensor storage the tensor is this batch's own memory, never
    /// reused for another batch: the model may keep it or write into it
    /// (the batcher then allocates a fresh tensor for a later batch).
    #[cfg(feature = "tch")]
    pub fn tensor(&self) -> &tch::Tensor {
        self.tensor.get_or_init(|| {
            let shape = self.shape().map(|d| d as i64);
            match self.data() {
                BatchData::U8(d) => tch::Tensor::from_slice(d).view(shape),
                BatchData::F32(d) => tch::Tensor::from_slice(d).view(shape),
            }
        })
    }

    /// Number of rows (requests).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the batch has no rows (never true for a batch given to the
    /// model function).
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// `[N, C, H, W]` or `[N, H, W, C]`, as [`layout`](Self::layout) says.
    pub fn shape(&self) -> [usize; 4] {
        let [a, b, c] = self.row_shape;
        [self.rows, a, b, c]
    }

    /// The row layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn row_len(&self) -> usize {
        self.row_shape.iter().product()
    }

    /// All rows, contiguous. With tensor storage, a copy of the tensor's
    /// rows made on the first call (the tensor may be written through a
    /// handle cloned from [`tensor`](Self::tensor), so no slice is made
    /// over its memory).
    pub fn data(&self) -> BatchData<'_> {
        let n = self.rows * self.row_len();
        match self.storage.as_ref().expect("live batch") {
            Storage::U8(b) => BatchData::U8(&b[..n]),
            Storage::F32(b) => BatchData::F32(&b[..n]),
            #[cfg(feature = "tch")]
            Storage::Tensor(m) => {
                let copy = self.copied.get_or_init(|| m.copy_rows(self.rows));
                match copy {
                    Storage::U8(b) => BatchData::U8(b),
                    Storage::F32(b) => BatchData::F32(b),
                    Storage::Tensor(_) => unreachable!("copies are boxed"),
                }
            }
        }
    }

    /// Row `i` (`None` past the end).
    pub fn row(&self, i: usize) -> Option<BatchData<'_>> {
        if i >= self.rows {
            return None;
        }
        let l = self.row_len();
        Some(match self.data() {
            BatchData::U8(b) => BatchData::U8(&b[i * l..(i + 1) * l]),
            BatchData::F32(b) => BatchData::F32(&b[i * l..(i + 1) * l]),
        })
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // The view goes before the memory is offered to the next batch.
        #[cfg(feature = "tch")]
        drop(self.tensor.take());
        // A tensor that was handed out may still have handles: never reuse it.
        #[cfg(feature = "tch")]
        if matches!(self.storage, Some(Storage::Tensor(_))) {
            return;
        }
        if let (Some(s), Ok(mut free)) = (self.storage.take(), self.free.lock()) {
            free.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_handed_out_once_and_written_from_many_threads() {
        let buffer = RowBuffer::new(Storage::new(true, 4 * 3), 3, 4);
        let writers: Vec<_> = std::iter::from_fn(|| buffer.writer()).collect();
        assert_eq!(writers.len(), 4, "one writer per row, no more");
        assert!(buffer.writer().is_none());
        std::thread::scope(|s| {
            for mut w in writers {
                s.spawn(move || {
                    let i = w.index;
                    let OutputMut::F32(row) = w.slot() else { unreachable!() };
                    row.fill(i as f32);
                });
            }
        });
        let Ok(buffer) = Arc::try_unwrap(buffer) else { panic!("writers left") };
        let Storage::F32(data) = buffer.into_storage() else { unreachable!() };
        assert_eq!(&*data, &[0., 0., 0., 1., 1., 1., 2., 2., 2., 3., 3., 3.]);
    }

    #[test]
    fn compact_closes_holes_in_order() {
        let mut s = Storage::U8((0..6u8).collect::<Vec<_>>().into_boxed_slice());
        compact(&mut s, &[1, 2, 5], 1);
        let Storage::U8(d) = s else { unreachable!() };
        assert_eq!(&d[..3], &[1, 2, 5]);
    }

    #[cfg(feature = "tch")]
    #[test]
    fn tensor_rows_are_written_from_many_threads_and_compacted() {
        let mem = TensorMem::new(true, 4, [1, 1, 3]).unwrap();
        let base = mem.tensor.data_ptr();
        let buffer = RowBuffer::new(Storage::Tensor(mem), 3, 4);
        let writers: Vec<_> = std::iter::from_fn(|| buffer.writer()).collect();
        std::thread::scope(|s| {
            for mut w in writers {
                s.spawn(move || {
                    let i = w.index;
                    let OutputMut::F32(row) = w.slot() else { unreachable!() };
                    row.fill(i as f32);
                });
            }
        });
        let Ok(buffer) = Arc::try_unwrap(buffer) else { panic!("writers left") };
        let mut storage = buffer.into_storage();
        compact(&mut storage, &[1, 3], 3);
        let Storage::Tensor(m) = &storage else { unreachable!() };
        assert_eq!(m.tensor.data_ptr(), base, "the same memory throughout");
        let Storage::F32(data) = m.copy_rows(2) else { panic!("f32 rows") };
        assert_eq!(&*data, &[1., 1., 1., 3., 3., 3.]);
    }

    #[test]
    fn a_buffer_dropped_with_writers_frees_its_memory_once() {
        let buffer = RowBuffer::new(Storage::new(false, 8), 2, 4);
        let w = buffer.writer().unwrap();
        drop(buffer);
        drop(w); // the last owner frees it
    }
}

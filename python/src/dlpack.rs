//! DLPack export: memory Rust owns, handed to torch (or NumPy) without a
//! copy; the consumer calls our deleter when its tensor's storage dies,
//! and that drop returns a pooled batch buffer to the loader's pool.
//!
//! The structs are DLPack's (v0.8 "dltensor" capsules, which every
//! consumer accepts): <https://dmlc.github.io/dlpack/latest/c_api.html>.

use std::any::Any;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// `DLDevice`: CPU memory, device 0.
#[repr(C)]
#[derive(Clone, Copy)]
struct DlDevice {
    device_type: i32,
    device_id: i32,
}

const DL_CPU: i32 = 1;

/// `DLDataType`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DlDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

impl DlDataType {
    pub(crate) const U8: DlDataType = DlDataType { code: 1, bits: 8, lanes: 1 };
    pub(crate) const I64: DlDataType = DlDataType { code: 0, bits: 64, lanes: 1 };
    pub(crate) const F32: DlDataType = DlDataType { code: 2, bits: 32, lanes: 1 };

    /// Signed (`code` 0), unsigned (1), float (2), bfloat (4) or bool (6).
    pub(crate) const fn new(code: u8, bits: u8) -> Self {
        DlDataType { code, bits, lanes: 1 }
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        usize::from(self.bits).div_ceil(8) * usize::from(self.lanes)
    }
}

/// `DLTensor`.
#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device: DlDevice,
    ndim: i32,
    dtype: DlDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

/// `DLManagedTensor` (DLPack < 1.0, capsule "dltensor").
#[repr(C)]
struct DlManagedTensor {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
}

/// `DLPackVersion`.
#[repr(C)]
struct DlPackVersion {
    major: u32,
    minor: u32,
}

/// `DLManagedTensorVersioned` (DLPack 1.x, capsule "dltensor_versioned"):
/// the one whose consumers may write (no `READ_ONLY` flag), which NumPy
/// needs to give a writable array.
#[repr(C)]
struct DlManagedTensorVersioned {
    version: DlPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DlTensor,
}

/// What a capsule points to: the DLPack struct first (so a pointer to it
/// is a pointer to this), then what keeps its memory alive.
#[repr(C)]
struct Managed<H> {
    header: H,
    /// The owner of the memory `header.dl_tensor.data` points into.
    _owner: Box<dyn Any + Send>,
    /// What `header.dl_tensor.shape` points to.
    _shape: Box<[i64]>,
}

/// Frees a `Managed<H>`: the consumer's call when its tensor is freed, or
/// ours for a capsule nobody consumed.
///
/// # Safety
/// `p` is null or comes from `Box::<Managed<H>>::into_raw` in
/// [`Export::into_capsule`] and is freed once (DLPack: the deleter is
/// called once, by the one consumer that renamed the capsule, or by the
/// capsule's destructor when none did).
unsafe extern "C" fn delete_managed<H>(p: *mut H) {
    if !p.is_null() {
        // SAFETY: see the function's contract; `Managed` is `repr(C)` with
        // the header first, so the pointers are the same.
        drop(unsafe { Box::from_raw(p.cast::<Managed<H>>()) });
    }
}

/// The capsule's destructor: frees the tensor unless a consumer took it
/// (consumers rename the capsule to "used_..." and own it from then on).
///
/// # Safety
/// Called by Python with a capsule made by [`Export::into_capsule`], whose
/// unconsumed name says which header it holds.
unsafe extern "C" fn capsule_destructor(capsule: *mut pyo3::ffi::PyObject) {
    // SAFETY: `capsule` is a live capsule (Python calls the destructor
    // before freeing it); `IsValid` and `GetPointer` with its name only
    // read it, and the name tells which `Managed` it points to.
    unsafe {
        if pyo3::ffi::PyCapsule_IsValid(capsule, V1.as_ptr()) == 1 {
            let p = pyo3::ffi::PyCapsule_GetPointer(capsule, V1.as_ptr());
            delete_managed(p.cast::<DlManagedTensorVersioned>());
        } else if pyo3::ffi::PyCapsule_IsValid(capsule, V0.as_ptr()) == 1 {
            let p = pyo3::ffi::PyCapsule_GetPointer(capsule, V0.as_ptr());
            delete_managed(p.cast::<DlManagedTensor>());
        }
        // Consumed (renamed): the consumer frees it. `IsValid` sets no
        // error, but be sure none leaks out of a destructor.
        pyo3::ffi::PyErr_Clear();
    }
}

/// Capsule names.
const V0: &std::ffi::CStr = c"dltensor";
const V1: &std::ffi::CStr = c"dltensor_versioned";

/// Memory ready for export: its owner, where its values start, their
/// shape and type.
pub(crate) struct Export {
    owner: Box<dyn Any + Send>,
    data: NonNull<u8>,
    shape: Box<[i64]>,
    dtype: DlDataType,
}

// SAFETY: `data` points into memory that `owner` (which is `Send`) keeps
// alive and that no Rust reference reaches any more; exports that share an
// owner (`split`) cover disjoint ranges of it. Moving the export moves that
// ownership.
unsafe impl Send for Export {}

impl Export {
    /// A vector as a tensor of `shape` (whose product must be its length).
    pub(crate) fn from_vec<T: Send + 'static>(
        mut values: Vec<T>,
        shape: &[usize],
        dtype: DlDataType,
    ) -> Export {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape matches the values");
        assert_eq!(std::mem::size_of::<T>(), dtype.size(), "element size matches the dtype");
        // The pointer is taken from `&mut` (writable), and a `Vec`'s heap
        // block does not move when the `Vec` itself is moved into the box.
        let data = NonNull::new(values.as_mut_ptr().cast::<u8>()).expect("a Vec's pointer is not null");
        Export { owner: Box::new(values), data, shape: dims(shape), dtype }
    }

    /// An owned, writable buffer (`as_mut` gives its bytes) as a tensor
    /// of `shape` and `dtype`; `None` when the bytes do not fill the shape
    /// or are not aligned for the element type.
    pub(crate) fn from_owner<O: Send + 'static>(
        mut owner: O,
        as_mut: impl FnOnce(&mut O) -> &mut [u8],
        shape: &[usize],
        dtype: DlDataType,
    ) -> Option<Export> {
        let bytes = as_mut(&mut owner);
        let len = shape.iter().product::<usize>().checked_mul(dtype.size())?;
        if bytes.len() != len || bytes.as_ptr().align_offset(dtype.size().max(1)) != 0 {
            return None;
        }
        // Writable provenance from `&mut`; the owner's memory (a pool map
        // or a heap block) stays put when `owner` is boxed below.
        let data = NonNull::new(bytes.as_mut_ptr()).unwrap_or(NonNull::dangling());
        Some(Export { owner: Box::new(owner), data, shape: dims(shape), dtype })
    }

    /// Disjoint byte ranges `(start, len)` of one owned, writable buffer
    /// (`as_mut` gives its bytes) as flat `uint8` exports that share it:
    /// the buffer is freed when the last of them is. `None` when a range
    /// runs past the buffer or overlaps another.
    pub(crate) fn split<O: Send + Sync + 'static>(
        mut owner: O,
        as_mut: impl FnOnce(&mut O) -> &mut [u8],
        ranges: &[(usize, usize)],
    ) -> Option<Vec<Export>> {
        let bytes = as_mut(&mut owner);
        // Writable provenance from `&mut`; the buffer stays put when the
        // owner moves into the `Arc`.
        let (base, total) = (bytes.as_mut_ptr(), bytes.len());
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable();
        let mut end = 0;
        for &(at, len) in &sorted {
            let stop = at.checked_add(len)?;
            if at < end || stop > total {
                return None;
            }
            end = stop;
        }
        let owner = Arc::new(owner);
        Some(
            ranges
                .iter()
                .map(|&(at, len)| Export {
                    owner: Box::new(owner.clone()),
                    data: NonNull::new(base.wrapping_add(at)).unwrap_or(NonNull::dangling()),
                    shape: dims(&[len]),
                    dtype: DlDataType::U8,
                })
                .collect(),
        )
    }

    /// The export as a capsule, versioned (DLPack 1.0, writable) when the
    /// consumer asks for it, else the older "dltensor"; the memory lives
    /// until the consumer's tensor is freed, or the capsule is if nobody
    /// consumes it.
    fn into_capsule(self, py: Python<'_>, versioned: bool) -> PyResult<Bound<'_, PyCapsule>> {
        let Export { owner, data, mut shape, dtype } = self;
        let ndim = i32::try_from(shape.len()).map_err(|_| PyBufferError::new_err("too many dimensions"))?;
        let dl_tensor = DlTensor {
            data: data.as_ptr().cast(),
            device: DlDevice { device_type: DL_CPU, device_id: 0 },
            ndim,
            dtype,
            shape: shape.as_mut_ptr(),
            // Null strides: compact row-major (DLPack >= 0.2).
            strides: std::ptr::null_mut(),
            byte_offset: 0,
        };
        let (raw, name): (*mut c_void, _) = if versioned {
            let header = DlManagedTensorVersioned {
                version: DlPackVersion { major: 1, minor: 0 },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_managed::<DlManagedTensorVersioned>),
                flags: 0,
                dl_tensor,
            };
            (Box::into_raw(Box::new(Managed { header, _owner: owner, _shape: shape })).cast(), V1)
        } else {
            let header = DlManagedTensor {
                dl_tensor,
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_managed::<DlManagedTensor>),
            };
            (Box::into_raw(Box::new(Managed { header, _owner: owner, _shape: shape })).cast(), V0)
        };
        // SAFETY: `raw` is a live `Managed` whose first field is the header
        // the capsule's name announces to DLPack consumers; the destructor
        // frees it only while the capsule keeps that unconsumed name, and
        // may run on any thread (it only drops `Send` data).
        let capsule = unsafe {
            PyCapsule::new_with_pointer_and_destructor(
                py,
                NonNull::new_unchecked(raw),
                name,
                Some(capsule_destructor),
            )
        };
        if capsule.is_err() {
            // SAFETY: no capsule took `raw`: it is still ours alone, the
            // `Managed` made above with the header `versioned` names.
            unsafe {
                if versioned {
                    delete_managed(raw.cast::<DlManagedTensorVersioned>());
                } else {
                    delete_managed(raw.cast::<DlManagedTensor>());
                }
            }
        }
        capsule
    }
}

/// Fold a shape into DLPack's `int64_t` dimensions.
fn dims(shape: &[usize]) -> Box<[i64]> {
    shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect()
}

/// Memory owned by ringfeed, to be taken once by `torch.from_dlpack` or
/// `numpy.from_dlpack` (the DLPack protocol). The consumer's array then
/// owns it; when that array is freed, the memory goes back to ringfeed
/// (a loader's pooled buffer to its pool).
#[pyclass(module = "ringfeed._ringfeed", name = "DLPackBuffer", frozen)]
pub(crate) struct DlPackBuffer {
    export: Mutex<Option<Export>>,
    shape: Vec<usize>,
}

impl DlPackBuffer {
    pub(crate) fn new(export: Export) -> Self {
        let shape = export.shape.iter().map(|&d| d as usize).collect();
        DlPackBuffer { export: Mutex::new(Some(export)), shape }
    }
}

#[pymethods]
impl DlPackBuffer {
    /// The DLPack capsule; the memory can be taken once.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<Bound<'py, PyAny>>,
        dl_device: Option<Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // CPU memory: no stream to synchronize. A consumer that says it
        // reads DLPack 1.x gets a versioned capsule, others the older one.
        let _ = stream;
        let versioned = match max_version {
            Some(v) => v.extract::<(u32, u32)>()?.0 >= 1,
            None => false,
        };
        if let Some(device) = dl_device {
            let (kind, _id): (i32, i32) = device.extract()?;
            if kind != DL_CPU {
                return Err(PyBufferError::new_err(
                    "ringfeed buffers are CPU memory; copy them to the device",
                ));
            }
        }
        if copy == Some(true) {
            return Err(PyBufferError::new_err("ringfeed buffers are exported without a copy"));
        }
        let export = self
            .export
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyBufferError::new_err("this ringfeed buffer was already exported"))?;
        export.into_capsule(py, versioned)
    }

    /// `(kDLCPU, 0)`.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (DL_CPU, 0)
    }

    /// The shape of the values.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
}

// The two libtorch calls tch 0.26 lacks (src/slab.rs; compiled by build.rs
// with feature `tch`): allocating a tensor in pinned host memory (tch's
// `atg_empty` drops `pin_memory`, and `pin_memory()` allocates a second
// tensor and copies), and a tensor over memory Rust hands over with a
// deleter (tch's `from_blob` takes none, so the memory cannot be owned).
//
// Only light headers, so that the file compiles in seconds.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>

// tensor.rs passes tch's `Kind` as the number tch itself passes for it
// (`Kind::c_int`), which must be `c10::ScalarType`'s numbering; a libtorch
// that renumbers fails this build instead of allocating the wrong type.
static_assert(static_cast<int>(c10::ScalarType::Byte) == 0, "Kind::Uint8");
static_assert(static_cast<int>(c10::ScalarType::Char) == 1, "Kind::Int8");
static_assert(static_cast<int>(c10::ScalarType::Short) == 2, "Kind::Int16");
static_assert(static_cast<int>(c10::ScalarType::Int) == 3, "Kind::Int");
static_assert(static_cast<int>(c10::ScalarType::Long) == 4, "Kind::Int64");
static_assert(static_cast<int>(c10::ScalarType::Half) == 5, "Kind::Half");
static_assert(static_cast<int>(c10::ScalarType::Float) == 6, "Kind::Float");
static_assert(static_cast<int>(c10::ScalarType::Double) == 7, "Kind::Double");
static_assert(static_cast<int>(c10::ScalarType::ComplexHalf) == 8, "Kind::ComplexHalf");
static_assert(static_cast<int>(c10::ScalarType::ComplexFloat) == 9, "Kind::ComplexFloat");
static_assert(static_cast<int>(c10::ScalarType::ComplexDouble) == 10, "Kind::ComplexDouble");
static_assert(static_cast<int>(c10::ScalarType::Bool) == 11, "Kind::Bool");
static_assert(static_cast<int>(c10::ScalarType::QInt8) == 12, "Kind::QInt8");
static_assert(static_cast<int>(c10::ScalarType::QUInt8) == 13, "Kind::QUInt8");
static_assert(static_cast<int>(c10::ScalarType::QInt32) == 14, "Kind::QInt32");
static_assert(static_cast<int>(c10::ScalarType::BFloat16) == 15, "Kind::BFloat16");
static_assert(static_cast<int>(c10::ScalarType::Float8_e5m2) == 23, "Kind::Float8e5m2");
static_assert(static_cast<int>(c10::ScalarType::Float8_e4m3fn) == 24, "Kind::Float8e4m3fn");
static_assert(static_cast<int>(c10::ScalarType::Float8_e5m2fnuz) == 25, "Kind::Float8e5m2fnuz");
static_assert(static_cast<int>(c10::ScalarType::Float8_e4m3fnuz) == 26, "Kind::Float8e4m3fnuz");

namespace {

// Copies `msg` into the caller's buffer, truncated and NUL-terminated.
void set_error(char *err, std::size_t err_len, const char *msg) noexcept {
  if (err == nullptr || err_len == 0) {
    return;
  }
  std::size_t n = std::strlen(msg);
  if (n >= err_len) {
    n = err_len - 1;
  }
  std::memcpy(err, msg, n);
  err[n] = '\0';
}

// Copies the exception being handled's message into the caller's buffer;
// called only inside a catch block.
void describe_current_exception(char *err, std::size_t err_len) noexcept {
  try {
    throw;
  } catch (const c10::Error &e) {
    set_error(err, err_len, e.what_without_backtrace());
  } catch (const std::exception &e) {
    set_error(err, err_len, e.what());
  } catch (...) {
    set_error(err, err_len, "unknown C++ exception");
  }
}

}  // namespace

// A new, uninitialised, contiguous CPU tensor of `ndim` dimensions `sizes`
// and scalar type `kind`, in pinned host memory if `pinned` (allocated with
// CUDA device `device_index` current). Returns an owned handle, the same
// `torch::Tensor *` (= `at::Tensor *`) that tch's `C_tensor` is and that
// tch's `at_free` deletes; or null with the reason in `err` (`err_len`
// bytes, NUL-terminated). Never throws: every C++ exception is caught here.
extern "C" at::Tensor *ringfeed_empty_tensor(const int64_t *sizes, std::size_t ndim, int kind,
                                             int pinned, int device_index, char *err,
                                             std::size_t err_len) noexcept {
  try {
    if (kind < 0 || kind >= static_cast<int>(c10::ScalarType::Undefined)) {
      set_error(err, err_len, "not a scalar type libtorch knows");
      return nullptr;
    }
    const at::IntArrayRef size(sizes, ndim);
    const auto options = at::TensorOptions()
                             .dtype(static_cast<c10::ScalarType>(kind))
                             .pinned_memory(pinned != 0);
    if (pinned == 0) {
      return new at::Tensor(at::empty(size, options));
    }
    if (device_index < 0 || device_index > std::numeric_limits<c10::DeviceIndex>::max()) {
      set_error(err, err_len, "CUDA device index out of range");
      return nullptr;
    }
    const c10::DeviceGuard guard(
        at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
    return new at::Tensor(at::empty(size, options));
  } catch (...) {
    describe_current_exception(err, err_len);
  }
  return nullptr;
}

// A 1-D byte tensor over the `len` bytes at `data`, which it owns from now
// on: when libtorch frees the storage (on whichever thread drops the last
// reference) it calls `drop_owner(owner)` once. If no tensor can be made,
// `drop_owner(owner)` has been called exactly once too when this returns
// null (with the reason in `err`), so the caller never frees `owner`
// itself. Never throws.
extern "C" at::Tensor *ringfeed_tensor_from_owned(void *data, int64_t len, void *owner,
                                                  void (*drop_owner)(void *), char *err,
                                                  std::size_t err_len) noexcept {
  // Whether the deleter ran: it is copied into the storage, and if making
  // the tensor throws after that, the storage's destruction has run it.
  const auto dropped = std::make_shared<bool>(false);
  try {
    std::function<void(void *)> deleter = [owner, drop_owner, dropped](void *) {
      if (!*dropped) {
        *dropped = true;
        drop_owner(owner);
      }
    };
    const auto options = at::TensorOptions().dtype(at::kByte).device(at::kCPU);
    return new at::Tensor(at::from_blob(data, {len}, std::move(deleter), options));
  } catch (...) {
    describe_current_exception(err, err_len);
  }
  if (!*dropped) {
    *dropped = true;
    drop_owner(owner);
  }
  return nullptr;
}

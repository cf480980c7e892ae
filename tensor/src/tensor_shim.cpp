// Allocates the libtorch tensors that workers decode batches into
// (loader/src/sys/tensor.rs; compiled by loader/build.rs with feature
// `tch`). tch 0.26 cannot allocate a tensor in pinned host memory: its
// `atg_empty` drops `pin_memory`, and `pin_memory()` allocates a second
// tensor and copies. This is the one call it lacks, and nothing more.
//
// Only light headers, so that the file compiles in seconds.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>

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
  } catch (const c10::Error &e) {
    set_error(err, err_len, e.what_without_backtrace());
  } catch (const std::exception &e) {
    set_error(err, err_len, e.what());
  } catch (...) {
    set_error(err, err_len, "unknown C++ exception");
  }
  return nullptr;
}

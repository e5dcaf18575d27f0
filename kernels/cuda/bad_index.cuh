// Out-of-range indices found on the device. A kernel that reads indices reports every bad position
// with an integer atomicMin (the minimum does not depend on the order of the reports), skips the
// element, and the host reads the first bad position once after the kernel. That read waits for the
// device's stream: it is the one host synchronisation of these ops, the price of raising the CPU's
// error (with the offending value) instead of wrapping around.
#pragma once

#include <cstdint>

#include "core/cuda/memory.h"
#include "core/cuda/stream.h"
#include "core/tensor.h"

namespace mom::kernels::cuda {

struct BadIndexReport {
  unsigned long long* first;  // all bits set: no bad position yet
  __device__ void operator()(int64_t position) const {
    atomicMin(first, static_cast<unsigned long long>(position));
  }
};

// One 8-byte cell on the device, set to "none" on the device's stream when made.
class BadIndex {
 public:
  explicit BadIndex(Device device) : device_(device), cell_(empty({1}, DType::i64, device)) {
    MOM_CUDA_CHECK(cudaMemsetAsync(cell_.raw_data(), 0xFF, sizeof(int64_t), ::mom::cuda::stream(device.index)));
  }

  BadIndexReport report() const { return {static_cast<unsigned long long*>(cell_.raw_data())}; }

  // The first bad position reported so far, or -1. Waits for the device's stream.
  int64_t first() const {
    unsigned long long v = 0;
    ::mom::cuda::copy_device_to_host(&v, cell_.raw_data(), sizeof(v), device_.index);
    return v == ~0ull ? -1 : static_cast<int64_t>(v);
  }

 private:
  Device device_;
  Tensor cell_;
};

// The value at `position` of a contiguous int32 or int64 CUDA tensor, read on the host (error paths).
inline int64_t index_value_at(const Tensor& index, int64_t position) {
  if (index.dtype() == DType::i32) {
    int32_t v = 0;
    ::mom::cuda::copy_device_to_host(&v, index.data<int32_t>() + position, sizeof(v), index.device().index);
    return v;
  }
  int64_t v = 0;
  ::mom::cuda::copy_device_to_host(&v, index.data<int64_t>() + position, sizeof(v), index.device().index);
  return v;
}

}  // namespace mom::kernels::cuda

// Helpers of the GPU suites: a fixture that fails (not skips) without a visible device, fresh random
// seeds reported on failure, bitwise comparison, and copies placed off 16-byte alignment.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>

#include "core/device.h"
#include "core/tensor.h"

namespace mom::test {

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cuda_available()) << "no CUDA device is visible to this process"; }
};

// A new seed for each call, so that every run draws inputs nobody has seen; print it with SCOPED_TRACE.
inline uint64_t fresh_seed() {
  static std::random_device device;
  return (uint64_t(device()) << 32) ^ device();
}

// Same shape, dtype and bytes, wherever the two live (two undefined tensors are equal; one is not).
inline bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  Tensor x = a.to(Device::cpu()).contiguous(), y = b.to(Device::cpu()).contiguous();
  return x.dtype() == y.dtype() && x.shape() == y.shape() &&
         std::memcmp(x.raw_data(), y.raw_data(), static_cast<size_t>(x.numel()) * dtype_size(x.dtype())) == 0;
}

// h's values on GPU 0 at an address 4 or 8 bytes past 16-byte alignment: the kernels' scalar path.
inline Tensor misaligned_copy(const Tensor& h) {
  Tensor padded = empty({h.numel() + 1}, h.dtype(), Device::cuda(0));
  Tensor view = padded.narrow(0, 1, h.numel()).view(h.shape());
  view.copy_(h.to(Device::cuda(0)));
  return view;
}

}  // namespace mom::test

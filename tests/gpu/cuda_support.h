// Helpers of the GPU suites: a fixture that fails (not skips) without a visible device, and fresh
// random seeds reported on failure.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "core/device.h"

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

}  // namespace mom::test

// Helpers of the GPU suites: a fixture that fails (not skips) without a visible device, the seeds of
// the random inputs, bitwise comparison, and copies placed off 16-byte alignment.
//
// Seeds: every random input of a GPU test comes from test_seed(), which derives each seed from one base
// seed and the test's full name (and how many seeds the test drew before). The base is the environment
// variable MOM_TEST_SEED (a non-negative integer), 0 when unset, so runs repeat by default, and a test
// draws the same inputs alone (ctest runs each test in a process of its own), in the whole binary or
// under a sanitizer. The binary prints the base once at start and every seed trace names it. To replay
// a failure, rerun with the base it printed:
//     MOM_TEST_SEED=<n> ctest --test-dir build -L gpu -R <test>
//     MOM_TEST_SEED=<n> build/tests/mom_tests_gpu --gtest_filter=Cuda.<test>
// and to draw inputs nobody has seen, set any other value (MOM_TEST_SEED=$RANDOM). The `gpu` ctest of
// `mom gradcheck --device cuda` passes the same base as its --seed.
#pragma once

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/device.h"
#include "core/tensor.h"

namespace mom::test {

// The base seed: MOM_TEST_SEED, or 0 when it is unset or empty. Any other value than a decimal
// non-negative integer ends the process with a message (a typo must not silently test other inputs).
inline uint64_t base_seed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("MOM_TEST_SEED");
    if (env == nullptr || *env == '\0') return uint64_t(0);
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (*end != '\0' || errno == ERANGE || env[0] < '0' || env[0] > '9') {
      std::fprintf(stderr, "MOM_TEST_SEED=%s: expected a non-negative decimal integer\n", env);
      std::exit(2);
    }
    return uint64_t(v);
  }();
  return seed;
}

namespace detail {
// How many seeds the running test has drawn; the fixture resets it when each test starts.
inline uint64_t& seeds_drawn() {
  static uint64_t n = 0;
  return n;
}
inline uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace detail

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    detail::seeds_drawn() = 0;
    ASSERT_TRUE(cuda_available()) << "no CUDA device is visible to this process";
  }
};

// The running test's next seed: a hash of the base seed, the test's full name and the number of seeds
// it drew before (see the header comment). Print it with SCOPED_TRACE(seed_note(seed)).
inline uint64_t test_seed() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : std::string();
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return detail::mix(detail::mix(base_seed()) ^ detail::mix(h + detail::seeds_drawn()++));
}

inline std::string seed_note(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (MOM_TEST_SEED=" + std::to_string(base_seed()) + ")";
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

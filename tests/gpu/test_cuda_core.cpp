// CUDA runtime: host <-> device round trips, strided device copies and casts, fill, memory stats,
// out-of-memory and device-mismatch errors.
#include <cstring>
#include <string>
#include <vector>

#include "core/cuda/memory.h"
#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::expect_error;
using test::test_seed;

const Device kGpu = Device::cuda(0);
const DType kAllDtypes[] = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::boolean};

// Random values of any dtype, never all zeros: floats N(0, 10), integers in [-1000, 1000) (u8: [1, 256)),
// bools a random mix of 0 and 1.
Tensor random_tensor(const Shape& shape, DType dt, Generator& gen) {
  if (is_floating(dt)) return randn(shape, gen, dt, 0.0, 10.0);
  if (dt == DType::i32 || dt == DType::i64) return randint(shape, -1000, 1000, gen, dt);
  Tensor ids = randint(shape, dt == DType::u8 ? 1 : 0, dt == DType::u8 ? 256 : 2, gen, DType::i64);
  Tensor out = empty(shape, dt);
  std::vector<int64_t> v = ids.to_vector<int64_t>();
  auto* d = static_cast<uint8_t*>(out.raw_data());
  for (size_t i = 0; i < v.size(); ++i) d[i] = static_cast<uint8_t>(v[i]);
  return out;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  Tensor x = a.contiguous(), y = b.contiguous();
  size_t n = static_cast<size_t>(x.numel()) * dtype_size(x.dtype());
  return x.dtype() == y.dtype() && x.shape() == y.shape() && std::memcmp(x.raw_data(), y.raw_data(), n) == 0;
}

TEST_F(Cuda, RoundTripIsBitExactForEveryDtype) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  // 20 M floats (80 MB) spans several chunks of the two 32 MB staging buffers.
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000003), int64_t(20000003)}) {
    for (DType dt : kAllDtypes) {
      if (n > 1000003 && dt != DType::f32) continue;
      Tensor h = random_tensor({n}, dt, gen);
      Tensor d = h.to(kGpu);
      EXPECT_EQ(d.device(), kGpu);
      Tensor back = d.to(Device::cpu());
      EXPECT_TRUE(same_bytes(back, h)) << dtype_name(dt) << " n=" << n;
    }
  }
}

TEST_F(Cuda, StridedSourcesAndDestinations) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Tensor h = randn({5, 7, 9}, gen);
  Tensor d = h.to(kGpu);
  // Strided CPU -> CUDA and strided CUDA -> CPU.
  EXPECT_TRUE(same_bytes(h.permute({2, 0, 1}).to(kGpu).to(Device::cpu()), h.permute({2, 0, 1}).contiguous()));
  EXPECT_TRUE(same_bytes(d.permute({2, 0, 1}).to(Device::cpu()), h.permute({2, 0, 1}).contiguous()));
  EXPECT_TRUE(same_bytes(d.slice(1, 1, 7, 2).to(Device::cpu()), h.slice(1, 1, 7, 2).contiguous()));
  EXPECT_TRUE(same_bytes(d.transpose(0, 2).contiguous().to(Device::cpu()), h.transpose(0, 2).contiguous()));
  EXPECT_TRUE(same_bytes(d.narrow(2, 3, 5).clone().to(Device::cpu()), h.narrow(2, 3, 5).contiguous()));
  EXPECT_TRUE(same_bytes(d.unsqueeze(1).expand({5, 4, 7, 9}).contiguous().to(Device::cpu()),
                         h.unsqueeze(1).expand({5, 4, 7, 9}).contiguous()));
  // Strided destination, strided source, and a cast, all on the device.
  Tensor hd = zeros({9, 7, 5}, DType::f64), dd = zeros({9, 7, 5}, DType::f64, kGpu);
  hd.permute({2, 1, 0}).slice(1, 0, 7, 3).copy_(h.slice(1, 0, 7, 3));
  dd.permute({2, 1, 0}).slice(1, 0, 7, 3).copy_(d.slice(1, 0, 7, 3));
  EXPECT_TRUE(same_bytes(dd.to(Device::cpu()), hd));
  // A source that overlaps its destination is read before it is written.
  Tensor hs = h.clone(), ds = d.clone();
  hs.narrow(0, 1, 4).copy_(hs.narrow(0, 0, 4).clone());
  ds.narrow(0, 1, 4).copy_(ds.narrow(0, 0, 4));
  EXPECT_TRUE(same_bytes(ds.to(Device::cpu()), hs));
  // clone() is a fresh storage.
  Tensor c = d.clone();
  EXPECT_NE(c.storage(), d.storage());
  EXPECT_TRUE(same_bytes(c.to(Device::cpu()), h));
}

TEST_F(Cuda, CastsMatchTheCpuForEveryPairOfDtypes) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (DType from : kAllDtypes) {
    // Values every target type holds (floats in (-120, 120) cast to u8 would wrap differently).
    Tensor h = random_tensor({1000003}, from, gen);
    if (is_floating(from)) h = rand({1000003}, gen, from, 0.0, 250.0);
    if (from == DType::i32 || from == DType::i64) h = randint({1000003}, 0, 256, gen, from);
    Tensor d = h.to(kGpu);
    for (DType to : kAllDtypes) {
      EXPECT_TRUE(same_bytes(d.to(to).to(Device::cpu()), h.to(to))) << dtype_name(from) << " -> " << dtype_name(to);
      // Strided too: every other element.
      EXPECT_TRUE(same_bytes(d.slice(0, 0, 1000003, 2).to(to).to(Device::cpu()), h.slice(0, 0, 1000003, 2).to(to)))
          << dtype_name(from) << " -> " << dtype_name(to) << " strided";
    }
  }
}

TEST_F(Cuda, FillAnyValueAnyLayout) {
  for (DType dt : kAllDtypes) {
    double value = dt == DType::boolean ? 1.0 : (is_floating(dt) ? -2.75 : 7.0);
    Tensor d = full({7, 1000003}, value, dt, kGpu);
    EXPECT_TRUE(same_bytes(d.to(Device::cpu()), full({7, 1000003}, value, dt))) << dtype_name(dt);
    Tensor h = ones({7, 13}, dt);
    Tensor dv = ones({7, 13}, dt, kGpu);
    h.slice(1, 1, 13, 3).fill_(0.0);
    dv.slice(1, 1, 13, 3).fill_(0.0);
    EXPECT_TRUE(same_bytes(dv.to(Device::cpu()), h)) << dtype_name(dt);
  }
  Tensor z = zeros({1000003}, DType::f32, kGpu);
  for (float v : z.to_vector<float>()) ASSERT_EQ(v, 0.0f);
  EXPECT_EQ(full({}, 3.5, DType::f64, kGpu).item(), 3.5);
}

// 64-bit indexing: a strided copy and a fill over more than 2^31 elements.
TEST_F(Cuda, CopyAndFillBeyondTwoToThe31Elements) {
  const int64_t n = (int64_t(1) << 30) + 5;  // 2n > 2^31
  Tensor src = full({2, n}, 3.0, DType::u8, kGpu);
  src.slice(1, n - 3, n).fill_(7.0);
  Tensor dst = empty({n, 2}, DType::u8, kGpu);
  dst.transpose(0, 1).copy_(src);
  std::vector<uint8_t> tail = dst.narrow(0, n - 5, 5).to_vector<uint8_t>();
  EXPECT_EQ(tail, (std::vector<uint8_t>{3, 3, 3, 3, 7, 7, 7, 7, 7, 7}));
  EXPECT_EQ(dst.narrow(0, 0, 1).to_vector<uint8_t>(), (std::vector<uint8_t>{3, 3}));
}

TEST_F(Cuda, MemoryStatsFollowAllocations) {
  cuda::reset_peak(0);
  cuda::MemoryStats before = cuda::memory_stats(0);
  EXPECT_EQ(before.peak, before.current);
  const size_t bytes = size_t(1) << 24;
  {
    Tensor a = empty({int64_t(bytes / 4)}, DType::f32, kGpu);
    cuda::MemoryStats during = cuda::memory_stats(0);
    EXPECT_EQ(during.current, before.current + bytes);
    EXPECT_EQ(during.peak, before.current + bytes);
    {
      Tensor b = empty({int64_t(bytes / 8)}, DType::f64, kGpu);
      EXPECT_EQ(cuda::memory_stats(0).peak, before.current + 2 * bytes);
    }
    EXPECT_EQ(cuda::memory_stats(0).current, before.current + bytes);
  }
  cuda::MemoryStats after = cuda::memory_stats(0);
  EXPECT_EQ(after.current, before.current);
  EXPECT_EQ(after.peak, before.current + 2 * bytes);
  cuda::reset_peak(0);
  EXPECT_EQ(cuda::memory_stats(0).peak, after.current);
}

TEST_F(Cuda, OutOfMemoryNamesRequestedAndFreeBytes) {
  const int64_t absurd = int64_t(1) << 50;  // 4 PiB of float32
  try {
    empty({absurd}, DType::f32, kGpu);
    ADD_FAILURE() << "expected an out-of-memory error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("[cuda] out of memory", 0), 0u) << msg;
    EXPECT_NE(msg.find("requested " + std::to_string(absurd * 4) + " bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bytes free"), std::string::npos) << msg;
  }
  // The device is still usable.
  EXPECT_EQ(full({3}, 2.0, DType::f32, kGpu).to_vector<float>(), (std::vector<float>{2, 2, 2}));
}

TEST_F(Cuda, DeviceMismatchAndBadDeviceErrors) {
  Tensor h = ones({4}), d = ones({4}, DType::f32, kGpu);
  expect_error([&] { kernels::add(h, d); }, "[add]");
  try {
    kernels::mul(d, h);
    ADD_FAILURE() << "expected a device-mismatch error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
  }
  expect_error([&] { Tensor(d).copy_(h); }, "[Tensor::copy_]");
  expect_error([&] { ones({2}, DType::f32, Device::cuda(cuda::device_count())); }, "[cuda] no device");
}

TEST_F(Cuda, CopiesBetweenDevices) {
  if (cuda::device_count() < 2) GTEST_SKIP() << "one CUDA device";
  Generator gen(test_seed());
  Tensor h = randn({1000003}, gen);
  Tensor d1 = h.to(kGpu).to(Device::cuda(1));
  EXPECT_EQ(d1.device(), Device::cuda(1));
  EXPECT_TRUE(same_bytes(d1.to(Device::cpu()), h));
  EXPECT_TRUE(same_bytes(d1.slice(0, 0, 1000003, 3).to(kGpu).to(Device::cpu()), h.slice(0, 0, 1000003, 3).contiguous()));
}

}  // namespace
}  // namespace mom

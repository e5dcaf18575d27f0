// CUDA runtime: host <-> device round trips, strided device copies and casts, fill, memory stats,
// out-of-memory and device-mismatch errors; bf16 casts, copies and fills against the CPU's bits.
#include <cmath>
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
const DType kAllDtypes[] = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::boolean, DType::bf16};

// Random values of any dtype, never all zeros: floats N(0, 10) (bf16: float32's rounded), integers in
// [-1000, 1000) (u8: [1, 256)), bools a random mix of 0 and 1.
Tensor random_tensor(const Shape& shape, DType dt, Generator& gen) {
  if (dt == DType::bf16) return randn(shape, gen, DType::f32, 0.0, 10.0).to(DType::bf16);
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
    if (is_floating(from)) h = rand({1000003}, gen, from == DType::bf16 ? DType::f32 : from, 0.0, 250.0).to(from);
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

// ---- bf16: the device rounds as the CPU does (the same integer code, core/bf16.h) ----

Tensor floats_from_bits(const std::vector<uint32_t>& bits) {
  Tensor t = empty({static_cast<int64_t>(bits.size())}, DType::f32);
  std::memcpy(t.raw_data(), bits.data(), bits.size() * sizeof(uint32_t));
  return t;
}

Tensor bf16_from_bits(const std::vector<uint16_t>& bits) {
  Tensor t = empty({static_cast<int64_t>(bits.size())}, DType::bf16);
  std::memcpy(t.raw_data(), bits.data(), bits.size() * sizeof(uint16_t));
  return t;
}

std::vector<uint16_t> bf16_bits(const Tensor& t) {
  Tensor c = t.to(Device::cpu()).contiguous();
  std::vector<uint16_t> out(static_cast<size_t>(c.numel()));
  std::memcpy(out.data(), c.raw_data(), out.size() * sizeof(uint16_t));
  return out;
}

// Floats that reach every rounding case: every bf16 pattern's upper half with lower halves at and
// around the tie (0x8000) and the ends, and one random (ties, subnormals, the largest finite and the
// overflow to inf, signed zeros, infs and NaNs of every payload among them), then random bits.
std::vector<uint32_t> rounding_floats(Generator& gen) {
  std::vector<uint32_t> bits;
  for (uint32_t hi = 0; hi <= 0xffff; ++hi) {
    const uint32_t random_lo = static_cast<uint32_t>(gen.randint(0x10000));
    for (uint32_t lo : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, random_lo}) bits.push_back(hi << 16 | lo);
  }
  for (int i = 0; i < 1000003; ++i) bits.push_back(static_cast<uint32_t>(gen.next_u64() >> 32));
  return bits;
}

TEST_F(Cuda, Bf16FromFloatMatchesTheCpuBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Tensor h = floats_from_bits(rounding_floats(gen));
  Tensor d = h.to(kGpu);
  const std::vector<uint16_t> cpu = bf16_bits(h.to(DType::bf16)), gpu = bf16_bits(d.to(DType::bf16));
  ASSERT_EQ(gpu.size(), cpu.size());
  const uint32_t* f = static_cast<const uint32_t*>(h.raw_data());
  for (size_t i = 0; i < cpu.size(); ++i) ASSERT_EQ(gpu[i], cpu[i]) << "float bits 0x" << std::hex << f[i];
  // Named cases, so that a shared mistake of both devices shows too: ties to even (0x3F808000 down,
  // 0x3F818000 up), the tie above the largest finite (to inf), float's largest finite (inf), the tie at
  // half the smallest subnormal (to 0), just above it, signed zero, a signalling NaN whose payload lies
  // in the dropped bits (a quiet NaN, not inf), a negative NaN.
  const std::vector<uint32_t> named = {0x3f808000, 0x3f818000, 0x7f7f8000, 0x7f7fffff, 0x00008000,
                                       0x00008001, 0x80000000, 0x7f800001, 0xffc00000};
  EXPECT_EQ(bf16_bits(floats_from_bits(named).to(kGpu).to(DType::bf16)),
            (std::vector<uint16_t>{0x3f80, 0x3f82, 0x7f80, 0x7f80, 0x0000, 0x0001, 0x8000, 0x7fc0, 0xffc0}));
  // Strided: every third float into every other bf16 of a destination, on each device.
  const int64_t n = h.numel(), m = (n + 2) / 3;
  Tensor hd = zeros({2 * m}, DType::bf16), dd = zeros({2 * m}, DType::bf16, kGpu);
  hd.slice(0, 0, 2 * m, 2).copy_(h.slice(0, 0, n, 3));
  dd.slice(0, 0, 2 * m, 2).copy_(d.slice(0, 0, n, 3));
  EXPECT_EQ(bf16_bits(dd), bf16_bits(hd));
}

TEST_F(Cuda, Bf16FromDoubleAndIntegersMatchesTheCpuBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  // Doubles: random significands at exponents from below the subnormals to past the overflow, the
  // midpoints between neighbouring bf16 values one double step either side, and the cases where a
  // conversion through float would round twice.
  std::vector<double> v;
  for (int i = 0; i < 1000003; ++i) {
    const double significand = 1.0 + std::ldexp(static_cast<double>(gen.next_u64() >> 12), -52);
    const int e = static_cast<int>(gen.randint(276)) - 140;  // [-140, 135]
    v.push_back(std::ldexp(gen.randint(2) ? -significand : significand, e));
  }
  for (uint32_t p = 0; p < 0x7f7f; ++p) {
    const double mid = (static_cast<double>(bf16::from_bits(static_cast<uint16_t>(p))) +
                        static_cast<double>(bf16::from_bits(static_cast<uint16_t>(p + 1)))) / 2;
    for (double x : {mid, std::nextafter(mid, 0.0), std::nextafter(mid, INFINITY)}) v.push_back(x);
  }
  const double up = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  const double down = 1.0 + 3 * std::ldexp(1.0, -8) - std::ldexp(1.0, -30);
  for (double x : std::initializer_list<double>{up, down, -up, INFINITY, -INFINITY, NAN, -0.0, std::ldexp(1.0, -134),
                                                std::ldexp(255.5, 120)})
    v.push_back(x);
  Tensor h = from_vector<double>(v, {static_cast<int64_t>(v.size())});
  const std::vector<uint16_t> cpu = bf16_bits(h.to(DType::bf16)), gpu = bf16_bits(h.to(kGpu).to(DType::bf16));
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) ASSERT_EQ(gpu[i], cpu[i]) << std::hexfloat << v[i];
  const size_t n = v.size();
  EXPECT_EQ(gpu[n - 9], 0x3f81);  // up, rounded once
  EXPECT_EQ(gpu[n - 8], 0x3f81);  // down, rounded once
  EXPECT_EQ(gpu[n - 1], 0x7f80);  // the tie above the largest finite
  // Integers: int32 over its whole range, int64 of every magnitude (the round-to-odd path above 2^53).
  std::vector<int32_t> i32;
  std::vector<int64_t> i64;
  for (int i = 0; i < 1000003; ++i) {
    i32.push_back(static_cast<int32_t>(static_cast<uint32_t>(gen.next_u64())));
    const uint64_t bits = gen.next_u64();
    i64.push_back(static_cast<int64_t>(bits >> gen.randint(64)));
  }
  i64.push_back((int64_t(1) << 62) + (int64_t(1) << 54) + 1);
  for (const Tensor& t : {from_vector<int32_t>(i32, {1000003}), from_vector<int64_t>(i64, {1000004})})
    EXPECT_EQ(bf16_bits(t.to(kGpu).to(DType::bf16)), bf16_bits(t.to(DType::bf16))) << dtype_name(t.dtype());
  EXPECT_EQ(bf16_bits(from_vector<int64_t>({i64.back()}, {1}).to(kGpu).to(DType::bf16)),
            (std::vector<uint16_t>{0x5e81}));  // 2^62 + 2^55
}

TEST_F(Cuda, Bf16ToWiderTypesAndRoundTripsAreExact) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  // Every pattern, NaNs (signalling ones too) included.
  std::vector<uint16_t> all(0x10000);
  for (uint32_t p = 0; p <= 0xffff; ++p) all[p] = static_cast<uint16_t>(p);
  Tensor h = bf16_from_bits(all);
  Tensor d = h.to(kGpu);
  EXPECT_EQ(bf16_bits(d), all);  // host -> device -> host
  EXPECT_EQ(bf16_bits(d.clone()), all);
  EXPECT_TRUE(test::same_bits(d.to(DType::f32), h.to(DType::f32)));
  EXPECT_TRUE(test::same_bits(d.to(DType::f64), h.to(DType::f64)));
  std::vector<uint32_t> f(0x10000);
  std::memcpy(f.data(), d.to(DType::f32).to(Device::cpu()).raw_data(), f.size() * sizeof(uint32_t));
  for (uint32_t p = 0; p <= 0xffff; ++p) ASSERT_EQ(f[p], p << 16) << std::hex << p;
  // float -> bf16 -> float on the device: exact for every bf16 value; NaNs quieted.
  std::vector<uint16_t> back = bf16_bits(d.to(DType::f32).to(DType::bf16));
  for (uint32_t p = 0; p <= 0xffff; ++p) {
    const bool nan = (p & 0x7fff) > 0x7f80;
    ASSERT_EQ(back[p], nan ? (p | 0x0040) : p) << std::hex << p;
  }
  // Strided bf16 -> bf16 and bf16 -> float32 copies on the device, sources and destinations permuted.
  Tensor x = randn({6, 5, 7}, gen, DType::f32).to(DType::bf16), xd = x.to(kGpu);
  EXPECT_EQ(bf16_bits(xd.permute({2, 0, 1}).contiguous()), bf16_bits(x.permute({2, 0, 1}).contiguous()));
  EXPECT_EQ(bf16_bits(xd.permute({2, 0, 1}).to(Device::cpu())), bf16_bits(x.permute({2, 0, 1})));
  EXPECT_EQ(bf16_bits(x.slice(1, 1, 5, 2).to(kGpu)), bf16_bits(x.slice(1, 1, 5, 2)));
  Tensor hf = zeros({7, 5, 6}, DType::f32), df = zeros({7, 5, 6}, DType::f32, kGpu);
  hf.permute({2, 1, 0}).copy_(x);
  df.permute({2, 1, 0}).copy_(xd);
  EXPECT_TRUE(test::same_bits(df, hf));
  Tensor hb = zeros({6, 10, 7}, DType::bf16), db = zeros({6, 10, 7}, DType::bf16, kGpu);
  hb.slice(1, 0, 10, 2).copy_(x);
  db.slice(1, 0, 10, 2).copy_(xd);
  EXPECT_TRUE(test::same_bits(db, hb));
}

TEST_F(Cuda, Bf16FillItemAndPrinting) {
  // fill_ rounds the double once, on the host, for both devices.
  EXPECT_EQ(bf16_bits(full({7, 1000003}, 0.1, DType::bf16, kGpu)), std::vector<uint16_t>(7 * 1000003, 0x3dcd));
  const double up = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  Tensor d = zeros({3, 4}, DType::bf16, kGpu);
  d.slice(1, 1, 4, 2).fill_(up);
  EXPECT_EQ(bf16_bits(d), (std::vector<uint16_t>{0, 0x3f81, 0, 0x3f81, 0, 0x3f81, 0, 0x3f81, 0, 0x3f81, 0, 0x3f81}));
  EXPECT_EQ(full({}, 0.1, DType::bf16, kGpu).item(), 0.10009765625);
  EXPECT_EQ(from_vector<float>({0.1f, 1.5f}, {2}).to(DType::bf16).to(kGpu).str(),
            "tensor([0.1001, 1.5000], dtype=bfloat16, device='cuda:0')");
  EXPECT_EQ(from_vector<float>({0.1f, 1.5f}, {2}).to(kGpu).to(DType::bf16).to_vector<float>(),
            (std::vector<float>{0.10009765625f, 1.5f}));
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

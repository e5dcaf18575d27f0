// CUDA index ops (kernels/index.h) against the CPU reference on random inputs: cat and split of
// every dtype along every dim (empty pieces, rows of odd byte lengths); index_select and gather of
// several dtypes with repeated indices, int32 and int64, strided indices; their backwards bit for bit
// (both add repeated indices in the CPU's order and precision), through both gather_backward paths;
// bit-for-bit repeats; out-of-range indices (the CPU's message) and device mismatches.
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/index.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::same_bits;
using test::expect_error;
using test::test_seed;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();
const DType kAllTypes[] = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::boolean, DType::bf16};

// Random values of any dtype (bool as 0/1 bytes, bf16 as float32's rounded).
Tensor random_of(const Shape& shape, DType dt, Generator& gen) {
  if (dt == DType::f32 || dt == DType::f64) return randn(shape, gen, dt);
  if (dt == DType::bf16) return randn(shape, gen).to(DType::bf16);
  if (dt == DType::boolean) {
    Tensor t = empty(shape, DType::boolean);
    uint8_t* p = static_cast<uint8_t*>(t.raw_data());
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<uint8_t>(gen.randint(2));
    return t;
  }
  Tensor v = randint(shape, 0, 200, gen, DType::i64);
  return dt == DType::i64 ? v : v.to(dt);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(Cuda, CatAndSplitMatchCpuForEveryDtypeAndDim) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const Shape base = {3, 7, 5};
  const std::vector<int64_t> sizes = {2, 0, 5, 1};
  for (DType dt : kAllTypes) {
    for (int64_t d = -3; d < 3; ++d) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " dim " + std::to_string(d));
      std::vector<Tensor> pieces, pieces_d;
      for (int64_t s : sizes) {
        Shape ps = base;
        ps[d + (d < 0 ? 3 : 0)] = s;
        pieces.push_back(random_of(ps, dt, gen));
        pieces_d.push_back(pieces.back().to(kGpu));
      }
      Tensor ref = kernels::cat(pieces, d), y = kernels::cat(pieces_d, d);
      EXPECT_EQ(y.device(), kGpu);
      EXPECT_TRUE(same_bits(y, ref));
      std::vector<Tensor> back = kernels::split(y, sizes, d), back_ref = kernels::split(ref, sizes, d);
      ASSERT_EQ(back.size(), sizes.size());
      for (size_t i = 0; i < sizes.size(); ++i) {
        EXPECT_EQ(back[i].device(), kGpu);
        EXPECT_TRUE(same_bits(back[i], back_ref[i]));
        EXPECT_TRUE(same_bits(back[i], pieces[i]));
      }
    }
  }
  // Large rows in 16-byte units, and a misaligned piece (a view 4 bytes into its storage).
  Tensor a = randn({1000003, 4}, gen), b = randn({1000003, 8}, gen);
  Tensor pad = empty({1000003 * 4 + 1}, DType::f32, kGpu);
  Tensor am = pad.narrow(0, 1, 1000003 * 4).view({1000003, 4});
  am.copy_(a.to(kGpu));
  EXPECT_TRUE(same_bits(kernels::cat({a.to(kGpu), b.to(kGpu)}, 1), kernels::cat({a, b}, 1)));
  EXPECT_TRUE(same_bits(kernels::cat({am, b.to(kGpu)}, 1), kernels::cat({a, b}, 1)));
  EXPECT_TRUE(same_bits(kernels::split(am, {1, 3}, 1)[1], kernels::split(a, {1, 3}, 1)[1]));
}

TEST_F(Cuda, IndexSelectAndItsBackwardMatchCpuBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const std::vector<Shape> shapes = {{7, 257, 3}, {1000003}, {4099, 64}, {2, 3, 4, 5}};
  for (const Shape& shape : shapes) {
    const int64_t rank = static_cast<int64_t>(shape.size());
    for (int64_t d = -rank; d < rank; ++d) {
      const int64_t wd = d < 0 ? d + rank : d, n = shape[wd];
      for (DType it : {DType::i32, DType::i64}) {
        for (int64_t count : {int64_t(0), int64_t(1), int64_t(5), 2 * n + 3}) {
          // Repeats are certain once count > n; a strided index for count == 5.
          Tensor idx = randint({count}, 0, n, gen, it);
          if (count == 5) idx = randint({2 * count}, 0, n, gen, it).slice(0, 0, 2 * count, 2);
          SCOPED_TRACE(shape_str(shape) + " dim " + std::to_string(d) + " " + dtype_name(it) + " count " +
                       std::to_string(count));
          for (DType dt : {DType::f32, DType::f64, DType::i64, DType::u8, DType::bf16}) {
            Tensor x = random_of(shape, dt, gen);
            EXPECT_TRUE(same_bits(kernels::index_select(x.to(kGpu), d, idx.to(kGpu)), kernels::index_select(x, d, idx)))
                << dtype_name(dt);
          }
          for (DType dt : {DType::f32, DType::f64}) {
            Shape ys = shape;
            ys[wd] = count;
            Tensor dy = randn(ys, gen, dt);
            Tensor ref = kernels::index_select_backward(dy, idx, shape, d);
            Tensor dyd = dy.to(kGpu), idxd = idx.to(kGpu);
            Tensor dx = kernels::index_select_backward(dyd, idxd, shape, d);
            EXPECT_TRUE(same_bits(dx, ref)) << dtype_name(dt) << " relative error " << rel_error(dx, ref);
            EXPECT_TRUE(same_bits(dx, kernels::index_select_backward(dyd, idxd, shape, d)));
          }
        }
      }
    }
  }
}

TEST_F(Cuda, GatherAndItsBackwardMatchCpuBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  // (x shape, index shape): index as large as x, smaller in the other dims, short fibers (the walk per
  // fiber) and long ones (the sort), 1-D.
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{7, 257, 3}, {7, 257, 3}}, {{7, 257, 3}, {5, 100, 2}}, {{4099, 3}, {4099, 1}}, {{4099, 3}, {9000, 3}},
      {{1000003}, {200003}},      {{5, 40}, {5, 1000}},       {{2, 3, 4, 5}, {2, 3, 17, 5}}};
  for (const auto& [xs, is] : cases) {
    const int64_t rank = static_cast<int64_t>(xs.size());
    for (int64_t d = -rank; d < rank; ++d) {
      const int64_t wd = d < 0 ? d + rank : d;
      // The index may exceed x only along d.
      Shape ishape = is;
      bool fits = true;
      for (int64_t e = 0; e < rank; ++e) fits = fits && (e == wd || ishape[e] <= xs[e]);
      if (!fits) continue;
      for (DType it : {DType::i32, DType::i64}) {
        SCOPED_TRACE("x " + shape_str(xs) + " index " + shape_str(ishape) + " dim " + std::to_string(d) + " " +
                     dtype_name(it));
        Tensor idx = randint(ishape, 0, xs[wd], gen, it), idxd = idx.to(kGpu);
        for (DType dt : {DType::f32, DType::f64, DType::i32, DType::u8, DType::bf16}) {
          Tensor x = random_of(xs, dt, gen);
          EXPECT_TRUE(same_bits(kernels::gather(x.to(kGpu), d, idxd), kernels::gather(x, d, idx))) << dtype_name(dt);
        }
        for (DType dt : {DType::f32, DType::f64}) {
          Tensor dy = randn(ishape, gen, dt), dyd = dy.to(kGpu);
          Tensor ref = kernels::gather_backward(dy, idx, xs, d);
          Tensor dx = kernels::gather_backward(dyd, idxd, xs, d);
          EXPECT_TRUE(same_bits(dx, ref)) << dtype_name(dt) << " relative error " << rel_error(dx, ref);
          EXPECT_TRUE(same_bits(dx, kernels::gather_backward(dyd, idxd, xs, d)));
        }
      }
    }
  }
}

TEST_F(Cuda, OutOfRangeIndicesGiveTheCpuMessage) {
  Tensor x = zeros({5, 6});
  Tensor xd = x.to(kGpu);
  for (DType it : {DType::i32, DType::i64}) {
    SCOPED_TRACE(dtype_name(it));
    // Two bad values; the first in position order is named.
    Tensor bad = from_vector<int64_t>({1, 4, 7, 0, -2}, {5}).to(it), badd = bad.to(kGpu);
    Tensor neg = from_vector<int64_t>({1, -1, 9}, {3}).to(it), negd = neg.to(kGpu);
    std::string cpu = error_of([&] { kernels::index_select(x, 0, bad); });
    EXPECT_EQ(cpu, "[index_select] index 7 is out of range for dim 0 of size 5");
    EXPECT_EQ(error_of([&] { kernels::index_select(xd, 0, badd); }), cpu);
    EXPECT_EQ(error_of([&] { kernels::index_select(xd, -1, negd); }), error_of([&] { kernels::index_select(x, -1, neg); }));
    std::string cpu_back = error_of([&] { kernels::index_select_backward(zeros({5, 5}), bad, {5, 6}, 1); });
    EXPECT_EQ(cpu_back, "[index_select] index 7 is out of range for dim 1 of size 6");
    EXPECT_EQ(error_of([&] { kernels::index_select_backward(zeros({5, 5}, DType::f32, kGpu), badd, {5, 6}, 1); }),
              cpu_back);
    Tensor g = from_vector<int64_t>({0, 1, 6, 2, 0, 5, 3, 1, 9, 0}, {2, 5}).to(it), gd = g.to(kGpu);
    EXPECT_EQ(error_of([&] { kernels::gather(xd, 1, gd); }), error_of([&] { kernels::gather(x, 1, g); }));
    EXPECT_EQ(error_of([&] { kernels::gather_backward(zeros({2, 5}, DType::f32, kGpu), gd, {5, 6}, 1); }),
              error_of([&] { kernels::gather_backward(zeros({2, 5}), g, {5, 6}, 1); }));
    // A long fiber (the sorting path of gather_backward).
    Tensor lg = from_vector<int64_t>(std::vector<int64_t>(40, 2), {1, 40}).to(it);
    lg.narrow(1, 30, 1).fill_(8);
    Tensor lgd = lg.to(kGpu);
    std::string cpu_long = error_of([&] { kernels::gather_backward(zeros({1, 40}), lg, {5, 6}, 1); });
    EXPECT_EQ(cpu_long, "[gather] index 8 is out of range for dim 1 of size 6");
    EXPECT_EQ(error_of([&] { kernels::gather_backward(zeros({1, 40}, DType::f32, kGpu), lgd, {5, 6}, 1); }), cpu_long);
  }
}

TEST_F(Cuda, MixedDevicesAreRejected) {
  Tensor xd = zeros({5, 6}, DType::f32, kGpu);
  Tensor idx = from_vector<int64_t>({1, 2}, {2});
  expect_error([&] { kernels::index_select(xd, 0, idx); }, "[index_select]");
  expect_error([&] { kernels::index_select(zeros({5, 6}), 0, idx.to(kGpu)); }, "[index_select]");
  expect_error([&] { kernels::index_select_backward(zeros({2, 6}, DType::f32, kGpu), idx, {5, 6}, 0); }, "[index_select]");
  Tensor g = zeros({2, 2}, DType::i64);
  expect_error([&] { kernels::gather(xd, 1, g); }, "[gather]");
  expect_error([&] { kernels::gather_backward(zeros({2, 2}, DType::f32, kGpu), g, {5, 6}, 1); }, "[gather]");
  expect_error([&] { kernels::cat({xd, zeros({5, 6})}, 0); }, "[cat]");
  EXPECT_EQ(error_of([&] { kernels::index_select(xd, 0, idx); }),
            "[index_select] index is on cpu but x is on cuda:0");
}

}  // namespace
}  // namespace mom

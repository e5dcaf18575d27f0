// CUDA reductions (kernels/reduce.h) against the CPU reference on random inputs: sum and mean over
// every subset of dims of awkward shapes (row, column, chunked, tiled and several-group paths), keepdim
// both ways, negative dims, float32 and float64, their backwards; max and max_all with ties, NaN and
// -inf, their backwards; bit-for-bit repeats, aligned against misaligned inputs, empty tensors, and
// errors (device mismatch, out-of-range indices with the CPU's message).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/reduce.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::same_bits;
using test::misaligned_copy;
using test::expect_error;
using test::test_seed;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

// Every subset of {0, ..., rank - 1}; odd dims written negatively and the list reversed, so that both
// spellings and any order are exercised.
std::vector<std::vector<int64_t>> all_subsets(int64_t rank) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t m = 0; m < (int64_t(1) << rank); ++m) {
    std::vector<int64_t> dims;
    for (int64_t d = rank - 1; d >= 0; --d)
      if (m >> d & 1) dims.push_back(d % 2 ? d - rank : d);
    out.push_back(dims);
  }
  return out;
}

std::string dims_str(const std::vector<int64_t>& dims) { return shape_str(Shape(dims.begin(), dims.end())); }

// f32: 1e-5, 1e-4 where some output sums more than 1e5 elements; f64: 1e-12.
double tolerance(DType dt, int64_t count) {
  if (dt == DType::f64) return 1e-12;
  return count > 100000 ? 1e-4 : 1e-5;
}

int64_t reduced_count(const Shape& s, const std::vector<int64_t>& dims) {
  int64_t c = 1;
  for (int64_t d : dims) c *= s[wrap_dim(d, static_cast<int64_t>(s.size()), "test")];
  return c;
}

const std::vector<Shape> kShapes = {{3, 257, 5}, {7, 1, 100003}, {1000003}, {4099, 3}, {2, 3, 4, 5}, {1, 5}, {}};

TEST_F(Cuda, SumAndMeanMatchCpuOverEveryDimSubset) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  double worst[2] = {0, 0};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Shape& shape : kShapes) {
      Tensor x = randn(shape, gen, dt, 0.3, 1.0);
      Tensor xd = x.to(kGpu), xm = misaligned_copy(x);
      for (const std::vector<int64_t>& dims : all_subsets(static_cast<int64_t>(shape.size()))) {
        for (bool keepdim : {false, true}) {
          for (bool is_mean : {false, true}) {
            SCOPED_TRACE(std::string(is_mean ? "mean " : "sum ") + dtype_name(dt) + " " + shape_str(shape) + " dims " +
                         dims_str(dims) + (keepdim ? " keepdim" : ""));
            auto f = [&](const Tensor& t) {
              return is_mean ? kernels::mean(t, dims, keepdim) : kernels::sum(t, dims, keepdim);
            };
            Tensor ref = f(x), y = f(xd), again = f(xd);
            ASSERT_EQ(y.device(), kGpu);
            ASSERT_EQ(y.shape(), ref.shape());
            double err = rel_error(y, ref);
            worst[dt == DType::f64] = std::max(worst[dt == DType::f64], err);
            EXPECT_LT(err, tolerance(dt, reduced_count(shape, dims)));
            EXPECT_TRUE(same_bits(y, again)) << "two runs differ";
            // The summation order does not depend on the input's alignment.
            EXPECT_TRUE(same_bits(f(xm), y)) << "misaligned input sums differently";
            // Backward: dy of the output's shape broadcast back (and divided by the count for mean).
            Tensor dy = randn(ref.shape(), gen, dt);
            auto b = [&](const Tensor& g) {
              return is_mean ? kernels::mean_backward(g, shape, dims, keepdim)
                             : kernels::sum_backward(g, shape, dims, keepdim);
            };
            Tensor dx = b(dy.to(kGpu));
            ASSERT_EQ(dx.shape(), shape);
            EXPECT_TRUE(same_bits(dx, b(dy))) << "backward differs from the CPU";
          }
        }
      }
    }
  }
  std::printf("sum/mean vs CPU: worst relative error float32 %.3e, float64 %.3e\n", worst[0], worst[1]);
}

TEST_F(Cuda, LongReductionsMatchCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  // Rows long enough to be cut into chunks, columns tall enough to be cut into tiles (twice over for
  // (300007, 40)), a full sum of 2^24 + 3 elements (964 chunks), and a reduction over three groups.
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const std::vector<Case> cases = {{{(int64_t(1) << 24) + 3}, {0}}, {{3, 4000037}, {1}}, {{4000037, 3}, {0}},
                                   {{300007, 40}, {0}},             {{5, 60011, 7}, {1}}, {{6, 7, 8, 9, 10}, {0, 2, 4}}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + shape_str(c.shape) + " dims " + dims_str(c.dims));
      Tensor x = randn(c.shape, gen, dt, 0.1, 1.0);
      Tensor ref = kernels::sum(x, c.dims, false);
      Tensor xd = x.to(kGpu);
      Tensor y = kernels::sum(xd, c.dims, false);
      double err = rel_error(y, ref);
      std::printf("sum %s %s dims %s: relative error %.3e\n", dtype_name(dt), shape_str(c.shape).c_str(),
                  dims_str(c.dims).c_str(), err);
      EXPECT_LT(err, tolerance(dt, reduced_count(c.shape, c.dims)));
      EXPECT_TRUE(same_bits(y, kernels::sum(xd, c.dims, false)));
      EXPECT_TRUE(same_bits(kernels::sum(misaligned_copy(x), c.dims, false), y));
      Tensor mref = kernels::max(x, c.dims[0], false).values;
      EXPECT_TRUE(same_bits(kernels::max(xd, c.dims[0], false).values, mref));
    }
  }
}

TEST_F(Cuda, EmptyInputsGiveTheCpuResults) {
  for (bool is_mean : {false, true}) {
    Tensor x = empty({3, 0, 5});
    auto f = [&](const Tensor& t, const std::vector<int64_t>& dims) {
      return is_mean ? kernels::mean(t, dims, false) : kernels::sum(t, dims, false);
    };
    for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{1}, {0}, {0, 1, 2}}) {
      Tensor ref = f(x, dims), y = f(x.to(kGpu), dims);
      ASSERT_EQ(y.shape(), ref.shape());
      std::vector<double> a = y.to_vector<double>(), b = ref.to_vector<double>();
      for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])));
    }
  }
}

// Values drawn from {-1, 0, 1, 2} (many ties), with NaN and -inf planted in some rows.
Tensor tied_input(const Shape& shape, DType dt, Generator& gen, bool with_nan) {
  Tensor x = randint(shape, -1, 3, gen, DType::i64).to(dt);
  int64_t n = x.numel();
  dispatch_float(dt, "test", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* p = x.data<scalar_t>();
    for (int64_t k = 0; k < n / 50; ++k) p[gen.randint(n)] = -INFINITY;
    if (with_nan)
      for (int64_t k = 0; k < n / 97 + 1; ++k) p[gen.randint(n)] = NAN;
  });
  return x;
}

TEST_F(Cuda, MaxMatchesCpuExactlyWithTiesAndNaN) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Shape& shape : kShapes) {
      if (shape.empty()) continue;
      for (int variant = 0; variant < 3; ++variant) {  // ties; ties, NaN and -inf; distinct values
        const bool with_nan = variant == 1;
        Tensor x = variant == 2 ? randn(shape, gen, dt) : tied_input(shape, dt, gen, with_nan);
        Tensor xd = x.to(kGpu);
        const int64_t rank = static_cast<int64_t>(shape.size());
        for (int64_t dim = -rank; dim < rank; ++dim) {
          for (bool keepdim : {false, true}) {
            SCOPED_TRACE(std::string("max ") + dtype_name(dt) + " " + shape_str(shape) + " dim " +
                         std::to_string(dim) + (keepdim ? " keepdim" : "") + (with_nan ? " NaN" : ""));
            kernels::MaxResult ref = kernels::max(x, dim, keepdim), r = kernels::max(xd, dim, keepdim);
            EXPECT_TRUE(same_bits(r.values, ref.values));
            EXPECT_TRUE(same_bits(r.indices, ref.indices));
            EXPECT_TRUE(same_bits(kernels::max(misaligned_copy(x), dim, keepdim).indices, ref.indices));
            Tensor dy = randn(ref.values.shape(), gen, dt);
            Tensor dx = kernels::max_backward(dy.to(kGpu), r.indices, shape, dim, keepdim);
            EXPECT_TRUE(same_bits(dx, kernels::max_backward(dy, ref.indices, shape, dim, keepdim)));
          }
        }
        SCOPED_TRACE(std::string("max_all ") + dtype_name(dt) + " " + shape_str(shape));
        kernels::MaxResult ref = kernels::max_all(x), r = kernels::max_all(xd);
        EXPECT_TRUE(same_bits(r.values, ref.values));
        EXPECT_EQ(r.indices.item(), ref.indices.item());
        Tensor dy = randn({}, gen, dt);
        EXPECT_TRUE(same_bits(kernels::max_all_backward(dy.to(kGpu), r.indices, shape),
                              kernels::max_all_backward(dy, ref.indices, shape)));
      }
    }
  }
}

TEST_F(Cuda, MaxOfAllMinusInfinityIsTheFirst) {
  Tensor x = full({3, 1000}, -INFINITY).to(kGpu);
  kernels::MaxResult r = kernels::max(x, 1, false);
  EXPECT_EQ(r.indices.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(kernels::max_all(x).indices.item(), 0.0);
  Tensor y = full({3, 5}, NAN, DType::f64).to(kGpu);
  EXPECT_EQ(kernels::max(y, 0, false).indices.to_vector<int64_t>(), (std::vector<int64_t>(5, 0)));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(Cuda, BadInputsGiveTheCpuErrors) {
  Tensor x = ones({4, 6}, DType::f32, kGpu);
  expect_error([&] { kernels::sum(x, {0, -2}, false); }, "[sum]");
  expect_error([&] { kernels::mean(x, {2}, false); }, "[mean]");
  expect_error([&] { kernels::sum(x.transpose(0, 1), {0}, false); }, "[sum]");
  expect_error([&] { kernels::max(ones({4, 0}, DType::f32, kGpu), 1, false); }, "[max]");
  expect_error([&] { kernels::sum_backward(ones({5}, DType::f32, kGpu), {4, 6}, {1}, false); }, "[sum]");
  // Indices on the CPU with dy on the GPU, and the reverse.
  Tensor idx = zeros({4}, DType::i64);
  expect_error([&] { kernels::max_backward(ones({4}, DType::f32, kGpu), idx, {4, 6}, 1, false); }, "[max]");
  expect_error([&] { kernels::max_backward(ones({4}), idx.to(kGpu), {4, 6}, 1, false); }, "[max]");
  expect_error([&] { kernels::max_all_backward(ones({}, DType::f32, kGpu), zeros({}, DType::i64), {4, 6}); }, "[max]");
  // Out-of-range indices: the first bad one is named, as on the CPU.
  Tensor bad = from_vector<int64_t>({2, 6, 0, -1}, {4});
  std::string cpu = error_of([&] { kernels::max_backward(ones({4}), bad, {4, 6}, 1, false); });
  std::string gpu = error_of([&] { kernels::max_backward(ones({4}, DType::f32, kGpu), bad.to(kGpu), {4, 6}, 1, false); });
  EXPECT_EQ(gpu, cpu);
  EXPECT_EQ(cpu, "[max] index 6 is out of range for a dim of size 6");
  Tensor bad_all = from_vector<int64_t>({24}, {});
  EXPECT_EQ(error_of([&] { kernels::max_all_backward(ones({}, DType::f32, kGpu), bad_all.to(kGpu), {4, 6}); }),
            error_of([&] { kernels::max_all_backward(ones({}), bad_all, {4, 6}); }));
}

}  // namespace
}  // namespace mom

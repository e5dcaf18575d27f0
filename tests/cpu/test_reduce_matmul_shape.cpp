// Reductions, matmul, and shape and index ops: values against hand-written expectations and naive
// loops (f32 and f64), CBLAS against a naive GEMM, views sharing storage with gradients in the
// input's shape, deterministic scatter-adds, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"
#include "kernels/matmul.h"
#include "kernels/reduce.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::expect_error;
using test::leaf;
using test::max_abs_diff;
using test::rel_error;


std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

double tolerance(DType dt) { return dt == DType::f32 ? 1e-6 : 1e-13; }

// sum (or mean) of x over dims by visiting every element, in double.
Tensor naive_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool is_mean) {
  const Shape& s = x.shape();
  std::vector<bool> red(s.size(), false);
  for (int64_t d : dims) red[wrap_dim(d, x.dim(), "test")] = true;
  Shape keep = s, out;
  int64_t count = 1;
  for (size_t d = 0; d < s.size(); ++d) {
    if (red[d]) count *= s[d], keep[d] = 1;
    if (!red[d] || keepdim) out.push_back(keep[d]);
  }
  std::vector<double> acc(shape_numel(keep), 0.0), xv = values(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t rem = i, o = 0, stride = 1;
    for (size_t d = s.size(); d-- > 0;) {
      int64_t c = rem % s[d];
      rem /= s[d];
      o += (red[d] ? 0 : c) * stride;
      stride *= keep[d];
    }
    acc[o] += xv[i];
  }
  if (is_mean)
    for (double& a : acc) a /= count;
  return from_vector<double>(acc, out);
}

// op(a) @ op(b) for 2-D a, b by the textbook triple loop, in double.
Tensor naive_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Tensor A = ta ? a.transpose(0, 1) : a, B = tb ? b.transpose(0, 1) : b;
  int64_t m = A.size(0), k = A.size(1), n = B.size(1);
  std::vector<double> av = values(A), bv = values(B), c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p) c[i * n + j] += av[i * k + p] * bv[p * n + j];
  return from_vector<double>(c, {m, n});
}

// ---- reductions ----

TEST(Reduce, HandWrittenValues) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).to(dt);
    EXPECT_EQ(values(sum(x)), (std::vector<double>{21}));
    EXPECT_EQ(sum(x).shape(), Shape{});
    EXPECT_EQ(values(sum(x, {0})), (std::vector<double>{5, 7, 9}));
    Tensor m = mean(x, {-1}, true);
    EXPECT_EQ(m.shape(), (Shape{2, 1}));
    EXPECT_EQ(values(m), (std::vector<double>{2, 5}));
    EXPECT_EQ(values(mean(x)), (std::vector<double>{3.5}));
    EXPECT_EQ(values(sum(x, {})), values(x));  // no dim listed: nothing reduced
    EXPECT_EQ(values(max(x)), (std::vector<double>{6}));
    EXPECT_EQ(values(max(x, 0)), (std::vector<double>{4, 5, 6}));
    EXPECT_EQ(max(x, 1, true).shape(), (Shape{2, 1}));
    EXPECT_EQ(sum(zeros({0, 3}, dt), {0}).to_vector<double>(), (std::vector<double>{0, 0, 0}));
    EXPECT_TRUE(std::isnan(mean(zeros({0}, dt)).item()));
  }
}

TEST(Reduce, SumAndMeanMatchNaiveLoops) {
  Generator gen(5);
  const std::vector<std::vector<int64_t>> dim_sets = {{0}, {-1}, {1}, {0, 2}, {2, 0}, {-3, 1}, {1, 2}, {0, 1, 2}, {}};
  for (DType dt : {DType::f32, DType::f64}) {
    // A size-1 dim in the middle exercises the merging of adjacent dims.
    for (Shape shape : {Shape{3, 4, 5}, Shape{6, 1, 1100}, Shape{2, 3, 7}}) {
      Tensor x = randn(shape, gen, dt);
      for (const auto& dims : dim_sets)
        for (bool keepdim : {false, true}) {
          Tensor s = sum(x, dims, keepdim), ref_s = naive_reduce(x, dims, keepdim, false);
          Tensor m = mean(x, dims, keepdim), ref_m = naive_reduce(x, dims, keepdim, true);
          ASSERT_EQ(s.shape(), ref_s.shape());
          ASSERT_EQ(m.shape(), ref_m.shape());
          EXPECT_LT(rel_error(s, ref_s), tolerance(dt)) << shape_str(shape) << " dims " << shape_str(dims);
          EXPECT_LT(rel_error(m, ref_m), tolerance(dt)) << shape_str(shape) << " dims " << shape_str(dims);
        }
    }
  }
}

TEST(Reduce, LargeTotalIsAccurateAndRepeats) {
  Generator gen(9);
  Tensor x = rand({1000003}, gen, DType::f32, 0.0, 1.0);
  double ref = 0;
  for (float v : x.to_vector<float>()) ref += v;
  Tensor s = sum(x);
  std::printf("sum of 1000003 f32 values: relative error %.3e against a double loop\n", std::fabs(s.item() - ref) / ref);
  EXPECT_LT(std::fabs(s.item() - ref) / ref, 1e-7);
  EXPECT_EQ(s.item(), sum(x).item());
  Tensor cols = sum(x.narrow(0, 0, 1000000).view({1000, 1000}), {0});
  EXPECT_LT(rel_error(cols, naive_reduce(x.narrow(0, 0, 1000000).view({1000, 1000}), {0}, false, false)), 1e-7);
}

TEST(Reduce, MaxPicksFirstMaximumAndRoutesGradientThere) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = leaf(from_vector<double>({1, 3, 3, 2, 2, 1}, {2, 3}).to(dt));
    kernels::MaxResult r = kernels::max(x.detach(), 1, false);
    EXPECT_EQ(values(r.values), (std::vector<double>{3, 2}));
    EXPECT_EQ(r.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
    backward(max(x, -1), from_vector<double>({10, 20}, {2}).to(dt));
    EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 10, 0, 20, 0, 0}));

    Tensor y = leaf(from_vector<double>({4, 7, 7, -1}, {2, 2}).to(dt));
    kernels::MaxResult all = kernels::max_all(y.detach());
    EXPECT_EQ(all.values.item(), 7);
    EXPECT_EQ(all.indices.item(), 1);
    backward(max(y));
    EXPECT_EQ(values(y.grad()), (std::vector<double>{0, 1, 0, 0}));
  }
  Tensor n = from_vector<double>({1, NAN, 5}, {3});
  EXPECT_TRUE(std::isnan(max(n).item()));
}

TEST(Reduce, SumAndMeanBackwardBroadcastBack) {
  Tensor x = leaf(zeros({2, 3}, DType::f64));
  backward(mean(x, {0}, false), from_vector<double>({2, 4, 6}, {3}));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{1, 2, 3, 1, 2, 3}));
  x.zero_grad();
  backward(sum(x, {1}, true), from_vector<double>({1, -1}, {2, 1}));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{1, 1, 1, -1, -1, -1}));
}

TEST(Reduce, BadInputsNameTheOp) {
  Tensor x = zeros({2, 3});
  expect_error([&] { sum(x, {2}); }, "[sum]");
  expect_error([&] { sum(x, {1, -1}); }, "[sum]");
  expect_error([&] { mean(zeros({2}, DType::i64)); }, "[mean]");
  expect_error([&] { max(zeros({0})); }, "[max]");
  expect_error([&] { max(zeros({2, 0}), 1); }, "[max]");
  expect_error([&] { max(x, -3); }, "[max]");
  expect_error([&] { kernels::sum(x.transpose(0, 1), {0}, false); }, "[sum]");
  expect_error([&] { kernels::sum_backward(zeros({3}), {2, 3}, {1}, false); }, "[sum]");
}

// ---- matmul ----

TEST(Matmul, CblasMatchesNaiveLoopAtOddShape) {
  Generator gen(21);
  const int64_t m = 37, k = 53, n = 29;
  for (DType dt : {DType::f32, DType::f64})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Tensor a = randn(ta ? Shape{k, m} : Shape{m, k}, gen, dt);
        Tensor b = randn(tb ? Shape{n, k} : Shape{k, n}, gen, dt);
        Tensor c = kernels::matmul(a, b, ta, tb);
        ASSERT_EQ(c.shape(), (Shape{m, n}));
        double err = rel_error(c, naive_matmul(a, b, ta, tb));
        std::printf("matmul %s %lldx%lldx%lld transpose_a=%d transpose_b=%d: relative error %.3e\n",
                    dtype_name(dt), static_cast<long long>(m), static_cast<long long>(k), static_cast<long long>(n), ta,
                    tb, err);
        EXPECT_LT(err, dt == DType::f32 ? 1e-6 : 1e-14);
      }
}

TEST(Matmul, BatchedBroadcastMatchesPerMatrixLoop) {
  Generator gen(22);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor a = randn({2, 1, 5, 3}, gen, dt), b = randn({4, 3, 6}, gen, dt);
    Tensor c = matmul(a, b);
    ASSERT_EQ(c.shape(), (Shape{2, 4, 5, 6}));
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 4; ++j) {
        Tensor ref = naive_matmul(a.narrow(0, i, 1).reshape({5, 3}), b.narrow(0, j, 1).reshape({3, 6}), false, false);
        EXPECT_LT(rel_error(c.narrow(0, i, 1).narrow(1, j, 1).reshape({5, 6}), ref), tolerance(dt));
      }
    // A batched a times a 2-D b runs as one GEMM over all rows.
    Tensor x = randn({3, 4, 5}, gen, dt), w = randn({5, 2}, gen, dt);
    EXPECT_LT(rel_error(matmul(x, w).reshape({12, 2}), naive_matmul(x.reshape({12, 5}), w, false, false)), tolerance(dt));
  }
}

TEST(Matmul, HandWrittenGradients) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor a = leaf(from_vector<double>({1, 2, 3, 4}, {2, 2}).to(dt));
    Tensor b = leaf(from_vector<double>({5, 6, 7, 8}, {2, 2}).to(dt));
    Tensor c = matmul(a, b);
    EXPECT_EQ(values(c), (std::vector<double>{19, 22, 43, 50}));
    backward(c, ones({2, 2}, dt));
    EXPECT_EQ(values(a.grad()), (std::vector<double>{11, 15, 11, 15}));  // dC B^T
    EXPECT_EQ(values(b.grad()), (std::vector<double>{4, 4, 6, 6}));      // A^T dC

    // a = transpose(w): the kernel reads w with a transpose flag; w's gradient is dA^T.
    Tensor w = leaf(from_vector<double>({1, 3, 2, 4}, {2, 2}).to(dt));
    backward(matmul(transpose(w, 0, 1), b.detach()), ones({2, 2}, dt));
    EXPECT_EQ(w.grad().shape(), (Shape{2, 2}));
    EXPECT_EQ(values(w.grad()), (std::vector<double>{11, 11, 15, 15}));
  }
}

TEST(Matmul, TransposedViewAndCopyGiveSameValuesAndGradients) {
  Generator gen(23);
  Tensor x = randn({2, 7, 6}, gen, DType::f32), wt = randn({5, 6}, gen, DType::f32);
  Tensor w_view = leaf(wt), w_copy = leaf(wt.transpose(0, 1).contiguous());
  Tensor xa = leaf(x), xb = leaf(x);
  Tensor ya = matmul(xa, transpose(w_view, 0, 1)), yb = matmul(xb, w_copy);
  EXPECT_LT(max_abs_diff(ya, yb), 1e-6);
  Tensor g = randn({2, 7, 5}, gen, DType::f32);
  backward(ya, g);
  backward(yb, g);
  EXPECT_EQ(w_view.grad().shape(), (Shape{5, 6}));
  EXPECT_LT(rel_error(w_view.grad(), w_copy.grad().transpose(0, 1)), 1e-6);
  EXPECT_LT(rel_error(xa.grad(), xb.grad()), 1e-6);
}

TEST(Matmul, BiasIsAddedToEveryRowAsASeparateAddWould) {
  Generator gen(23);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = randn({2, 5, 7}, gen, dt), w = randn({3, 7}, gen, dt), b = randn({3}, gen, dt);
    Tensor with = kernels::matmul(x, w, false, true, b);
    ASSERT_EQ(with.shape(), (Shape{2, 5, 3}));
    EXPECT_EQ(values(with), values(kernels::add(kernels::matmul(x, w, false, true), b))) << dtype_name(dt);
    // K = 0: the bias alone.
    Tensor empty_k = kernels::matmul(zeros({4, 0}, dt), zeros({3, 0}, dt), false, true, b);
    EXPECT_EQ(values(empty_k), values(kernels::add(zeros({4, 3}, dt), b))) << dtype_name(dt);
  }
  // autograd linear: the values of matmul + add, and the bias gradient sums dy over every row.
  Tensor x = randn({4, 7}, gen, DType::f64), w = leaf(randn({3, 7}, gen, DType::f64)),
         b = leaf(randn({3}, gen, DType::f64));
  Tensor y = linear(x, w, b);
  EXPECT_EQ(values(y), values(add(matmul(x, transpose(w, 0, 1)), b)));
  backward(sum(y));
  EXPECT_EQ(values(b.grad()), (std::vector<double>{4, 4, 4}));
}

TEST(Matmul, BadShapesNameTheOp) {
  expect_error([] { kernels::matmul(zeros({2, 3, 4}), zeros({2, 5, 4}), false, true, zeros({5})); }, "[matmul]");
  expect_error([] { kernels::matmul(zeros({4, 3}), zeros({5, 4}), true, true, zeros({5})); }, "[matmul]");
  expect_error([] { kernels::matmul(zeros({3, 4}), zeros({5, 4}), false, true, zeros({4})); }, "[matmul]");
  expect_error([] { kernels::matmul(zeros({3, 4}), zeros({5, 4}), false, true, zeros({5}, DType::f64)); }, "[matmul]");
  expect_error([] { linear(zeros({3, 4}), zeros({2, 5, 4}), Tensor()); }, "[linear]");
  expect_error([] { matmul(zeros({2, 3}), zeros({4, 5})); }, "[matmul]");
  expect_error([] { matmul(zeros({2, 2, 3}), zeros({3, 3, 4})); }, "[matmul]");
  expect_error([] { matmul(zeros({3}), zeros({3, 4})); }, "[matmul]");
  expect_error([] { matmul(zeros({2, 3}), zeros({3, 4}, DType::f64)); }, "[matmul]");
  expect_error([] { matmul(zeros({2, 3}, DType::i64), zeros({3, 4}, DType::i64)); }, "[matmul]");
  expect_error([] { kernels::matmul_backward(zeros({2, 5}), zeros({2, 3}), zeros({3, 4}), false, false); }, "[matmul]");
}

// ---- shape ops ----

TEST(ShapeOps, ViewsShareStorageAndGradientsHaveTheInputShape) {
  Tensor x = leaf(arange(0, 12, 1, DType::f64).reshape({3, 4}));
  Tensor t = transpose(x, 0, 1);
  EXPECT_EQ(t.storage(), x.storage());
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  backward(t, arange(0, 12, 1, DType::f64).reshape({4, 3}));
  EXPECT_EQ(x.grad().shape(), (Shape{3, 4}));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11}));

  x.zero_grad();
  Tensor p = permute(unsqueeze(x, 0), {2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 1, 3}));
  EXPECT_EQ(p.storage(), x.storage());
  backward(p, ones({4, 1, 3}, DType::f64));
  EXPECT_EQ(values(x.grad()), std::vector<double>(12, 1.0));

  x.zero_grad();
  Tensor r = reshape(squeeze(unsqueeze(x, -1), 2), {2, 6});
  EXPECT_EQ(r.storage(), x.storage());
  backward(r, arange(0, 12, 1, DType::f64).reshape({2, 6}));
  EXPECT_EQ(values(x.grad()), values(arange(0, 12, 1, DType::f64)));
}

TEST(ShapeOps, SliceAndNarrowScatterIntoZeros) {
  Tensor x = leaf(from_vector<double>({0, 1, 2, 3, 4}, {5}));
  Tensor s = slice(x, 0, 1, 5, 2);
  EXPECT_EQ(values(s), (std::vector<double>{1, 3}));
  backward(s, from_vector<double>({10, 20}, {2}));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 10, 0, 20, 0}));
  x.zero_grad();
  backward(narrow(x, -1, 2, 3), from_vector<double>({1, 2, 3}, {3}));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 0, 1, 2, 3}));
}

TEST(ShapeOps, ExpandSumsAndContiguousCopies) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = leaf(from_vector<double>({1, 2, 3}, {3, 1}).to(dt));
    Tensor e = expand(x, {2, 3, 4});
    EXPECT_EQ(e.storage(), x.storage());
    backward(e, ones({2, 3, 4}, dt));
    EXPECT_EQ(values(x.grad()), (std::vector<double>{8, 8, 8}));
    Tensor z = leaf(zeros({3, 2}, dt));
    Tensor c = contiguous(transpose(z, 0, 1));
    EXPECT_TRUE(c.is_contiguous());
    EXPECT_NE(c.storage(), z.storage());
    EXPECT_TRUE(contiguous(z).is_same(z));
  }
}

TEST(ShapeOps, BadDimsNameTheOp) {
  Tensor x = zeros({2, 3});
  expect_error([&] { transpose(x, 0, 2); }, "[transpose]");
  expect_error([&] { permute(x, {0, 2}); }, "[permute]");
  expect_error([&] { permute(x, {0}); }, "[permute]");
  expect_error([&] { permute(x, {1, -1}); }, "[permute]");
  expect_error([&] { slice(x, -3, 0, 1); }, "[slice]");
  expect_error([&] { narrow(x, 2, 0, 1); }, "[narrow]");
  expect_error([&] { squeeze(x, 2); }, "[squeeze]");
  expect_error([&] { unsqueeze(x, 4); }, "[unsqueeze]");
}

// ---- cat, split, index_select, gather ----

TEST(IndexOps, CatAndSplitValues) {
  for (DType dt : {DType::f32, DType::f64, DType::i64}) {
    Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2}).to(dt), b = from_vector<double>({5, 6}, {2, 1}).to(dt);
    Tensor c = cat({a, b}, -1);
    EXPECT_EQ(c.shape(), (Shape{2, 3}));
    EXPECT_EQ(values(c), (std::vector<double>{1, 2, 5, 3, 4, 6}));
    EXPECT_EQ(values(cat({a, a}, 0)), (std::vector<double>{1, 2, 3, 4, 1, 2, 3, 4}));
    std::vector<Tensor> parts = split(c, {1, 0, 2}, 1);
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(values(parts[0]), (std::vector<double>{1, 3}));
    EXPECT_EQ(parts[1].shape(), (Shape{2, 0}));
    EXPECT_EQ(values(parts[2]), (std::vector<double>{2, 5, 4, 6}));
    EXPECT_EQ(values(cat(parts, 1)), values(c));
  }
}

TEST(IndexOps, SplitBackwardFillsUnusedPiecesWithZeros) {
  Tensor x = leaf(arange(0, 6, 1, DType::f64).reshape({3, 2}));
  std::vector<Tensor> parts = split(x, {1, 2}, 0);
  backward(parts[1], full({2, 2}, 3.0, DType::f64));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 0, 3, 3, 3, 3}));
}

TEST(IndexOps, IndexSelectAddsRepeatedIndicesInBackward) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = leaf(from_vector<double>({0, 1, 10, 11, 20, 21}, {3, 2}).to(dt));
    Tensor idx = from_vector<int32_t>({2, 0, 2}, {3});
    Tensor y = index_select(x, 0, idx);
    EXPECT_EQ(values(y), (std::vector<double>{20, 21, 0, 1, 20, 21}));
    backward(y, from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2}).to(dt));
    EXPECT_EQ(values(x.grad()), (std::vector<double>{3, 4, 0, 0, 6, 8}));
    EXPECT_EQ(values(index_select(x.detach(), -1, from_vector<int64_t>({1, 1}, {2}))),
              (std::vector<double>{1, 1, 11, 11, 21, 21}));
  }
}

TEST(IndexOps, IndexSelectBackwardMatchesNaiveScatter) {
  Generator gen(31);
  Shape x_shape{4, 50, 7};
  Tensor idx = randint({300}, 0, 50, gen);
  Tensor dy = randn({4, 300, 7}, gen, DType::f32);
  Tensor dx = kernels::index_select_backward(dy, idx, x_shape, 1);
  std::vector<double> ref(4 * 50 * 7, 0.0), g = values(dy);
  std::vector<int64_t> iv = idx.to_vector<int64_t>();
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t i = 0; i < 300; ++i)
      for (int64_t c = 0; c < 7; ++c) ref[(o * 50 + iv[i]) * 7 + c] += g[(o * 300 + i) * 7 + c];
  EXPECT_LT(rel_error(dx, from_vector<double>(ref, x_shape)), 1e-7);
  EXPECT_EQ(dx.to_vector<float>(), kernels::index_select_backward(dy, idx, x_shape, 1).to_vector<float>());
}

TEST(IndexOps, GatherAndItsScatterAdd) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = leaf(from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).to(dt));
    Tensor idx = from_vector<int64_t>({2, 2, 0, 1}, {2, 2});
    Tensor y = gather(x, 1, idx);
    EXPECT_EQ(values(y), (std::vector<double>{3, 3, 4, 5}));
    backward(y, from_vector<double>({1, 2, 3, 4}, {2, 2}).to(dt));
    EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 0, 3, 3, 4, 0}));
    // dim 0 with an index smaller than x in the other dim.
    Tensor y0 = gather(x.detach(), 0, from_vector<int32_t>({1, 0, 1, 1}, {2, 2}));
    EXPECT_EQ(values(y0), (std::vector<double>{4, 2, 4, 5}));
  }
}

TEST(IndexOps, BadInputsNameTheOp) {
  Tensor x = zeros({5, 2});
  try {
    index_select(x, 0, from_vector<int64_t>({1, 7}, {2}));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[index_select] index 7 is out of range for dim 0 of size 5");
  }
  expect_error([&] { index_select(x, 1, from_vector<int32_t>({-1}, {1})); }, "[index_select]");
  expect_error([&] { index_select(x, 0, zeros({2}, DType::f32)); }, "[index_select]");
  expect_error([&] { index_select(x, 0, zeros({1, 1}, DType::i64)); }, "[index_select]");
  expect_error([&] { gather(x, 1, from_vector<int64_t>({2}, {1, 1})); }, "[gather]");
  expect_error([&] { gather(x, 1, zeros({5}, DType::i64)); }, "[gather]");
  expect_error([&] { gather(x, 1, zeros({6, 1}, DType::i64)); }, "[gather]");
  expect_error([&] { cat({x, zeros({5, 3}, DType::f64)}, 1); }, "[cat]");
  expect_error([&] { cat({x, zeros({4, 3})}, 0); }, "[cat]");
  expect_error([&] { cat({}, 0); }, "[cat]");
  expect_error([&] { split(x, {2, 2}, 0); }, "[split]");
  expect_error([&] { split(x, {3, -1}, 1); }, "[split]");
}

}  // namespace
}  // namespace mom

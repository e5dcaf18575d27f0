// CUDA row kernels (softmax, log_softmax, cross_entropy, rms_norm) against the CPU reference in f64,
// on random inputs: GPU f32 within 1e-5 relative (1e-4 where a row sums 4099+ terms), GPU f64
// within 1e-12. Row lengths 1, 7, 33, 1000, 4099, 50257 reach every kernel path (a warp caching 1 to 8
// chunks per lane, a caching block, a streaming block; the peeled unaligned edges; the strided kernel
// for dims other than the last; the scalar kernels for misaligned views). Also: ignored tokens,
// weights, all tokens ignored, out-of-range targets and negative weights with the CPU's exact message,
// device mismatches, and bit-for-bit repeats.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/cross_entropy.h"
#include "kernels/rms_norm.h"
#include "kernels/softmax.h"
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

double tolerance(DType dt, int64_t row_length) {
  if (dt == DType::f64) return 1e-12;
  return row_length >= 4099 ? 1e-4 : 1e-5;
}

template <typename F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Checks `got` (GPU, dtype dt) against `ref` (CPU f64) and prints the margin.
void expect_close(const char* what, const Tensor& got, const Tensor& ref, DType dt, int64_t row_length) {
  ASSERT_EQ(got.device(), kGpu) << what;
  ASSERT_EQ(got.shape(), ref.shape()) << what;
  const double err = rel_error(got.to(kCpu).to(DType::f64), ref);
  std::printf("  %-34s %s rel err %.2e (tol %.0e)\n", what, dtype_name(dt), err, tolerance(dt, row_length));
  EXPECT_LT(err, tolerance(dt, row_length)) << what << " " << dtype_name(dt);
}

// ---- softmax and log_softmax ----

struct SoftmaxCase {
  Shape shape;
  int64_t dim;
};

const std::vector<SoftmaxCase> kSoftmaxCases = {
    {{5, 1}, 1},      {{9, 7}, 1},       {{13, 33}, 1},    {{37, 100}, 1},   {{19, 257}, 1},
    {{21, 500}, 1},   {{37, 1000}, 1},   {{11, 4099}, 1},  {{6, 8192}, 1},   {{3, 50257}, 1},
    {{1000, 7}, 0},   {{7, 33, 5}, 1},   {{4099, 3}, 0},   {{2, 1000, 40}, 1}, {{3, 7, 11, 2}, 2},
    {{1, 1}, 0},
};

TEST_F(Cuda, SoftmaxAndLogSoftmaxMatchCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const SoftmaxCase& c : kSoftmaxCases) {
    const int64_t n = c.shape[c.dim];
    Tensor x = randn(c.shape, gen, DType::f64, 0.0, 8.0), dy = randn(c.shape, gen, DType::f64);
    // The backward runs at y from N(0, 2) logits: at N(0, 8) one probability can sit within 1e-5 of 1,
    // where dx = y (dy - sum dy y) cancels, and the f64 comparison would measure that conditioning
    // (seen: 4.5e-13 at n = 50257) rather than the kernel.
    Tensor xb = randn(c.shape, gen, DType::f64, 0.0, 2.0);
    for (bool log_output : {false, true}) {
      const std::string name = std::string(log_output ? "log_softmax " : "softmax ") + shape_str(c.shape) +
                               " dim " + std::to_string(c.dim);
      SCOPED_TRACE(name);
      std::printf("%s\n", name.c_str());
      auto fwd = log_output ? kernels::log_softmax_forward : kernels::softmax_forward;
      auto bwd = log_output ? kernels::log_softmax_backward : kernels::softmax_backward;
      for (DType dt : {DType::f32, DType::f64}) {
        // The references start from the inputs rounded to dt, so that only the kernels differ.
        Tensor yr = fwd(x.to(dt).to(DType::f64), c.dim);
        Tensor ybr = fwd(xb.to(dt).to(DType::f64), c.dim);
        Tensor dxr = bwd(dy.to(dt).to(DType::f64), ybr, c.dim);
        Tensor xd = x.to(dt).to(kGpu), dyd = dy.to(dt).to(kGpu);
        Tensor yd = fwd(xd, c.dim), ybd = fwd(xb.to(dt).to(kGpu), c.dim);
        expect_close("forward", yd, yr, dt, n);
        expect_close("backward", bwd(dyd, ybd, c.dim), dxr, dt, n);
        if (c.dim == static_cast<int64_t>(c.shape.size()) - 1) {
          Tensor xm = misaligned_copy(x.to(dt)), dym = misaligned_copy(dy.to(dt)), ym = misaligned_copy(ybd.to(kCpu));
          expect_close("forward, misaligned view", fwd(xm, c.dim), yr, dt, n);
          expect_close("backward, misaligned view", bwd(dym, ym, c.dim), dxr, dt, n);
        }
      }
    }
  }
}

TEST_F(Cuda, SoftmaxHandlesMaskedEntriesAndRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (int64_t n : {7, 1000, 4099, 50257}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    // The first half of each row is -inf (a causal mask): rows start with values that add nothing.
    Tensor x = randn({5, n}, gen, DType::f32, 0.0, 8.0);
    x.narrow(1, 0, n / 2).fill_(-INFINITY);
    Tensor xd = x.to(kGpu);
    Tensor y1 = kernels::softmax_forward(xd, 1), y2 = kernels::softmax_forward(xd, 1);
    EXPECT_TRUE(same_bits(y1, y2));
    expect_close("masked softmax", y1, kernels::softmax_forward(x.to(DType::f64), 1), DType::f32, n);
    Tensor l1 = kernels::log_softmax_forward(xd, 1), l2 = kernels::log_softmax_forward(xd, 1);
    EXPECT_TRUE(same_bits(l1, l2));
    Tensor dy = randn({5, n}, gen, DType::f32).to(kGpu);
    EXPECT_TRUE(same_bits(kernels::softmax_backward(dy, y1, 1), kernels::softmax_backward(dy, y1, 1)));
    EXPECT_TRUE(same_bits(kernels::log_softmax_backward(dy, l1, 1), kernels::log_softmax_backward(dy, l1, 1)));
  }
}

TEST_F(Cuda, SoftmaxRejectsMixedDevices) {
  Generator gen(test_seed());
  Tensor y = randn({3, 5}, gen).to(kGpu), dy = randn({3, 5}, gen);
  expect_error([&] { kernels::softmax_backward(dy, y, 1); }, "[softmax] dy is on cpu but y is on cuda:0");
  expect_error([&] { kernels::log_softmax_backward(dy, y, 1); }, "[log_softmax] dy is on cpu but y is on cuda:0");
  expect_error([&] { kernels::softmax_forward(y, 2); }, "[softmax] dim 2 is out of range");
}

// ---- cross_entropy ----

struct CrossEntropyCase {
  int64_t T, V;
  bool weighted;
  DType index;
};

const std::vector<CrossEntropyCase> kCrossEntropyCases = {
    {1, 1, false, DType::i64},     {7, 7, true, DType::i32},      {33, 33, false, DType::i64},
    {64, 1000, true, DType::i64},  {300, 2048, false, DType::i32}, {17, 4099, true, DType::i64},
    {5, 50257, false, DType::i32}, {9, 50257, true, DType::i64},   {2000, 5, true, DType::i32},
    {3000, 3, false, DType::i64},
};

constexpr int64_t kIgnore = -100;

// Targets in [0, V) with about one in five set to kIgnore.
Tensor random_targets(int64_t T, int64_t V, DType dt, Generator& gen) {
  std::vector<int64_t> t = randint({T}, 0, V, gen).to_vector<int64_t>();
  std::vector<double> u = rand({T}, gen, DType::f64).to_vector<double>();
  for (int64_t i = 0; i < T; ++i)
    if (u[i] < 0.2) t[i] = kIgnore;
  return from_vector<int64_t>(t, {T}).to(dt);
}

TEST_F(Cuda, CrossEntropyMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const CrossEntropyCase& c : kCrossEntropyCases) {
    const std::string name = "cross_entropy T=" + std::to_string(c.T) + " V=" + std::to_string(c.V) +
                             (c.weighted ? " weighted " : " ") + dtype_name(c.index);
    SCOPED_TRACE(name);
    std::printf("%s\n", name.c_str());
    Tensor logits = randn({c.T, c.V}, gen, DType::f64, 0.0, 8.0);
    Tensor targets = random_targets(c.T, c.V, c.index, gen);
    Tensor weight = c.weighted ? rand({c.T}, gen, DType::f64, 0.0, 2.0) : Tensor();
    const double dloss = 0.3 + rand({1}, gen, DType::f64).item();
    Tensor td = targets.to(kGpu);
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor lr = logits.to(dt).to(DType::f64);
      Tensor wr = c.weighted ? weight.to(dt).to(DType::f64) : Tensor();
      kernels::CrossEntropyForward ref = kernels::cross_entropy_forward(lr, targets, kIgnore, wr);
      Tensor dref = kernels::cross_entropy_backward(scalar_tensor(dloss, DType::f64), lr, targets, ref.lse, kIgnore, wr);
      Tensor ld = logits.to(dt).to(kGpu);
      Tensor wd = c.weighted ? weight.to(dt).to(kGpu) : Tensor();
      kernels::CrossEntropyForward got = kernels::cross_entropy_forward(ld, td, kIgnore, wd);
      EXPECT_EQ(got.loss.shape(), Shape{});
      expect_close("loss", got.loss, ref.loss, dt, c.V);
      expect_close("lse", got.lse, ref.lse, dt, c.V);
      Tensor dl = full({}, dloss, dt, kGpu);
      expect_close("dlogits", kernels::cross_entropy_backward(dl, ld, td, got.lse, kIgnore, wd), dref, dt, c.V);
      if (c.V > 1) {  // a logits view 4 or 8 bytes off alignment: the scalar backward
        Tensor lm = misaligned_copy(logits.to(dt));
        expect_close("dlogits, misaligned view", kernels::cross_entropy_backward(dl, lm, td, got.lse, kIgnore, wd),
                     dref, dt, c.V);
        expect_close("loss, misaligned view", kernels::cross_entropy_forward(lm, td, kIgnore, wd).loss, ref.loss, dt,
                     c.V);
      }
    }
  }
}

TEST_F(Cuda, CrossEntropyRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (int64_t V : {1000, 50257}) {
    const int64_t T = V == 1000 ? 5000 : 40;
    Tensor logits = randn({T, V}, gen, DType::f32, 0.0, 8.0).to(kGpu);
    Tensor targets = random_targets(T, V, DType::i64, gen).to(kGpu);
    Tensor weight = rand({T}, gen, DType::f32, 0.0, 2.0).to(kGpu);
    kernels::CrossEntropyForward a = kernels::cross_entropy_forward(logits, targets, kIgnore, weight);
    kernels::CrossEntropyForward b = kernels::cross_entropy_forward(logits, targets, kIgnore, weight);
    EXPECT_TRUE(same_bits(a.loss, b.loss));
    EXPECT_TRUE(same_bits(a.lse, b.lse));
    Tensor dl = full({}, 1.0, DType::f32, kGpu);
    EXPECT_TRUE(same_bits(kernels::cross_entropy_backward(dl, logits, targets, a.lse, kIgnore, weight),
                          kernels::cross_entropy_backward(dl, logits, targets, a.lse, kIgnore, weight)));
  }
}

TEST_F(Cuda, CrossEntropyWithAllTokensIgnoredIsZero) {
  Generator gen(test_seed());
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor logits = randn({6, 9}, gen, dt, 0.0, 8.0).to(kGpu);
    Tensor targets = full({6}, static_cast<double>(kIgnore), DType::i64, kGpu);
    kernels::CrossEntropyForward f = kernels::cross_entropy_forward(logits, targets, kIgnore, Tensor());
    EXPECT_EQ(f.loss.item(), 0.0);
    Tensor d = kernels::cross_entropy_backward(full({}, 1.0, dt, kGpu), logits, targets, f.lse, kIgnore, Tensor());
    for (double v : d.to_vector<double>()) EXPECT_EQ(v, 0.0);
    // No tokens at all: loss 0 too, as on the CPU.
    Tensor none = empty({0, 9}, dt, kGpu);
    EXPECT_EQ(kernels::cross_entropy_forward(none, empty({0}, DType::i64, kGpu), kIgnore, Tensor()).loss.item(), 0.0);
  }
}

TEST_F(Cuda, CrossEntropyReportsBadTargetsAndWeightsAsTheCpu) {
  Generator gen(test_seed());
  const int64_t T = 3000, V = 8;
  Tensor logits = randn({T, V}, gen);
  std::vector<int64_t> t = randint({T}, 0, V, gen).to_vector<int64_t>();
  t[1234] = 9;  // the first bad position; a later one must not win
  t[2500] = -3;
  t[7] = kIgnore;
  Tensor targets = from_vector<int64_t>(t, {T});
  std::vector<float> w(T, 1.0f);
  w[700] = -0.5f;  // a bad weight before the bad target
  Tensor weight = from_vector<float>(w, {T});
  for (DType index : {DType::i64, DType::i32}) {
    Tensor tc = targets.to(index), tg = tc.to(kGpu);
    const std::string cpu_msg = error_of([&] { kernels::cross_entropy_forward(logits, tc, kIgnore, Tensor()); });
    EXPECT_EQ(cpu_msg, "[cross_entropy] target 9 at position 1234 is out of range for 8 classes");
    EXPECT_EQ(error_of([&] { kernels::cross_entropy_forward(logits.to(kGpu), tg, kIgnore, Tensor()); }), cpu_msg);
    Tensor lse = kernels::cross_entropy_forward(logits.to(kGpu), full({T}, 0.0, index, kGpu), kIgnore, Tensor()).lse;
    EXPECT_EQ(error_of([&] {
                kernels::cross_entropy_backward(full({}, 1.0, DType::f32, kGpu), logits.to(kGpu), tg, lse, kIgnore,
                                                Tensor());
              }),
              cpu_msg);
    const std::string weight_msg = error_of([&] { kernels::cross_entropy_forward(logits, tc, kIgnore, weight); });
    EXPECT_EQ(weight_msg, "[cross_entropy] weight -0.5 at position 700 must be >= 0");
    EXPECT_EQ(error_of([&] { kernels::cross_entropy_forward(logits.to(kGpu), tg, kIgnore, weight.to(kGpu)); }),
              weight_msg);
  }
}

TEST_F(Cuda, CrossEntropyRejectsMixedDevices) {
  Generator gen(test_seed());
  Tensor logits = randn({4, 5}, gen).to(kGpu);
  Tensor targets = randint({4}, 0, 5, gen);
  expect_error([&] { kernels::cross_entropy_forward(logits, targets, kIgnore, Tensor()); },
               "[cross_entropy] targets is on cpu but logits is on cuda:0");
  Tensor tg = targets.to(kGpu);
  expect_error([&] { kernels::cross_entropy_forward(logits, tg, kIgnore, ones({4})); },
               "[cross_entropy] weight is on cpu but logits is on cuda:0");
  Tensor lse = kernels::cross_entropy_forward(logits, tg, kIgnore, Tensor()).lse;
  expect_error([&] { kernels::cross_entropy_backward(scalar_tensor(1.0), logits, tg, lse, kIgnore, Tensor()); },
               "[cross_entropy] dloss is on cpu but logits is on cuda:0");
}

// ---- rms_norm ----

const std::vector<Shape> kRmsShapes = {{5, 1},    {9, 7},      {13, 33},   {37, 1000}, {11, 4099}, {2, 3, 2048},
                                       {1000, 64}, {3000, 16}, {4, 12288}, {3, 50257}, {7}};

TEST_F(Cuda, RmsNormMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const Shape& shape : kRmsShapes) {
    const int64_t D = shape.back(), rows = shape_numel(shape) / D;
    // With D = 1, dx = rstd dy w eps / (x^2 + eps) is a cancellation of two nearly equal terms: with a
    // tiny eps no f32 evaluation comes within 1e-5 of the f64 one (seen: 2e-3), so that row uses eps = 1.
    const double eps = D == 1 ? 1.0 : 1e-5;
    SCOPED_TRACE("rms_norm " + shape_str(shape));
    std::printf("rms_norm %s\n", shape_str(shape).c_str());
    Tensor x = randn(shape, gen, DType::f64, 0.0, 2.0), dy = randn(shape, gen, DType::f64);
    Tensor w = randn({D}, gen, DType::f64, 1.0, 0.5);
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor xr = x.to(dt).to(DType::f64), dyr = dy.to(dt).to(DType::f64), wr = w.to(dt).to(DType::f64);
      kernels::RmsNormForward ref = kernels::rms_norm_forward(xr, wr, eps);
      kernels::RmsNormBackward bref = kernels::rms_norm_backward(dyr, xr, wr, ref.rstd);
      Tensor xd = x.to(dt).to(kGpu), dyd = dy.to(dt).to(kGpu), wd = w.to(dt).to(kGpu);
      kernels::RmsNormForward got = kernels::rms_norm_forward(xd, wd, eps);
      expect_close("y", got.y, ref.y, dt, D);
      expect_close("rstd", got.rstd, ref.rstd, dt, D);
      kernels::RmsNormBackward bgot = kernels::rms_norm_backward(dyd, xd, wd, got.rstd);
      expect_close("dx", bgot.dx, bref.dx, dt, D);
      expect_close("dweight", bgot.dweight, bref.dweight, dt, std::max(D, rows));
      Tensor xm = misaligned_copy(x.to(dt)), dym = misaligned_copy(dy.to(dt));
      expect_close("y, misaligned view", kernels::rms_norm_forward(xm, wd, eps).y, ref.y, dt, D);
      kernels::RmsNormBackward bm = kernels::rms_norm_backward(dym, xm, wd, got.rstd);
      expect_close("dx, misaligned view", bm.dx, bref.dx, dt, D);
      expect_close("dweight, misaligned view", bm.dweight, bref.dweight, dt, std::max(D, rows));
    }
  }
}

TEST_F(Cuda, RmsNormRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const Shape& shape : std::vector<Shape>{{4096, 2048}, {20000, 64}, {9, 12288}}) {
    SCOPED_TRACE(shape_str(shape));
    Tensor x = randn(shape, gen).to(kGpu), dy = randn(shape, gen).to(kGpu);
    Tensor w = randn({shape.back()}, gen, DType::f32, 1.0, 0.5).to(kGpu);
    kernels::RmsNormForward a = kernels::rms_norm_forward(x, w, 1e-5), b = kernels::rms_norm_forward(x, w, 1e-5);
    EXPECT_TRUE(same_bits(a.y, b.y));
    EXPECT_TRUE(same_bits(a.rstd, b.rstd));
    kernels::RmsNormBackward c = kernels::rms_norm_backward(dy, x, w, a.rstd);
    kernels::RmsNormBackward d = kernels::rms_norm_backward(dy, x, w, a.rstd);
    EXPECT_TRUE(same_bits(c.dx, d.dx));
    EXPECT_TRUE(same_bits(c.dweight, d.dweight));
  }
}

TEST_F(Cuda, RmsNormRejectsMixedDevices) {
  Generator gen(test_seed());
  Tensor x = randn({3, 8}, gen).to(kGpu);
  expect_error([&] { kernels::rms_norm_forward(x, ones({8}), 1e-5); }, "[rms_norm] weight is on cpu but x is on cuda:0");
  Tensor w = ones({8}, DType::f32, kGpu);
  kernels::RmsNormForward f = kernels::rms_norm_forward(x, w, 1e-5);
  expect_error([&] { kernels::rms_norm_backward(randn({3, 8}, gen), x, w, f.rstd); },
               "[rms_norm] dy is on cpu but x is on cuda:0");
  expect_error([&] { kernels::rms_norm_backward(f.y, x, w, f.rstd.to(kCpu)); },
               "[rms_norm] rstd is on cpu but x is on cuda:0");
}

}  // namespace
}  // namespace mom

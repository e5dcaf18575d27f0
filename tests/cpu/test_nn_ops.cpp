// Fused nn ops: softmax, log_softmax, cross_entropy, embedding, rms_norm against naive formulas (f64
// and f32, relative errors printed) and against composites of simple differentiable ops; ignored and
// masked tokens; determinism; bad input; and the registered gradient checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/rms_norm.h"
#include "kernels/softmax.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::expect_error;
using test::leaf;
using test::rel_error;


// Naive softmax / log_softmax of a (outer, n, inner) view in double, straight from the definition.
Tensor naive_softmax(const Tensor& x, int64_t dim, bool log_output) {
  std::vector<double> v = x.to_vector<double>(), out(v.size());
  int64_t n = x.size(dim), outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < inner; ++k) {
      auto at = [&](int64_t i) { return o * n * inner + i * inner + k; };
      double m = v[at(0)];
      for (int64_t i = 1; i < n; ++i) m = std::max(m, v[at(i)]);
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(v[at(i)] - m);
      for (int64_t i = 0; i < n; ++i)
        out[at(i)] = log_output ? v[at(i)] - m - std::log(s) : std::exp(v[at(i)] - m) / s;
    }
  return from_vector<double>(out, x.shape());
}

// Naive rms_norm in double.
Tensor naive_rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  std::vector<double> v = x.to_vector<double>(), w = weight.to_vector<double>(), out(v.size());
  int64_t D = x.size(-1), rows = x.numel() / D;
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += v[r * D + i] * v[r * D + i];
    double rstd = 1.0 / std::sqrt(ss / D + eps);
    for (int64_t i = 0; i < D; ++i) out[r * D + i] = v[r * D + i] * rstd * w[i];
  }
  return from_vector<double>(out, x.shape());
}

void report(const char* what, DType dt, double err) {
  std::printf("  %-44s %-8s rel err %.3e\n", what, dtype_name(dt), err);
}

double tol(DType dt) { return dt == DType::f64 ? 1e-13 : 2e-6; }

TEST(NnOps, SoftmaxAndLogSoftmaxMatchNaiveFormula) {
  Generator gen(1);
  struct Case { Shape shape; int64_t dim; };
  const Case cases[] = {{{6, 37}, -1}, {{3, 6, 5}, 1}, {{4, 3, 2}, 0}, {{1}, 0}};
  for (DType dt : {DType::f64, DType::f32})
    for (const Case& c : cases) {
      Tensor x = randn(c.shape, gen, DType::f64, 0, 3).to(dt);
      int64_t d = c.dim < 0 ? c.dim + static_cast<int64_t>(c.shape.size()) : c.dim;
      double e1 = rel_error(softmax(x, c.dim), naive_softmax(x, d, false));
      double e2 = rel_error(log_softmax(x, c.dim), naive_softmax(x, d, true));
      report(("softmax " + shape_str(c.shape) + " dim " + std::to_string(c.dim)).c_str(), dt, e1);
      report(("log_softmax " + shape_str(c.shape) + " dim " + std::to_string(c.dim)).c_str(), dt, e2);
      EXPECT_LT(e1, tol(dt));
      EXPECT_LT(e2, tol(dt));
    }
}

TEST(NnOps, SoftmaxIsStableForHugeLogits) {
  Tensor x = from_vector<float>({1000.f, 1001.f, 999.f, -1000.f, -1e30f, 88.f}, {2, 3});
  for (float v : softmax(x, 1).to_vector<float>()) EXPECT_TRUE(std::isfinite(v));
  for (float v : log_softmax(x, 1).to_vector<float>()) EXPECT_TRUE(std::isfinite(v));
  std::vector<float> y = softmax(x, 1).to_vector<float>();
  EXPECT_NEAR(y[0] + y[1] + y[2], 1.0f, 1e-6f);
  EXPECT_NEAR(y[1], 1.0 / (1.0 + std::exp(-1.0) + std::exp(-2.0)), 1e-6);
}

// The backward kernels in f32 against the f64 ones on the same data.
TEST(NnOps, SoftmaxBackwardF32MatchesF64) {
  Generator gen(2);
  for (bool log_output : {false, true}) {
    Tensor x = randn({5, 4, 33}, gen, DType::f64, 0, 2), dy = randn({5, 4, 33}, gen, DType::f64);
    for (int64_t dim : {1, 2}) {
      auto run = [&](DType dt) {
        Tensor xl = leaf(x.to(dt));
        Tensor y = log_output ? log_softmax(xl, dim) : softmax(xl, dim);
        backward(y, dy.to(dt));
        return xl.grad();
      };
      double err = rel_error(run(DType::f32), run(DType::f64));
      report(log_output ? "log_softmax backward f32 vs f64" : "softmax backward f32 vs f64", DType::f32, err);
      EXPECT_LT(err, 2e-6);
    }
  }
}

// The composite: loss = -sum_t w_t * gather(log_softmax(logits), 1, target)_t / sum_t w_t, with
// ignored targets replaced by 0 and given weight 0.
Tensor composite_cross_entropy(const Tensor& logits, const std::vector<int64_t>& targets, int64_t ignore_index,
                               const std::vector<double>& weight) {
  std::vector<int64_t> safe(targets);
  std::vector<double> w(weight);
  double total = 0;
  for (size_t t = 0; t < targets.size(); ++t) {
    if (targets[t] == ignore_index) safe[t] = 0, w[t] = 0;
    total += w[t];
  }
  const int64_t T = static_cast<int64_t>(targets.size());
  Tensor picked = gather(log_softmax(logits, 1), 1, from_vector<int64_t>(safe, {T, 1}));  // (T, 1)
  Tensor wt = from_vector<double>(w, {T, 1}).to(logits.dtype());
  return sum(picked * wt) * (-1.0 / total);
}

TEST(NnOps, CrossEntropyMatchesLogSoftmaxGather) {
  Generator gen(3);
  const int64_t T = 40, V = 23;
  std::vector<int64_t> targets = randint({T}, 0, V, gen).to_vector<int64_t>();
  targets[3] = targets[17] = targets[30] = -100;
  std::vector<double> w(T);
  for (double& x : w) x = gen.uniform() * 2;
  w[5] = 0;
  Tensor logits64 = randn({T, V}, gen, DType::f64, 0, 3);
  for (DType dt : {DType::f64, DType::f32})
    for (bool weighted : {false, true}) {
      Tensor a = leaf(logits64.to(dt)), b = leaf(logits64.to(dt));
      CrossEntropyOptions opts;
      if (weighted) opts.weight = from_vector<double>(w, {T}).to(dt);
      Tensor loss = cross_entropy(a, from_vector<int64_t>(targets, {T}), opts);
      Tensor ref = composite_cross_entropy(b, targets, -100, weighted ? w : std::vector<double>(T, 1.0));
      backward(loss);
      backward(ref);
      double ev = rel_error(loss, ref), eg = rel_error(a.grad(), b.grad());
      report(weighted ? "cross_entropy weighted loss vs composite" : "cross_entropy loss vs composite", dt, ev);
      report(weighted ? "cross_entropy weighted dlogits vs composite" : "cross_entropy dlogits vs composite", dt, eg);
      EXPECT_LT(ev, tol(dt));
      EXPECT_LT(eg, dt == DType::f64 ? 1e-12 : 1e-5);
    }
}

TEST(NnOps, CrossEntropyNaiveValueAndInt32Targets) {
  // Two tokens, V = 3: loss = mean of (lse_t - x[t, target_t]).
  Tensor logits = from_vector<double>({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor targets = from_vector<int32_t>({2, 1}, {2});
  double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), lse1 = std::log(3.0);
  double expected = ((lse0 - 3) + (lse1 - 0)) / 2;
  EXPECT_NEAR(cross_entropy(logits, targets).item(), expected, 1e-15);
}

TEST(NnOps, CrossEntropyStableForHugeLogits) {
  Tensor logits = leaf(from_vector<float>({1e4f, -1e4f, 0.f, 3e4f, 3e4f, 3e4f}, {2, 3}));
  Tensor loss = cross_entropy(logits, from_vector<int64_t>({1, 0}, {2}));
  EXPECT_NEAR(loss.item(), (2e4 + std::log(3.0)) / 2, 1e-2);
  backward(loss);
  for (float g : logits.grad().to_vector<float>()) EXPECT_TRUE(std::isfinite(g));
}

TEST(NnOps, CrossEntropyNothingCountedGivesZeroLossAndZeroGrad) {
  Generator gen(4);
  Tensor logits = leaf(randn({4, 5}, gen, DType::f32));
  Tensor loss = cross_entropy(logits, full({4}, -100, DType::i64));
  EXPECT_EQ(loss.item(), 0.0);
  backward(loss);
  ASSERT_TRUE(logits.grad().defined());
  for (float g : logits.grad().to_vector<float>()) EXPECT_EQ(g, 0.0f);
  // A mask of zeros counts nothing either.
  logits.zero_grad();
  CrossEntropyOptions opts;
  opts.weight = zeros({4}, DType::f32);
  Tensor masked = cross_entropy(logits, from_vector<int64_t>({0, 1, 2, 3}, {4}), opts);
  EXPECT_EQ(masked.item(), 0.0);
  backward(masked);
  for (float g : logits.grad().to_vector<float>()) EXPECT_EQ(g, 0.0f);
  // No token at all.
  EXPECT_EQ(cross_entropy(zeros({0, 5}), zeros({0}, DType::i64)).item(), 0.0);
}

TEST(NnOps, CrossEntropyIgnoredRowsGetNoGradient) {
  Generator gen(5);
  Tensor logits = leaf(randn({3, 4}, gen, DType::f64));
  CrossEntropyOptions opts;
  opts.ignore_index = 2;  // an ignore_index inside [0, V) is allowed
  backward(cross_entropy(logits, from_vector<int64_t>({1, 2, 3}, {3}), opts));
  std::vector<double> g = logits.grad().to_vector<double>();
  for (int v = 0; v < 4; ++v) EXPECT_EQ(g[4 + v], 0.0);
  double row0 = 0;
  for (int v = 0; v < 4; ++v) row0 += g[v];
  EXPECT_NEAR(row0, 0.0, 1e-15);  // softmax - onehot sums to 0 over a row
}

TEST(NnOps, CrossEntropyBackwardIsDeterministic) {
  Generator gen(6);
  const int64_t T = 64, V = 1000;  // T * V above the OpenMP threshold
  Tensor logits = randn({T, V}, gen, DType::f32);
  Tensor targets = randint({T}, 0, V, gen, DType::i32);
  auto run = [&] {
    Tensor l = leaf(logits);
    Tensor loss = cross_entropy(l, targets);
    backward(loss);
    return std::make_pair(loss.item(), l.grad().to_vector<float>());
  };
  auto a = run(), b = run();
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
}

TEST(NnOps, EmbeddingGathersRowsAndScatterAddsGradient) {
  Generator gen(7);
  for (DType dt : {DType::f64, DType::f32}) {
    const int64_t V = 50, D = 96;
    Tensor weight = leaf(randn({V, D}, gen, DType::f64).to(dt));
    Tensor ids = randint({4, 100}, 0, V, gen, DType::i32);  // 400 ids into 50 rows: many repeats
    Tensor y = embedding(ids, weight);
    ASSERT_EQ(y.shape(), (Shape{4, 100, D}));
    std::vector<int64_t> id = ids.to_vector<int64_t>();
    std::vector<double> w = weight.to_vector<double>(), yv = y.to_vector<double>();
    for (size_t p = 0; p < id.size(); ++p)
      for (int64_t d = 0; d < D; ++d) ASSERT_EQ(yv[p * D + d], w[id[p] * D + d]);
    Tensor dy = randn({4, 100, D}, gen, DType::f64).to(dt);
    backward(y, dy);
    std::vector<double> g = dy.to_vector<double>(), ref(V * D, 0.0);
    for (size_t p = 0; p < id.size(); ++p)
      for (int64_t d = 0; d < D; ++d) ref[id[p] * D + d] += g[p * D + d];
    double err = rel_error(weight.grad(), from_vector<double>(ref, {V, D}));
    report("embedding dweight vs naive scatter-add", dt, err);
    EXPECT_LT(err, tol(dt));
    // Bit-identical on a second run.
    Tensor again = kernels::embedding_backward(dy, ids, V);
    EXPECT_EQ(again.to_vector<double>(), weight.grad().to_vector<double>());
  }
}

TEST(NnOps, EmbeddingUntouchedRowsGetZeroGradient) {
  Tensor weight = leaf(ones({4, 2}, DType::f64));
  backward(embedding(from_vector<int64_t>({2, 2}, {2}), weight), ones({2, 2}, DType::f64));
  EXPECT_EQ(weight.grad().to_vector<double>(), (std::vector<double>{0, 0, 0, 0, 2, 2, 0, 0}));
}

TEST(NnOps, RmsNormMatchesNaiveFormula) {
  Generator gen(8);
  for (DType dt : {DType::f64, DType::f32})
    for (const Shape& shape : {Shape{7, 64}, Shape{2, 3, 5}, Shape{9}}) {
      Tensor x = randn(shape, gen, DType::f64, 0, 2).to(dt);
      Tensor w = rand({shape.back()}, gen, DType::f64, 0.5, 1.5).to(dt);
      double err = rel_error(rms_norm(x, w, 1e-5), naive_rms_norm(x, w, 1e-5));
      report(("rms_norm " + shape_str(shape)).c_str(), dt, err);
      EXPECT_LT(err, tol(dt));
    }
}

TEST(NnOps, RmsNormMatchesElementwiseComposite) {
  Generator gen(9);
  Tensor x64 = randn({6, 4, 48}, gen, DType::f64), w64 = rand({48}, gen, DType::f64, 0.5, 1.5);
  Tensor dy64 = randn({6, 4, 48}, gen, DType::f64);
  const double eps = 1e-5;
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor xa = leaf(x64.to(dt)), wa = leaf(w64.to(dt)), xb = leaf(x64.to(dt)), wb = leaf(w64.to(dt));
    Tensor fused = rms_norm(xa, wa, eps);
    Tensor composite = xb * pow(mean(xb * xb, {-1}, true) + eps, -0.5) * wb;
    backward(fused, dy64.to(dt));
    backward(composite, dy64.to(dt));
    double ey = rel_error(fused, composite), ex = rel_error(xa.grad(), xb.grad()), ew = rel_error(wa.grad(), wb.grad());
    report("rms_norm y vs composite", dt, ey);
    report("rms_norm dx vs composite", dt, ex);
    report("rms_norm dweight vs composite", dt, ew);
    EXPECT_LT(ey, tol(dt));
    EXPECT_LT(ex, dt == DType::f64 ? 1e-12 : 1e-5);
    EXPECT_LT(ew, dt == DType::f64 ? 1e-12 : 1e-5);
  }
}

TEST(NnOps, RmsNormBackwardIsDeterministic) {
  Generator gen(10);
  Tensor x = randn({300, 200}, gen, DType::f32), w = randn({200}, gen, DType::f32), dy = randn({300, 200}, gen, DType::f32);
  kernels::RmsNormForward f = kernels::rms_norm_forward(x, w, 1e-5);
  kernels::RmsNormBackward a = kernels::rms_norm_backward(dy, x, w, f.rstd);
  kernels::RmsNormBackward b = kernels::rms_norm_backward(dy, x, w, f.rstd);
  EXPECT_EQ(a.dx.to_vector<float>(), b.dx.to_vector<float>());
  EXPECT_EQ(a.dweight.to_vector<float>(), b.dweight.to_vector<float>());
  EXPECT_EQ(f.rstd.shape(), (Shape{300}));
}

TEST(NnOps, BadInputsThrowBracketedErrors) {
  Tensor logits = zeros({4, 8});
  try {
    cross_entropy(logits, from_vector<int64_t>({0, 1, 2, 9}, {4}));
    ADD_FAILURE() << "no error for an out-of-range target";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[cross_entropy] target 9 at position 3 is out of range for 8 classes");
  }
  expect_error([&] { cross_entropy(logits, from_vector<int32_t>({0, -1, 2, 3}, {4})); }, "[cross_entropy] target -1");
  expect_error([&] { cross_entropy(zeros({2, 4, 8}), zeros({2, 4}, DType::i64)); }, "[cross_entropy] logits must have 2");
  expect_error([&] { cross_entropy(logits, zeros({4, 1}, DType::i64)); }, "[cross_entropy] targets has shape");
  expect_error([&] { cross_entropy(logits, zeros({4}, DType::f32)); }, "[cross_entropy] targets must be int32");
  CrossEntropyOptions opts;
  opts.weight = ones({4}, DType::f64);
  expect_error([&] { cross_entropy(logits, zeros({4}, DType::i64), opts); }, "[cross_entropy] weight must be float32 beside float32 logits, got float64");
  opts.weight = from_vector<float>({1, -1, 1, 1}, {4});
  expect_error([&] { cross_entropy(logits, zeros({4}, DType::i64), opts); }, "[cross_entropy] weight -1 at position 1");
  opts.weight = leaf(ones({4}));
  expect_error([&] { cross_entropy(logits, zeros({4}, DType::i64), opts); }, "[cross_entropy] weight is a constant");

  Tensor table = zeros({10, 3});
  expect_error([&] { embedding(from_vector<int64_t>({1, 10}, {2}), table); }, "[embedding] id 10 at position 1");
  expect_error([&] { embedding(from_vector<int32_t>({-2}, {1}), table); }, "[embedding] id -2 at position 0");
  expect_error([&] { embedding(zeros({2}, DType::f32), table); }, "[embedding] ids must be int32");
  expect_error([&] { embedding(zeros({2}, DType::i64), zeros({10})); }, "[embedding] weight must have 2");

  expect_error([&] { rms_norm(zeros({2, 5}), zeros({5}, DType::f64)); }, "[rms_norm] weight must be float32 beside float32 x, got float64");
  expect_error([&] { rms_norm(zeros({2, 5}), zeros({4})); }, "[rms_norm] weight has 4 elements");
  expect_error([&] { rms_norm(zeros({2, 5}), zeros({1, 5})); }, "[rms_norm] weight must have 1");
  expect_error([&] { rms_norm(zeros({2, 5}), zeros({5}), -1.0); }, "[rms_norm] eps");
  expect_error([&] { softmax(zeros({2, 3}), 2); }, "[softmax] dim 2");
  expect_error([&] { log_softmax(zeros({2, 3}, DType::i64), 1); }, "[log_softmax] x must be float32");

  // Kernels take contiguous inputs only; the autograd functions make them contiguous first.
  Tensor strided = zeros({8, 4}).transpose(0, 1);  // (4, 8), not contiguous
  auto expect_contiguous_error = [](auto f, const std::string& op) {
    try {
      f();
      ADD_FAILURE() << "no error for a non-contiguous input to " << op;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.rfind("[" + op + "]", 0), 0u) << msg;
      EXPECT_NE(msg.find("must be contiguous"), std::string::npos) << msg;
    }
  };
  expect_contiguous_error([&] { kernels::softmax_forward(strided, 1); }, "softmax");
  expect_contiguous_error([&] { kernels::log_softmax_forward(strided, 1); }, "log_softmax");
  expect_contiguous_error([&] { kernels::cross_entropy_forward(strided, zeros({4}, DType::i64), -100, Tensor()); },
                          "cross_entropy");
  expect_contiguous_error([&] { kernels::embedding_forward(zeros({2}, DType::i64), strided); }, "embedding");
  expect_contiguous_error([&] { kernels::rms_norm_forward(strided, zeros({8}), 1e-5); }, "rms_norm");
  EXPECT_NEAR(softmax(strided, 1).to_vector<float>()[0], 1.0 / 8, 1e-7);
}

TEST(NnOps, RegisteredGradchecksPass) {
  const std::set<std::string> ops = {"softmax", "log_softmax", "cross_entropy", "embedding", "rms_norm"};
  int checked = 0;
  for (const autograd::GradcheckCase& c : autograd::GradcheckRegistry::instance().cases()) {
    if (!ops.count(c.op)) continue;
    Generator gen(11);
    autograd::GradcheckProblem p = c.make(gen);
    for (const autograd::GradcheckRow& r : autograd::gradcheck(p.fn, p.inputs, p.names, p.opts)) {
      EXPECT_TRUE(r.ok) << c.op << " " << c.variant << " " << r.input << ": max abs err " << r.max_abs_err;
      EXPECT_GT(r.compared, 0);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 10);
}

}  // namespace
}  // namespace mom

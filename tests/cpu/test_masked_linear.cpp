// Routing and masked_linear: the counting sort, forward and backward against a reference that runs
// every expert densely over all tokens and then selects each token's row (f32 and f64 kernels), finite
// differences, undefined gradients for absent experts, shared experts, bad input.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/masked_linear.h"
#include "kernels/index.h"
#include "kernels/masked_linear.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::expect_error;
using test::rel_error;

TEST(Routing, CountsOffsetsAndStablePermutation) {
  for (DType dt : {DType::i32, DType::i64}) {
    Tensor ids = from_vector<int32_t>({2, 0, 2, 1, 0, 0}, {6}).to(dt);
    Routing r = Routing::from_modalities(ids, 4);
    EXPECT_EQ(r.num_modalities, 4);
    EXPECT_EQ(r.num_tokens(), 6);
    EXPECT_EQ(r.counts, (std::vector<int64_t>{3, 1, 2, 0}));
    EXPECT_EQ(r.offsets, (std::vector<int64_t>{0, 3, 4, 6, 6}));
    EXPECT_EQ(r.perm.to_vector<int64_t>(), (std::vector<int64_t>{1, 4, 5, 3, 0, 2}));
    EXPECT_EQ(r.inverse.to_vector<int64_t>(), (std::vector<int64_t>{4, 0, 5, 3, 1, 2}));
  }
  Routing empty_batch = Routing::from_modalities(zeros({0}, DType::i32), 2);
  EXPECT_EQ(empty_batch.offsets, (std::vector<int64_t>{0, 0, 0}));
}

TEST(Routing, BadInput) {
  std::vector<int32_t> v(16, 1);
  v[12] = 5;
  expect_error([&] { Routing::from_modalities(from_vector<int32_t>(v, {16}), 3); },
               "[routing] modality id 5 at token 12 is outside [0, 3)");
  expect_error([] { Routing::from_modalities(from_vector<int32_t>({0, -1}, {2}), 3); },
               "[routing] modality id -1 at token 1 is outside [0, 3)");
  expect_error([] { Routing::from_modalities(zeros({4}), 3); }, "[routing] indices must be int32 or int64");
  expect_error([] { Routing::from_modalities(zeros({2, 2}, DType::i32), 3); }, "[routing] ids must be (T)");
  expect_error([] { Routing::from_modalities(zeros({4}, DType::i32), 0); }, "[routing] the number of modalities M");
}

struct Problem {
  std::vector<int32_t> ids;
  int64_t M, In, Out;
  bool bias;
  Tensor x, dy;
  std::vector<Tensor> weight, b;
};

Problem make_problem(std::vector<int32_t> ids, int64_t M, int64_t In, int64_t Out, bool bias, DType dt, uint64_t seed) {
  Generator gen(seed);
  Problem p{std::move(ids), M, In, Out, bias, {}, {}, {}, {}};
  const int64_t T = static_cast<int64_t>(p.ids.size());
  p.x = randn({T, In}, gen, dt);
  p.dy = randn({T, Out}, gen, dt);
  for (int64_t m = 0; m < M; ++m) p.weight.push_back(randn({Out, In}, gen, dt, 0, 0.3));
  for (int64_t m = 0; bias && m < M; ++m) p.b.push_back(randn({Out}, gen, dt));
  return p;
}

// The reference: every expert over all tokens (M dense products in f64), then each token's own row.
struct Reference {
  std::vector<double> y, dx;
  std::vector<std::vector<double>> dweight, dbias;  // per expert, zeros where an expert saw no token
};

Reference reference(const Problem& p) {
  const int64_t T = static_cast<int64_t>(p.ids.size()), In = p.In, Out = p.Out;
  std::vector<double> x = p.x.to_vector<double>(), dy = p.dy.to_vector<double>();
  Reference r;
  r.y.assign(T * Out, 0);
  r.dx.assign(T * In, 0);
  for (int64_t m = 0; m < p.M; ++m) {
    std::vector<double> w = p.weight[m].to_vector<double>();
    std::vector<double> b = p.bias ? p.b[m].to_vector<double>() : std::vector<double>(Out, 0.0);
    std::vector<double> y_all(T * Out), dx_all(T * In, 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < Out; ++o) {
        double s = b[o];
        for (int64_t i = 0; i < In; ++i) s += x[t * In + i] * w[o * In + i];
        y_all[t * Out + o] = s;
        for (int64_t i = 0; i < In; ++i) dx_all[t * In + i] += dy[t * Out + o] * w[o * In + i];
      }
    std::vector<double> dw(Out * In, 0.0), db(Out, 0.0);
    for (int64_t t = 0; t < T; ++t) {
      if (p.ids[t] != m) continue;
      for (int64_t o = 0; o < Out; ++o) {
        r.y[t * Out + o] = y_all[t * Out + o];
        db[o] += dy[t * Out + o];
        for (int64_t i = 0; i < In; ++i) dw[o * In + i] += dy[t * Out + o] * x[t * In + i];
      }
      for (int64_t i = 0; i < In; ++i) r.dx[t * In + i] = dx_all[t * In + i];
    }
    r.dweight.push_back(dw);
    r.dbias.push_back(db);
  }
  return r;
}

double rel_error_vec(const Tensor& a, const std::vector<double>& ref) {
  return rel_error(a, from_vector<double>(ref, a.shape()));
}

struct LinearShape {
  int64_t T, In, Out, M, absent;
  bool bias;
};

TEST(MaskedLinear, ForwardAndBackwardMatchDenseSelectReference) {
  const LinearShape shapes[] = {
      {37, 19, 23, 3, -1, true}, {37, 19, 23, 3, 1, true}, {16, 8, 5, 1, -1, true},
      {29, 7, 11, 4, 0, false},  {700, 64, 48, 3, -1, true},  // T*In > 32768: the OpenMP paths
  };
  for (DType dt : {DType::f64, DType::f32}) {
    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
    for (const LinearShape& s : shapes) {
      Generator id_gen(s.T + s.M);
      Problem p = make_problem(test::uneven_ids(s.T, s.M, s.absent, false, id_gen), s.M, s.In, s.Out, s.bias, dt,
                               s.T * 7 + s.M);
      Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {s.T}), s.M);
      Reference r = reference(p);
      Tensor y = kernels::masked_linear_forward(p.x, routing, p.weight, p.b);
      kernels::MaskedLinearGrads g = kernels::masked_linear_backward(p.dy, p.x, routing, p.weight, s.bias, true, true);
      double ey = rel_error_vec(y, r.y), edx = rel_error_vec(g.dx, r.dx), edw = 0, edb = 0;
      for (int64_t m = 0; m < s.M; ++m) {
        bool present = routing.counts[m] > 0;
        EXPECT_EQ(g.dweight[m].defined(), present) << "expert " << m;
        if (s.bias) {
          EXPECT_EQ(g.dbias[m].defined(), present) << "expert " << m;
        }
        if (!present) continue;
        edw = std::max(edw, rel_error_vec(g.dweight[m], r.dweight[m]));
        if (s.bias) edb = std::max(edb, rel_error_vec(g.dbias[m], r.dbias[m]));
      }
      EXPECT_EQ(g.dbias.size(), s.bias ? static_cast<size_t>(s.M) : 0u);
      std::printf("  %s T=%lld In=%lld Out=%lld M=%lld absent=%lld: y %.1e dx %.1e dweight %.1e dbias %.1e\n",
                  dtype_name(dt), (long long)s.T, (long long)s.In, (long long)s.Out, (long long)s.M,
                  (long long)s.absent, ey, edx, edw, edb);
      EXPECT_LT(ey, tol);
      EXPECT_LT(edx, tol);
      EXPECT_LT(edw, tol);
      EXPECT_LT(edb, tol);
    }
  }
}

TEST(MaskedLinear, GradcheckAllCases) {
  int n = 0;
  for (const autograd::GradcheckCase& c : autograd::GradcheckRegistry::instance().cases()) {
    if (c.op != "masked_linear" && c.op != "masked_linear_split") continue;
    Generator gen(200 + n++);
    autograd::GradcheckProblem p = c.make(gen);
    for (const autograd::GradcheckRow& row : autograd::gradcheck(p.fn, p.inputs, p.names, p.opts))
      EXPECT_TRUE(row.ok) << c.variant << " " << row.input << ": abs " << row.max_abs_err << " rel " << row.max_rel_err;
  }
  EXPECT_GE(n, 7);
}

Tensor leaf(const Tensor& data) {
  Tensor t = data.detach().clone();
  t.set_requires_grad(true);
  return t;
}

TEST(MaskedLinear, AbsentExpertKeepsUndefinedGrad) {
  Problem p = make_problem({0, 2, 2, 0, 2, 0}, 3, 4, 5, true, DType::f64, 1);
  Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {6}), 3);
  Tensor x = leaf(p.x);
  std::vector<Tensor> w, b;
  for (int m = 0; m < 3; ++m) {
    w.push_back(leaf(p.weight[m]));
    b.push_back(leaf(p.b[m]));
  }
  Tensor y = masked_linear(x, routing, w, b);
  backward(y, p.dy);
  Reference r = reference(p);
  EXPECT_LT(rel_error_vec(x.grad(), r.dx), 1e-12);
  for (int m : {0, 2}) {
    EXPECT_LT(rel_error_vec(w[m].grad(), r.dweight[m]), 1e-12);
    EXPECT_LT(rel_error_vec(b[m].grad(), r.dbias[m]), 1e-12);
  }
  EXPECT_FALSE(w[1].grad().defined());
  EXPECT_FALSE(b[1].grad().defined());
}

TEST(MaskedLinear, OnlyRequestedGradientsAreComputed) {
  Problem p = make_problem({1, 0, 1}, 2, 3, 2, true, DType::f32, 2);
  Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {3}), 2);
  kernels::MaskedLinearGrads only_dx = kernels::masked_linear_backward(p.dy, p.x, routing, p.weight, true, true, false);
  EXPECT_TRUE(only_dx.dx.defined());
  EXPECT_FALSE(only_dx.dweight[0].defined());
  EXPECT_FALSE(only_dx.dbias[1].defined());
  kernels::MaskedLinearGrads only_params =
      kernels::masked_linear_backward(p.dy, p.x, routing, p.weight, true, false, true);
  EXPECT_FALSE(only_params.dx.defined());
  EXPECT_TRUE(only_params.dweight[1].defined());
  // Through autograd: x without requires_grad gets no gradient, the experts do.
  Tensor w0 = leaf(p.weight[0]), w1 = leaf(p.weight[1]);
  backward(masked_linear(p.x, routing, {w0, w1}), p.dy);
  EXPECT_FALSE(p.x.grad().defined());
  EXPECT_EQ(w0.grad().to_vector<float>(), only_params.dweight[0].to_vector<float>());
}

TEST(MaskedLinear, SharedExpertSumsGradients) {
  Problem p = make_problem({1, 0, 1, 1, 0}, 2, 3, 4, false, DType::f64, 3);
  Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {5}), 2);
  Tensor w = leaf(p.weight[0]);
  backward(masked_linear(p.x, routing, {w, w}), p.dy);
  // One shared expert is a plain linear: dW = dy^T x over all tokens.
  Problem dense = p;
  dense.M = 1;
  dense.ids.assign(5, 0);
  dense.weight = {p.weight[0]};
  EXPECT_LT(rel_error_vec(w.grad(), reference(dense).dweight[0]), 1e-12);
}

// The parts are the columns of the whole output; a part nobody uses contributes zeros to the backward.
TEST(MaskedLinear, SplitPartsAreColumnsOfTheOutput) {
  Problem p = make_problem({2, 0, 1, 1, 0, 2, 2}, 3, 4, 7, true, DType::f64, 4);
  Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {7}), 3);
  std::vector<Tensor> whole = kernels::split(kernels::masked_linear_forward(p.x, routing, p.weight, p.b), {2, 5}, 1);
  Tensor x = leaf(p.x);
  std::vector<Tensor> w, b;
  for (int m = 0; m < 3; ++m) {
    w.push_back(leaf(p.weight[m]));
    b.push_back(leaf(p.b[m]));
  }
  std::vector<Tensor> parts = masked_linear_split(x, routing, w, b, {2, 5});
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].shape(), (Shape{7, 2}));
  EXPECT_EQ(parts[0].to_vector<double>(), whole[0].to_vector<double>());
  EXPECT_EQ(parts[1].to_vector<double>(), whole[1].to_vector<double>());
  // Only the second part gets a gradient: the first counts as zeros.
  std::vector<Tensor> dy_parts = kernels::split(p.dy, {2, 5}, 1);
  backward(parts[1], dy_parts[1]);
  Tensor dy_masked = kernels::cat({zeros({7, 2}, DType::f64), dy_parts[1]}, 1);
  kernels::MaskedLinearGrads ref = kernels::masked_linear_backward(dy_masked, p.x, routing, p.weight, true, true, true);
  EXPECT_LT(rel_error(x.grad(), ref.dx), 1e-15);
  for (int m = 0; m < 3; ++m) {
    EXPECT_LT(rel_error(w[m].grad(), ref.dweight[m]), 1e-15) << "expert " << m;
    EXPECT_LT(rel_error(b[m].grad(), ref.dbias[m]), 1e-15) << "expert " << m;
  }
  EXPECT_EQ(w[0].grad().to_vector<double>()[0], 0.0);  // row 0 of an expert is part 0's: no gradient
  expect_error([&] { kernels::masked_linear_forward_split(p.x, routing, p.weight, p.b, {2, 4}); },
               "[masked_linear] split sizes sum to 6, the experts have 7 output rows");
  expect_error([&] { kernels::masked_linear_forward_split(p.x, routing, p.weight, p.b, {2, 0, 5}); },
               "[masked_linear] split sizes must be positive, got 0");
  expect_error([&] { kernels::masked_linear_forward_split(p.x, routing, p.weight, p.b, {1, 1, 1, 1, 3}); },
               "[masked_linear] split must have 1 to 4 parts, got 5");
  expect_error(
      [&] { kernels::masked_linear_backward_split({dy_parts[0], Tensor()}, p.x, routing, p.weight, true, true, true); },
      "[masked_linear] dy[1] is undefined");
  expect_error([&] { kernels::masked_linear_backward_split({dy_parts[0]}, p.x, routing, p.weight, true, true, true); },
               "[masked_linear] split sizes sum to 2, the experts have 7 output rows");
}

TEST(MaskedLinear, BadInput) {
  Routing r3 = Routing::from_modalities(from_vector<int32_t>({0, 1, 2, 1}, {4}), 3);
  std::vector<Tensor> w3(3, zeros({5, 128}));
  auto fwd = [&](const Tensor& x, const Routing& r, const std::vector<Tensor>& w, const std::vector<Tensor>& b) {
    return [=] { kernels::masked_linear_forward(x, r, w, b); };
  };
  expect_error(fwd(zeros({4, 96}), r3, w3, {}), "[masked_linear] x has 96 columns, weight[0] expects 128");
  expect_error(fwd(zeros({5, 128}), r3, w3, {}), "[masked_linear] x has 5 tokens (rows), the routing has 4");
  expect_error(fwd(zeros({4, 128}), r3, {zeros({5, 128}), zeros({5, 128})}, {}),
               "[masked_linear] got 2 expert weights for M = 3 modalities");
  expect_error(fwd(zeros({4, 128}), r3, {zeros({5, 128}), zeros({6, 128}), zeros({5, 128})}, {}),
               "[masked_linear] weight[1] has 6 rows (Out), weight[0] has 5");
  expect_error(fwd(zeros({4, 128}), r3, {zeros({5, 128}), zeros({5, 128}), zeros({5, 127})}, {}),
               "[masked_linear] x has 128 columns, weight[2] expects 127");
  expect_error(fwd(zeros({4, 128}), r3, w3, {zeros({5}), zeros({5})}), "[masked_linear] got 2 expert biases for M = 3");
  expect_error(fwd(zeros({4, 128}), r3, w3, {zeros({5}), zeros({4}), zeros({5})}),
               "[masked_linear] bias[1] has shape (4,), expected (5,)");
  expect_error(fwd(zeros({4, 128}, DType::f64), r3, w3, {}), "[masked_linear] weight[0] is float32 but x is float64");
  expect_error(fwd(zeros({4, 128}, DType::i32), r3, w3, {}), "[masked_linear] x must be float32, float64 or bfloat16, got int32");
  expect_error(fwd(zeros({4, 128, 1}), r3, w3, {}), "[masked_linear] x must be (T, In)");
  expect_error(fwd(zeros({128, 4}).transpose(0, 1), r3, w3, {}), "[masked_linear] x must be contiguous");
  expect_error(fwd(zeros({4, 128}), Routing{}, w3, {}), "[masked_linear] the routing is empty");
  expect_error([&] { kernels::masked_linear_backward(zeros({4, 6}), zeros({4, 128}), r3, w3, false, true, true); },
               "[masked_linear] dy has shape (4, 6), expected (4, 5)");
  Tensor x = leaf(zeros({4, 96}));
  expect_error([&] { masked_linear(x, r3, w3); }, "[masked_linear] x has 96 columns");
}

}  // namespace
}  // namespace mom

// causal_conv1d: forward and backward against a dense banded-matrix reference in f64 (f32 and f64
// kernels), finite differences, chunked and step-by-step calls against one call, determinism, bad input;
// rows in a routing's grouped order against the plain op, permuted.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "autograd/causal_conv1d.h"
#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "kernels/causal_conv1d.h"
#include "kernels/index.h"
#include "kernels/routing.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::expect_error;
using test::rel_error;

struct ConvShape {
  int64_t B, L, E, W;
  bool bias, init, silu;
};

std::string describe(const ConvShape& s) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "B=%lld L=%lld E=%lld W=%lld%s%s%s", (long long)s.B, (long long)s.L, (long long)s.E,
                (long long)s.W, s.bias ? " bias" : "", s.init ? " init" : "", s.silu ? " silu" : "");
  return buf;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// The reference: per (b, e), the extended row xe (W-1 window values, then L inputs) times the dense
// (L x (L+W-1)) banded matrix A with A[t][t+k] = weight[e][k].
struct Reference {
  std::vector<double> y, final_window, dx, dweight, dbias, dinit;  // same layouts as the kernel's tensors
};

Reference reference(const ConvShape& s, const Tensor& x_t, const Tensor& w_t, const Tensor& b_t, const Tensor& init_t,
                    const Tensor& dy_t, const Tensor& dfinal_t) {
  const int64_t B = s.B, L = s.L, E = s.E, W = s.W, N = L + W - 1;
  std::vector<double> x = x_t.to_vector<double>(), w = w_t.to_vector<double>(), dy = dy_t.to_vector<double>(),
                      dfinal = dfinal_t.to_vector<double>();
  std::vector<double> bias = s.bias ? b_t.to_vector<double>() : std::vector<double>(E, 0.0);
  std::vector<double> init = s.init ? init_t.to_vector<double>() : std::vector<double>(B * (W - 1) * E, 0.0);
  Reference r;
  r.y.assign(B * L * E, 0);
  r.final_window.assign(B * (W - 1) * E, 0);
  r.dx.assign(B * L * E, 0);
  r.dweight.assign(E * W, 0);
  r.dbias.assign(E, 0);
  r.dinit.assign(B * (W - 1) * E, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t e = 0; e < E; ++e) {
      std::vector<double> xe(N);
      for (int64_t i = 0; i < N; ++i)
        xe[i] = i < W - 1 ? init[(b * (W - 1) + i) * E + e] : x[(b * L + i - (W - 1)) * E + e];
      std::vector<double> A(L * N, 0.0);
      for (int64_t t = 0; t < L; ++t)
        for (int64_t k = 0; k < W; ++k) A[t * N + t + k] = w[e * W + k];
      std::vector<double> dpre(L);
      for (int64_t t = 0; t < L; ++t) {
        double pre = bias[e];
        for (int64_t i = 0; i < N; ++i) pre += A[t * N + i] * xe[i];
        double g = dy[(b * L + t) * E + e];
        r.y[(b * L + t) * E + e] = s.silu ? pre * sigmoid(pre) : pre;
        dpre[t] = s.silu ? g * sigmoid(pre) * (1 + pre * (1 - sigmoid(pre))) : g;
      }
      // dxe = A^T dpre, plus the final window's gradient on the last W-1 entries of xe.
      std::vector<double> dxe(N, 0.0);
      for (int64_t i = 0; i < N; ++i)
        for (int64_t t = 0; t < L; ++t) dxe[i] += A[t * N + i] * dpre[t];
      for (int64_t j = 0; j < W - 1; ++j) {
        r.final_window[(b * (W - 1) + j) * E + e] = xe[L + j];
        dxe[L + j] += dfinal[(b * (W - 1) + j) * E + e];
      }
      for (int64_t i = 0; i < N; ++i) {
        if (i < W - 1)
          r.dinit[(b * (W - 1) + i) * E + e] = dxe[i];
        else
          r.dx[(b * L + i - (W - 1)) * E + e] = dxe[i];
      }
      for (int64_t t = 0; t < L; ++t) {
        r.dbias[e] += dpre[t];
        for (int64_t k = 0; k < W; ++k) r.dweight[e * W + k] += dpre[t] * xe[t + k];
      }
    }
  return r;
}

double rel_error_vec(const Tensor& a, const std::vector<double>& ref) {
  return rel_error(a, from_vector<double>(ref, a.shape()));
}

const ConvShape kShapes[] = {
    {2, 37, 24, 4, true, true, true},   {3, 1, 7, 4, true, true, false}, {2, 2, 5, 4, false, true, true},
    {1, 3, 6, 8, true, true, true},     {2, 19, 13, 2, true, false, false}, {2, 50, 33, 8, false, false, true},
    {4, 23, 96, 4, true, true, true},  // B*L*E*W > 32768: the OpenMP paths
};

TEST(CausalConv1d, ForwardAndBackwardMatchBandedReference) {
  for (DType dt : {DType::f64, DType::f32}) {
    const double tol = dt == DType::f64 ? 1e-12 : 2e-6;
    for (const ConvShape& s : kShapes) {
      Generator gen(s.B * 1000 + s.L * 10 + s.W);
      Tensor x = randn({s.B, s.L, s.E}, gen, dt), w = randn({s.E, s.W}, gen, dt, 0, 0.5);
      Tensor b = s.bias ? randn({s.E}, gen, dt) : Tensor();
      Tensor init = s.init ? randn({s.B, s.W - 1, s.E}, gen, dt) : Tensor();
      Tensor dy = randn({s.B, s.L, s.E}, gen, dt), dfinal = randn({s.B, s.W - 1, s.E}, gen, dt);
      Reference r = reference(s, x, w, b, init, dy, dfinal);
      kernels::CausalConv1dOutput out = kernels::causal_conv1d_forward({x, w, b, init, Tensor(), s.silu});
      kernels::CausalConv1dGrads g = kernels::causal_conv1d_backward({x, w, b, init, Tensor(), s.silu}, dy, dfinal);
      std::vector<std::pair<const char*, double>> errs = {
          {"y", rel_error_vec(out.y, r.y)},        {"final_window", rel_error_vec(out.final_window, r.final_window)},
          {"dx", rel_error_vec(g.dx, r.dx)},      {"dweight", rel_error_vec(g.dweight, r.dweight)}};
      if (s.bias) errs.push_back({"dbias", rel_error_vec(g.dbias, r.dbias)});
      if (s.init) errs.push_back({"dinitial_window", rel_error_vec(g.dinitial_window, r.dinit)});
      EXPECT_EQ(g.dbias.defined(), s.bias);
      EXPECT_EQ(g.dinitial_window.defined(), s.init);
      std::printf("  %s %s:", dtype_name(dt), describe(s).c_str());
      for (auto& [name, err] : errs) {
        std::printf(" %s %.1e", name, err);
        EXPECT_LT(err, tol) << dtype_name(dt) << " " << describe(s) << " " << name;
      }
      std::printf("\n");
    }
  }
}

TEST(CausalConv1d, BackwardWithoutFinalWindowGradient) {
  const ConvShape s{2, 9, 5, 4, true, true, true};
  Generator gen(3);
  Tensor x = randn({2, 9, 5}, gen, DType::f64), w = randn({5, 4}, gen, DType::f64), b = randn({5}, gen, DType::f64);
  Tensor init = randn({2, 3, 5}, gen, DType::f64), dy = randn({2, 9, 5}, gen, DType::f64);
  Reference r = reference(s, x, w, b, init, dy, zeros({2, 3, 5}, DType::f64));
  kernels::CausalConv1dGrads g = kernels::causal_conv1d_backward({x, w, b, init, Tensor(), true}, dy, Tensor());
  EXPECT_LT(rel_error_vec(g.dx, r.dx), 1e-12);
  EXPECT_LT(rel_error_vec(g.dinitial_window, r.dinit), 1e-12);
  EXPECT_LT(rel_error_vec(g.dweight, r.dweight), 1e-12);
}

TEST(CausalConv1d, GradcheckAllCases) {
  int n = 0;
  for (const autograd::GradcheckCase& c : autograd::GradcheckRegistry::instance().cases()) {
    if (c.op != "causal_conv1d") continue;
    Generator gen(100 + n++);
    autograd::GradcheckProblem p = c.make(gen);
    for (const autograd::GradcheckRow& row : autograd::gradcheck(p.fn, p.inputs, p.names, p.opts))
      EXPECT_TRUE(row.ok) << c.variant << " " << row.input << ": abs " << row.max_abs_err << " rel " << row.max_rel_err;
  }
  EXPECT_GE(n, 8);
}

Tensor leaf(const Tensor& data) {
  Tensor t = data.detach().clone();
  t.set_requires_grad(true);
  return t;
}

// Runs the sequence x (B, L, E) in chunks of the given lengths, each chunk's final window feeding the
// next one, and compares outputs and every gradient with one call on the whole sequence.
void check_chunked_equals_whole(const std::vector<int64_t>& chunks, int64_t B, int64_t E, int64_t W, bool silu) {
  int64_t L = 0;
  for (int64_t c : chunks) L += c;
  Generator gen(L * 31 + W);
  Tensor x = randn({B, L, E}, gen, DType::f64), w = randn({E, W}, gen, DType::f64, 0, 0.5);
  Tensor b = randn({E}, gen, DType::f64), init = randn({B, W - 1, E}, gen, DType::f64);
  Tensor gy = randn({B, L, E}, gen, DType::f64), gf = randn({B, W - 1, E}, gen, DType::f64);

  Tensor x1 = leaf(x), w1 = leaf(w), b1 = leaf(b), i1 = leaf(init);
  CausalConv1dResult whole = causal_conv1d({x1, w1, b1, i1, Tensor(), silu});
  backward({whole.out, whole.final_window}, {gy, gf});

  Tensor w2 = leaf(w), b2 = leaf(b), i2 = leaf(init);
  std::vector<Tensor> xs, roots, grads;
  Tensor window = i2;
  int64_t start = 0;
  for (int64_t c : chunks) {
    xs.push_back(leaf(x.narrow(1, start, c).contiguous()));
    CausalConv1dResult r = causal_conv1d({xs.back(), w2, b2, window, Tensor(), silu});
    EXPECT_EQ(test::max_abs_diff(r.out, whole.out.detach().narrow(1, start, c)), 0.0) << "chunk at " << start;
    roots.push_back(r.out);
    grads.push_back(gy.narrow(1, start, c).contiguous());
    window = r.final_window;
    start += c;
  }
  EXPECT_EQ(test::max_abs_diff(window, whole.final_window), 0.0);
  roots.push_back(window);
  grads.push_back(gf);
  backward(roots, grads);

  start = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_LT(rel_error(xs[i].grad(), x1.grad().narrow(1, start, chunks[i]).contiguous()), 1e-13) << "chunk " << i;
    start += chunks[i];
  }
  EXPECT_LT(rel_error(w2.grad(), w1.grad()), 1e-13);
  EXPECT_LT(rel_error(b2.grad(), b1.grad()), 1e-13);
  EXPECT_LT(rel_error(i2.grad(), i1.grad()), 1e-13);
}

TEST(CausalConv1d, ChunkedEqualsWholeSequence) {
  check_chunked_equals_whole({5, 1, 2, 7}, 2, 6, 4, true);  // chunks shorter than W-1 = 3 included
  check_chunked_equals_whole({3, 9}, 3, 5, 2, false);
  check_chunked_equals_whole({4, 2, 1, 6}, 2, 3, 8, true);
}

TEST(CausalConv1d, StepByStepEqualsWholeSequence) {
  check_chunked_equals_whole(std::vector<int64_t>(11, 1), 2, 5, 4, true);
  check_chunked_equals_whole(std::vector<int64_t>(9, 1), 1, 3, 8, false);
}

TEST(CausalConv1d, RowsDoNotLeakAcrossBatch) {
  Generator gen(5);
  Tensor x = randn({3, 8, 4}, gen, DType::f64), w = randn({4, 4}, gen, DType::f64);
  Tensor y0 = kernels::causal_conv1d_forward({x, w, Tensor(), Tensor(), Tensor(), false}).y;
  Tensor x2 = x.clone();
  x2.narrow(0, 1, 1).fill_(100.0);
  Tensor y1 = kernels::causal_conv1d_forward({x2, w, Tensor(), Tensor(), Tensor(), false}).y;
  EXPECT_EQ(test::max_abs_diff(y0.narrow(0, 0, 1), y1.narrow(0, 0, 1)), 0.0);
  EXPECT_EQ(test::max_abs_diff(y0.narrow(0, 2, 1), y1.narrow(0, 2, 1)), 0.0);
}

TEST(CausalConv1d, GradientsAreBitwiseRepeatable) {
  Generator gen(9);
  Tensor x = randn({3, 64, 80}, gen), w = randn({80, 4}, gen), b = randn({80}, gen), dy = randn({3, 64, 80}, gen);
  auto run = [&] { return kernels::causal_conv1d_backward({x, w, b, Tensor(), Tensor(), true}, dy, Tensor()); };
  kernels::CausalConv1dGrads g0 = run(), g1 = run();
  EXPECT_EQ(g0.dweight.to_vector<float>(), g1.dweight.to_vector<float>());
  EXPECT_EQ(g0.dbias.to_vector<float>(), g1.dbias.to_vector<float>());
  EXPECT_EQ(g0.dx.to_vector<float>(), g1.dx.to_vector<float>());
}

TEST(CausalConv1d, BadInput) {
  Tensor x = zeros({2, 5, 3}), w = zeros({3, 4});
  auto fwd = [](const Tensor& xx, const Tensor& ww, const Tensor& bb = Tensor(), const Tensor& ii = Tensor()) {
    return [=] { kernels::causal_conv1d_forward({xx, ww, bb, ii, Tensor(), false}); };
  };
  expect_error(fwd(x, zeros({3, 1})), "[causal_conv1d] conv width W = 1 is outside [2, 8]");
  expect_error(fwd(x, zeros({3, 9})), "[causal_conv1d] conv width W = 9 is outside [2, 8]");
  expect_error(fwd(zeros({5, 3}), w), "[causal_conv1d] x must be (B, L, E)");
  expect_error(fwd(zeros({2, 0, 3}), w), "[causal_conv1d] x has length L = 0");
  expect_error(fwd(x, zeros({4, 4})), "[causal_conv1d] weight has 4 channels, x has E = 3");
  expect_error(fwd(x, zeros({3, 4, 1})), "[causal_conv1d] weight must be (E, W)");
  expect_error(fwd(x, zeros({3, 4}, DType::f64)), "[causal_conv1d] weight must be float32 beside float32 x, got float64");
  expect_error(fwd(zeros({2, 5, 3}, DType::i32), w), "[causal_conv1d] x must be float32, float64 or bfloat16, got int32");
  expect_error(fwd(x, w, zeros({4})), "[causal_conv1d] bias has shape (4,), expected (3,)");
  expect_error(fwd(x, w, Tensor(), zeros({2, 4, 3})),
               "[causal_conv1d] initial_window has shape (2, 4, 3), expected (2, 3, 3)");
  expect_error(fwd(zeros({2, 3, 5}).transpose(1, 2), w), "[causal_conv1d] x must be contiguous");
  auto bwd = [&](const Tensor& dy, const Tensor& dfinal) {
    return [=] { kernels::causal_conv1d_backward({x, w, Tensor(), Tensor(), Tensor(), false}, dy, dfinal); };
  };
  expect_error(bwd(zeros({2, 4, 3}), Tensor()), "[causal_conv1d] dy has shape (2, 4, 3), expected (2, 5, 3)");
  expect_error(bwd(zeros({2, 5, 3}), zeros({2, 2, 3})),
               "[causal_conv1d] dfinal_window has shape (2, 2, 3), expected (2, 3, 3)");
  // Through the differentiable function, with inputs that require grad.
  Tensor xl = leaf(x);
  expect_error([&] { causal_conv1d({xl, zeros({3, 9}), Tensor(), Tensor(), Tensor()}); }, "[causal_conv1d]");
}

// Same shape, dtype and bytes (two undefined tensors are equal; one is not).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.dtype() == y.dtype() && x.shape() == y.shape() &&
         std::memcmp(x.raw_data(), y.raw_data(), static_cast<size_t>(x.numel()) * dtype_size(x.dtype())) == 0;
}

// t (B, L, E) with its rows in the grouped order of r: row inverse[b*L + t] holds token (b, t).
Tensor grouped(const Tensor& t, const kernels::Routing& r) {
  const int64_t B = t.size(0), L = t.size(1), E = t.size(2);
  return kernels::index_select(t.contiguous().view({B * L, E}), 0, r.perm).view({B, L, E});
}

TEST(CausalConv1d, RowsInGroupedOrderEqualPermutedPlainOp) {
  const int64_t M = 3;
  // The brief's shape, then one past the OpenMP threshold (B*L*E*W > 32768).
  const ConvShape shapes[] = {{2, 37, 5, 4, false, false, false}, {2, 64, 96, 4, false, false, false}};
  int n = 0;
  for (DType dt : {DType::f64, DType::f32})
    for (ConvShape s : shapes)
      for (int flags = 0; flags < 8; ++flags) {
        s.bias = flags & 1, s.init = flags & 2, s.silu = flags & 4;
        SCOPED_TRACE(std::string(dtype_name(dt)) + " " + describe(s));
        Generator gen(700 + n++);
        Tensor ids = randint({s.B * s.L}, 0, M, gen);
        kernels::Routing r = kernels::Routing::from_modalities(ids, M);
        ASSERT_FALSE(r.perm_is_identity);
        Tensor x = randn({s.B, s.L, s.E}, gen, dt), w = randn({s.E, s.W}, gen, dt, 0, 0.5);
        Tensor b = s.bias ? randn({s.E}, gen, dt) : Tensor();
        Tensor init = s.init ? randn({s.B, s.W - 1, s.E}, gen, dt) : Tensor();
        Tensor dy = randn({s.B, s.L, s.E}, gen, dt);
        Tensor dfinal = flags % 3 ? randn({s.B, s.W - 1, s.E}, gen, dt) : Tensor();

        kernels::CausalConv1dOutput plain = kernels::causal_conv1d_forward({x, w, b, init, Tensor(), s.silu});
        kernels::CausalConv1dOutput rows =
            kernels::causal_conv1d_forward({grouped(x, r), w, b, init, Tensor(), s.silu, &r});
        EXPECT_EQ(rows.y.shape(), x.shape());
        EXPECT_TRUE(same_bits(rows.y, grouped(plain.y, r)));
        EXPECT_TRUE(same_bits(rows.final_window, plain.final_window));
        // The layouts do differ: the grouped y is not the plain one.
        EXPECT_GT(test::max_abs_diff(rows.y, plain.y), 0.0);

        kernels::CausalConv1dGrads pg = kernels::causal_conv1d_backward({x, w, b, init, Tensor(), s.silu}, dy, dfinal);
        kernels::CausalConv1dGrads rg =
            kernels::causal_conv1d_backward({grouped(x, r), w, b, init, Tensor(), s.silu, &r}, grouped(dy, r), dfinal);
        EXPECT_TRUE(same_bits(rg.dx, grouped(pg.dx, r)));
        EXPECT_TRUE(same_bits(rg.dweight, pg.dweight));
        EXPECT_TRUE(same_bits(rg.dbias, pg.dbias));
        EXPECT_TRUE(same_bits(rg.dinitial_window, pg.dinitial_window));
      }
}

TEST(CausalConv1d, GroupedRowsThroughAutogradEqualPermutedPlain) {
  const int64_t B = 2, L = 11, E = 3, W = 4, M = 2;
  Generator gen(41);
  kernels::Routing r = kernels::Routing::from_modalities(randint({B * L}, 0, M, gen), M);
  Tensor x = randn({B, L, E}, gen, DType::f64), w = randn({E, W}, gen, DType::f64), b = randn({E}, gen, DType::f64);
  Tensor gy = randn({B, L, E}, gen, DType::f64);

  Tensor x1 = leaf(x), w1 = leaf(w), b1 = leaf(b);
  CausalConv1dResult plain = causal_conv1d({x1, w1, b1, Tensor(), Tensor(), true});
  backward({plain.out}, {gy});

  Tensor x2 = leaf(grouped(x, r)), w2 = leaf(w), b2 = leaf(b);
  Tensor out;
  {
    kernels::Routing copy = r;  // gone before backward runs: the node keeps its own copy
    out = causal_conv1d({x2, w2, b2, Tensor(), Tensor(), true, &copy}).out;
  }
  EXPECT_TRUE(same_bits(out.detach(), grouped(plain.out.detach(), r)));
  backward({out}, {grouped(gy, r)});
  EXPECT_TRUE(same_bits(x2.grad(), grouped(x1.grad(), r)));
  EXPECT_TRUE(same_bits(w2.grad(), w1.grad()));
  EXPECT_TRUE(same_bits(b2.grad(), b1.grad()));
}

TEST(CausalConv1d, GroupedRowsRejectAnotherRouting) {
  Generator gen(6);
  Tensor x = zeros({2, 5, 3}), w = zeros({3, 4}), dy = zeros({2, 5, 3});
  kernels::Routing longer = kernels::Routing::from_modalities(randint({11}, 0, 2, gen), 2);
  expect_error([&] { kernels::causal_conv1d_forward({x, w, Tensor(), Tensor(), Tensor(), false, &longer}); },
               "[causal_conv1d] the routing has 11 tokens, x has B*L = 10");
  expect_error(
      [&] { kernels::causal_conv1d_backward({x, w, Tensor(), Tensor(), Tensor(), false, &longer}, dy, Tensor()); },
      "[causal_conv1d] the routing has 11 tokens, x has B*L = 10");
  kernels::Routing empty;
  expect_error([&] { kernels::causal_conv1d_forward({x, w, Tensor(), Tensor(), Tensor(), false, &empty}); },
               "[causal_conv1d] the routing is empty or inconsistent");
  // Through the differentiable function.
  Tensor xl = leaf(x);
  expect_error([&] { causal_conv1d({xl, w, Tensor(), Tensor(), Tensor(), false, &longer}); },
               "[causal_conv1d] the routing has 11 tokens");
}

}  // namespace
}  // namespace mom

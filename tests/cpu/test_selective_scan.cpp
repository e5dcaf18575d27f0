// Selective scan: kernel and autograd against a naive f64 reference (all h_t stored, t-outer loops) in
// float32 and float64; chunked calls (last_state -> initial_state) against one call, forward and
// gradients; determinism across thread counts; saved-input version check; bad input. Its gradchecks
// run with every registered case in AllOps/RegisteredGradcheck (tests/cpu/test_autograd.cpp).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/selective_scan.h"
#include "kernels/index.h"
#include "kernels/selective_scan.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::expect_error;
using test::max_abs_diff;
using test::rel_error;

struct Config {
  int64_t B, L, E, N;
  bool D, z, delta_bias, initial_state, softplus;
  double delta_lo = -1.0, delta_hi = 1.0;
};

std::string describe(const Config& c) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "B=%lld L=%lld E=%lld N=%lld%s%s%s%s%s delta in [%g, %g]",
                static_cast<long long>(c.B), static_cast<long long>(c.L), static_cast<long long>(c.E),
                static_cast<long long>(c.N), c.D ? " D" : "", c.z ? " z" : "", c.delta_bias ? " bias" : "",
                c.initial_state ? " h0" : "", c.softplus ? " softplus" : "", c.delta_lo, c.delta_hi);
  return buf;
}

kernels::SelectiveScanParams random_inputs(const Config& c, Generator& gen, DType dt) {
  kernels::SelectiveScanParams in;
  in.u = randn({c.B, c.L, c.E}, gen, dt);
  in.delta = rand({c.B, c.L, c.E}, gen, dt, c.delta_lo, c.delta_hi);
  in.A = rand({c.E, c.N}, gen, dt, -2.0, -0.2);
  in.B_ssm = randn({c.B, c.L, c.N}, gen, dt);
  in.C_ssm = randn({c.B, c.L, c.N}, gen, dt);
  if (c.D) in.D = randn({c.E}, gen, dt);
  if (c.z) in.z = randn({c.B, c.L, c.E}, gen, dt);
  if (c.delta_bias) in.delta_bias = rand({c.E}, gen, dt, -0.5, 0.5);
  if (c.initial_state) in.initial_state = randn({c.B, c.E, c.N}, gen, dt);
  in.delta_softplus = c.softplus;
  return in;
}

// ---- the naive reference: f64, every h_t stored, loops over t outside e ----

struct Reference {
  std::vector<double> out, last_state;
  std::vector<double> du, ddelta, dA, dB_ssm, dC_ssm, dD, dz, ddelta_bias, dinitial_state;
};

std::vector<double> values(const Tensor& t) { return t.defined() ? t.to_vector<double>() : std::vector<double>{}; }

Reference naive_scan(const kernels::SelectiveScanParams& in, const Tensor& dout_t, const Tensor& dlast_t) {
  const int64_t B = in.u.size(0), L = in.u.size(1), E = in.u.size(2), N = in.A.size(1);
  const std::vector<double> u = values(in.u), delta = values(in.delta), A = values(in.A), Bm = values(in.B_ssm),
                            Cm = values(in.C_ssm), D = values(in.D), z = values(in.z), bias = values(in.delta_bias),
                            h0 = values(in.initial_state), dout = values(dout_t), dlast = values(dlast_t);
  auto ble = [&](int64_t b, int64_t t, int64_t e) { return (b * L + t) * E + e; };
  auto bln = [&](int64_t b, int64_t t, int64_t n) { return (b * L + t) * N + n; };
  auto ben = [&](int64_t b, int64_t e, int64_t n) { return (b * E + e) * N + n; };
  // H[b][s][e][n] holds h_{s-1}: s = 0 is the initial state.
  auto H_at = [&](int64_t b, int64_t s, int64_t e, int64_t n) { return ((b * (L + 1) + s) * E + e) * N + n; };
  std::vector<double> H(B * (L + 1) * E * N, 0.0), dt(B * L * E), pre(B * L * E), y(B * L * E);

  Reference r;
  r.out.assign(B * L * E, 0.0);
  r.last_state.assign(B * E * N, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    if (!h0.empty())
      for (int64_t e = 0; e < E; ++e)
        for (int64_t n = 0; n < N; ++n) H[H_at(b, 0, e, n)] = h0[ben(b, e, n)];
    for (int64_t t = 0; t < L; ++t)
      for (int64_t e = 0; e < E; ++e) {
        const int64_t i = ble(b, t, e);
        pre[i] = delta[i] + (bias.empty() ? 0.0 : bias[e]);
        dt[i] = !in.delta_softplus ? pre[i] : pre[i] > 20.0 ? pre[i] : std::log(1.0 + std::exp(pre[i]));
        y[i] = D.empty() ? 0.0 : D[e] * u[i];
        for (int64_t n = 0; n < N; ++n) {
          H[H_at(b, t + 1, e, n)] =
              std::exp(dt[i] * A[e * N + n]) * H[H_at(b, t, e, n)] + dt[i] * Bm[bln(b, t, n)] * u[i];
          y[i] += Cm[bln(b, t, n)] * H[H_at(b, t + 1, e, n)];
        }
        r.out[i] = z.empty() ? y[i] : y[i] * z[i] / (1.0 + std::exp(-z[i]));
      }
    for (int64_t e = 0; e < E; ++e)
      for (int64_t n = 0; n < N; ++n) r.last_state[ben(b, e, n)] = H[H_at(b, L, e, n)];
  }

  r.du.assign(B * L * E, 0.0);
  r.ddelta.assign(B * L * E, 0.0);
  r.dA.assign(E * N, 0.0);
  r.dB_ssm.assign(B * L * N, 0.0);
  r.dC_ssm.assign(B * L * N, 0.0);
  r.dD.assign(D.empty() ? 0 : E, 0.0);
  r.dz.assign(z.empty() ? 0 : B * L * E, 0.0);
  r.ddelta_bias.assign(bias.empty() ? 0 : E, 0.0);
  r.dinitial_state.assign(h0.empty() ? 0 : B * E * N, 0.0);
  std::vector<double> gh(E * N);  // dL/dh of every channel of row b at the current t
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < E * N; ++k) gh[k] = dlast.empty() ? 0.0 : dlast[b * E * N + k];
    for (int64_t t = L - 1; t >= 0; --t)
      for (int64_t e = 0; e < E; ++e) {
        const int64_t i = ble(b, t, e);
        double gy = dout.empty() ? 0.0 : dout[i];
        if (!z.empty()) {
          const double s = 1.0 / (1.0 + std::exp(-z[i]));
          r.dz[i] = gy * y[i] * (s + z[i] * s * (1.0 - s));
          gy *= z[i] * s;
        }
        if (!D.empty()) {
          r.dD[e] += gy * u[i];
          r.du[i] += gy * D[e];
        }
        double gdt = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          double& g = gh[e * N + n];
          g += gy * Cm[bln(b, t, n)];
          r.dC_ssm[bln(b, t, n)] += gy * H[H_at(b, t + 1, e, n)];
          const double a = std::exp(dt[i] * A[e * N + n]);
          gdt += g * (A[e * N + n] * a * H[H_at(b, t, e, n)] + Bm[bln(b, t, n)] * u[i]);
          r.dA[e * N + n] += g * dt[i] * a * H[H_at(b, t, e, n)];
          r.dB_ssm[bln(b, t, n)] += g * dt[i] * u[i];
          r.du[i] += g * dt[i] * Bm[bln(b, t, n)];
          g *= a;
        }
        r.ddelta[i] = !in.delta_softplus ? gdt : pre[i] > 20.0 ? gdt : gdt * std::exp(pre[i]) / (1.0 + std::exp(pre[i]));
        if (!bias.empty()) r.ddelta_bias[e] += r.ddelta[i];
      }
    if (!h0.empty())
      for (int64_t k = 0; k < E * N; ++k) r.dinitial_state[b * E * N + k] = gh[k];
  }
  return r;
}

double rel_error_to(const Tensor& got, const std::vector<double>& want) {
  return rel_error(got, from_vector<double>(want, got.shape()));
}

const Config kReferenceConfigs[] = {
    {2, 33, 6, 5, true, true, true, true, true},
    {1, 1, 5, 3, true, true, true, true, true},
    {2, 17, 7, 3, false, false, false, false, false, 0.05, 0.5},
    {3, 9, 5, 4, true, false, true, false, true},
    {2, 12, 4, 3, false, true, false, true, false, 0.05, 0.5},
    {2, 10, 5, 3, true, true, true, true, true, 15.0, 25.0},    // dt across the softplus threshold
    {2, 100, 40, 16, true, true, true, true, true},             // the OpenMP path, 40 channels in 16 groups
};

// Runs kernel forward and backward in `dt` on inputs rounded to `dt`, and compares every output and
// gradient with the f64 reference on the same (rounded) values.
void check_against_reference(DType dt, double tol) {
  Generator gen(11);
  for (const Config& c : kReferenceConfigs) {
    kernels::SelectiveScanParams in = random_inputs(c, gen, dt);
    Tensor dout = randn({c.B, c.L, c.E}, gen, dt), dlast = randn({c.B, c.E, c.N}, gen, dt);
    kernels::SelectiveScanParams p = in;
    kernels::SelectiveScanOutput fwd = kernels::selective_scan_forward(p);
    kernels::SelectiveScanGrads grads = kernels::selective_scan_backward(p, dout, dlast);
    Reference ref = naive_scan(in, dout, dlast);

    struct Row { const char* name; Tensor got; const std::vector<double>* want; };
    const Row rows[] = {{"out", fwd.out, &ref.out},
                        {"last_state", fwd.last_state, &ref.last_state},
                        {"du", grads.du, &ref.du},
                        {"ddelta", grads.ddelta, &ref.ddelta},
                        {"dA", grads.dA, &ref.dA},
                        {"dB_ssm", grads.dB_ssm, &ref.dB_ssm},
                        {"dC_ssm", grads.dC_ssm, &ref.dC_ssm},
                        {"dD", grads.dD, &ref.dD},
                        {"dz", grads.dz, &ref.dz},
                        {"ddelta_bias", grads.ddelta_bias, &ref.ddelta_bias},
                        {"dinitial_state", grads.dinitial_state, &ref.dinitial_state}};
    std::printf("  %s %s\n", dtype_name(dt), describe(c).c_str());
    for (const Row& r : rows) {
      ASSERT_EQ(r.got.defined(), !r.want->empty()) << r.name;
      if (!r.got.defined()) continue;
      EXPECT_EQ(r.got.dtype(), dt) << r.name;
      const double err = rel_error_to(r.got, *r.want);
      std::printf("    %-15s rel err %.3e\n", r.name, err);
      EXPECT_LE(err, tol) << r.name << " " << describe(c);
    }
  }
}

TEST(SelectiveScan, MatchesNaiveReferenceF64) { check_against_reference(DType::f64, 1e-12); }

TEST(SelectiveScan, MatchesNaiveReferenceF32) { check_against_reference(DType::f32, 1e-5); }

TEST(SelectiveScan, AutogradMatchesKernelAndAcceptsStridedInputs) {
  Generator gen(3);
  const Config c{2, 9, 5, 3, true, true, true, true, true};
  kernels::SelectiveScanParams in = random_inputs(c, gen, DType::f64);
  kernels::SelectiveScanOutput want = kernels::selective_scan_forward(in);
  // u and z given as transposed views of (B, E, L) tensors.
  kernels::SelectiveScanParams strided = in;
  strided.u = in.u.transpose(1, 2).contiguous().transpose(1, 2);
  strided.z = in.z.transpose(1, 2).contiguous().transpose(1, 2);
  ASSERT_FALSE(strided.u.is_contiguous());
  SelectiveScanResult got = selective_scan(strided);
  EXPECT_EQ(max_abs_diff(got.out, want.out), 0.0);
  EXPECT_EQ(max_abs_diff(got.last_state, want.last_state), 0.0);
  EXPECT_FALSE(got.out.requires_grad());
}

// ---- chunked calls: last_state of one call as initial_state of the next ----

Tensor leaf_of(const Tensor& data) {
  Tensor t = data.detach().clone();
  t.set_requires_grad(true);
  return t;
}

Tensor chunk_of(const Tensor& data, int64_t start, int64_t length) {
  return leaf_of(data.narrow(1, start, length).contiguous());
}

// One call on L tokens against two chained calls on L1 and L - L1 tokens, with the loss weighting
// out by w_out and last_state by w_last. Forward must agree bit for bit; gradients to rounding.
void check_chunked(DType dt, double tol, bool loss_on_second_chunk_only) {
  Generator gen(21);
  const Config c{2, 11, 6, 5, true, true, true, true, true};
  const int64_t L1 = 4, L2 = c.L - L1;
  const kernels::SelectiveScanParams data = random_inputs(c, gen, dt);
  Tensor w_out = randn({c.B, c.L, c.E}, gen, dt), w_last = randn({c.B, c.E, c.N}, gen, dt);
  if (loss_on_second_chunk_only) w_out.narrow(1, 0, L1).fill_(0.0);

  kernels::SelectiveScanParams whole;
  whole.u = leaf_of(data.u);
  whole.delta = leaf_of(data.delta);
  whole.A = leaf_of(data.A);
  whole.B_ssm = leaf_of(data.B_ssm);
  whole.C_ssm = leaf_of(data.C_ssm);
  whole.D = leaf_of(data.D);
  whole.z = leaf_of(data.z);
  whole.delta_bias = leaf_of(data.delta_bias);
  whole.initial_state = leaf_of(data.initial_state);
  whole.delta_softplus = true;
  SelectiveScanResult r = selective_scan(whole);
  if (loss_on_second_chunk_only)
    backward({r.out}, {w_out});
  else
    backward({r.out, r.last_state}, {w_out, w_last});

  // Shared parameters are one leaf per run, used by both chunks.
  Tensor A = leaf_of(data.A), D = leaf_of(data.D), bias = leaf_of(data.delta_bias), h0 = leaf_of(data.initial_state);
  kernels::SelectiveScanParams parts[2];
  for (int k = 0; k < 2; ++k) {
    const int64_t start = k == 0 ? 0 : L1, length = k == 0 ? L1 : L2;
    parts[k].u = chunk_of(data.u, start, length);
    parts[k].delta = chunk_of(data.delta, start, length);
    parts[k].B_ssm = chunk_of(data.B_ssm, start, length);
    parts[k].C_ssm = chunk_of(data.C_ssm, start, length);
    parts[k].z = chunk_of(data.z, start, length);
    parts[k].A = A;
    parts[k].D = D;
    parts[k].delta_bias = bias;
    parts[k].delta_softplus = true;
  }
  parts[0].initial_state = h0;
  SelectiveScanResult r1 = selective_scan(parts[0]);
  parts[1].initial_state = r1.last_state;
  SelectiveScanResult r2 = selective_scan(parts[1]);
  Tensor w_out2 = w_out.narrow(1, L1, L2).contiguous();
  if (loss_on_second_chunk_only)
    backward({r2.out}, {w_out2});
  else
    backward({r1.out, r2.out, r2.last_state}, {w_out.narrow(1, 0, L1).contiguous(), w_out2, w_last});

  const Tensor out_whole = r.out.detach();
  EXPECT_EQ(max_abs_diff(r1.out, out_whole.narrow(1, 0, L1).contiguous()), 0.0);
  EXPECT_EQ(max_abs_diff(r2.out, out_whole.narrow(1, L1, L2).contiguous()), 0.0);
  EXPECT_EQ(max_abs_diff(r2.last_state, r.last_state), 0.0);

  struct Seq { const char* name; Tensor whole_grad, first, second; };
  const Seq seqs[] = {{"u", whole.u.grad(), parts[0].u.grad(), parts[1].u.grad()},
                      {"delta", whole.delta.grad(), parts[0].delta.grad(), parts[1].delta.grad()},
                      {"B_ssm", whole.B_ssm.grad(), parts[0].B_ssm.grad(), parts[1].B_ssm.grad()},
                      {"C_ssm", whole.C_ssm.grad(), parts[0].C_ssm.grad(), parts[1].C_ssm.grad()},
                      {"z", whole.z.grad(), parts[0].z.grad(), parts[1].z.grad()}};
  for (const Seq& s : seqs) {
    ASSERT_TRUE(s.whole_grad.defined() && s.first.defined() && s.second.defined()) << s.name;
    const double e1 = rel_error(s.first, s.whole_grad.narrow(1, 0, L1).contiguous());
    const double e2 = rel_error(s.second, s.whole_grad.narrow(1, L1, L2).contiguous());
    std::printf("  %s d%-14s first chunk rel err %.3e, second chunk %.3e\n", dtype_name(dt), s.name, e1, e2);
    EXPECT_LE(e1, tol) << s.name;
    EXPECT_LE(e2, tol) << s.name;
  }
  // The first chunk's u gets its gradient only through the chain when the loss sees the second chunk only.
  std::vector<double> du1 = parts[0].u.grad().to_vector<double>();
  double norm = 0;
  for (double v : du1) norm += v * v;
  EXPECT_GT(norm, 1e-6);

  struct Shared { const char* name; Tensor whole_grad, chained_grad; };
  const Shared shared[] = {{"A", whole.A.grad(), A.grad()},
                           {"D", whole.D.grad(), D.grad()},
                           {"delta_bias", whole.delta_bias.grad(), bias.grad()},
                           {"initial_state", whole.initial_state.grad(), h0.grad()}};
  for (const Shared& s : shared) {
    ASSERT_TRUE(s.whole_grad.defined() && s.chained_grad.defined()) << s.name;
    const double err = rel_error(s.chained_grad, s.whole_grad);
    std::printf("  %s d%-14s rel err %.3e\n", dtype_name(dt), s.name, err);
    EXPECT_LE(err, tol) << s.name;
  }
}

TEST(SelectiveScan, ChunkedEqualsWholeF64) {
  check_chunked(DType::f64, 1e-12, false);
  check_chunked(DType::f64, 1e-12, true);
}

TEST(SelectiveScan, ChunkedEqualsWholeF32) {
  check_chunked(DType::f32, 1e-5, false);
  check_chunked(DType::f32, 1e-5, true);
}

// ---- determinism, misuse ----

TEST(SelectiveScan, BitIdenticalAcrossThreadCounts) {
  Generator gen(8);
  const Config c{2, 64, 40, 16, true, true, true, true, true};
  kernels::SelectiveScanParams in = random_inputs(c, gen, DType::f32);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f32), dlast = randn({c.B, c.E, c.N}, gen, DType::f32);
  const kernels::SelectiveScanParams p = in;
  const int saved_threads = omp_get_max_threads();
  std::vector<std::vector<float>> runs[2];
  const int threads[2] = {1, 3};
  for (int k = 0; k < 2; ++k) {
    omp_set_num_threads(threads[k]);
    kernels::SelectiveScanOutput f = kernels::selective_scan_forward(p);
    kernels::SelectiveScanGrads g = kernels::selective_scan_backward(p, dout, dlast);
    for (const Tensor& t : {f.out, f.last_state, g.du, g.ddelta, g.dA, g.dB_ssm, g.dC_ssm, g.dD, g.dz,
                            g.ddelta_bias, g.dinitial_state})
      runs[k].push_back(t.to_vector<float>());
  }
  omp_set_num_threads(saved_threads);
  for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_EQ(runs[0][i], runs[1][i]) << "result " << i;
}

// With a row order the (b, t) rows are read and written at routing.inverse[b*L + t]: every output and
// gradient is the plain scan's, permuted, bit for bit; autograd carries the order to the backward.
TEST(SelectiveScan, RowsInGroupedOrderEqualPermutedPlainScan) {
  Generator gen(9);
  const Config c{2, 23, 6, 5, true, true, true, true, true};
  const int64_t T = c.B * c.L;
  std::vector<int32_t> ids(T);
  for (int32_t& id : ids) id = static_cast<int32_t>(gen.randint(3));
  const kernels::Routing routing = kernels::Routing::from_modalities(from_vector<int32_t>(ids, {T}), 3);
  auto grouped = [&](const Tensor& t) {
    const int64_t C = t.size(2);
    return kernels::index_select(t.reshape({T, C}), 0, routing.perm).reshape({c.B, c.L, C});
  };
  kernels::SelectiveScanParams in = random_inputs(c, gen, DType::f64);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f64), dlast = randn({c.B, c.E, c.N}, gen, DType::f64);
  const kernels::SelectiveScanParams plain = in;
  kernels::SelectiveScanParams g = plain;
  for (Tensor* t : {&g.u, &g.delta, &g.B_ssm, &g.C_ssm, &g.z}) *t = grouped(*t);
  g.order = &routing;
  kernels::SelectiveScanOutput ref = kernels::selective_scan_forward(plain), got = kernels::selective_scan_forward(g);
  EXPECT_EQ(got.out.to_vector<double>(), grouped(ref.out).to_vector<double>());
  EXPECT_EQ(got.last_state.to_vector<double>(), ref.last_state.to_vector<double>());
  kernels::SelectiveScanGrads gref = kernels::selective_scan_backward(plain, dout, dlast);
  kernels::SelectiveScanGrads ggot = kernels::selective_scan_backward(g, grouped(dout), dlast);
  for (auto [got_t, ref_t] : {std::pair{ggot.du, grouped(gref.du)}, {ggot.ddelta, grouped(gref.ddelta)},
                              {ggot.dB_ssm, grouped(gref.dB_ssm)}, {ggot.dC_ssm, grouped(gref.dC_ssm)},
                              {ggot.dz, grouped(gref.dz)}, {ggot.dA, gref.dA}, {ggot.dD, gref.dD},
                              {ggot.ddelta_bias, gref.ddelta_bias}, {ggot.dinitial_state, gref.dinitial_state}})
    EXPECT_EQ(got_t.to_vector<double>(), ref_t.to_vector<double>());
  // Through autograd: the node keeps a copy of the routing (this one goes out of scope first).
  Tensor u = grouped(in.u).detach();
  u.set_requires_grad(true);
  SelectiveScanResult r;
  {
    const kernels::Routing copy = routing;
    kernels::SelectiveScanParams gi = in;
    gi.u = u;
    gi.delta = grouped(in.delta);
    gi.B_ssm = grouped(in.B_ssm);
    gi.C_ssm = grouped(in.C_ssm);
    gi.z = grouped(in.z);
    gi.order = &copy;
    r = selective_scan(gi);
  }
  backward(r.out, grouped(dout));
  kernels::SelectiveScanGrads only_out = kernels::selective_scan_backward(plain, dout, Tensor());
  EXPECT_EQ(u.grad().to_vector<double>(), grouped(only_out.du).to_vector<double>());
  const kernels::Routing wrong = kernels::Routing::from_modalities(zeros({T + 1}, DType::i32), 1);
  g.order = &wrong;
  expect_error([&] { kernels::selective_scan_forward(g); },
               "[selective_scan] the row order's routing has 47 tokens, u has B*L = 46");
}

// dz written over dout (the autograd node's memory saving) gives the same gradients, bit for bit.
TEST(SelectiveScan, DzOverDoutGivesTheSameGradients) {
  Generator gen(10);
  const Config c{2, 29, 7, 5, true, true, true, true, true};
  const kernels::SelectiveScanParams p = random_inputs(c, gen, DType::f32);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f32), dlast = randn({c.B, c.E, c.N}, gen, DType::f32);
  kernels::SelectiveScanGrads ref = kernels::selective_scan_backward(p, dout, dlast);
  Tensor given = dout.clone();
  kernels::SelectiveScanGrads got = kernels::selective_scan_backward(p, given, dlast, Tensor(), true);
  EXPECT_TRUE(got.dz.is_same(given));  // the same tensor: no new buffer
  EXPECT_EQ(got.dz.to_vector<float>(), ref.dz.to_vector<float>());
  EXPECT_EQ(got.du.to_vector<float>(), ref.du.to_vector<float>());
  EXPECT_EQ(got.ddelta.to_vector<float>(), ref.ddelta.to_vector<float>());
  EXPECT_EQ(got.dB_ssm.to_vector<float>(), ref.dB_ssm.to_vector<float>());
  EXPECT_EQ(got.dD.to_vector<float>(), ref.dD.to_vector<float>());
}

TEST(SelectiveScan, SavedInputChangedInPlaceIsAnError) {
  Generator gen(5);
  kernels::SelectiveScanParams in = random_inputs({1, 4, 3, 2, false, false, false, false, true}, gen, DType::f64);
  in.u.set_requires_grad(true);
  SelectiveScanResult r = selective_scan(in);
  in.delta.fill_(0.5);
  expect_error([&] { backward({r.out}, {ones({1, 4, 3}, DType::f64)}); }, "[selective_scan]");
}

TEST(SelectiveScan, RejectsBadInputs) {
  Generator gen(6);
  const Config c{2, 5, 4, 3, true, true, true, true, true};
  const kernels::SelectiveScanParams good = random_inputs(c, gen, DType::f64);
  auto expect_rejected = [&](auto&& change) {
    kernels::SelectiveScanParams in = good;
    change(in);
    expect_error([&] { kernels::selective_scan_forward(in); }, "[selective_scan]");
    expect_error([&] { selective_scan(in); }, "[selective_scan]");
  };
  const DType f64 = DType::f64;
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.u = randn({5, 4}, gen, f64); });                // rank
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.A = randn({4, 3, 1}, gen, f64); });             // rank
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.delta = randn({2, 6, 4}, gen, f64); });         // L
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.A = randn({5, 3}, gen, f64); });                // E
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.A = randn({4, 2}, gen, f64); });                // N vs B_ssm
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.B_ssm = randn({1, 5, 3}, gen, f64); });         // B
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.C_ssm = randn({2, 5, 4}, gen, f64); });         // N
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.D = randn({3}, gen, f64); });
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.z = randn({2, 5, 3}, gen, f64); });
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.delta_bias = randn({4, 1}, gen, f64); });
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.initial_state = randn({2, 3, 4}, gen, f64); });
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.B_ssm = Tensor(); });                            // missing
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.delta = in.delta.to(DType::f32); });             // dtype mix
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.u = randint({2, 5, 4}, 0, 3, gen); });          // integer
  expect_rejected([&](kernels::SelectiveScanParams& in) { in.D = from_vector<int32_t>({1, 2, 3, 4}, {4}); });

  // The kernel needs contiguous inputs (the autograd function makes them so).
  kernels::SelectiveScanParams p = good;
  p.u = good.u.transpose(1, 2).contiguous().transpose(1, 2);
  expect_error([&] { kernels::selective_scan_forward(p); }, "[selective_scan]");

  p = good;
  expect_error([&] { kernels::selective_scan_backward(p, randn({2, 5, 3}, gen, f64), Tensor()); },
               "[selective_scan]");
  expect_error([&] { kernels::selective_scan_backward(p, Tensor(), randn({2, 4, 3}, gen, DType::f32)); },
               "[selective_scan]");
}

}  // namespace
}  // namespace mom

namespace mom {
namespace {

// A NaN step size (a diverging run) must come out as NaN, not as a number, and without undefined
// behaviour in the fast exp (UBSan runs this in CI).
TEST(SelectiveScan, NaNPropagatesThroughTheFastExp) {
  Generator gen(11);
  kernels::SelectiveScanParams in;
  in.u = randn({1, 3, 2}, gen);
  in.delta = randn({1, 3, 2}, gen);
  in.delta.data<float>()[2] = std::numeric_limits<float>::quiet_NaN();  // token 1, channel 0
  in.A = rand({2, 4}, gen, DType::f32, -2, -0.5);
  in.B_ssm = randn({1, 3, 4}, gen);
  in.C_ssm = randn({1, 3, 4}, gen);
  in.delta_softplus = true;
  std::vector<float> out = selective_scan(in).out.to_vector<float>();
  EXPECT_FALSE(std::isnan(out[0]));  // token 0, before the NaN
  EXPECT_TRUE(std::isnan(out[2]));   // token 1, channel 0
  EXPECT_TRUE(std::isnan(out[4]));   // token 2, channel 0: the state carries it
  EXPECT_FALSE(std::isnan(out[5]));  // channel 1 never saw it
}

}  // namespace
}  // namespace mom

// CUDA selective scan against the CPU reference: GPU float32 against CPU float64 on the same (float32)
// inputs, and GPU float64 against CPU float64, over a grid of lengths (1 to 4096, across chunk edges),
// channel and state counts that are not powers of two, batch 1 to 16, each optional input on and off;
// chained calls through last_state / initial_state; run-to-run identity; errors; a 2^31+ element run.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"
#include "kernels/selective_scan.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using kernels::SelectiveScanGrads;
using kernels::SelectiveScanParams;
using kernels::SelectiveScanOutput;
using test::Cuda;
using test::same_bits;
using test::expect_error;
using test::test_seed;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

struct Config {
  int64_t B, L, E, N;
  bool D = true, z = true, bias = true, h0 = true, softplus = true;
};

std::string describe(const Config& c) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "B=%lld L=%lld E=%lld N=%lld%s%s%s%s%s", static_cast<long long>(c.B),
                static_cast<long long>(c.L), static_cast<long long>(c.E), static_cast<long long>(c.N),
                c.D ? " D" : "", c.z ? " z" : "", c.bias ? " bias" : "", c.h0 ? " h0" : "",
                c.softplus ? " softplus" : "");
  return buf;
}

// Mamba-like inputs: A negative, step sizes around 0.05-1 after softplus (or positive without it).
SelectiveScanParams random_params(const Config& c, Generator& gen, DType dt) {
  SelectiveScanParams p;
  p.u = randn({c.B, c.L, c.E}, gen, dt);
  p.delta = c.softplus ? randn({c.B, c.L, c.E}, gen, dt, -1.0, 1.0) : rand({c.B, c.L, c.E}, gen, dt, 0.01, 0.5);
  p.A = rand({c.E, c.N}, gen, dt, -4.0, -0.1);
  p.B_ssm = randn({c.B, c.L, c.N}, gen, dt);
  p.C_ssm = randn({c.B, c.L, c.N}, gen, dt);
  if (c.D) p.D = randn({c.E}, gen, dt);
  if (c.z) p.z = randn({c.B, c.L, c.E}, gen, dt);
  if (c.bias) p.delta_bias = rand({c.E}, gen, dt, -0.5, 0.5);
  if (c.h0) p.initial_state = randn({c.B, c.E, c.N}, gen, dt);
  p.delta_softplus = c.softplus;
  return p;
}

Tensor moved(const Tensor& t, Device d, DType dt) { return t.defined() ? t.to(dt).to(d) : Tensor(); }

SelectiveScanParams moved(const SelectiveScanParams& p, Device d, DType dt) {
  SelectiveScanParams q = p;
  for (Tensor* t : {&q.u, &q.delta, &q.A, &q.B_ssm, &q.C_ssm, &q.D, &q.z, &q.delta_bias, &q.initial_state})
    *t = moved(*t, d, dt);
  return q;
}

std::vector<std::pair<const char*, Tensor SelectiveScanGrads::*>> grad_fields() {
  return {{"du", &SelectiveScanGrads::du},         {"ddelta", &SelectiveScanGrads::ddelta},
          {"dA", &SelectiveScanGrads::dA},         {"dB", &SelectiveScanGrads::dB_ssm},
          {"dC", &SelectiveScanGrads::dC_ssm},     {"dD", &SelectiveScanGrads::dD},
          {"dz", &SelectiveScanGrads::dz},         {"ddelta_bias", &SelectiveScanGrads::ddelta_bias},
          {"dinitial_state", &SelectiveScanGrads::dinitial_state}};
}

// Runs forward and backward on the GPU in `dt` and on the CPU in f64 from the same values; checks every
// output and gradient, and returns the largest relative errors (outputs, gradients).
std::pair<double, double> compare_with_cpu(const Config& c, DType dt, uint64_t seed) {
  Generator gen(seed);
  SelectiveScanParams p = random_params(c, gen, dt);  // the values both devices see
  Tensor dout = randn({c.B, c.L, c.E}, gen, dt);
  Tensor dlast = randn({c.B, c.E, c.N}, gen, dt);

  SelectiveScanParams cpu = moved(p, kCpu, DType::f64), gpu = moved(p, kGpu, dt);
  SelectiveScanOutput ref = kernels::selective_scan_forward(cpu);
  SelectiveScanOutput got = kernels::selective_scan_forward(gpu);
  SelectiveScanGrads gref = kernels::selective_scan_backward(cpu, dout.to(DType::f64), dlast.to(DType::f64));
  SelectiveScanGrads ggot = kernels::selective_scan_backward(gpu, dout.to(kGpu), dlast.to(kGpu));

  const double out_tol = dt == DType::f32 ? 1e-5 : 1e-11;
  const double grad_tol = dt == DType::f32 ? 1e-4 : 1e-10;
  double worst_out = 0, worst_grad = 0;
  for (auto [name, t] : {std::pair<const char*, std::pair<Tensor, Tensor>>{"out", {got.out, ref.out}},
                         {"last_state", {got.last_state, ref.last_state}}}) {
    EXPECT_EQ(t.first.device(), kGpu);
    const double e = rel_error(t.first.to(kCpu).to(DType::f64), t.second);
    EXPECT_LT(e, out_tol) << name;
    worst_out = std::max(worst_out, e);
  }
  for (auto [name, field] : grad_fields()) {
    const Tensor& g = ggot.*field;
    const Tensor& r = gref.*field;
    EXPECT_EQ(g.defined(), r.defined()) << name;
    if (!g.defined() || !r.defined()) continue;
    const double e = rel_error(g.to(kCpu).to(DType::f64), r);
    EXPECT_LT(e, grad_tol) << name;
    worst_grad = std::max(worst_grad, e);
  }
  return {worst_out, worst_grad};
}

TEST_F(Cuda, ScanMatchesCpuOverLengths) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const Config configs[] = {
      {3, 1, 5, 3},   {2, 9, 1, 1},  {2, 7, 5, 3},    {3, 128, 37, 16}, {4, 1000, 19, 13}, {2, 2049, 33, 16},
      {1, 4096, 21, 7}, {16, 33, 9, 5}, {2, 300, 11, 40}, {1, 17, 130, 64},  {5, 64, 129, 2},
      // enough channel blocks for four states per thread at N <= 32 (the other layout of the kernel)
      {16, 70, 544, 16}, {24, 20, 777, 5},
  };
  for (const Config& c : configs) {
    SCOPED_TRACE(describe(c));
    auto [out_err, grad_err] = compare_with_cpu(c, DType::f32, seed++);
    std::printf("  f32 %-44s out %.2e  grads %.2e\n", describe(c).c_str(), out_err, grad_err);
  }
}

TEST_F(Cuda, ScanEveryOptionalInputOnAndOff) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  for (int mask = 0; mask < 32; ++mask) {
    Config c{3, 37, 23, 11};
    c.D = mask & 1;
    c.z = mask & 2;
    c.bias = mask & 4;
    c.h0 = mask & 8;
    c.softplus = mask & 16;
    SCOPED_TRACE(describe(c));
    auto [out_err, grad_err] = compare_with_cpu(c, DType::f32, seed++);
    if (mask % 8 == 0) std::printf("  f32 %-44s out %.2e  grads %.2e\n", describe(c).c_str(), out_err, grad_err);
  }
}

TEST_F(Cuda, ScanDoubleMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  for (const Config& c : {Config{2, 19, 13, 5}, Config{1, 130, 70, 16}, Config{3, 9, 3, 33}}) {
    SCOPED_TRACE(describe(c));
    auto [out_err, grad_err] = compare_with_cpu(c, DType::f64, seed++);
    std::printf("  f64 %-44s out %.2e  grads %.2e\n", describe(c).c_str(), out_err, grad_err);
  }
}

// A missing dout or dlast_state means a zero gradient there, on both devices.
TEST_F(Cuda, ScanBackwardWithoutDoutOrDlast) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const Config c{2, 45, 17, 6};
  SelectiveScanParams p = random_params(c, gen, DType::f32);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f32);
  Tensor dlast = randn({c.B, c.E, c.N}, gen, DType::f32);
  SelectiveScanParams cpu = moved(p, kCpu, DType::f64), gpu = moved(p, kGpu, DType::f32);
  for (bool with_dout : {false, true}) {
    Tensor dc = with_dout ? dout.to(DType::f64) : Tensor(), dg = with_dout ? dout.to(kGpu) : Tensor();
    Tensor lc = with_dout ? Tensor() : dlast.to(DType::f64), lg = with_dout ? Tensor() : dlast.to(kGpu);
    SelectiveScanGrads r = kernels::selective_scan_backward(cpu, dc, lc);
    SelectiveScanGrads g = kernels::selective_scan_backward(gpu, dg, lg);
    for (auto [name, field] : grad_fields()) {
      if (!(r.*field).defined()) continue;
      EXPECT_LT(rel_error((g.*field).to(kCpu).to(DType::f64), r.*field), 1e-4) << name << " with_dout " << with_dout;
    }
  }
}

// Two calls chained through last_state -> initial_state equal one call over the whole sequence, and
// the backward chained through dinitial_state -> dlast_state gives the same gradients.
TEST_F(Cuda, ScanChainedCallsEqualOneCall) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const Config c{2, 301, 29, 16};
  const int64_t L1 = 123, L2 = c.L - L1;
  SelectiveScanParams whole = moved(random_params(c, gen, DType::f32), kGpu, DType::f32);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f32).to(kGpu);
  Tensor dlast = randn({c.B, c.E, c.N}, gen, DType::f32).to(kGpu);
  auto piece = [&](int64_t start, int64_t len) {
    SelectiveScanParams q = whole;
    for (Tensor* t : {&q.u, &q.delta, &q.B_ssm, &q.C_ssm, &q.z}) *t = t->narrow(1, start, len).contiguous();
    return q;
  };
  SelectiveScanParams first = piece(0, L1), second = piece(L1, L2);
  SelectiveScanOutput one = kernels::selective_scan_forward(whole);
  SelectiveScanOutput r1 = kernels::selective_scan_forward(first);
  second.initial_state = r1.last_state;
  SelectiveScanOutput r2 = kernels::selective_scan_forward(second);
  EXPECT_LT(rel_error(r1.out, one.out.narrow(1, 0, L1).contiguous()), 1e-6);
  EXPECT_LT(rel_error(r2.out, one.out.narrow(1, L1, L2).contiguous()), 1e-6);
  EXPECT_LT(rel_error(r2.last_state, one.last_state), 1e-6);

  SelectiveScanGrads g = kernels::selective_scan_backward(whole, dout, dlast);
  SelectiveScanGrads g2 = kernels::selective_scan_backward(second, dout.narrow(1, L1, L2).contiguous(), dlast);
  SelectiveScanGrads g1 = kernels::selective_scan_backward(first, dout.narrow(1, 0, L1).contiguous(), g2.dinitial_state);
  EXPECT_LT(rel_error(g1.du, g.du.narrow(1, 0, L1).contiguous()), 1e-5);
  EXPECT_LT(rel_error(g2.du, g.du.narrow(1, L1, L2).contiguous()), 1e-5);
  EXPECT_LT(rel_error(g1.ddelta, g.ddelta.narrow(1, 0, L1).contiguous()), 1e-5);
  EXPECT_LT(rel_error(g2.dB_ssm, g.dB_ssm.narrow(1, L1, L2).contiguous()), 1e-5);
  EXPECT_LT(rel_error(g1.dC_ssm, g.dC_ssm.narrow(1, 0, L1).contiguous()), 1e-5);
  EXPECT_LT(rel_error(g1.dinitial_state, g.dinitial_state), 1e-5);
  EXPECT_LT(rel_error(kernels::add(g1.dA, g2.dA), g.dA), 1e-5);
  EXPECT_LT(rel_error(kernels::add(g1.dD, g2.dD), g.dD), 1e-5);
}

// A row order (the routing's grouped order) reads and writes the same values at other rows: every
// output and gradient equals the plain scan's, permuted, bit for bit.
TEST_F(Cuda, ScanRowsInGroupedOrderEqualPermutedPlainScan) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const Config& c : {Config{3, 300, 67, 16}, Config{2, 37, 130, 5, false, true, false, false, true}}) {
    const int64_t T = c.B * c.L;
    std::vector<int32_t> ids(T);
    for (int32_t& id : ids) id = static_cast<int32_t>(gen.randint(3));
    const kernels::Routing routing = kernels::Routing::from_modalities(from_vector<int32_t>(ids, {T}).to(kGpu), 3);
    auto grouped = [&](const Tensor& t) {
      if (!t.defined()) return t;
      const int64_t C = t.size(2);
      return kernels::index_select(t.reshape({T, C}), 0, routing.perm).reshape({c.B, c.L, C});
    };
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(describe(c) + " " + dtype_name(dt));
      SelectiveScanParams plain = moved(random_params(c, gen, dt), kGpu, dt);
      Tensor dout = randn({c.B, c.L, c.E}, gen, dt).to(kGpu), dlast = randn({c.B, c.E, c.N}, gen, dt).to(kGpu);
      SelectiveScanParams g = plain;
      for (Tensor* t : {&g.u, &g.delta, &g.B_ssm, &g.C_ssm, &g.z}) *t = grouped(*t);
      g.order = &routing;
      SelectiveScanOutput ref = kernels::selective_scan_forward(plain), got = kernels::selective_scan_forward(g, true);
      EXPECT_TRUE(same_bits(got.out, grouped(ref.out)));
      EXPECT_TRUE(same_bits(got.last_state, ref.last_state));
      SelectiveScanGrads gref = kernels::selective_scan_backward(plain, dout, dlast);
      for (const Tensor& ckpt : {Tensor(), got.checkpoints}) {  // the backward's two paths
        SelectiveScanGrads ggot = kernels::selective_scan_backward(g, grouped(dout), dlast, ckpt);
        for (auto [name, field] : grad_fields()) {
          const Tensor& r = gref.*field;
          if (!r.defined()) continue;
          const bool seq = r.dim() == 3 && r.size(0) == c.B && r.size(1) == c.L;
          EXPECT_TRUE(same_bits(ggot.*field, seq && field != &SelectiveScanGrads::dinitial_state ? grouped(r) : r))
              << name;
        }
      }
    }
  }
  // A routing over another number of tokens is an error.
  const kernels::Routing short_routing =
      kernels::Routing::from_modalities(zeros({5}, DType::i32).to(kGpu), 1);
  SelectiveScanParams p = moved(random_params(Config{1, 4, 3, 2}, gen, DType::f32), kGpu, DType::f32);
  p.order = &short_routing;
  expect_error([&] { kernels::selective_scan_forward(p); },
               "[selective_scan] the row order's routing has 5 tokens, u has B*L = 4");
}

// dz written over dout (what the autograd node does when it owns dout): the same gradients, bit for
// bit, through both backward paths, and no new buffer for dz.
TEST_F(Cuda, ScanDzOverDoutGivesTheSameGradients) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const Config c{3, 300, 67, 16};
  SelectiveScanParams p = moved(random_params(c, gen, DType::f32), kGpu, DType::f32);
  Tensor dout = randn({c.B, c.L, c.E}, gen).to(kGpu), dlast = randn({c.B, c.E, c.N}, gen).to(kGpu);
  SelectiveScanOutput f = kernels::selective_scan_forward(p, true);
  for (const Tensor& ckpt : {Tensor(), f.checkpoints}) {
    SelectiveScanGrads ref = kernels::selective_scan_backward(p, dout, dlast, ckpt);
    Tensor given = dout.clone();
    SelectiveScanGrads got = kernels::selective_scan_backward(p, given, dlast, ckpt, true);
    EXPECT_TRUE(got.dz.is_same(given));
    for (auto [name, field] : grad_fields()) EXPECT_TRUE(same_bits(got.*field, ref.*field)) << name;
  }
}

TEST_F(Cuda, ScanRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const Config c{3, 517, 300, 16};
  SelectiveScanParams p = moved(random_params(c, gen, DType::f32), kGpu, DType::f32);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f32).to(kGpu);
  Tensor dlast = randn({c.B, c.E, c.N}, gen, DType::f32).to(kGpu);
  SelectiveScanOutput a = kernels::selective_scan_forward(p), b = kernels::selective_scan_forward(p);
  EXPECT_TRUE(same_bits(a.out, b.out));
  EXPECT_TRUE(same_bits(a.last_state, b.last_state));
  SelectiveScanGrads ga = kernels::selective_scan_backward(p, dout, dlast);
  SelectiveScanGrads gb = kernels::selective_scan_backward(p, dout, dlast);
  for (auto [name, field] : grad_fields()) EXPECT_TRUE(same_bits(ga.*field, gb.*field)) << name;
  // The training path: the forward keeps its chunk-start states and the backward uses them; the
  // states are the same computation, so the gradients are the same bits.
  SelectiveScanOutput saved = kernels::selective_scan_forward(p, true);
  ASSERT_TRUE(saved.checkpoints.defined());
  EXPECT_TRUE(same_bits(saved.out, a.out));
  SelectiveScanGrads gc = kernels::selective_scan_backward(p, dout, dlast, saved.checkpoints);
  for (auto [name, field] : grad_fields()) EXPECT_TRUE(same_bits(ga.*field, gc.*field)) << name << " (checkpoints)";
  expect_error([&] { kernels::selective_scan_backward(p, dout, dlast, saved.checkpoints.narrow(1, 0, 1)); },
               "[selective_scan] checkpoints do not come from a forward of these inputs");
}

TEST_F(Cuda, ScanRejectsMixedDevicesAndLargeN) {
  Generator gen(test_seed());
  SelectiveScanParams p = moved(random_params(Config{1, 5, 4, 3}, gen, DType::f32), kGpu, DType::f32);
  SelectiveScanParams mixed = p;
  mixed.A = p.A.to(kCpu);
  expect_error([&] { kernels::selective_scan_forward(mixed); }, "[selective_scan] A");
  SelectiveScanParams big = moved(random_params(Config{1, 5, 4, 65}, gen, DType::f32), kGpu, DType::f32);
  expect_error([&] { kernels::selective_scan_forward(big); }, "[selective_scan] the CUDA scan supports N from 1 to 64");
}

// A (rows, cols) f32 GPU tensor of standard normal values: a random block of 2^20 tiled (drawing 2^31
// values on the host would take a minute).
Tensor tiled_randn(int64_t rows, int64_t cols, Generator& gen) {
  const int64_t block = int64_t(1) << 20, n = rows * cols, reps = (n + block - 1) / block;
  Tensor src = randn({block}, gen, DType::f32).to(kGpu);
  Tensor out = empty({reps * block}, DType::f32, kGpu);
  out.view({reps, block}).copy_(src.unsqueeze(0).expand({reps, block}));
  return out.narrow(0, 0, n).view({1, rows, cols});
}

// B * L * E > 2^31: the last channel of a long single-row scan against the CPU scan of that channel alone.
TEST_F(Cuda, ScanBeyondTwoToThe31Elements) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const int64_t E = 64, N = 4, L = (int64_t(1) << 31) / E + 5;
  SelectiveScanParams p;
  p.u = tiled_randn(L, E, gen);
  p.delta = tiled_randn(L, E, gen);
  p.A = rand({E, N}, gen, DType::f32, -4.0, -0.1).to(kGpu);
  p.B_ssm = tiled_randn(L, N, gen);
  p.C_ssm = tiled_randn(L, N, gen);
  p.delta_softplus = true;
  SelectiveScanParams one;  // the last channel
  one.u = p.u.narrow(2, E - 1, 1).contiguous().to(kCpu);
  one.delta = p.delta.narrow(2, E - 1, 1).contiguous().to(kCpu);
  one.A = p.A.narrow(0, E - 1, 1).contiguous().to(kCpu);
  one.B_ssm = p.B_ssm.to(kCpu);
  one.C_ssm = p.C_ssm.to(kCpu);
  one.delta_softplus = true;
  Tensor dout = tiled_randn(L, E, gen);
  Tensor out_last;
  {
    SelectiveScanOutput r = kernels::selective_scan_forward(p);
    out_last = r.out.narrow(2, E - 1, 1).contiguous().to(kCpu);
  }
  SelectiveScanOutput ref = kernels::selective_scan_forward(one);
  const double out_err = rel_error(out_last, ref.out);
  EXPECT_LT(out_err, 1e-5);
  SelectiveScanGrads g = kernels::selective_scan_backward(p, dout, Tensor());
  SelectiveScanGrads gref = kernels::selective_scan_backward(one, dout.narrow(2, E - 1, 1).contiguous().to(kCpu), Tensor());
  const double du_err = rel_error(g.du.narrow(2, E - 1, 1).contiguous().to(kCpu), gref.du);
  const double dd_err = rel_error(g.ddelta.narrow(2, E - 1, 1).contiguous().to(kCpu), gref.ddelta);
  EXPECT_LT(du_err, 1e-4);
  EXPECT_LT(dd_err, 1e-4);
  std::printf("  B*L*E = %lld: out %.2e du %.2e ddelta %.2e\n", static_cast<long long>(L * E), out_err, du_err, dd_err);
}

}  // namespace
}  // namespace mom

// CUDA causal_conv1d forward and backward against the CPU reference (float64 on the CPU; the GPU in
// float32 and float64) on random inputs: W in 2..8, L in {1, 2, 3, 7, 64, 1000, 2049} (shorter
// and longer than W-1, a chunk, a block of chunks), odd E (scalar path) and E a multiple of 4 (vector
// path, and its misaligned fallback), B 1..4, with and without bias, SiLU, initial window and final
// window gradient. Chained calls equal one call on the whole sequence; results repeat bit for bit;
// mixed devices are rejected; the forward's SiLU is accurate over [-100, 100]. Rows in a routing's
// grouped order match the CPU's and equal the plain CUDA op permuted, bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/causal_conv1d.h"
#include "kernels/index.h"
#include "kernels/routing.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::same_bits;
using test::misaligned_copy;
using test::expect_error;
using test::test_seed;
using test::max_abs_diff;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

struct ConvCase {
  int64_t B, L, E, W;
  bool bias, init, dfinal, silu;
};

std::string describe(const ConvCase& c) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "B=%lld L=%lld E=%lld W=%lld%s%s%s%s", (long long)c.B, (long long)c.L,
                (long long)c.E, (long long)c.W, c.bias ? " bias" : "", c.init ? " init" : "",
                c.dfinal ? " dfinal" : "", c.silu ? " silu" : "");
  return buf;
}

// Inputs in float64 whose values are float32 numbers, so that every device and dtype sees the same data.
struct ConvInputs {
  Tensor x, w, b, init, dy, dfinal;
};

ConvInputs make_inputs(const ConvCase& c, Generator& gen) {
  auto f32_exact = [](const Tensor& t) { return t.to(DType::f32).to(DType::f64); };
  ConvInputs in;
  in.x = f32_exact(randn({c.B, c.L, c.E}, gen, DType::f64));
  in.w = f32_exact(randn({c.E, c.W}, gen, DType::f64, 0.0, 0.5));
  in.b = f32_exact(randn({c.E}, gen, DType::f64));
  in.init = f32_exact(randn({c.B, c.W - 1, c.E}, gen, DType::f64));
  in.dy = f32_exact(randn({c.B, c.L, c.E}, gen, DType::f64));
  in.dfinal = f32_exact(randn({c.B, c.W - 1, c.E}, gen, DType::f64));
  return in;
}

struct ConvResults {
  Tensor y, final_window, dx, dweight, dbias, dinit;
};

ConvResults run_conv(const ConvCase& c, const ConvInputs& in, DType dt, Device dev, bool misaligned = false) {
  auto put = [&](const Tensor& t, bool used) {
    if (!used) return Tensor();
    Tensor v = t.to(dt);
    return misaligned ? misaligned_copy(v) : v.to(dev);
  };
  Tensor x = put(in.x, true), w = put(in.w, true), b = put(in.b, c.bias), init = put(in.init, c.init);
  Tensor dy = put(in.dy, true), dfinal = put(in.dfinal, c.dfinal);
  kernels::CausalConv1dOutput out = kernels::causal_conv1d_forward({x, w, b, init, Tensor(), c.silu});
  kernels::CausalConv1dGrads g = kernels::causal_conv1d_backward({x, w, b, init, Tensor(), c.silu}, dy, dfinal);
  return {out.y, out.final_window, g.dx, g.dweight, g.dbias, g.dinitial_window};
}

const char* const kFields[] = {"y", "final_window", "dx", "dweight", "dbias", "dinitial_window"};

std::vector<Tensor> fields(const ConvResults& r) { return {r.y, r.final_window, r.dx, r.dweight, r.dbias, r.dinit}; }

// Relative error of every defined field of `got` against `ref`, field i against tol[i] (in the order
// of kFields). Updates `worst`.
void compare(const ConvResults& got, const ConvResults& ref, const double (&tol)[6], double (&worst)[6]) {
  std::vector<Tensor> g = fields(got), r = fields(ref);
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_EQ(g[i].defined(), r[i].defined()) << kFields[i];
    if (!r[i].defined()) continue;
    EXPECT_EQ(g[i].device(), kGpu) << kFields[i];
    ASSERT_EQ(g[i].shape(), r[i].shape()) << kFields[i];
    const double err = rel_error(g[i], r[i]);
    EXPECT_LT(err, tol[i]) << kFields[i];
    worst[i] = std::max(worst[i], err);
  }
}

// Outputs (the first two fields) against out_tol, gradients against grad_tol.
void compare(const ConvResults& got, const ConvResults& ref, double out_tol, double grad_tol, double (&worst)[6]) {
  const double tol[6] = {out_tol, out_tol, grad_tol, grad_tol, grad_tol, grad_tol};
  compare(got, ref, tol, worst);
}

void print_worst(const char* what, const double (&worst)[6]) {
  std::printf("  causal_conv1d %s: worst relative error", what);
  for (int i = 0; i < 6; ++i) std::printf(" %s %.1e", kFields[i], worst[i]);
  std::printf("\n");
}

TEST_F(Cuda, CausalConv1dMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const int64_t kLengths[] = {1, 2, 3, 7, 64, 1000, 2049};
  const int64_t kChannels[] = {1, 5, 129, 1537, 8, 1536};
  std::vector<ConvCase> cases;
  for (int64_t W = 2; W <= 8; ++W)
    for (int li = 0; li < 7; ++li) {
      const int64_t L = kLengths[li], E = kChannels[(W + li) % 6];
      const int64_t B = L * E > 1000000 ? 1 : 1 + (W + li) % 4;
      const int flags = static_cast<int>((W * 3 + li) % 16);  // every combination of the four options
      cases.push_back({B, L, E, W, (flags & 1) != 0, (flags & 2) != 0, (flags & 4) != 0, (flags & 8) != 0});
      cases.push_back({B, L, E, W, true, true, true, true});
    }
  double worst32[6] = {}, worst64[6] = {};
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(describe(c));
    ConvInputs in = make_inputs(c, gen);
    ConvResults ref = run_conv(c, in, DType::f64, kCpu);
    compare(run_conv(c, in, DType::f32, kGpu), ref, 1e-5, 1e-4, worst32);
    compare(run_conv(c, in, DType::f64, kGpu), ref, 1e-12, 1e-12, worst64);
  }
  print_worst("float32 GPU vs float64 CPU", worst32);
  print_worst("float64 GPU vs float64 CPU", worst64);
}

TEST_F(Cuda, CausalConv1dMisalignedInputsTakeTheScalarPath) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  double worst32[6] = {}, worst64[6] = {};
  for (const ConvCase& c :
       {ConvCase{2, 300, 1536, 4, true, true, true, true}, ConvCase{3, 70, 8, 7, false, true, true, false}}) {
    SCOPED_TRACE(describe(c));
    ConvInputs in = make_inputs(c, gen);
    ConvResults ref = run_conv(c, in, DType::f64, kCpu);
    compare(run_conv(c, in, DType::f32, kGpu, true), ref, 1e-5, 1e-4, worst32);
    compare(run_conv(c, in, DType::f64, kGpu, true), ref, 1e-12, 1e-12, worst64);
  }
  print_worst("misaligned float32", worst32);
  print_worst("misaligned float64", worst64);
}

// The sequence cut into chunks, each chunk's final window passed as the next one's initial window
// (and, backwards, each chunk's dinitial_window as the previous one's dfinal_window), against one call
// on the whole sequence.
void check_chained(const ConvCase& whole_case, const std::vector<int64_t>& chunks, DType dt, Generator& gen) {
  SCOPED_TRACE(describe(whole_case) + " " + dtype_name(dt));
  const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
  ConvInputs in = make_inputs(whole_case, gen);
  Tensor x = in.x.to(dt).to(kGpu), w = in.w.to(dt).to(kGpu), b = in.b.to(dt).to(kGpu);
  Tensor init = in.init.to(dt).to(kGpu), dy = in.dy.to(dt).to(kGpu), dfinal = in.dfinal.to(dt).to(kGpu);
  const bool silu = whole_case.silu;
  kernels::CausalConv1dOutput whole = kernels::causal_conv1d_forward({x, w, b, init, Tensor(), silu});
  kernels::CausalConv1dGrads whole_g = kernels::causal_conv1d_backward({x, w, b, init, Tensor(), silu}, dy, dfinal);

  std::vector<Tensor> xs, dys, windows = {init};  // windows[k]: the initial window of chunk k
  int64_t start = 0;
  for (int64_t len : chunks) {
    xs.push_back(x.narrow(1, start, len).contiguous());
    dys.push_back(dy.narrow(1, start, len).contiguous());
    kernels::CausalConv1dOutput out = kernels::causal_conv1d_forward({xs.back(), w, b, windows.back(), Tensor(), silu});
    EXPECT_EQ(max_abs_diff(out.y, whole.y.narrow(1, start, len)), 0.0) << "y of the chunk at " << start;
    windows.push_back(out.final_window);
    start += len;
  }
  EXPECT_EQ(max_abs_diff(windows.back(), whole.final_window), 0.0);

  Tensor g_window = dfinal;  // the gradient reaching chunk k's final window
  std::vector<double> dweight(w.numel(), 0.0), dbias(b.numel(), 0.0);  // summed over the chunks
  int64_t end = start;
  for (size_t k = chunks.size(); k-- > 0;) {
    end -= chunks[k];
    kernels::CausalConv1dGrads g =
        kernels::causal_conv1d_backward({xs[k], w, b, windows[k], Tensor(), silu}, dys[k], g_window);
    EXPECT_LT(rel_error(g.dx, whole_g.dx.narrow(1, end, chunks[k])), tol) << "dx of chunk " << k;
    std::vector<double> gw = g.dweight.to_vector<double>(), gb = g.dbias.to_vector<double>();
    for (size_t i = 0; i < gw.size(); ++i) dweight[i] += gw[i];
    for (size_t i = 0; i < gb.size(); ++i) dbias[i] += gb[i];
    g_window = g.dinitial_window;
  }
  // The chunks' sums are grouped differently from the whole call's: rounding apart.
  EXPECT_LT(rel_error(from_vector<double>(dweight, w.shape()), whole_g.dweight), 10 * tol);
  EXPECT_LT(rel_error(from_vector<double>(dbias, b.shape()), whole_g.dbias), 10 * tol);
  EXPECT_LT(rel_error(g_window, whole_g.dinitial_window), tol);
}

TEST_F(Cuda, CausalConv1dChainedCallsEqualOneCall) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (DType dt : {DType::f32, DType::f64}) {
    // Chunks shorter than W-1, of one step, across a 64-step chunk and a 256-step block boundary.
    check_chained({2, 336, 129, 4, true, true, true, true}, {70, 1, 2, 3, 260}, dt, gen);
    check_chained({3, 336, 64, 8, true, true, true, true}, {5, 1, 2, 7, 64, 257}, dt, gen);
    check_chained({1, 12, 5, 2, true, true, true, false}, std::vector<int64_t>(12, 1), dt, gen);
  }
}

TEST_F(Cuda, CausalConv1dRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const ConvCase& c :
       {ConvCase{3, 1000, 1537, 4, true, true, true, true}, ConvCase{2, 2049, 1536, 4, true, false, false, true}}) {
    SCOPED_TRACE(describe(c));
    ConvInputs in = make_inputs(c, gen);
    ConvResults first = run_conv(c, in, DType::f32, kGpu), second = run_conv(c, in, DType::f32, kGpu);
    std::vector<Tensor> a = fields(first), b = fields(second);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i], b[i])) << kFields[i];
  }
}

// The forward's SiLU over its whole range: weights (0, 0, 0, 1) and no bias make pre = x exactly, so y
// is silu(x) elementwise. x sweeps [-100, 100] (both channel paths: E = 4 vector, E = 5 scalar).
// Against double: 1e-6 relative in float32 (the fast exp2 and divide, about 5e-7 by their documented
// errors) except where |silu(x)| < 2e-36 (x below -86), where the absolute error must be below that;
// 1e-14 relative in float64.
TEST_F(Cuda, CausalConv1dForwardSiluIsAccurateOverTheRange) {
  for (int64_t E : {4, 5}) {
    const int64_t L = 20000 / E;
    std::vector<double> xv(L * E), wv(E * 4, 0.0);
    for (size_t i = 0; i < xv.size(); ++i)
      xv[i] = static_cast<float>(-100.0 + 200.0 * static_cast<double>(i) / static_cast<double>(xv.size() - 1));
    for (int64_t e = 0; e < E; ++e) wv[e * 4 + 3] = 1.0;
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE("E=" + std::to_string(E) + (dt == DType::f32 ? " float32" : " float64"));
      Tensor x = from_vector(xv, {1, L, E}).to(dt).to(kGpu), w = from_vector(wv, {E, 4}).to(dt).to(kGpu);
      std::vector<double> y =
          kernels::causal_conv1d_forward({x, w, Tensor(), Tensor(), Tensor(), true}).y.to_vector<double>();
      const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
      double worst = 0;
      int bad = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        const double ref = xv[i] / (1.0 + std::exp(-xv[i])), err = std::fabs(y[i] - ref);
        const double bound = dt == DType::f32 ? std::max(tol * std::fabs(ref), 2e-36) : tol * std::fabs(ref) + 1e-300;
        if (!(err <= bound) && ++bad <= 5) ADD_FAILURE() << "x=" << xv[i] << " y=" << y[i] << " silu=" << ref;
        if (std::fabs(ref) >= 2e-36) worst = std::max(worst, err / std::fabs(ref));
      }
      EXPECT_EQ(bad, 0);
      std::printf("silu in the conv forward, %s E=%lld: max relative error %.2e\n",
                  dt == DType::f32 ? "float32" : "float64", static_cast<long long>(E), worst);
    }
  }
}

TEST_F(Cuda, CausalConv1dRejectsMixedDevicesAndBadShapes) {
  Tensor x = ones({2, 5, 3}, DType::f32, kGpu), w = ones({3, 4}, DType::f32, kGpu);
  Tensor b = ones({3}, DType::f32, kGpu), init = ones({2, 3, 3}, DType::f32, kGpu);
  auto fwd = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb, const Tensor& ii) {
    return [=] { kernels::causal_conv1d_forward({xx, ww, bb, ii, Tensor(), true}); };
  };
  expect_error(fwd(x, w.to(kCpu), b, init), "[causal_conv1d] weight is on cpu but x is on cuda:0");
  expect_error(fwd(x, w, b.to(kCpu), init), "[causal_conv1d] bias is on cpu but x is on cuda:0");
  expect_error(fwd(x, w, b, init.to(kCpu)), "[causal_conv1d] initial_window is on cpu but x is on cuda:0");
  expect_error(fwd(x.to(kCpu), w, Tensor(), Tensor()), "[causal_conv1d] weight is on cuda:0 but x is on cpu");
  expect_error(fwd(x, ones({3, 9}, DType::f32, kGpu), Tensor(), Tensor()),
               "[causal_conv1d] conv width W = 9 is outside [2, 8]");
  Tensor dy = ones({2, 5, 3}, DType::f32, kGpu);
  expect_error([&] { kernels::causal_conv1d_backward({x, w, b, init, Tensor(), true}, dy.to(kCpu), Tensor()); },
               "[causal_conv1d] dy is on cpu but x is on cuda:0");
  expect_error([&] { kernels::causal_conv1d_backward({x, w, b, init, Tensor(), true}, dy, ones({2, 3, 3})); },
               "[causal_conv1d] dfinal_window is on cpu but x is on cuda:0");
  expect_error(
      [&] {
        kernels::causal_conv1d_backward({x, w, b, init, Tensor(), true}, ones({2, 4, 3}, DType::f32, kGpu), Tensor());
      },
      "[causal_conv1d] dy has shape (2, 4, 3), expected (2, 5, 3)");
}

// t (B, L, E) with its rows in the grouped order of r (on t's device): row inverse[b*L + t] holds
// token (b, t).
Tensor grouped(const Tensor& t, const kernels::Routing& r) {
  const int64_t B = t.size(0), L = t.size(1), E = t.size(2);
  return kernels::index_select(t.contiguous().view({B * L, E}), 0, r.perm).view({B, L, E});
}

// The op with x and dy (and so y and dx) in the grouped order of r, on r's device, in dtype dt.
ConvResults run_grouped(const ConvCase& c, const ConvInputs& in, DType dt, const kernels::Routing& r) {
  const Device dev = r.device();
  auto put = [&](const Tensor& t, bool used) { return used ? t.to(dt).to(dev) : Tensor(); };
  Tensor x = grouped(put(in.x, true), r), w = put(in.w, true), b = put(in.b, c.bias), init = put(in.init, c.init);
  Tensor dy = grouped(put(in.dy, true), r), dfinal = put(in.dfinal, c.dfinal);
  kernels::CausalConv1dOutput out = kernels::causal_conv1d_forward({x, w, b, init, Tensor(), c.silu, &r});
  kernels::CausalConv1dGrads g = kernels::causal_conv1d_backward({x, w, b, init, Tensor(), c.silu, &r}, dy, dfinal);
  return {out.y, out.final_window, g.dx, g.dweight, g.dbias, g.dinitial_window};
}

TEST_F(Cuda, ConvRowsInGroupedOrderMatchCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const int64_t M = 3;
  // E a multiple of 4 (vector packs) and not; L of one step, shorter than W-1, across chunks and blocks.
  const ConvCase cases[] = {
      {2, 37, 5, 4, true, true, true, true},        {3, 1000, 64, 4, true, false, true, true},
      {1, 2049, 1536, 4, true, true, false, true},  {2, 300, 129, 8, false, true, true, false},
      {4, 70, 8, 3, false, false, false, true},     {2, 2, 12, 8, true, true, true, true},
      {3, 1, 4, 2, true, true, true, false},        {2, 513, 1537, 5, true, true, true, true},
  };
  double worst32[6] = {}, worst64[6] = {};
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(describe(c));
    ConvInputs in = make_inputs(c, gen);
    Tensor ids = randint({c.B * c.L}, 0, M, gen);
    const kernels::Routing cpu_routing = kernels::Routing::from_modalities(ids, M);
    const kernels::Routing gpu_routing = kernels::Routing::from_modalities(ids.to(kGpu), M);
    ConvResults ref = run_grouped(c, in, DType::f64, cpu_routing);
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(dtype_name(dt));
      ConvResults got = run_grouped(c, in, dt, gpu_routing);
      // y, final_window, dx, dinitial_window: at most W terms each; dweight, dbias: sums over B*L.
      const double t = dt == DType::f32 ? 1e-5 : 1e-12, sum_t = dt == DType::f32 ? 1e-4 : 1e-12;
      const double tol[6] = {t, t, t, sum_t, sum_t, t};
      compare(got, ref, tol, dt == DType::f32 ? worst32 : worst64);
      // The plain CUDA op on the token-order tensors, its y and dx then permuted: the same bits.
      ConvResults plain = run_conv(c, in, dt, kGpu);
      plain.y = grouped(plain.y, gpu_routing);
      plain.dx = grouped(plain.dx, gpu_routing);
      std::vector<Tensor> g = fields(got), p = fields(plain);
      for (size_t i = 0; i < g.size(); ++i) EXPECT_TRUE(same_bits(g[i], p[i])) << kFields[i] << " vs plain, permuted";
    }
  }
  print_worst("grouped rows, float32 GPU vs float64 CPU", worst32);
  print_worst("grouped rows, float64 GPU vs float64 CPU", worst64);
}

TEST_F(Cuda, ConvRowsRejectARoutingOfAnotherLengthOrDevice) {
  Generator gen(test_seed());
  Tensor x = ones({2, 5, 3}, DType::f32, kGpu), w = ones({3, 4}, DType::f32, kGpu);
  Tensor dy = ones({2, 5, 3}, DType::f32, kGpu);
  Tensor ids = randint({10}, 0, 2, gen);
  const kernels::Routing on_cpu = kernels::Routing::from_modalities(ids, 2);
  const kernels::Routing longer = kernels::Routing::from_modalities(randint({11}, 0, 2, gen).to(kGpu), 2);
  expect_error([&] { kernels::causal_conv1d_forward({x, w, Tensor(), Tensor(), Tensor(), true, &on_cpu}); },
               "[causal_conv1d] the routing is on cpu but x is on cuda:0");
  expect_error(
      [&] { kernels::causal_conv1d_backward({x, w, Tensor(), Tensor(), Tensor(), true, &on_cpu}, dy, Tensor()); },
      "[causal_conv1d] the routing is on cpu but x is on cuda:0");
  expect_error([&] { kernels::causal_conv1d_forward({x, w, Tensor(), Tensor(), Tensor(), true, &longer}); },
               "[causal_conv1d] the routing has 11 tokens, x has B*L = 10");
  expect_error(
      [&] { kernels::causal_conv1d_backward({x, w, Tensor(), Tensor(), Tensor(), true, &longer}, dy, Tensor()); },
      "[causal_conv1d] the routing has 11 tokens, x has B*L = 10");
  const kernels::Routing on_gpu = kernels::Routing::from_modalities(ids.to(kGpu), 2);
  expect_error(
      [&] { kernels::causal_conv1d_forward({x.to(kCpu), w.to(kCpu), Tensor(), Tensor(), Tensor(), true, &on_gpu}); },
      "[causal_conv1d] the routing is on cuda:0 but x is on cpu");
}

}  // namespace
}  // namespace mom

// bf16 selective scan on CUDA (mixed precision) against the CPU reference: the same public functions
// called on CPU copies of the same inputs (u, delta, B_ssm, C_ssm, z, dout bf16; A, D, delta_bias,
// initial_state, dlast_state float32), which widen the bf16 tensors to float32, run the float32 scan and
// round each bf16 output once. Mamba-like inputs (step sizes softplus(delta + delta_bias) spread over
// 0.001 .. 0.1 per channel, A = -exp(A_log) around -(n + 1), so states remember up to hundreds of steps),
// N = 16, 8, 5 and 4, lengths over several chunks of the kernel (16 steps) and odd, channel counts off
// the blocks' 32 / 64 / 128 channels, each optional input on and off, document starts, the routing's
// grouped row order, both layouts of the kernel (two and four states per thread), an undefined dout or
// dlast_state; forward and backward through both of its paths (the forward's checkpoints, or its own
// recomputation), which give the same bits; dz written over dout; run-to-run identity; dtype errors.
//
// Tolerances. Both devices compute every value in float32 from the same inputs; the float32 values differ
// by the exponentials (the GPU's ex2.approx, the CPU's polynomial expf, 2 ulp each, compounded over the
// decays a state goes through) and the order of the sums: about 1e-6 of the norm (the CPU's float32
// against its float64 on these inputs: 1e-7 to 8e-7). A bf16 output is that float32 value rounded once
// on both sides, so the two agree except where a value lies within that noise of a rounding boundary
// (0.01% to 0.07% of the elements, the CPU's float32 against its float64), and then they are one bf16
// step (at most 2^-7 of the value) apart: per element |cuda - ref| <= 2^-7 |ref| + 1e-3 rms(ref) (the
// second term covers values near zero after cancellation), and at most 2% of the elements (and one) may
// differ at all: a second rounding anywhere (a bf16 intermediate, dB summed in bf16 partials) moves far
// more of them. A float32 output (last_state, dA, dD, ddelta_bias, dinitial_state) is the float32 value
// itself: per element |cuda - ref| <= 1e-4 (|ref| + rms(ref)), and 2e-5 of the norm, 25 times the CPU's
// own float32 error, for the GPU's coarser exponentials.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/routing.h"
#include "kernels/selective_scan.h"
#include "tests/gpu/bf16_compare.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using kernels::Routing;
using kernels::SelectiveScanGrads;
using kernels::SelectiveScanOutput;
using kernels::SelectiveScanParams;
using test::Cuda;
using test::expect_close;
using test::same_bits;
using test::test_seed;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

struct Config {
  int64_t B, L, E, N;
  bool D = true, z = true, bias = true, h0 = true, softplus = true;
  bool docs = false, grouped = false;
  bool dout = true, dlast = true;  // the backward's incoming gradients (undefined: zero)
};

std::string describe(const Config& c) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "B=%lld L=%lld E=%lld N=%lld%s%s%s%s%s%s%s%s%s", static_cast<long long>(c.B),
                static_cast<long long>(c.L), static_cast<long long>(c.E), static_cast<long long>(c.N),
                c.D ? " D" : "", c.z ? " z" : "", c.bias ? " bias" : "", c.h0 ? " h0" : "",
                c.softplus ? " softplus" : "", c.docs ? " docs" : "", c.grouped ? " grouped" : "",
                c.dout ? "" : " no-dout", c.dlast ? "" : " no-dlast");
  return buf;
}

Tensor tensor_of(const std::vector<float>& v, const Shape& shape, DType dt) {
  return from_vector<float>(v, shape).to(dt);
}

std::vector<float> normal(int64_t n, Generator& gen, double mean = 0.0, double std = 1.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(mean + std * gen.normal());
  return v;
}

// softplus^-1(y) = log(exp(y) - 1), written so that it holds for small y.
double inverse_softplus(double y) { return y + std::log(-std::expm1(-y)); }

// Every input on the CPU: the sequence tensors bf16 (rounded from float32 draws: the rounding is the
// input), the parameters and states float32; with `grouped`, the modality ids of the row order.
struct Inputs {
  SelectiveScanParams p;
  Tensor ids;          // (B*L) int32, or undefined
  Tensor dout, dlast;  // bf16 (B, L, E), float32 (B, E, N); undefined where the config says
};

Inputs random_inputs(const Config& c, Generator& gen) {
  const int64_t B = c.B, L = c.L, E = c.E, N = c.N;
  Inputs in;
  SelectiveScanParams& p = in.p;
  // Per-channel step size as Mamba initialises it: log-uniform over [0.001, 0.1]; with delta_bias it is
  // the bias (softplus^-1 of it) and delta the projection's noise around 0, else delta carries both.
  std::vector<double> dt0(static_cast<size_t>(E));
  for (double& d : dt0) d = std::exp(std::log(0.001) + gen.uniform() * (std::log(0.1) - std::log(0.001)));
  std::vector<float> delta = normal(B * L * E, gen, 0.0, 0.5), bias(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) {
    if (c.softplus) {
      const double center = inverse_softplus(dt0[e]);
      bias[e] = static_cast<float>(center);
      if (!c.bias)
        for (int64_t bt = 0; bt < B * L; ++bt) delta[bt * E + e] += static_cast<float>(center);
    } else {  // the step sizes themselves, positive: dt0 times a factor in [0.5, 1.5], half of it the bias
      bias[e] = static_cast<float>(0.5 * dt0[e]);
      for (int64_t bt = 0; bt < B * L; ++bt) {
        float& x = delta[bt * E + e];
        x = static_cast<float>(dt0[e] * (c.bias ? 0.5 : 1.0) + 0.5 * dt0[e] * std::tanh(x));
      }
    }
  }
  p.u = tensor_of(normal(B * L * E, gen), {B, L, E}, DType::bf16);
  p.delta = tensor_of(delta, {B, L, E}, DType::bf16);
  std::vector<float> A(static_cast<size_t>(E * N));
  for (int64_t i = 0; i < E * N; ++i) A[i] = static_cast<float>(-std::exp(std::log(double(i % N + 1)) + 0.2 * gen.normal()));
  p.A = tensor_of(A, {E, N}, DType::f32);
  p.B_ssm = tensor_of(normal(B * L * N, gen), {B, L, N}, DType::bf16);
  p.C_ssm = tensor_of(normal(B * L * N, gen), {B, L, N}, DType::bf16);
  if (c.D) p.D = tensor_of(normal(E, gen, 1.0, 0.5), {E}, DType::f32);
  if (c.z) p.z = tensor_of(normal(B * L * E, gen), {B, L, E}, DType::bf16);
  if (c.bias) p.delta_bias = tensor_of(bias, {E}, DType::f32);
  if (c.h0) p.initial_state = tensor_of(normal(B * E * N, gen), {B, E, N}, DType::f32);
  p.delta_softplus = c.softplus;
  if (c.docs) p.doc_start = test::random_doc_starts(B, L, 120, gen);  // documents of 1 to 120 tokens
  if (c.grouped) {
    std::vector<int32_t> ids(static_cast<size_t>(B * L));
    for (int32_t& id : ids) id = static_cast<int32_t>(gen.randint(3));
    in.ids = from_vector<int32_t>(ids, {B * L});
  }
  if (c.dout) in.dout = tensor_of(normal(B * L * E, gen), {B, L, E}, DType::bf16);
  if (c.dlast) in.dlast = tensor_of(normal(B * E * N, gen), {B, E, N}, DType::f32);
  return in;
}

Tensor on(const Tensor& t, Device d) { return t.defined() ? t.to(d) : Tensor(); }

SelectiveScanParams params_on(const SelectiveScanParams& p, Device d, const Routing* order) {
  SelectiveScanParams q = p;
  for (Tensor* t : {&q.u, &q.delta, &q.A, &q.B_ssm, &q.C_ssm, &q.D, &q.z, &q.delta_bias, &q.initial_state,
                    &q.doc_start})
    *t = on(*t, d);
  q.order = order;
  return q;
}

struct Field {
  const char* name;
  Tensor SelectiveScanGrads::*field;
  bool bf16;  // a sequence gradient (bf16), else a parameter or state gradient (float32)
};
const Field kGrads[] = {{"du", &SelectiveScanGrads::du, true},
                        {"ddelta", &SelectiveScanGrads::ddelta, true},
                        {"dA", &SelectiveScanGrads::dA, false},
                        {"dB", &SelectiveScanGrads::dB_ssm, true},
                        {"dC", &SelectiveScanGrads::dC_ssm, true},
                        {"dD", &SelectiveScanGrads::dD, false},
                        {"dz", &SelectiveScanGrads::dz, true},
                        {"ddelta_bias", &SelectiveScanGrads::ddelta_bias, false},
                        {"dinitial_state", &SelectiveScanGrads::dinitial_state, false}};

// The header's tolerances: at most 2% of a bf16 output's elements (and one) differ; float32 1e-4 per
// element and 2e-5 of the norm. The optional inputs' gradients (dD, dz, ddelta_bias, dinitial_state)
// are undefined on both devices without the input.
const test::Tolerances kTolerances{/*bf16_share=*/0.02, /*bf16_spare=*/1, /*f32_element=*/1e-4,
                                   /*f32_norm=*/2e-5, /*undefined_ok=*/true};

// Forward (with checkpoints) and backward through both paths on the GPU, the same on the CPU; every
// output against the reference, and the two backward paths bit for bit.
void compare_with_cpu(const Config& c, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  Generator gen(seed);
  const Inputs in = random_inputs(c, gen);
  Routing cpu_routing, gpu_routing;
  if (c.grouped) {
    cpu_routing = Routing::from_modalities(in.ids, 3);
    gpu_routing = Routing::from_modalities(in.ids.to(kGpu), 3);
  }
  const SelectiveScanParams cpu = params_on(in.p, kCpu, c.grouped ? &cpu_routing : nullptr);
  const SelectiveScanParams gpu = params_on(in.p, kGpu, c.grouped ? &gpu_routing : nullptr);

  const SelectiveScanOutput ref = kernels::selective_scan_forward(cpu);
  const SelectiveScanOutput got = kernels::selective_scan_forward(gpu, true);
  ASSERT_TRUE(got.checkpoints.defined());
  EXPECT_EQ(got.checkpoints.dtype(), DType::f32);
  const double out_share = expect_close(got.out, ref.out, DType::bf16, kTolerances, "out");
  const double last_err = expect_close(got.last_state, ref.last_state, DType::f32, kTolerances, "last_state");

  const SelectiveScanGrads gref = kernels::selective_scan_backward(cpu, in.dout, in.dlast);
  const Tensor dout = on(in.dout, kGpu), dlast = on(in.dlast, kGpu);
  const SelectiveScanGrads saved = kernels::selective_scan_backward(gpu, dout, dlast, got.checkpoints);
  const SelectiveScanGrads recomputed = kernels::selective_scan_backward(gpu, dout, dlast);
  double worst_share = 0, worst_err = 0;
  for (const Field& f : kGrads) {
    // Without dout, dy = 0: dC, dD and dz are zero.
    const bool zero = !c.dout && (f.field == &SelectiveScanGrads::dC_ssm || f.field == &SelectiveScanGrads::dD ||
                                  f.field == &SelectiveScanGrads::dz);
    const double e =
        expect_close(saved.*f.field, gref.*f.field, f.bf16 ? DType::bf16 : DType::f32, kTolerances, f.name, zero);
    if (f.bf16) worst_share = std::max(worst_share, e);
    else worst_err = std::max(worst_err, e);
    EXPECT_TRUE(same_bits(saved.*f.field, recomputed.*f.field)) << f.name << ": the two backward paths differ";
  }
  std::printf("  bf16 %-62s out %.3f last %.1e | grads: bf16 %.3f f32 %.1e\n", describe(c).c_str(), out_share,
              last_err, worst_share, worst_err);
}

TEST_F(Cuda, ScanBf16MatchesCpuReference) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  auto with = [](Config c, auto&& edit) {
    edit(c);
    return c;
  };
  const Config configs[] = {
      {2, 300, 37, 16},
      with(Config{3, 301, 70, 8}, [](Config& c) { c.docs = c.grouped = true; }),
      with(Config{2, 257, 45, 4}, [](Config& c) { c.D = c.z = false; }),
      with(Config{2, 300, 33, 16}, [](Config& c) { c.bias = c.h0 = false; c.docs = true; }),
      with(Config{1, 299, 130, 5}, [](Config& c) { c.softplus = false; c.grouped = true; }),
      with(Config{2, 131, 29, 16}, [](Config& c) { c.softplus = c.D = c.bias = false; c.dout = false; }),
      with(Config{3, 77, 19, 8}, [](Config& c) { c.z = c.h0 = false; c.dlast = false; c.docs = true; }),
      // enough channel blocks (B * ceil(E / 32) >= 2 per multiprocessor) for four states per thread
      with(Config{8, 131, 1100, 16}, [](Config& c) { c.docs = c.grouped = true; }),
      {1, 17, 3, 16},
  };
  for (const Config& c : configs) compare_with_cpu(c, seed++);
}

// dz written over dout: the same gradients bit for bit, through both backward paths, and dz is the
// dout buffer.
TEST_F(Cuda, ScanBf16DzOverDoutGivesTheSameGradients) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Config c{3, 300, 67, 16};
  c.docs = true;
  const Inputs in = random_inputs(c, gen);
  const SelectiveScanParams p = params_on(in.p, kGpu, nullptr);
  const Tensor dout = in.dout.to(kGpu), dlast = in.dlast.to(kGpu);
  const SelectiveScanOutput f = kernels::selective_scan_forward(p, true);
  for (const Tensor& ckpt : {Tensor(), f.checkpoints}) {
    const SelectiveScanGrads ref = kernels::selective_scan_backward(p, dout, dlast, ckpt);
    Tensor given = dout.clone();
    const SelectiveScanGrads got = kernels::selective_scan_backward(p, given, dlast, ckpt, true);
    EXPECT_TRUE(got.dz.is_same(given));
    EXPECT_EQ(got.dz.dtype(), DType::bf16);
    for (const Field& g : kGrads) EXPECT_TRUE(same_bits(got.*g.field, ref.*g.field)) << g.name;
  }
}

// The same call twice gives the same bits (no atomics: dB and dC are summed over the channel blocks in a
// fixed order in float32, then rounded).
TEST_F(Cuda, ScanBf16RepeatsBitForBit) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Config c{3, 517, 300, 16};
  c.grouped = true;
  const Inputs in = random_inputs(c, gen);
  const Routing routing = Routing::from_modalities(in.ids.to(kGpu), 3);
  const SelectiveScanParams p = params_on(in.p, kGpu, &routing);
  const Tensor dout = in.dout.to(kGpu), dlast = in.dlast.to(kGpu);
  const SelectiveScanOutput a = kernels::selective_scan_forward(p), b = kernels::selective_scan_forward(p, true);
  EXPECT_TRUE(same_bits(a.out, b.out));
  EXPECT_TRUE(same_bits(a.last_state, b.last_state));
  const SelectiveScanGrads ga = kernels::selective_scan_backward(p, dout, dlast, b.checkpoints);
  const SelectiveScanGrads gb = kernels::selective_scan_backward(p, dout, dlast, b.checkpoints);
  for (const Field& g : kGrads) EXPECT_TRUE(same_bits(ga.*g.field, gb.*g.field)) << g.name;
}

// The parameters and states of a bf16 scan are float32: bf16 ones, or float32 sequence tensors beside a
// bf16 u, are refused with the op's name.
TEST_F(Cuda, ScanBf16RefusesOtherDtypes) {
  Generator gen(test_seed());
  const Inputs in = random_inputs(Config{1, 20, 8, 4}, gen);
  const SelectiveScanParams p = params_on(in.p, kGpu, nullptr);
  SelectiveScanParams bad_a = p;
  bad_a.A = p.A.to(DType::bf16);
  test::expect_error([&] { kernels::selective_scan_forward(bad_a); }, "[selective_scan] A");
  SelectiveScanParams bad_h0 = p;
  bad_h0.initial_state = p.initial_state.to(DType::bf16);
  test::expect_error([&] { kernels::selective_scan_forward(bad_h0); }, "[selective_scan] initial_state");
  SelectiveScanParams bad_b = p;
  bad_b.B_ssm = p.B_ssm.to(DType::f32);
  test::expect_error([&] { kernels::selective_scan_forward(bad_b); }, "[selective_scan] B_ssm");
  test::expect_error([&] { kernels::selective_scan_backward(p, in.dout.to(kGpu), in.dlast.to(kGpu).to(DType::bf16)); },
                     "[selective_scan] dlast_state");
}

}  // namespace
}  // namespace mom

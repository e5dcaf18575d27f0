// bf16 causal conv1d on CUDA (mixed precision) against the CPU reference: the same public functions
// called on CPU copies of the same inputs (x, initial_window, dy, dfinal_window bf16; weight, bias
// float32), which widen the bf16 tensors to float32, run the float32 op and round each bf16 output once.
// W = 2 and 4, with and without bias, SiLU, initial window and final-window gradient, document starts,
// the routing's grouped row order; odd L over several of the kernels' chunks (16 steps forward, 64
// backward) and one past a 256-step tile of the parameter partials, L shorter than W-1, E a multiple of
// the packs (4 channels forward, 2 backward), E even but not a multiple of 4 (forward one channel per
// thread, backward packed), odd E and a misaligned x (one channel per thread both ways). Also: the
// forward of chained calls equals one call bit for bit, results repeat bit for bit, and other dtypes
// beside a bf16 x are refused.
//
// Tolerances. Both devices compute every value in float32 from the same inputs; the float32 values
// differ by the order of operations (fused multiply-adds on the GPU) and the GPU's fast exp2 and divide
// in SiLU and its derivative (about 3e-7 relative): a few float32 ulps. A bf16 output is that float32
// value rounded once on both sides, so the two agree except where a value lies within that noise of a
// rounding boundary, and then they are one bf16 step (at most 2^-7 of the value) apart: per element
// |cuda - ref| <= 2^-7 |ref| + 1e-3 rms(ref) (the second term covers values near zero after
// cancellation), and at most 1% of the elements (and one) may differ at all: a second rounding (a bf16
// intermediate such as a rounded dpre) would move far more of them. final_window is a copy of inputs:
// the same bits. dweight and dbias (float32) are sums of the same float32 products over B*L steps, in
// float32 per 64-step chunk then double on the GPU, in double on the CPU: per element
// |cuda - ref| <= 1e-4 (|ref| + rms(ref)), and 1e-5 of the norm (about ten times the float32 rounding
// of the chunk sums).
#include <cstdio>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/causal_conv1d.h"
#include "kernels/index.h"
#include "kernels/routing.h"
#include "tests/gpu/bf16_compare.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using kernels::CausalConv1dGrads;
using kernels::CausalConv1dOutput;
using kernels::CausalConv1dParams;
using kernels::Routing;
using test::Cuda;
using test::expect_close;
using test::same_bits;
using test::test_seed;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

struct Config {
  int64_t B, L, E, W;
  bool bias = true, init = true, dfinal = true, silu = true;
  bool docs = false, grouped = false, misaligned = false;
};

std::string describe(const Config& c) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "B=%lld L=%lld E=%lld W=%lld%s%s%s%s%s%s%s", static_cast<long long>(c.B),
                static_cast<long long>(c.L), static_cast<long long>(c.E), static_cast<long long>(c.W),
                c.bias ? " bias" : "", c.init ? " init" : "", c.dfinal ? " dfinal" : "", c.silu ? " silu" : "",
                c.docs ? " docs" : "", c.grouped ? " grouped" : "", c.misaligned ? " misaligned" : "");
  return buf;
}

std::vector<float> normal(int64_t n, Generator& gen, double std = 1.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(std * gen.normal());
  return v;
}

Tensor tensor_of(const std::vector<float>& v, const Shape& shape, DType dt) {
  return from_vector<float>(v, shape).to(dt);
}

// t (B, L, C) with its rows in the grouped order of r: row inverse[b*L + t] holds token (b, t).
Tensor grouped(const Tensor& t, const Routing& r) {
  const int64_t B = t.size(0), L = t.size(1), C = t.size(2);
  return kernels::index_select(t.contiguous().view({B * L, C}), 0, r.perm).view({B, L, C});
}

// Every input on the CPU: the sequence tensors bf16 (rounded from float32 draws: the rounding is the
// input), weight and bias float32; x and dy already in the grouped order when the config asks for it.
struct Inputs {
  CausalConv1dParams p;
  Tensor ids;        // (B*L) int32 modality ids of the grouped order, or undefined
  Routing routing;   // on the CPU, from ids
  Tensor dy, dfinal;
};

Inputs random_inputs(const Config& c, Generator& gen) {
  const int64_t B = c.B, L = c.L, E = c.E, W = c.W;
  Inputs in;
  CausalConv1dParams& p = in.p;
  p.x = tensor_of(normal(B * L * E, gen), {B, L, E}, DType::bf16);
  p.weight = tensor_of(normal(E * W, gen, 0.5), {E, W}, DType::f32);
  if (c.bias) p.bias = tensor_of(normal(E, gen), {E}, DType::f32);
  if (c.init) p.initial_window = tensor_of(normal(B * (W - 1) * E, gen), {B, W - 1, E}, DType::bf16);
  p.silu = c.silu;
  if (c.docs) p.doc_start = test::random_doc_starts(B, L, 20, gen);  // documents of 1 to 20 tokens
  in.dy = tensor_of(normal(B * L * E, gen), {B, L, E}, DType::bf16);
  if (c.dfinal) in.dfinal = tensor_of(normal(B * (W - 1) * E, gen), {B, W - 1, E}, DType::bf16);
  if (c.grouped) {
    std::vector<int32_t> ids(static_cast<size_t>(B * L));
    for (int32_t& id : ids) id = static_cast<int32_t>(gen.randint(3));
    in.ids = from_vector<int32_t>(ids, {B * L});
    in.routing = Routing::from_modalities(in.ids, 3);
    p.x = grouped(p.x, in.routing);
    in.dy = grouped(in.dy, in.routing);
  }
  return in;
}

// t on device d; with `misaligned`, a bf16 copy 2 bytes past the allocation's alignment (the kernels'
// one-channel path).
Tensor on(const Tensor& t, Device d, bool misaligned = false) {
  if (!t.defined()) return Tensor();
  return misaligned && d.is_cuda() ? test::misaligned_copy(t) : t.to(d);
}

CausalConv1dParams params_on(const CausalConv1dParams& p, Device d, const Routing* order, bool misaligned) {
  CausalConv1dParams q = p;
  q.x = on(p.x, d, misaligned);
  q.weight = on(p.weight, d);
  q.bias = on(p.bias, d);
  q.initial_window = on(p.initial_window, d, misaligned);
  q.doc_start = on(p.doc_start, d);
  q.order = order;
  return q;
}

// The header's tolerances: at most 1% of a bf16 output's elements (and one) differ; float32 1e-4 per
// element and 1e-5 of the norm. dbias and dinitial_window are undefined on both devices without a bias
// or an initial window.
const test::Tolerances kTolerances{/*bf16_share=*/0.01, /*bf16_spare=*/1, /*f32_element=*/1e-4,
                                   /*f32_norm=*/1e-5, /*undefined_ok=*/true};

void compare_with_cpu(const Config& c, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  Generator gen(seed);
  const Inputs in = random_inputs(c, gen);
  Routing gpu_routing;
  if (c.grouped) gpu_routing = Routing::from_modalities(in.ids.to(kGpu), 3);
  const CausalConv1dParams cpu = params_on(in.p, kCpu, c.grouped ? &in.routing : nullptr, false);
  const CausalConv1dParams gpu = params_on(in.p, kGpu, c.grouped ? &gpu_routing : nullptr, c.misaligned);

  const CausalConv1dOutput ref = kernels::causal_conv1d_forward(cpu);
  const CausalConv1dOutput got = kernels::causal_conv1d_forward(gpu);
  const double y_share = expect_close(got.y, ref.y, DType::bf16, kTolerances, "y");
  EXPECT_EQ(got.final_window.dtype(), DType::bf16);
  EXPECT_TRUE(same_bits(got.final_window, ref.final_window)) << "final_window: a copy of inputs";

  const CausalConv1dGrads gref = kernels::causal_conv1d_backward(cpu, in.dy, in.dfinal);
  const CausalConv1dGrads ggot =
      kernels::causal_conv1d_backward(gpu, on(in.dy, kGpu, c.misaligned), on(in.dfinal, kGpu, c.misaligned));
  const double dx_share = expect_close(ggot.dx, gref.dx, DType::bf16, kTolerances, "dx");
  const double dinit_share =
      expect_close(ggot.dinitial_window, gref.dinitial_window, DType::bf16, kTolerances, "dinitial_window");
  const double dw_err = expect_close(ggot.dweight, gref.dweight, DType::f32, kTolerances, "dweight");
  const double db_err = expect_close(ggot.dbias, gref.dbias, DType::f32, kTolerances, "dbias");
  std::printf("  bf16 conv %-58s differing: y %.4f dx %.4f dinit %.4f | rel err dweight %.1e dbias %.1e\n",
              describe(c).c_str(), y_share, dx_share, dinit_share, dw_err, db_err);
}

TEST_F(Cuda, ConvBf16MatchesCpuReference) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  auto with = [](Config c, auto&& edit) {
    edit(c);
    return c;
  };
  const Config configs[] = {
      {2, 67, 96, 4},
      {2, 67, 96, 2},
      with(Config{2, 67, 96, 4}, [](Config& c) { c.bias = c.init = c.dfinal = c.silu = false; }),
      with(Config{2, 67, 96, 2}, [](Config& c) { c.silu = false; c.init = false; }),
      with(Config{2, 67, 96, 4}, [](Config& c) { c.docs = true; }),
      with(Config{2, 67, 96, 2}, [](Config& c) { c.docs = true; c.bias = false; }),
      with(Config{2, 67, 96, 4}, [](Config& c) { c.grouped = true; }),
      with(Config{3, 67, 96, 2}, [](Config& c) { c.grouped = true; c.silu = false; c.dfinal = false; }),
      with(Config{2, 67, 96, 4}, [](Config& c) { c.docs = c.grouped = true; }),
      with(Config{2, 301, 96, 4}, [](Config& c) { c.docs = c.grouped = true; }),  // two 256-step tiles
      with(Config{2, 2, 96, 4}, [](Config& c) { c.silu = false; }),  // L < W-1: the windows overlap
      with(Config{2, 67, 98, 4}, [](Config& c) { c.docs = true; }),  // forward one channel, backward packs of 2
      with(Config{2, 67, 37, 4}, [](Config& c) { c.docs = c.grouped = true; }),  // odd E: one channel
      with(Config{2, 67, 96, 4}, [](Config& c) { c.misaligned = c.docs = true; }),
      with(Config{2, 67, 96, 2}, [](Config& c) { c.misaligned = c.grouped = true; }),
  };
  for (const Config& c : configs) compare_with_cpu(c, seed++);
}

// The sequence cut into chunks, each chunk's final window (a bf16 copy of inputs) passed as the next
// one's initial window: the outputs equal one call on the whole sequence bit for bit.
TEST_F(Cuda, ConvBf16ChainedForwardEqualsOneCall) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (int64_t W : {2, 4}) {
    SCOPED_TRACE("W=" + std::to_string(W));
    const Inputs in = random_inputs(Config{2, 67, 96, W}, gen);
    const CausalConv1dParams p = params_on(in.p, kGpu, nullptr, false);
    const CausalConv1dOutput whole = kernels::causal_conv1d_forward(p);
    Tensor window = p.initial_window;
    int64_t start = 0;
    for (int64_t len : {1, 2, 20, 44}) {
      CausalConv1dParams q = p;
      q.x = p.x.narrow(1, start, len).contiguous();
      q.initial_window = window;
      const CausalConv1dOutput part = kernels::causal_conv1d_forward(q);
      EXPECT_TRUE(same_bits(part.y, whole.y.narrow(1, start, len))) << "y of the chunk at " << start;
      window = part.final_window;
      start += len;
    }
    EXPECT_TRUE(same_bits(window, whole.final_window));
  }
}

// The same calls twice give the same bits (dweight and dbias: fixed-order partial sums, no atomics).
TEST_F(Cuda, ConvBf16RepeatsBitForBit) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Config c{3, 301, 96, 4};
  c.docs = c.grouped = true;
  const Inputs in = random_inputs(c, gen);
  const Routing routing = Routing::from_modalities(in.ids.to(kGpu), 3);
  const CausalConv1dParams p = params_on(in.p, kGpu, &routing, false);
  const Tensor dy = in.dy.to(kGpu), dfinal = in.dfinal.to(kGpu);
  const CausalConv1dOutput a = kernels::causal_conv1d_forward(p), b = kernels::causal_conv1d_forward(p);
  EXPECT_TRUE(same_bits(a.y, b.y));
  EXPECT_TRUE(same_bits(a.final_window, b.final_window));
  const CausalConv1dGrads ga = kernels::causal_conv1d_backward(p, dy, dfinal);
  const CausalConv1dGrads gb = kernels::causal_conv1d_backward(p, dy, dfinal);
  EXPECT_TRUE(same_bits(ga.dx, gb.dx));
  EXPECT_TRUE(same_bits(ga.dweight, gb.dweight));
  EXPECT_TRUE(same_bits(ga.dbias, gb.dbias));
  EXPECT_TRUE(same_bits(ga.dinitial_window, gb.dinitial_window));
}

// Beside a bf16 x the parameters are float32 and the sequence tensors bf16: anything else is refused
// with the op's name and the tensor's.
TEST_F(Cuda, ConvBf16RefusesOtherDtypes) {
  Generator gen(test_seed());
  const Inputs in = random_inputs(Config{1, 20, 8, 4}, gen);
  const CausalConv1dParams p = params_on(in.p, kGpu, nullptr, false);
  const Tensor dy = in.dy.to(kGpu), dfinal = in.dfinal.to(kGpu);
  CausalConv1dParams bad_w = p;
  bad_w.weight = p.weight.to(DType::bf16);
  test::expect_error([&] { kernels::causal_conv1d_forward(bad_w); }, "[causal_conv1d] weight");
  CausalConv1dParams bad_b = p;
  bad_b.bias = p.bias.to(DType::bf16);
  test::expect_error([&] { kernels::causal_conv1d_forward(bad_b); }, "[causal_conv1d] bias");
  CausalConv1dParams bad_init = p;
  bad_init.initial_window = p.initial_window.to(DType::f32);
  test::expect_error([&] { kernels::causal_conv1d_forward(bad_init); }, "[causal_conv1d] initial_window");
  test::expect_error([&] { kernels::causal_conv1d_backward(p, dy.to(DType::f32), dfinal); }, "[causal_conv1d] dy");
  test::expect_error([&] { kernels::causal_conv1d_backward(p, dy, dfinal.to(DType::f32)); },
                     "[causal_conv1d] dfinal_window");
}

}  // namespace
}  // namespace mom

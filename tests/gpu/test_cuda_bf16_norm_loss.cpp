// bf16 rms_norm and cross_entropy on CUDA (mixed precision) against the CPU reference: the same public
// functions called on CPU copies of the same inputs, which widen the bf16 tensors to float32, run the
// float32 op and round each bf16 output once.
// rms_norm: x float32 with y and dy bf16 (the pre-norm of the float32 residual stream), and x, y, dy
// bf16; weight, rstd and dweight float32. Row lengths reach every kernel path of both pairs: the
// scalar kernels (D off the vector width: 7, and 1004 for a bf16 x), a warp caching 1, 4 or 8 chunks, a
// caching block, a streaming block (forward 40000 float32 / 70000 bf16), the backward caching 1, 2, 4
// (and 8 beside a float32 x) chunks a thread and streaming, row tiles of one and of two rows, and
// misaligned views (the scalar kernels).
// cross_entropy: bf16 logits with int32 and int64 targets, with and without ignored tokens and a
// per-token weight; V = 7 (rows of edges only), 1000 and 4099 (a warp per row; 4099's rows off 16-byte
// alignment), 32768 and 50257 (a block per row; 50257's edges peeled); a misaligned view (the forward's
// edges, the scalar backward). Also: all tokens ignored, an out-of-range target with the CPU's message, bit-for-
// bit repeats, and other dtypes beside bf16 refused.
//
// Tolerances. Both devices compute every value from the same inputs in float32 on the GPU and in double
// rounded to float32 on the CPU (its float32 kernels sum in double), so the float32 values differ by the
// GPU's float32 sums and its expf: about 1e-7 of a value, up to 1e-6 of a 50257-term row's sum. A bf16
// output (y, a bf16 x's dx, dlogits) is that value rounded once on both sides, so the two agree except
// where a value lies within that noise of a rounding boundary, and then they are one bf16 step (at most
// 2^-7 of the value) apart: per element |cuda - ref| <= 2^-7 |ref| + 1e-3 rms(ref) (the second term
// covers values near zero after cancellation), and at most 1% of the elements (and one) may differ at
// all: a second rounding (a bf16 intermediate, or y rounded through a bf16 rstd) would move far more.
// A float32 output (rstd, dweight, a float32 x's dx, loss, lse) differs by float32 noise: per element
// |cuda - ref| <= 1e-4 (|ref| + rms(ref)), and 2e-5 of the norm (the float32 row sums of up to 70000
// terms against double ones; the float32 suite allows 1e-4 there).
#include <cstdio>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/cross_entropy.h"
#include "kernels/rms_norm.h"
#include "tests/gpu/bf16_compare.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::expect_close;
using test::misaligned_copy;
using test::same_bits;
using test::test_seed;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

// The header's tolerances: at most 1% of a bf16 output's elements (and one) differ; float32 1e-4 per
// element and 2e-5 of the norm.
const test::Tolerances kTolerances{/*bf16_share=*/0.01, /*bf16_spare=*/1, /*f32_element=*/1e-4,
                                   /*f32_norm=*/2e-5, /*undefined_ok=*/false};

std::vector<float> normal(int64_t n, Generator& gen, double mean = 0.0, double std = 1.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(mean + std * gen.normal());
  return v;
}

Tensor tensor_of(const std::vector<float>& v, const Shape& shape, DType dt) {
  return from_vector<float>(v, shape).to(dt);
}

// t on GPU 0; with `misaligned`, a copy off 16-byte alignment (2 bytes in bf16, 4 in float32).
Tensor on_gpu(const Tensor& t, bool misaligned) { return misaligned ? misaligned_copy(t) : t.to(kGpu); }

// ---- rms_norm ----

struct NormCase {
  Shape shape;
  bool misaligned = false;
};

// x of dtype x_dt (float32 or bf16) normalised into bf16 y, and the backward from bf16 dy.
void compare_rms_norm(const NormCase& c, DType x_dt, uint64_t seed) {
  const std::string name =
      "rms_norm " + shape_str(c.shape) + " x " + dtype_name(x_dt) + (c.misaligned ? " misaligned" : "");
  SCOPED_TRACE(name);
  Generator gen(seed);
  const int64_t D = c.shape.back(), n = shape_numel(c.shape);
  const double eps = 1e-5;
  const Tensor x = tensor_of(normal(n, gen, 0.0, 2.0), c.shape, x_dt);
  const Tensor w = tensor_of(normal(D, gen, 1.0, 0.5), {D}, DType::f32);
  const Tensor dy = tensor_of(normal(n, gen), c.shape, DType::bf16);

  const kernels::RmsNormForward ref = kernels::rms_norm_forward(x, w, eps, DType::bf16);
  const Tensor xg = on_gpu(x, c.misaligned), wg = w.to(kGpu), dyg = on_gpu(dy, c.misaligned);
  const kernels::RmsNormForward got = kernels::rms_norm_forward(xg, wg, eps, DType::bf16);
  const double y_share = expect_close(got.y, ref.y, DType::bf16, kTolerances, "y");
  const double rstd_err = expect_close(got.rstd, ref.rstd, DType::f32, kTolerances, "rstd");

  // Each device's backward takes its own forward's rstd, as the autograd function does.
  const kernels::RmsNormBackward bref = kernels::rms_norm_backward(dy, x, w, ref.rstd);
  const kernels::RmsNormBackward bgot = kernels::rms_norm_backward(dyg, xg, wg, got.rstd);
  const double dx_diff = expect_close(bgot.dx, bref.dx, x_dt, kTolerances, "dx");
  const double dw_err = expect_close(bgot.dweight, bref.dweight, DType::f32, kTolerances, "dweight");
  std::printf("  %-44s differing y %.4f | rel err rstd %.1e dweight %.1e | dx %s %.1e\n", name.c_str(), y_share,
              rstd_err, dw_err, x_dt == DType::bf16 ? "differing" : "rel err", dx_diff);
}

TEST_F(Cuda, RmsNormBf16MatchesCpuReference) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const NormCase cases[] = {
      {{9, 7}},         {{1000, 64}},  {{20000, 64}},    {{37, 1000}},     {{5, 1004}},   {{2, 3, 2048}},
      {{16, 4096}},     {{8, 8192}},   {{4, 12288}},     {{3, 40000}},     {{2, 70000}},  {{37, 1000}, true},
      {{4, 12288}, true},
  };
  for (const NormCase& c : cases) {
    compare_rms_norm(c, DType::f32, seed++);
    compare_rms_norm(c, DType::bf16, seed++);
  }
}

TEST_F(Cuda, RmsNormBf16RepeatsBitForBit) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const Shape& shape : std::vector<Shape>{{4096, 2048}, {20000, 64}, {9, 12288}}) {
    for (DType x_dt : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(shape_str(shape) + " x " + dtype_name(x_dt));
      const int64_t D = shape.back(), n = shape_numel(shape);
      const Tensor x = tensor_of(normal(n, gen), shape, x_dt).to(kGpu);
      const Tensor dy = tensor_of(normal(n, gen), shape, DType::bf16).to(kGpu);
      const Tensor w = tensor_of(normal(D, gen, 1.0, 0.5), {D}, DType::f32).to(kGpu);
      const kernels::RmsNormForward a = kernels::rms_norm_forward(x, w, 1e-5, DType::bf16);
      const kernels::RmsNormForward b = kernels::rms_norm_forward(x, w, 1e-5, DType::bf16);
      EXPECT_TRUE(same_bits(a.y, b.y));
      EXPECT_TRUE(same_bits(a.rstd, b.rstd));
      const kernels::RmsNormBackward c = kernels::rms_norm_backward(dy, x, w, a.rstd);
      const kernels::RmsNormBackward d = kernels::rms_norm_backward(dy, x, w, a.rstd);
      EXPECT_TRUE(same_bits(c.dx, d.dx));
      EXPECT_TRUE(same_bits(c.dweight, d.dweight));
    }
  }
}

// Beside bf16 the weight and rstd are float32, y and dy bf16 (or x's dtype): anything else is refused
// with the op's name and the tensor's, before any kernel runs.
TEST_F(Cuda, RmsNormBf16RefusesOtherDtypes) {
  Generator gen(test_seed());
  const Tensor xb = tensor_of(normal(24, gen), {3, 8}, DType::bf16).to(kGpu);
  const Tensor w = tensor_of(normal(8, gen, 1.0, 0.5), {8}, DType::f32).to(kGpu);
  const kernels::RmsNormForward f = kernels::rms_norm_forward(xb, w, 1e-5);
  EXPECT_EQ(f.y.dtype(), DType::bf16);
  EXPECT_EQ(f.rstd.dtype(), DType::f32);
  test::expect_error([&] { kernels::rms_norm_forward(xb, w.to(DType::bf16), 1e-5); }, "[rms_norm] weight");
  test::expect_error([&] { kernels::rms_norm_forward(xb, w, 1e-5, DType::f32); }, "[rms_norm] y must be");
  test::expect_error([&] { kernels::rms_norm_forward(xb.to(DType::f64), w.to(DType::f64), 1e-5, DType::bf16); },
                     "[rms_norm] y must be");
  test::expect_error([&] { kernels::rms_norm_backward(f.y.to(DType::f32), xb, w, f.rstd); }, "[rms_norm] dy must be");
  test::expect_error([&] { kernels::rms_norm_backward(f.y, xb, w, f.rstd.to(DType::bf16)); }, "[rms_norm] rstd");
}

// ---- cross_entropy ----

constexpr int64_t kIgnore = -100;

struct LossCase {
  int64_t T, V;
  bool weighted, ignored;
  DType index;
  bool misaligned = false;
};

// Targets in [0, V), about one in five set to kIgnore when `ignored`.
Tensor random_targets(int64_t T, int64_t V, bool ignored, DType dt, Generator& gen) {
  std::vector<int64_t> t(static_cast<size_t>(T));
  for (int64_t& c : t) c = static_cast<int64_t>(gen.randint(static_cast<uint64_t>(V)));
  if (ignored)
    for (int64_t& c : t)
      if (gen.uniform() < 0.2) c = kIgnore;
  return from_vector<int64_t>(t, {T}).to(dt);
}

void compare_cross_entropy(const LossCase& c, uint64_t seed) {
  const std::string name = "cross_entropy T=" + std::to_string(c.T) + " V=" + std::to_string(c.V) +
                           (c.weighted ? " weighted" : "") + (c.ignored ? " ignored" : "") + " " +
                           dtype_name(c.index) + (c.misaligned ? " misaligned" : "");
  SCOPED_TRACE(name);
  Generator gen(seed);
  const Tensor logits = tensor_of(normal(c.T * c.V, gen, 0.0, 2.0), {c.T, c.V}, DType::bf16);
  const Tensor targets = random_targets(c.T, c.V, c.ignored, c.index, gen);
  Tensor weight;
  if (c.weighted) {
    std::vector<float> w(static_cast<size_t>(c.T));
    for (float& v : w) v = static_cast<float>(2.0 * gen.uniform());
    weight = from_vector<float>(w, {c.T});
  }
  const Tensor dloss = full({}, 0.7, DType::f32);

  const kernels::CrossEntropyForward ref = kernels::cross_entropy_forward(logits, targets, kIgnore, weight);
  const Tensor dref = kernels::cross_entropy_backward(dloss, logits, targets, ref.lse, kIgnore, weight);
  const Tensor lg = on_gpu(logits, c.misaligned), tg = targets.to(kGpu);
  const Tensor wg = weight.defined() ? weight.to(kGpu) : Tensor();
  const kernels::CrossEntropyForward got = kernels::cross_entropy_forward(lg, tg, kIgnore, wg);
  const double loss_err = expect_close(got.loss, ref.loss, DType::f32, kTolerances, "loss");
  const double lse_err = expect_close(got.lse, ref.lse, DType::f32, kTolerances, "lse");
  const Tensor dgot = kernels::cross_entropy_backward(dloss.to(kGpu), lg, tg, got.lse, kIgnore, wg);
  const double d_share = expect_close(dgot, dref, DType::bf16, kTolerances, "dlogits");
  std::printf("  %-58s rel err loss %.1e lse %.1e | differing dlogits %.4f\n", name.c_str(), loss_err, lse_err,
              d_share);
}

TEST_F(Cuda, CrossEntropyBf16MatchesCpuReference) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const LossCase cases[] = {
      {300, 7, false, true, DType::i64},        {300, 7, true, false, DType::i32},
      {300, 7, true, true, DType::i64},         {64, 1000, true, true, DType::i64},
      {33, 4099, false, true, DType::i32},      {16, 32768, true, true, DType::i64},
      {24, 32768, false, false, DType::i32},    {12, 50257, false, true, DType::i32},
      {12, 50257, true, true, DType::i64},      {9, 50257, true, false, DType::i32},
      {300, 7, true, true, DType::i32, true},   {12, 50257, true, true, DType::i64, true},
  };
  for (const LossCase& c : cases) compare_cross_entropy(c, seed++);
}

// Every token ignored: loss 0 and zero dlogits, as on the CPU; an out-of-range target is refused with
// the CPU's message, position and value.
TEST_F(Cuda, CrossEntropyBf16IgnoredAndInvalidTargets) {
  Generator gen(test_seed());
  const Tensor logits = tensor_of(normal(5 * 7, gen), {5, 7}, DType::bf16).to(kGpu);
  const Tensor none = full({5}, static_cast<double>(kIgnore), DType::i64, kGpu);
  const kernels::CrossEntropyForward f = kernels::cross_entropy_forward(logits, none, kIgnore, Tensor());
  EXPECT_EQ(f.loss.dtype(), DType::f32);
  EXPECT_EQ(f.loss.item(), 0.0);
  const Tensor one = full({}, 1.0, DType::f32, kGpu);
  const Tensor d = kernels::cross_entropy_backward(one, logits, none, f.lse, kIgnore, Tensor());
  EXPECT_EQ(d.dtype(), DType::bf16);
  EXPECT_TRUE(same_bits(d, zeros({5, 7}, DType::bf16)));

  const Tensor bad = from_vector<int64_t>({1, 2, 9, 0, kIgnore}, {5});
  const std::string want = "[cross_entropy] target 9 at position 2 is out of range for 7 classes";
  test::expect_error([&] { kernels::cross_entropy_forward(logits.to(kCpu), bad, kIgnore, Tensor()); }, want);
  test::expect_error([&] { kernels::cross_entropy_forward(logits, bad.to(kGpu), kIgnore, Tensor()); }, want);
  test::expect_error([&] { kernels::cross_entropy_backward(one, logits, bad.to(kGpu), f.lse, kIgnore, Tensor()); },
                     want);
}

TEST_F(Cuda, CrossEntropyBf16RepeatsBitForBit) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (int64_t V : {7, 50257}) {
    SCOPED_TRACE("V=" + std::to_string(V));
    const int64_t T = V == 7 ? 3000 : 40;
    const Tensor logits = tensor_of(normal(T * V, gen, 0.0, 2.0), {T, V}, DType::bf16).to(kGpu);
    const Tensor targets = random_targets(T, V, true, DType::i64, gen).to(kGpu);
    std::vector<float> w(static_cast<size_t>(T));
    for (float& v : w) v = static_cast<float>(gen.uniform());
    const Tensor weight = from_vector<float>(w, {T}).to(kGpu);
    const kernels::CrossEntropyForward a = kernels::cross_entropy_forward(logits, targets, kIgnore, weight);
    const kernels::CrossEntropyForward b = kernels::cross_entropy_forward(logits, targets, kIgnore, weight);
    EXPECT_TRUE(same_bits(a.loss, b.loss));
    EXPECT_TRUE(same_bits(a.lse, b.lse));
    const Tensor dl = full({}, 1.0, DType::f32, kGpu);
    EXPECT_TRUE(same_bits(kernels::cross_entropy_backward(dl, logits, targets, a.lse, kIgnore, weight),
                          kernels::cross_entropy_backward(dl, logits, targets, a.lse, kIgnore, weight)));
  }
}

// Beside bf16 logits the weight, dloss and lse are float32: anything else is refused with the op's name
// and the tensor's.
TEST_F(Cuda, CrossEntropyBf16RefusesOtherDtypes) {
  Generator gen(test_seed());
  const Tensor logits = tensor_of(normal(4 * 8, gen), {4, 8}, DType::bf16).to(kGpu);
  const Tensor targets = from_vector<int64_t>({0, 3, 7, 1}, {4}).to(kGpu);
  const Tensor weight = full({4}, 1.0, DType::bf16, kGpu);
  test::expect_error([&] { kernels::cross_entropy_forward(logits, targets, kIgnore, weight); },
                     "[cross_entropy] weight");
  const Tensor lse = kernels::cross_entropy_forward(logits, targets, kIgnore, Tensor()).lse;
  const Tensor one_bf16 = full({}, 1.0, DType::bf16, kGpu);
  test::expect_error([&] { kernels::cross_entropy_backward(one_bf16, logits, targets, lse, kIgnore, Tensor()); },
                     "[cross_entropy] dloss");
  test::expect_error(
      [&] {
        kernels::cross_entropy_backward(full({}, 1.0, DType::f32, kGpu), logits, targets, lse.to(DType::bf16), kIgnore,
                                        Tensor());
      },
      "[cross_entropy] lse");
}

}  // namespace
}  // namespace mom

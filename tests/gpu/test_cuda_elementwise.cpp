// CUDA elementwise and optimiser kernels against the CPU reference, on random inputs at sizes
// that are multiples of no block or vector width, in float32 and float64, through the vectorised
// (aligned) and scalar (misaligned view) paths; determinism of the reductions.
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/optimizer.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using kernels::BinaryOp;
using kernels::UnaryOp;
using test::Cuda;
using test::same_bits;
using test::misaligned_copy;
using test::expect_error;
using test::test_seed;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();
const int64_t kSizes[] = {1, 7, 1000003};
const UnaryOp kUnaryOps[] = {UnaryOp::neg,     UnaryOp::exp,  UnaryOp::log,      UnaryOp::sqrt,
                             UnaryOp::sigmoid, UnaryOp::silu, UnaryOp::softplus, UnaryOp::tanh};
const BinaryOp kBinaryOps[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div};

double tolerance(DType dt) { return dt == DType::f32 ? 1e-5 : 1e-12; }

// Inputs inside each op's domain: positive for log and sqrt; else wide enough to cross softplus's
// threshold (20) and saturate sigmoid and tanh.
Tensor unary_input(UnaryOp op, int64_t n, DType dt, Generator& gen) {
  if (op == UnaryOp::log || op == UnaryOp::sqrt) return rand({n}, gen, dt, 0.05, 5.0);
  return randn({n}, gen, dt, 0.0, 8.0);
}

TEST_F(Cuda, UnaryForwardAndBackwardMatchCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t n : kSizes) {
      for (UnaryOp op : kUnaryOps) {
        SCOPED_TRACE(std::string(kernels::unary_name(op)) + " " + dtype_name(dt) + " n=" + std::to_string(n));
        Tensor x = unary_input(op, n, dt, gen), dy = randn({n}, gen, dt);
        Tensor y = kernels::unary(op, x);
        Tensor dx = kernels::unary_backward(op, dy, x, y);
        Tensor xd = x.to(kGpu), dyd = dy.to(kGpu);
        Tensor yd = kernels::unary(op, xd);
        EXPECT_EQ(yd.device(), kGpu);
        EXPECT_LT(rel_error(yd, y), tolerance(dt));
        // The backward is fed the CPU's y: tanh' = 1 - y^2 near |y| = 1 would otherwise amplify the
        // last-bit difference between the two libraries' tanh (seen: 1.4e-11 in f64 at n = 7).
        EXPECT_LT(rel_error(kernels::unary_backward(op, dyd, xd, y.to(kGpu)), dx), tolerance(dt));
        Tensor xm = misaligned_copy(x), dym = misaligned_copy(dy), ym = misaligned_copy(y);
        EXPECT_LT(rel_error(kernels::unary(op, xm), y), tolerance(dt));
        EXPECT_LT(rel_error(kernels::unary_backward(op, dym, xm, ym), dx), tolerance(dt));
      }
    }
  }
}

TEST_F(Cuda, BinaryWithBroadcastingMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{1}, {1}},           {{7}, {7}},           {{1000003}, {1000003}}, {{1000003}, {1}},
      {{1}, {7}},           {{}, {3, 5}},         {{3, 1, 517}, {1, 129, 1}}, {{129, 1}, {3, 1, 517}},
      {{2, 3, 4, 5}, {5}},  {{2, 1, 4, 1}, {3, 1, 7}}, {{1000003, 1}, {1, 3}}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const auto& [sa, sb] : shapes) {
      for (BinaryOp op : kBinaryOps) {
        SCOPED_TRACE(std::string(kernels::binary_name(op)) + " " + dtype_name(dt) + " " + shape_str(sa) + " x " +
                     shape_str(sb));
        Tensor a = randn(sa, gen, dt);
        Tensor b = op == BinaryOp::div ? rand(sb, gen, dt, 0.5, 2.0) : randn(sb, gen, dt);
        Tensor out = kernels::binary(op, a, b);
        Tensor outd = kernels::binary(op, a.to(kGpu), b.to(kGpu));
        EXPECT_EQ(outd.shape(), out.shape());
        EXPECT_LT(rel_error(outd, out), tolerance(dt));
        if (sa == sb) {
          EXPECT_LT(rel_error(kernels::binary(op, misaligned_copy(a), misaligned_copy(b)), out), tolerance(dt));
        }
      }
    }
  }
}

TEST_F(Cuda, PowAndScaleMatchCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t n : kSizes) {
      Tensor x = rand({n}, gen, dt, 0.1, 3.0);
      for (double p : {2.5, -1.5, 2.0}) {
        EXPECT_LT(rel_error(kernels::pow_scalar(x.to(kGpu), p), kernels::pow_scalar(x, p)), tolerance(dt)) << p;
      }
      Tensor r = randn({n}, gen, dt);
      EXPECT_LT(rel_error(kernels::pow_scalar(r.to(kGpu), 2.0), kernels::pow_scalar(r, 2.0)), tolerance(dt));
      EXPECT_LT(rel_error(kernels::scale(r.to(kGpu), -0.37), kernels::scale(r, -0.37)), tolerance(dt));
      EXPECT_LT(rel_error(kernels::scale(misaligned_copy(r), 1.7), kernels::scale(r, 1.7)), tolerance(dt));
    }
  }
}

TEST_F(Cuda, SumToShapeMatchesCpuAndRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 129, 517}, {3, 1, 517}}, {{3, 129, 517}, {1, 129, 1}}, {{3, 129, 517}, {129, 1}},
      {{3, 129, 517}, {517}},       {{3, 129, 517}, {1}},         {{3, 129, 517}, {}},
      {{4099, 257}, {257}},         {{64, 40001}, {1, 40001}},    {{1000003}, {1}},
      {{7, 1, 3}, {1, 1, 3}},       {{2, 3, 5, 7}, {3, 1, 7}}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const auto& [gs, target] : cases) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + shape_str(gs) + " -> " + shape_str(target));
      Tensor g = randn(gs, gen, dt);
      Tensor ref = kernels::sum_to_shape(g.to(DType::f64), target);
      Tensor gd = g.to(kGpu);
      Tensor first = kernels::sum_to_shape(gd, target), second = kernels::sum_to_shape(gd, target);
      EXPECT_EQ(first.shape(), target);
      EXPECT_LT(rel_error(first.to(DType::f64), ref), tolerance(dt));
      EXPECT_TRUE(same_bits(first, second));
    }
  }
}

TEST_F(Cuda, AdamWMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  kernels::AdamWHyper h;
  h.lr = 3e-3;
  h.beta1 = 0.85;
  h.beta2 = 0.99;
  h.eps = 1e-7;
  h.weight_decay = 0.1;
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t n : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n));
      Tensor p = randn({n}, gen, dt), g = randn({n}, gen, dt), m = randn({n}, gen, dt, 0.0, 0.1);
      Tensor v = rand({n}, gen, dt, 1e-4, 0.5);
      Tensor pd = p.to(kGpu), gd = g.to(kGpu), md = m.to(kGpu), vd = v.to(kGpu);
      Tensor pm = misaligned_copy(p), gm = misaligned_copy(g), mm = misaligned_copy(m), vm = misaligned_copy(v);
      for (int64_t step : {1, 2, 3}) {
        kernels::adamw_step(p, g, m, v, step, h);
        kernels::adamw_step(pd, gd, md, vd, step, h);
        kernels::adamw_step(pm, gm, mm, vm, step, h);
      }
      for (const Tensor& t : {pd, pm}) EXPECT_LT(rel_error(t, p), tolerance(dt));
      for (const Tensor& t : {md, mm}) EXPECT_LT(rel_error(t, m), tolerance(dt));
      for (const Tensor& t : {vd, vm}) EXPECT_LT(rel_error(t, v), tolerance(dt));
    }
  }
}

TEST_F(Cuda, SumOfSquaresAndScaleInplaceMatchCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000003), int64_t(50000017)}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(n));
      Tensor g = randn({n}, gen, dt);
      double ref = kernels::sum_of_squares(g);
      Tensor gd = g.to(kGpu);
      double first = kernels::sum_of_squares(gd), second = kernels::sum_of_squares(gd);
      // Both sum in double, in different orders: about sqrt(n) roundings apart.
      EXPECT_NEAR(first, ref, 1e-10 * ref);
      EXPECT_EQ(std::memcmp(&first, &second, sizeof(double)), 0);
      EXPECT_NEAR(kernels::sum_of_squares(misaligned_copy(g)), ref, 1e-10 * ref);
      kernels::scale_inplace(g, 0.3);
      kernels::scale_inplace(gd, 0.3);
      EXPECT_LT(rel_error(gd, g), tolerance(dt));
    }
  }
}

TEST_F(Cuda, BadInputsAreRejectedOnTheDevice) {
  Tensor d = ones({4, 6}, DType::f32, kGpu);
  expect_error([&] { kernels::unary(UnaryOp::exp, d.transpose(0, 1)); }, "[exp]");
  expect_error([&] { kernels::add(d, ones({4, 6}, DType::f64, kGpu)); }, "[add]");
  expect_error([&] { kernels::add(d, ones({5}, DType::f32, kGpu)); }, "[add]");
  expect_error([&] { kernels::unary(UnaryOp::exp, ones({3}, DType::i64, kGpu)); }, "[exp]");
  expect_error([&] { kernels::unary_backward(UnaryOp::exp, ones({4, 6}), d, d); }, "[exp]");
  Tensor p = ones({5}, DType::f32, kGpu);
  expect_error([&] { kernels::adamw_step(p, ones({5}), ones({5}, DType::f32, kGpu), ones({5}, DType::f32, kGpu), 1, {}); },
               "[adamw]");
}

}  // namespace
}  // namespace mom

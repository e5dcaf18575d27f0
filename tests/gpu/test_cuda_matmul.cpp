// cuBLAS matmul against the CPU reference: every transpose combination, 2-D, batched and broadcast
// batches (a batched a times a 2-D b, a 2-D a times a batched b, size-1 batch dims, a mixed broadcast),
// odd sizes, float32 (TF32 off) and float64 against the CPU's float64 result, forward and both
// gradients; the bias of x @ W^T + b; the TF32 switch; bit-for-bit repeats; bad input.
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "kernels/matmul.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::same_bits;
using test::misaligned_copy;
using test::expect_error;
using test::test_seed;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

double tolerance(DType dt) { return dt == DType::f32 ? 1e-5 : 1e-12; }

// Puts the TF32 switch back at scope exit, so that a failing test cannot leave it on for the others.
struct Tf32Guard {
  bool saved = kernels::allow_tf32();
  ~Tf32Guard() { kernels::set_allow_tf32(saved); }
};

// The shapes of the product views op(a) (..., M, K) and op(b) (..., K, N).
struct Case {
  Shape a, b;
};

const Case kCases[] = {
    {{1, 1}, {1, 1}},
    {{7, 129}, {129, 257}},
    {{257, 7}, {7, 1}},
    {{129, 257}, {257, 129}},
    {{3, 7, 129}, {3, 129, 33}},        // batched, same batch
    {{4, 257, 129}, {129, 7}},          // 3-D times 2-D: one GEMM over all rows unless a is transposed
    {{7, 129}, {5, 129, 257}},          // 2-D times 3-D: a repeated with stride 0
    {{1, 7, 33}, {4, 33, 129}},         // a batch dim of 1 broadcast
    {{2, 3, 1, 5}, {3, 5, 257}},        // b's batch repeated over a leading dim: a run per leading index
    {{3, 1, 7, 9}, {1, 5, 9, 11}},      // mixed broadcast: a run per index of the outer dim
};

// The stored shape of an operand whose product view has shape s.
Shape stored(Shape s, bool transposed) {
  if (transposed) std::swap(s[s.size() - 1], s[s.size() - 2]);
  return s;
}

std::string case_name(const Case& c, bool ta, bool tb, DType dt) {
  return shape_str(c.a) + (ta ? "^T-stored" : "") + " @ " + shape_str(c.b) + (tb ? "^T-stored" : "") + " " +
         dtype_name(dt);
}

TEST_F(Cuda, MatmulForwardMatchesCpuEveryTransposeAndBatchLayout) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  ASSERT_FALSE(kernels::allow_tf32()) << "TF32 must be off by default";
  for (DType dt : {DType::f32, DType::f64}) {
    double worst = 0;
    for (const Case& c : kCases) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          SCOPED_TRACE(case_name(c, ta, tb, dt));
          Tensor a = randn(stored(c.a, ta), gen, DType::f64), b = randn(stored(c.b, tb), gen, DType::f64);
          Tensor ref = kernels::matmul(a, b, ta, tb);
          Tensor out = kernels::matmul(a.to(dt).to(kGpu), b.to(dt).to(kGpu), ta, tb);
          EXPECT_EQ(out.device(), kGpu);
          EXPECT_EQ(out.dtype(), dt);
          ASSERT_EQ(out.shape(), ref.shape());
          double err = rel_error(out, ref);
          EXPECT_LT(err, tolerance(dt));
          worst = std::max(worst, err);
        }
      }
    }
    std::printf("  matmul forward %s: worst relative error %.2e (tolerance %.0e)\n", dtype_name(dt), worst,
                tolerance(dt));
  }
  // Operands 4 or 8 bytes past 16-byte alignment.
  Tensor a = randn({129, 33}, gen, DType::f64), b = randn({257, 33}, gen, DType::f64);
  Tensor ref = kernels::matmul(a, b, false, true);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor out = kernels::matmul(misaligned_copy(a.to(dt)), misaligned_copy(b.to(dt)), false, true);
    EXPECT_LT(rel_error(out, ref), tolerance(dt)) << dtype_name(dt) << " misaligned";
  }
}

TEST_F(Cuda, MatmulBackwardMatchesCpuEveryTransposeAndBatchLayout) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (DType dt : {DType::f32, DType::f64}) {
    double worst_a = 0, worst_b = 0;
    for (const Case& c : kCases) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          SCOPED_TRACE(case_name(c, ta, tb, dt));
          Tensor a = randn(stored(c.a, ta), gen, DType::f64), b = randn(stored(c.b, tb), gen, DType::f64);
          Tensor dc = randn(kernels::matmul(a, b, ta, tb).shape(), gen, DType::f64);
          kernels::MatmulGrads ref = kernels::matmul_backward(dc, a, b, ta, tb);
          Tensor ad = a.to(dt).to(kGpu), bd = b.to(dt).to(kGpu), dcd = dc.to(dt).to(kGpu);
          kernels::MatmulGrads g = kernels::matmul_backward(dcd, ad, bd, ta, tb);
          ASSERT_TRUE(g.da.defined() && g.db.defined());
          EXPECT_EQ(g.da.device(), kGpu);
          ASSERT_EQ(g.da.shape(), a.shape());
          ASSERT_EQ(g.db.shape(), b.shape());
          double ea = rel_error(g.da, ref.da), eb = rel_error(g.db, ref.db);
          EXPECT_LT(ea, tolerance(dt));
          EXPECT_LT(eb, tolerance(dt));
          worst_a = std::max(worst_a, ea);
          worst_b = std::max(worst_b, eb);
          // One gradient at a time: the other stays undefined and the one asked for is the same.
          kernels::MatmulGrads only_a = kernels::matmul_backward(dcd, ad, bd, ta, tb, true, false);
          kernels::MatmulGrads only_b = kernels::matmul_backward(dcd, ad, bd, ta, tb, false, true);
          EXPECT_FALSE(only_a.db.defined());
          EXPECT_FALSE(only_b.da.defined());
          EXPECT_TRUE(same_bits(only_a.da, g.da));
          EXPECT_TRUE(same_bits(only_b.db, g.db));
        }
      }
    }
    std::printf("  matmul backward %s: worst relative error da %.2e, db %.2e (tolerance %.0e)\n", dtype_name(dt),
                worst_a, worst_b, tolerance(dt));
  }
}

// x @ W^T + b: the bias in cuBLASLt's epilogue (16-byte aligned) or added after (misaligned).
TEST_F(Cuda, MatmulBiasMatchesCpuAlignedAndNot) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Tensor x = randn({3, 129, 65}, gen, DType::f64), w = randn({257, 65}, gen, DType::f64),
         b = randn({257}, gen, DType::f64);
  Tensor ref = kernels::matmul(x, w, false, true, b);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor xg = x.to(dt).to(kGpu), wg = w.to(dt).to(kGpu);
    Tensor aligned = kernels::matmul(xg, wg, false, true, b.to(dt).to(kGpu));
    Tensor shifted = kernels::matmul(xg, wg, false, true, misaligned_copy(b.to(dt)));
    EXPECT_LT(rel_error(aligned, ref), tolerance(dt)) << dtype_name(dt);
    EXPECT_LT(rel_error(shifted, ref), tolerance(dt)) << dtype_name(dt) << " misaligned bias";
    // The bias is really there: without it the result is off by about the bias's size.
    EXPECT_GT(rel_error(kernels::matmul(xg, wg, false, true), ref), 1e-3) << dtype_name(dt);
  }
}

TEST_F(Cuda, MatmulEmptyAndZeroInnerDim) {
  Tensor c = kernels::matmul(empty({3, 0}, DType::f32, kGpu), empty({0, 4}, DType::f32, kGpu));
  EXPECT_EQ(c.device(), kGpu);
  EXPECT_EQ(c.shape(), (Shape{3, 4}));
  EXPECT_EQ(c.to_vector<float>(), std::vector<float>(12, 0.0f));
  Tensor e = kernels::matmul(empty({2, 0, 5}, DType::f64, kGpu), empty({5, 3}, DType::f64, kGpu));
  EXPECT_EQ(e.shape(), (Shape{2, 0, 3}));
}

TEST_F(Cuda, MatmulTf32SwitchRoundTrips) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Tf32Guard guard;
  kernels::set_allow_tf32(false);
  Tensor a = randn({512, 768}, gen, DType::f64), b = randn({768, 640}, gen, DType::f64);
  Tensor dc = randn({512, 640}, gen, DType::f64);
  Tensor ref = kernels::matmul(a, b);
  kernels::MatmulGrads ref_g = kernels::matmul_backward(dc, a, b, false, false);
  Tensor af = a.to(DType::f32).to(kGpu), bf = b.to(DType::f32).to(kGpu), dcf = dc.to(DType::f32).to(kGpu);
  Tensor off = kernels::matmul(af, bf);
  double err_off = rel_error(off, ref);
  EXPECT_LT(err_off, 1e-5);

  kernels::set_allow_tf32(true);
  EXPECT_TRUE(kernels::allow_tf32());
  Tensor on = kernels::matmul(af, bf);
  kernels::MatmulGrads on_g = kernels::matmul_backward(dcf, af, bf, false, false);
  double err_on = rel_error(on, ref), err_da = rel_error(on_g.da, ref_g.da), err_db = rel_error(on_g.db, ref_g.db);
  std::printf("  TF32 off: %.2e; TF32 on: forward %.2e, da %.2e, db %.2e\n", err_off, err_on, err_da, err_db);
  EXPECT_LT(err_on, 1e-2);
  EXPECT_LT(err_da, 1e-2);
  EXPECT_LT(err_db, 1e-2);
  EXPECT_GT(err_on, 1e-5) << "TF32 allowed, yet the float32 product is as exact as without it";
  // float64 never goes through TF32.
  EXPECT_LT(rel_error(kernels::matmul(a.to(kGpu), b.to(kGpu)), ref), 1e-12);

  kernels::set_allow_tf32(false);
  EXPECT_FALSE(kernels::allow_tf32());
  EXPECT_TRUE(same_bits(kernels::matmul(af, bf), off)) << "TF32 off again must give the first result exactly";
}

TEST_F(Cuda, MatmulRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (const Case& c : {kCases[5], kCases[6], kCases[9]}) {
    Tensor a = randn(c.a, gen, DType::f32).to(kGpu), b = randn(c.b, gen, DType::f32).to(kGpu);
    Tensor dc = randn(kernels::matmul(a, b).shape(), gen, DType::f32).to(kGpu);
    Tensor c1 = kernels::matmul(a, b), c2 = kernels::matmul(a, b);
    kernels::MatmulGrads g1 = kernels::matmul_backward(dc, a, b, false, false);
    kernels::MatmulGrads g2 = kernels::matmul_backward(dc, a, b, false, false);
    EXPECT_TRUE(same_bits(c1, c2)) << shape_str(c.a) << " @ " << shape_str(c.b);
    EXPECT_TRUE(same_bits(g1.da, g2.da)) << shape_str(c.a) << " @ " << shape_str(c.b);
    EXPECT_TRUE(same_bits(g1.db, g2.db)) << shape_str(c.a) << " @ " << shape_str(c.b);
  }
}

TEST_F(Cuda, MatmulBadInput) {
  Tensor a = zeros({3, 4}, DType::f32, kGpu), b = zeros({4, 5}, DType::f32, kGpu);
  expect_error([&] { kernels::matmul(a, zeros({4, 5})); }, "[matmul] a is on cuda:0 but b is on cpu");
  expect_error([&] { kernels::matmul(zeros({3, 4}), b); }, "[matmul] a is on cpu but b is on cuda:0");
  expect_error([&] { kernels::matmul_backward(zeros({3, 5}), a, b, false, false); },
               "[matmul] dc is on cpu but a is on cuda:0");
  expect_error([&] { kernels::matmul(a, zeros({5, 4}, DType::f32, kGpu)); }, "[matmul] a (3, 4) has 4 columns");
  expect_error([&] { kernels::matmul(a, zeros({4, 5}, DType::f64, kGpu)); }, "[matmul] a is float32 but b is");
  expect_error([&] { kernels::matmul(zeros({2, 3, 4}, DType::f32, kGpu), zeros({3, 4, 5}, DType::f32, kGpu)); },
               "[matmul] batch dims");
}

}  // namespace
}  // namespace mom

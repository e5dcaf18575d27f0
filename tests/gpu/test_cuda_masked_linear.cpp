// CUDA routing and masked_linear against the CPU reference: the routing built on the GPU equals the
// CPU's (counts, offsets, perm, the identity flag) for int32 and int64 ids; forward and every gradient
// in float32 and float64 against the CPU's float64 result, with all modalities present, one absent
// (undefined gradients on both devices), a single modality, ids already sorted (the identity path),
// token counts and widths that are multiples of no tile or vector width, with and without bias;
// need_dx / need_dparams; bit-for-bit repeats; the autograd function on the GPU; bad input.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "autograd/masked_linear.h"
#include "core/tensor.h"
#include "kernels/index.h"
#include "kernels/masked_linear.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::same_bits;
using test::expect_error;
using test::test_seed;
using test::leaf;
using test::rel_error;
using test::uneven_ids;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

double tolerance(DType dt) { return dt == DType::f32 ? 1e-5 : 1e-12; }

void expect_same_routing(const Routing& gpu, const Routing& cpu) {
  EXPECT_EQ(gpu.num_modalities, cpu.num_modalities);
  EXPECT_EQ(gpu.counts, cpu.counts);
  EXPECT_EQ(gpu.offsets, cpu.offsets);
  EXPECT_EQ(gpu.perm_is_identity, cpu.perm_is_identity);
  EXPECT_EQ(gpu.device(), kGpu);
  EXPECT_EQ(gpu.perm.to_vector<int64_t>(), cpu.perm.to_vector<int64_t>());
  EXPECT_EQ(gpu.inverse.to_vector<int64_t>(), cpu.inverse.to_vector<int64_t>());
}

TEST_F(Cuda, RoutingOnGpuEqualsCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  struct RoutingCase {
    int64_t T, M, absent;
    bool sorted;
  };
  // T = 1, 7, 1001 (one segment), 300001 (segments longer than 256 tokens); M up to 50.
  const RoutingCase cases[] = {{1, 3, -1, false},   {7, 3, -1, false},     {1001, 3, 1, false}, {1001, 1, -1, false},
                               {1001, 4, -1, true}, {300001, 3, -1, false}, {5003, 50, 7, false}};
  for (const RoutingCase& c : cases) {
    SCOPED_TRACE("T=" + std::to_string(c.T) + " M=" + std::to_string(c.M));
    Tensor ids = from_vector<int32_t>(uneven_ids(c.T, c.M, c.absent, c.sorted, gen), {c.T});
    for (DType dt : {DType::i32, DType::i64}) {
      Routing cpu = Routing::from_modalities(ids.to(dt), c.M);
      Routing gpu = Routing::from_modalities(ids.to(dt).to(kGpu), c.M);
      expect_same_routing(gpu, cpu);
    }
  }
  Routing empty_batch = Routing::from_modalities(zeros({0}, DType::i64, kGpu), 2);
  EXPECT_EQ(empty_batch.offsets, (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(empty_batch.perm.numel(), 0);
  EXPECT_EQ(empty_batch.device(), kGpu);
}

// The CPU's message for the same ids, for comparison.
std::string cpu_error(const Tensor& ids, int64_t M) {
  try {
    Routing::from_modalities(ids, M);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(Cuda, RoutingBadIdsGiveTheCpuError) {
  std::vector<int32_t> v(5000, 1);
  v[4321] = -2;
  v[1300] = 3;  // the first bad id, in another segment than the second
  v[1301] = 7;
  for (DType dt : {DType::i32, DType::i64}) {
    Tensor ids = from_vector<int32_t>(v, {5000}).to(dt);
    const std::string expected = cpu_error(ids, 3);
    EXPECT_EQ(expected, "[routing] modality id 3 at token 1300 is outside [0, 3)");
    expect_error([&] { Routing::from_modalities(ids.to(kGpu), 3); }, expected);
  }
  expect_error([] { Routing::from_modalities(from_vector<int32_t>({0, -1}, {2}).to(kGpu), 3); },
               "[routing] modality id -1 at token 1 is outside [0, 3)");
  expect_error([] { Routing::from_modalities(zeros({4}, DType::f32, kGpu), 3); },
               "[routing] indices must be int32 or int64");
  expect_error([] { Routing::from_modalities(zeros({2, 2}, DType::i32, kGpu), 3); }, "[routing] ids must be (T)");
}

struct Problem {
  std::vector<int32_t> ids;
  int64_t M;
  Tensor x, dy;  // f64 on the CPU
  std::vector<Tensor> weight, bias;
};

Problem make_problem(std::vector<int32_t> ids, int64_t M, int64_t In, int64_t Out, bool bias, Generator& gen) {
  Problem p{std::move(ids), M, {}, {}, {}, {}};
  const int64_t T = static_cast<int64_t>(p.ids.size());
  p.x = randn({T, In}, gen, DType::f64);
  p.dy = randn({T, Out}, gen, DType::f64);
  for (int64_t m = 0; m < M; ++m) p.weight.push_back(randn({Out, In}, gen, DType::f64, 0, 0.3));
  for (int64_t m = 0; bias && m < M; ++m) p.bias.push_back(randn({Out}, gen, DType::f64));
  return p;
}

std::vector<Tensor> to_device(const std::vector<Tensor>& ts, DType dt) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.to(dt).to(kGpu));
  return out;
}

struct LinearCase {
  int64_t T, In, Out, M, absent;
  bool bias, sorted;
};

std::string case_name(const LinearCase& s, DType dt) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s T=%lld In=%lld Out=%lld M=%lld absent=%lld%s%s", dtype_name(dt),
                (long long)s.T, (long long)s.In, (long long)s.Out, (long long)s.M, (long long)s.absent,
                s.bias ? " bias" : "", s.sorted ? " sorted" : "");
  return buf;
}

TEST_F(Cuda, MaskedLinearMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const LinearCase cases[] = {
      {1001, 129, 67, 3, -1, true, false},  // all present, scalar row moves
      {1001, 33, 7, 3, 1, true, false},     // one absent
      {1, 3, 2, 3, -1, true, false},        // one token
      {7, 5, 3, 1, -1, true, false},        // a single modality (the identity routing)
      {1001, 64, 48, 4, 0, false, false},   // no bias; rows of 16-byte vectors
      {1001, 36, 20, 3, -1, true, true},    // ids already sorted: no gather, bias added in place
      {4099, 256, 80, 3, -1, true, false},  // the vector paths with bias
      {40000, 8, 12, 1, -1, true, false},   // column sums over chunks of more than 64 rows
  };
  for (const LinearCase& s : cases) {
    Problem p = make_problem(uneven_ids(s.T, s.M, s.absent, s.sorted, gen), s.M, s.In, s.Out, s.bias, gen);
    Tensor ids = from_vector<int32_t>(p.ids, {s.T});
    Routing cpu_routing = Routing::from_modalities(ids, s.M);
    Routing gpu_routing = Routing::from_modalities(ids.to(kGpu), s.M);
    Tensor y_ref = kernels::masked_linear_forward(p.x, cpu_routing, p.weight, p.bias);
    kernels::MaskedLinearGrads ref =
        kernels::masked_linear_backward(p.dy, p.x, cpu_routing, p.weight, s.bias, true, true);
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(case_name(s, dt));
      Tensor x = p.x.to(dt).to(kGpu), dy = p.dy.to(dt).to(kGpu);
      std::vector<Tensor> w = to_device(p.weight, dt), b = to_device(p.bias, dt);
      Tensor y = kernels::masked_linear_forward(x, gpu_routing, w, b);
      kernels::MaskedLinearGrads g = kernels::masked_linear_backward(dy, x, gpu_routing, w, s.bias, true, true);
      EXPECT_EQ(y.device(), kGpu);
      double ey = rel_error(y, y_ref), edx = rel_error(g.dx, ref.dx), edw = 0, edb = 0;
      ASSERT_EQ(g.dweight.size(), static_cast<size_t>(s.M));
      ASSERT_EQ(g.dbias.size(), s.bias ? static_cast<size_t>(s.M) : 0u);
      for (int64_t m = 0; m < s.M; ++m) {
        EXPECT_EQ(g.dweight[m].defined(), ref.dweight[m].defined()) << "expert " << m;
        EXPECT_EQ(g.dweight[m].defined(), gpu_routing.counts[m] > 0) << "expert " << m;
        if (s.bias) {
          EXPECT_EQ(g.dbias[m].defined(), ref.dbias[m].defined()) << "expert " << m;
        }
        if (!g.dweight[m].defined()) continue;
        edw = std::max(edw, rel_error(g.dweight[m], ref.dweight[m]));
        if (s.bias) edb = std::max(edb, rel_error(g.dbias[m], ref.dbias[m]));
      }
      std::printf("  %s: y %.1e dx %.1e dweight %.1e dbias %.1e\n", case_name(s, dt).c_str(), ey, edx, edw, edb);
      EXPECT_LT(ey, tolerance(dt));
      EXPECT_LT(edx, tolerance(dt));
      EXPECT_LT(edw, tolerance(dt));
      EXPECT_LT(edb, tolerance(dt));

      // need_dx and need_dparams one at a time: the same values, the rest undefined.
      kernels::MaskedLinearGrads only_dx = kernels::masked_linear_backward(dy, x, gpu_routing, w, s.bias, true, false);
      kernels::MaskedLinearGrads only_dp = kernels::masked_linear_backward(dy, x, gpu_routing, w, s.bias, false, true);
      EXPECT_TRUE(same_bits(only_dx.dx, g.dx));
      EXPECT_FALSE(only_dp.dx.defined());
      for (int64_t m = 0; m < s.M; ++m) {
        EXPECT_FALSE(only_dx.dweight[m].defined());
        EXPECT_TRUE(same_bits(only_dp.dweight[m], g.dweight[m])) << "expert " << m;
        if (s.bias) {
          EXPECT_TRUE(same_bits(only_dp.dbias[m], g.dbias[m])) << "expert " << m;
        }
      }
    }
  }
}

TEST_F(Cuda, MaskedLinearRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const int64_t T = 4099, In = 257, Out = 96, M = 3;
  Problem p = make_problem(uneven_ids(T, M, -1, false, gen), M, In, Out, true, gen);
  Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {T}).to(kGpu), M);
  Tensor x = p.x.to(DType::f32).to(kGpu), dy = p.dy.to(DType::f32).to(kGpu);
  std::vector<Tensor> w = to_device(p.weight, DType::f32), b = to_device(p.bias, DType::f32);
  Tensor y1 = kernels::masked_linear_forward(x, routing, w, b);
  kernels::MaskedLinearGrads g1 = kernels::masked_linear_backward(dy, x, routing, w, true, true, true);
  Tensor y2 = kernels::masked_linear_forward(x, routing, w, b);
  kernels::MaskedLinearGrads g2 = kernels::masked_linear_backward(dy, x, routing, w, true, true, true);
  EXPECT_TRUE(same_bits(y1, y2));
  EXPECT_TRUE(same_bits(g1.dx, g2.dx));
  for (int64_t m = 0; m < M; ++m) {
    EXPECT_TRUE(same_bits(g1.dweight[m], g2.dweight[m])) << "expert " << m;
    EXPECT_TRUE(same_bits(g1.dbias[m], g2.dbias[m])) << "expert " << m;
  }
}

// The split forms are the single-output ones with the columns cut: with the rows moved, the same GEMMs
// and the same moves, so the same bits; parts of 16-byte multiples take the vector path, the others the
// scalar one. Sorted ids (no moves) may take one GEMM per part: other GEMM shapes, so tolerances there.
TEST_F(Cuda, MaskedLinearSplitEqualsSplitOfTheOutput) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  struct SplitCase {
    int64_t T, In, M;
    std::vector<int64_t> split;
    bool bias, sorted;
  };
  const SplitCase cases[] = {
      {1001, 64, 3, {48, 16, 16}, false, false},  // x_proj's dt, B, C: vector path
      {1001, 32, 3, {96, 96}, true, false},       // in_proj's x, z with a bias
      {777, 24, 3, {5, 3, 9, 1}, true, false},    // four parts, scalar path
      {500, 16, 2, {8, 24}, true, true},          // sorted ids: the parts are cut in place of the scatter
      {300, 16, 1, {12, 20}, false, true},        // one modality
  };
  for (const SplitCase& c : cases) {
    int64_t Out = 0;
    for (int64_t n : c.split) Out += n;
    Problem p = make_problem(uneven_ids(c.T, c.M, -1, c.sorted, gen), c.M, c.In, Out, c.bias, gen);
    Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {c.T}).to(kGpu), c.M);
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " T=" + std::to_string(c.T) +
                   " parts=" + std::to_string(c.split.size()));
      Tensor x = p.x.to(dt).to(kGpu), dy = p.dy.to(dt).to(kGpu);
      std::vector<Tensor> w = to_device(p.weight, dt), b = to_device(p.bias, dt);
      std::vector<Tensor> whole = kernels::split(kernels::masked_linear_forward(x, routing, w, b), c.split, 1);
      auto same = [&](const Tensor& a, const Tensor& r) {
        return c.sorted ? rel_error(a, r) < tolerance(dt) : same_bits(a, r);
      };
      std::vector<Tensor> parts = kernels::masked_linear_forward_split(x, routing, w, b, c.split);
      ASSERT_EQ(parts.size(), c.split.size());
      for (size_t k = 0; k < parts.size(); ++k) EXPECT_TRUE(same(parts[k], whole[k])) << "part " << k;
      kernels::MaskedLinearGrads ref = kernels::masked_linear_backward(dy, x, routing, w, c.bias, true, true);
      kernels::MaskedLinearGrads g =
          kernels::masked_linear_backward_split(kernels::split(dy, c.split, 1), x, routing, w, c.bias, true, true);
      EXPECT_TRUE(same(g.dx, ref.dx));
      for (int64_t m = 0; m < c.M; ++m) {
        EXPECT_TRUE(same(g.dweight[m], ref.dweight[m])) << "expert " << m;
        if (c.bias) {
          EXPECT_TRUE(same(g.dbias[m], ref.dbias[m])) << "expert " << m;
        }
      }
    }
  }
}

// Rows of x and y in grouped order (RowOrder): the plain op's results with their rows permuted. A grouped
// y in parts may take one GEMM per part (other GEMM shapes, so tolerances rather than bits).
TEST_F(Cuda, MaskedLinearGroupedRowsEqualPermutedPlainOp) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  struct OrderCase {
    int64_t T, In, M;
    std::vector<int64_t> split;
    bool bias;
  };
  const OrderCase cases[] = {
      {1001, 48, 3, {96, 96}, true},     // in_proj's shape of split: one GEMM per part
      {1001, 96, 3, {24, 8, 8}, false},  // x_proj's: one GEMM and a copy
      {333, 7, 2, {5}, true},            // one part, scalar rows
  };
  for (const OrderCase& c : cases) {
    int64_t Out = 0;
    for (int64_t n : c.split) Out += n;
    Problem p = make_problem(uneven_ids(c.T, c.M, -1, false, gen), c.M, c.In, Out, c.bias, gen);
    Routing routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {c.T}).to(kGpu), c.M);
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x = p.x.to(dt).to(kGpu), dy = p.dy.to(dt).to(kGpu);
      std::vector<Tensor> w = to_device(p.weight, dt), b = to_device(p.bias, dt);
      Tensor y_plain = kernels::masked_linear_forward(x, routing, w, b);
      kernels::MaskedLinearGrads ref = kernels::masked_linear_backward(dy, x, routing, w, c.bias, true, true);
      for (int orders = 0; orders < 4; ++orders) {
        const kernels::RowOrder order{(orders & 1) != 0, (orders & 2) != 0};
        SCOPED_TRACE(std::string(dtype_name(dt)) + " In=" + std::to_string(c.In) + " x_grouped " +
                     std::to_string(order.x_grouped) + " y_grouped " + std::to_string(order.y_grouped));
        auto in_order = [&](const Tensor& t, bool grouped) {
          return grouped ? kernels::index_select(t, 0, routing.perm) : t;
        };
        std::vector<Tensor> parts =
            kernels::masked_linear_forward_split(in_order(x, order.x_grouped), routing, w, b, c.split, order);
        std::vector<Tensor> expected = kernels::split(in_order(y_plain, order.y_grouped), c.split, 1);
        double ey = 0;
        for (size_t k = 0; k < parts.size(); ++k) ey = std::max(ey, rel_error(parts[k], expected[k]));
        kernels::MaskedLinearGrads g = kernels::masked_linear_backward_split(
            kernels::split(in_order(dy, order.y_grouped), c.split, 1), in_order(x, order.x_grouped), routing, w, c.bias,
            true, true, order);
        double edx = rel_error(g.dx, in_order(ref.dx, order.x_grouped)), edw = 0, edb = 0;
        for (int64_t m = 0; m < c.M; ++m) {
          edw = std::max(edw, rel_error(g.dweight[m], ref.dweight[m]));
          if (c.bias) edb = std::max(edb, rel_error(g.dbias[m], ref.dbias[m]));
        }
        EXPECT_LT(ey, tolerance(dt));
        EXPECT_LT(edx, tolerance(dt));
        EXPECT_LT(edw, tolerance(dt));
        EXPECT_LT(edb, tolerance(dt));
      }
    }
  }
}

TEST_F(Cuda, MaskedLinearAutogradAbsentExpertKeepsUndefinedGrad) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  Problem p = make_problem({0, 2, 2, 0, 2, 0, 0}, 3, 5, 3, true, gen);
  Routing cpu_routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {7}), 3);
  Routing gpu_routing = Routing::from_modalities(from_vector<int32_t>(p.ids, {7}).to(kGpu), 3);
  kernels::MaskedLinearGrads ref = kernels::masked_linear_backward(p.dy, p.x, cpu_routing, p.weight, true, true, true);
  Tensor x = leaf(p.x.to(kGpu));
  std::vector<Tensor> w, b;
  for (int m = 0; m < 3; ++m) {
    w.push_back(leaf(p.weight[m].to(kGpu)));
    b.push_back(leaf(p.bias[m].to(kGpu)));
  }
  Tensor y = masked_linear(x, gpu_routing, w, b);
  backward(y, p.dy.to(kGpu));
  EXPECT_LT(rel_error(x.grad(), ref.dx), 1e-12);
  for (int m : {0, 2}) {
    EXPECT_LT(rel_error(w[m].grad(), ref.dweight[m]), 1e-12);
    EXPECT_LT(rel_error(b[m].grad(), ref.dbias[m]), 1e-12);
  }
  EXPECT_FALSE(w[1].grad().defined());
  EXPECT_FALSE(b[1].grad().defined());
}

TEST_F(Cuda, MaskedLinearBadInput) {
  Tensor ids = from_vector<int32_t>({0, 1, 1, 0}, {4});
  Routing cpu_routing = Routing::from_modalities(ids, 2);
  Routing gpu_routing = Routing::from_modalities(ids.to(kGpu), 2);
  Tensor x = zeros({4, 3}, DType::f32, kGpu);
  std::vector<Tensor> w = {zeros({5, 3}, DType::f32, kGpu), zeros({5, 3}, DType::f32, kGpu)};
  expect_error([&] { kernels::masked_linear_forward(x, cpu_routing, w, {}); },
               "[masked_linear] the routing is on cpu but x is on cuda:0");
  expect_error([&] { kernels::masked_linear_forward(zeros({4, 3}), gpu_routing, {zeros({5, 3}), zeros({5, 3})}, {}); },
               "[masked_linear] the routing is on cuda:0 but x is on cpu");
  expect_error([&] { kernels::masked_linear_forward(x, gpu_routing, {w[0], zeros({5, 3})}, {}); },
               "[masked_linear] weight[1] is on cpu but x is on cuda:0");
  expect_error([&] { kernels::masked_linear_forward(x, gpu_routing, w, {zeros({5}, DType::f32, kGpu), zeros({5})}); },
               "[masked_linear] bias[1] is on cpu but x is on cuda:0");
  expect_error([&] { kernels::masked_linear_backward(zeros({4, 5}), x, gpu_routing, w, false, true, true); },
               "[masked_linear] dy is on cpu but x is on cuda:0");
  expect_error([&] { kernels::masked_linear_forward(zeros({4, 4}, DType::f32, kGpu), gpu_routing, w, {}); },
               "[masked_linear] x has 4 columns, weight[0] expects 3");
  expect_error([&] { kernels::masked_linear_forward(zeros({5, 3}, DType::f32, kGpu), gpu_routing, w, {}); },
               "[masked_linear] x has 5 tokens (rows), the routing has 4");
}

}  // namespace
}  // namespace mom

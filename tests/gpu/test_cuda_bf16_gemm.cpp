// bf16 GEMMs on CUDA (matmul and masked_linear, mixed precision) against the CPU reference: the same
// public function called on CPU copies of the same bf16 inputs, which widens them to float32, runs the
// float32 kernel and rounds each bf16 output once. matmul: 2-D with and without the bias (float32,
// aligned and 4 bytes off 16-byte alignment), every transpose, odd sizes, a batched a times a 2-D b, and
// batch dims broadcast both ways (gradients summed over them); forward and both gradients.
// masked_linear: 3 modalities with uneven counts, one of them with no token, all present, or already
// sorted (the identity routing); with and without bias; one part, {E, E} and {R, N, N} parts; every
// RowOrder; forward, dx, dweight (bf16) and dbias (float32).
//
// Tolerances. A bf16 output is the float32 value rounded once on both sides; the float32 values differ
// only by the accumulation order (cuBLAS against OpenBLAS), far below a bf16 step, so the two roundings
// agree except where a value lies within that noise of a rounding boundary, and then they are one bf16
// step (at most 2^-7 of the value) apart. Hence, per element, |cuda - ref| <= 2^-7 |ref| + 1e-3 rms(ref)
// (the second term covers values near zero after cancellation), and at most 5% of the elements may
// differ at all: a second rounding (a bias added to an already rounded output, a sum of rounded
// partial products) moves far more than that. A float32 output (dbias) is a sum of the same bf16 values
// in double rounded once: |cuda - ref| <= 1e-6 (|ref| + rms(ref)).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/index.h"
#include "kernels/masked_linear.h"
#include "kernels/matmul.h"
#include "kernels/routing.h"
#include "tests/gpu/bf16_compare.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using kernels::Routing;
using test::Cuda;
using test::misaligned_copy;
using test::same_bits;
using test::test_seed;

const Device kGpu = Device::cuda(0);

// Normal values with the given spread, rounded to bf16 (randn draws float32; the rounding is the input).
Tensor randn_bf16(const Shape& shape, Generator& gen, double std = 1.0) {
  return randn(shape, gen, DType::f32, 0.0, std).to(DType::bf16);
}

// The header's tolerances: at most 5% of a bf16 output's elements differ; float32 (dbias) 1e-6 per
// element. Every output compared is defined on both devices.
const test::Tolerances kTolerances{/*bf16_share=*/0.05, /*bf16_spare=*/0, /*f32_element=*/1e-6,
                                   /*f32_norm=*/0, /*undefined_ok=*/false};

// A bf16 CUDA result against the bf16 CPU reference; returns the share of elements that differ.
double expect_bf16_close(const Tensor& got, const Tensor& ref, const std::string& what) {
  return test::expect_close(got, ref, DType::bf16, kTolerances, what);
}

// ---- matmul ----

struct MatmulCase {
  Shape a, b;  // as stored
  bool ta, tb;
  bool bias, misaligned_bias;
  const char* what;
};

const MatmulCase kMatmulCases[] = {
    {{300, 96}, {96, 160}, false, false, false, false, "2-D"},
    {{300, 96}, {160, 96}, false, true, true, false, "2-D x @ W^T + b"},
    {{300, 96}, {160, 96}, false, true, true, true, "2-D x @ W^T + b, the bias off 16-byte alignment"},
    {{300, 96}, {96, 160}, false, false, true, false, "2-D with bias, b not transposed"},
    {{96, 300}, {96, 160}, true, false, false, false, "a transposed"},
    {{96, 300}, {160, 96}, true, true, false, false, "both transposed"},
    {{37, 45}, {29, 45}, false, true, true, false, "odd sizes with bias"},
    {{37, 45}, {45, 29}, false, false, false, false, "odd sizes"},
    {{4, 75, 96}, {160, 96}, false, true, true, false, "batched a times 2-D b with bias: one GEMM over all rows"},
    {{4, 96, 75}, {96, 160}, true, false, false, false, "batched a transposed times 2-D b: b repeated"},
    {{3, 1, 40, 96}, {1, 4, 96, 50}, false, false, false, false, "batch dims broadcast both ways"},
    {{2, 3, 40, 32}, {3, 24, 32}, false, true, false, false, "b's batch repeated over a leading dim"},
    {{40, 32}, {5, 32, 24}, false, false, false, false, "2-D a times batched b"},
};

TEST_F(Cuda, Bf16MatmulMatchesCpuReference) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  double worst_share = 0;
  for (const MatmulCase& c : kMatmulCases) {
    SCOPED_TRACE(std::string(c.what) + ": a " + shape_str(c.a) + (c.ta ? " (transposed)" : "") + ", b " +
                 shape_str(c.b) + (c.tb ? " (transposed)" : ""));
    const Tensor a = randn_bf16(c.a, gen), b = randn_bf16(c.b, gen, 0.3);
    const int64_t n = c.tb ? c.b[c.b.size() - 2] : c.b.back();
    const Tensor bias = c.bias ? randn({n}, gen, DType::f32) : Tensor();
    const Tensor bias_gpu = !c.bias ? Tensor() : c.misaligned_bias ? misaligned_copy(bias) : bias.to(kGpu);
    const Tensor ag = a.to(kGpu), bg = b.to(kGpu);

    const Tensor ref = kernels::matmul(a, b, c.ta, c.tb, bias);
    const Tensor out = kernels::matmul(ag, bg, c.ta, c.tb, bias_gpu);
    worst_share = std::max(worst_share, expect_bf16_close(out, ref, "c"));
    EXPECT_TRUE(same_bits(out, kernels::matmul(ag, bg, c.ta, c.tb, bias_gpu))) << "repeat";

    const Tensor dc = randn_bf16(ref.shape(), gen);
    const kernels::MatmulGrads gref = kernels::matmul_backward(dc, a, b, c.ta, c.tb);
    const kernels::MatmulGrads g = kernels::matmul_backward(dc.to(kGpu), ag, bg, c.ta, c.tb);
    ASSERT_EQ(g.da.shape(), a.shape());
    ASSERT_EQ(g.db.shape(), b.shape());
    worst_share = std::max(worst_share, expect_bf16_close(g.da, gref.da, "da"));
    worst_share = std::max(worst_share, expect_bf16_close(g.db, gref.db, "db"));
  }
  std::printf("  bf16 matmul: at most %.2f%% of the elements of an output differ from the reference\n",
              100 * worst_share);
}

// ---- masked_linear ----

std::vector<Tensor> to_gpu(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.to(kGpu));
  return out;
}

std::string split_str(const std::vector<int64_t>& split) {
  std::string s = "{";
  for (size_t k = 0; k < split.size(); ++k) s += (k ? ", " : "") + std::to_string(split[k]);
  return s + "}";
}

TEST_F(Cuda, Bf16MaskedLinearMatchesCpuReference) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const int64_t T = 300, In = 96, Out = 160, M = 3;
  struct Ids {
    int64_t absent;
    bool sorted;
    const char* what;
  };
  const Ids id_cases[] = {{1, false, "expert 1 without tokens"},
                          {-1, false, "every expert present"},
                          {-1, true, "ids sorted (identity routing)"}};
  // One part; in_proj's {E, E} (one GEMM per part for a grouped y); x_proj's {R, N, N}, whose parts'
  // biases start 30 floats in (off 16-byte alignment) and whose rows are not whole 16-byte vectors.
  const std::vector<std::vector<int64_t>> splits = {{Out}, {80, 80}, {30, 65, 65}};
  double worst_share = 0;
  for (const Ids& ic : id_cases) {
    const std::vector<int32_t> ids = test::uneven_ids(T, M, ic.absent, ic.sorted, gen);
    const Tensor ids_t = from_vector<int32_t>(ids, {T});
    const Routing cpu_routing = Routing::from_modalities(ids_t, M);
    const Routing gpu_routing = Routing::from_modalities(ids_t.to(kGpu), M);
    if (ic.absent >= 0) {
      ASSERT_EQ(cpu_routing.counts[ic.absent], 0);
    }
    for (bool has_bias : {true, false}) {
      const Tensor x = randn_bf16({T, In}, gen);
      std::vector<Tensor> w, b;
      for (int64_t m = 0; m < M; ++m) w.push_back(randn_bf16({Out, In}, gen, 0.3));
      for (int64_t m = 0; has_bias && m < M; ++m) b.push_back(randn({Out}, gen, DType::f32));
      const std::vector<Tensor> wg = to_gpu(w), bg = to_gpu(b);
      for (const std::vector<int64_t>& split : splits) {
        for (int orders = 0; orders < 4; ++orders) {
          const kernels::RowOrder order{(orders & 1) != 0, (orders & 2) != 0};
          const std::string name = std::string(ic.what) + (has_bias ? ", bias" : ", no bias") + ", parts " +
                                   split_str(split) + ", x_grouped " + std::to_string(order.x_grouped) +
                                   ", y_grouped " + std::to_string(order.y_grouped);
          SCOPED_TRACE(name);
          // x in its order (grouped: the rows permuted as the routing groups them), on both devices.
          const Tensor xs = order.x_grouped ? kernels::index_select(x, 0, cpu_routing.perm) : x;
          const Tensor xs_gpu = xs.to(kGpu);

          const std::vector<Tensor> y_ref = kernels::masked_linear_forward_split(xs, cpu_routing, w, b, split, order);
          const std::vector<Tensor> y =
              kernels::masked_linear_forward_split(xs_gpu, gpu_routing, wg, bg, split, order);
          ASSERT_EQ(y.size(), split.size());
          for (size_t k = 0; k < y.size(); ++k)
            worst_share = std::max(worst_share, expect_bf16_close(y[k], y_ref[k], "y part " + std::to_string(k)));
          if (split.size() == 1 && orders == 0) {  // the plain op is the one-part split
            const Tensor plain = kernels::masked_linear_forward(xs_gpu, gpu_routing, wg, bg);
            EXPECT_TRUE(same_bits(plain, y[0])) << "plain forward";
          }

          std::vector<Tensor> dy, dy_gpu;  // the parts' gradients, rows in y's order
          for (int64_t cols : split) {
            dy.push_back(randn_bf16({T, cols}, gen));
            dy_gpu.push_back(dy.back().to(kGpu));
          }
          const kernels::MaskedLinearGrads ref =
              kernels::masked_linear_backward_split(dy, xs, cpu_routing, w, has_bias, true, true, order);
          const kernels::MaskedLinearGrads g =
              kernels::masked_linear_backward_split(dy_gpu, xs_gpu, gpu_routing, wg, has_bias, true, true, order);
          worst_share = std::max(worst_share, expect_bf16_close(g.dx, ref.dx, "dx"));
          ASSERT_EQ(g.dweight.size(), static_cast<size_t>(M));
          ASSERT_EQ(g.dbias.size(), has_bias ? static_cast<size_t>(M) : 0u);
          for (int64_t m = 0; m < M; ++m) {
            const std::string expert = "expert " + std::to_string(m);
            const bool present = gpu_routing.counts[m] > 0;
            EXPECT_EQ(g.dweight[m].defined(), present) << expert;
            EXPECT_EQ(ref.dweight[m].defined(), present) << expert;
            if (has_bias) {
              EXPECT_EQ(g.dbias[m].defined(), present) << expert;
            }
            if (!present) continue;
            worst_share = std::max(worst_share, expect_bf16_close(g.dweight[m], ref.dweight[m], "dweight, " + expert));
            if (has_bias) test::expect_close(g.dbias[m], ref.dbias[m], DType::f32, kTolerances, "dbias, " + expert);
          }
        }
      }
    }
  }
  std::printf("  bf16 masked_linear: at most %.2f%% of the elements of an output differ from the reference\n",
              100 * worst_share);
}

}  // namespace
}  // namespace mom

// CUDA embedding forward and backward against the CPU reference, on random inputs: float32 and
// float64 weights, int32 and int64 ids, odd V and D (scalar path) and D a multiple of 4 (vector path),
// ids of one and two dims, many repeats of a few ids; out-of-range ids give the CPU's exact message;
// the backward repeats bit for bit; device mismatches are rejected.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/embedding.h"
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

double tolerance(DType dt) { return dt == DType::f32 ? 1e-5 : 1e-12; }

// Ids of the given shape in [0, V): every third one anywhere in the range, the others among the first
// three rows, so that rows are hit many times and others not at all.
Tensor random_ids(const Shape& shape, int64_t V, DType dt, Generator& gen) {
  Tensor any = randint(shape, 0, V, gen, DType::i64);
  Tensor few = randint(shape, 0, std::min<int64_t>(V, 3), gen, DType::i64);
  std::vector<int64_t> a = any.to_vector<int64_t>(), f = few.to_vector<int64_t>();
  for (size_t i = 0; i < a.size(); ++i)
    if (i % 3 != 0) a[i] = f[i];
  return from_vector<int64_t>(a, shape).to(dt);
}

struct EmbeddingCase {
  Shape ids;
  int64_t V, D;
};

TEST_F(Cuda, EmbeddingForwardAndBackwardMatchCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const EmbeddingCase cases[] = {
      {{1}, 1, 1},          {{7}, 3, 5},         {{1000}, 257, 3},  {{4, 257}, 4099, 257},
      {{3, 1000}, 1001, 96}, {{2, 2049}, 5003, 768}, {{1}, 7, 1000}, {{8, 3}, 9, 4},
  };
  double worst[2][3] = {};  // [f32, f64][forward, backward, misaligned backward]
  for (DType dt : {DType::f32, DType::f64}) {
    for (DType id_dt : {DType::i32, DType::i64}) {
      for (const EmbeddingCase& c : cases) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " ids " + dtype_name(id_dt) + " " + shape_str(c.ids) +
                     " V=" + std::to_string(c.V) + " D=" + std::to_string(c.D));
        Tensor ids = random_ids(c.ids, c.V, id_dt, gen);
        Tensor weight = randn({c.V, c.D}, gen, dt);
        Shape y_shape = c.ids;
        y_shape.push_back(c.D);
        Tensor dy = randn(y_shape, gen, dt);
        Tensor y = kernels::embedding_forward(ids, weight);
        Tensor dw = kernels::embedding_backward(dy, ids, c.V);

        Tensor ids_d = ids.to(kGpu), dy_d = dy.to(kGpu);
        Tensor y_d = kernels::embedding_forward(ids_d, weight.to(kGpu));
        Tensor dw_d = kernels::embedding_backward(dy_d, ids_d, c.V);
        EXPECT_EQ(y_d.device(), kGpu);
        EXPECT_EQ(y_d.shape(), y.shape());
        EXPECT_EQ(dw_d.shape(), (Shape{c.V, c.D}));
        const double e_fwd = rel_error(y_d, y), e_bwd = rel_error(dw_d, dw);
        EXPECT_EQ(max_abs_diff(y_d, y), 0.0);  // a copy
        EXPECT_LT(e_bwd, tolerance(dt));
        EXPECT_TRUE(same_bits(kernels::embedding_backward(dy_d, ids_d, c.V), dw_d)) << "a second run differs";

        // Misaligned weight and dy: the scalar paths.
        EXPECT_EQ(max_abs_diff(kernels::embedding_forward(ids_d, misaligned_copy(weight)), y), 0.0);
        const double e_mis = rel_error(kernels::embedding_backward(misaligned_copy(dy), ids_d, c.V), dw);
        EXPECT_LT(e_mis, tolerance(dt));
        const int k = dt == DType::f32 ? 0 : 1;
        worst[k][0] = std::max(worst[k][0], e_fwd);
        worst[k][1] = std::max(worst[k][1], e_bwd);
        worst[k][2] = std::max(worst[k][2], e_mis);
      }
    }
  }
  for (int k = 0; k < 2; ++k)
    std::printf("  embedding %s: worst relative error forward %.1e, backward %.1e, misaligned backward %.1e\n",
                k == 0 ? "float32" : "float64", worst[k][0], worst[k][1], worst[k][2]);
}

TEST_F(Cuda, EmbeddingUntouchedRowsAndEmptyIds) {
  Tensor dy = ones({2, 3}, DType::f64, kGpu);
  Tensor ids = from_vector<int64_t>({2, 2}, {2}).to(kGpu);
  EXPECT_EQ(kernels::embedding_backward(dy, ids, 4).to_vector<double>(),
            (std::vector<double>{0, 0, 0, 0, 0, 0, 2, 2, 2, 0, 0, 0}));
  Tensor none = empty({0}, DType::i64, kGpu);
  Tensor w = ones({5, 3}, DType::f32, kGpu);
  EXPECT_EQ(kernels::embedding_forward(none, w).shape(), (Shape{0, 3}));
  Tensor dw = kernels::embedding_backward(empty({0, 3}, DType::f32, kGpu), none, 5);
  EXPECT_EQ(dw.shape(), (Shape{5, 3}));
  EXPECT_EQ(max_abs_diff(dw, zeros({5, 3})), 0.0);
}

TEST_F(Cuda, EmbeddingOutOfRangeIdsGiveTheCpuMessage) {
  Tensor w = ones({10, 6}, DType::f32, kGpu);
  for (DType id_dt : {DType::i32, DType::i64}) {
    // Two bad ids: the first one (position 5) is the one named.
    std::vector<int64_t> v = {0, 1, 9, 3, 4, 12, 6, -1, 8};
    Tensor ids = from_vector<int64_t>(v, {3, 3}).to(id_dt);
    const std::string msg = "[embedding] id 12 at position 5 is out of range for 10 rows";
    auto message_of = [](auto f) {
      try {
        f();
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    };
    EXPECT_EQ(message_of([&] { kernels::embedding_forward(ids, w.to(kCpu)); }), msg);
    EXPECT_EQ(message_of([&] { kernels::embedding_forward(ids.to(kGpu), w); }), msg);
    Tensor dy = ones({3, 3, 6}, DType::f32, kGpu);
    EXPECT_EQ(message_of([&] { kernels::embedding_backward(dy, ids.to(kGpu), 10); }), msg);
    EXPECT_EQ(message_of([&] { kernels::embedding_backward(dy.to(kCpu), ids, 10); }), msg);
    Tensor negative = from_vector<int64_t>({3, -2}, {2}).to(id_dt).to(kGpu);
    EXPECT_EQ(message_of([&] { kernels::embedding_forward(negative, w); }),
              "[embedding] id -2 at position 1 is out of range for 10 rows");
    // After an error the device is still usable.
    Tensor good = from_vector<int64_t>({3, 9}, {2}).to(id_dt).to(kGpu);
    EXPECT_EQ(kernels::embedding_forward(good, w).shape(), (Shape{2, 6}));
  }
}

TEST_F(Cuda, EmbeddingRejectsMixedDevices) {
  Tensor w = ones({10, 6}, DType::f32, kGpu);
  Tensor ids = from_vector<int64_t>({1, 2}, {2});
  expect_error([&] { kernels::embedding_forward(ids, w); }, "[embedding] ids is on cpu but weight is on cuda:0");
  expect_error([&] { kernels::embedding_backward(ones({2, 6}, DType::f32, kGpu), ids, 10); }, "[embedding]");
  expect_error([&] { kernels::embedding_backward(ones({2, 6}), ids.to(kGpu), 10); }, "[embedding]");
  expect_error([&] { kernels::embedding_forward(ids.to(kGpu), w.transpose(0, 1)); }, "[embedding]");
}

}  // namespace
}  // namespace mom

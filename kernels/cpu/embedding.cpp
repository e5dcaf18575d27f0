// CPU reference for kernels/embedding.h, the argument checks, and the dispatch of CUDA tensors to
// kernels/cuda/embedding.cu.
#include <algorithm>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/embedding.h"

namespace mom::kernels {

namespace {

constexpr const char* kOp = "embedding";

void check_ids(const Tensor& ids) {
  check_defined(ids, kOp, "ids");
  MOM_CHECK(ids.dtype() == DType::i32 || ids.dtype() == DType::i64, kOp,
            "ids must be int32 or int64, got " << dtype_name(ids.dtype()));
  check_contiguous(ids, kOp, "ids");
}

// The ids (on the CPU, checked by check_ids), flattened, after checking their range.
std::vector<int64_t> read_ids_in_range(const Tensor& ids, int64_t V) {
  check_cpu(ids, kOp, "ids");
  std::vector<int64_t> flat = ids.to_vector<int64_t>();
  for (size_t p = 0; p < flat.size(); ++p)
    MOM_CHECK(flat[p] >= 0 && flat[p] < V, kOp,
              "id " << flat[p] << " at position " << p << " is out of range for " << V << " rows");
  return flat;
}

Shape output_shape(const Tensor& ids, int64_t D) {
  Shape s = ids.shape();
  s.push_back(D);
  return s;
}

}  // namespace

Tensor embedding_forward(const Tensor& ids, const Tensor& weight) {
  check_floating(weight, kOp, "weight");
  MOM_CHECK(weight.dim() == 2, kOp, "weight must have 2 dimensions (V, D), got shape " << shape_str(weight.shape()));
  check_contiguous(weight, kOp, "weight");
  check_ids(ids);
  check_same_device(ids, weight, kOp, "ids", "weight");
#ifdef MOM_WITH_CUDA
  if (weight.device().is_cuda()) return cuda::embedding_forward(ids, weight);
#endif
  check_cpu(weight, kOp, "weight");
  const int64_t V = weight.size(0), D = weight.size(1);
  std::vector<int64_t> flat = read_ids_in_range(ids, V);
  const int64_t P = static_cast<int64_t>(flat.size());
  Tensor y = empty(output_shape(ids, D), weight.dtype());
  dispatch_float(weight.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* wp = weight.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
#pragma omp parallel for schedule(static) if (P * D > 32768)
    for (int64_t p = 0; p < P; ++p) std::copy(wp + flat[p] * D, wp + (flat[p] + 1) * D, yp + p * D);
  });
  return y;
}

Tensor embedding_backward(const Tensor& dy, const Tensor& ids, int64_t V) {
  MOM_CHECK(V >= 0, kOp, "V must be non-negative, got " << V);
  check_ids(ids);
  check_floating(dy, kOp, "dy");
  check_contiguous(dy, kOp, "dy");
  MOM_CHECK(dy.dim() == ids.dim() + 1, kOp,
            "dy has shape " << shape_str(dy.shape()) << ", expected ids' shape " << shape_str(ids.shape()) << " + (D)");
  const int64_t D = dy.size(-1);
  check_shape(dy, output_shape(ids, D), kOp, "dy");
  check_same_device(dy, ids, kOp, "dy", "ids");
#ifdef MOM_WITH_CUDA
  if (dy.device().is_cuda()) return cuda::embedding_backward(dy, ids, V);
#endif
  check_cpu(dy, kOp, "dy");
  std::vector<int64_t> flat = read_ids_in_range(ids, V);
  const int64_t P = static_cast<int64_t>(flat.size());
  // Counting sort of positions by id: the positions of id v are order[start[v] .. start[v + 1]).
  std::vector<int64_t> start(V + 1, 0), order(P);
  for (int64_t id : flat) ++start[id + 1];
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t p = 0; p < P; ++p) order[fill[flat[p]]++] = p;
  Tensor dweight = zeros({V, D}, dy.dtype());
  dispatch_float(dy.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dweight.data<scalar_t>();
#pragma omp parallel if (P * D > 32768)
    {
      std::vector<double> acc(D);
#pragma omp for schedule(static)
      for (int64_t v = 0; v < V; ++v) {
        if (start[v] == start[v + 1]) continue;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = start[v]; k < start[v + 1]; ++k) {
          const scalar_t* g = gp + order[k] * D;
          for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(g[d]);
        }
        for (int64_t d = 0; d < D; ++d) dp[v * D + d] = static_cast<scalar_t>(acc[d]);
      }
    }
  });
  return dweight;
}

}  // namespace mom::kernels

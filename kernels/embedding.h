// Embedding lookup and its gradient.
//
//   embedding_forward(ids, weight)          y[..., :] = weight[ids[...], :]
//   embedding_backward(dy, ids, V)          dweight[v, :] = sum_{p : ids[p] = v} dy[p, :]
//
// Shapes: ids (...) int32/int64 contiguous, each in [0, V) (otherwise "[embedding] id 12 at position 5
// is out of range for 10 rows"); weight (V, D) f32/f64 contiguous; y and dy (..., D).
// The forward saves nothing itself; the autograd function saves ids (the backward needs only ids and
// V). ids get no gradient.
// The backward is a deterministic scatter-add: the positions of each id are grouped (a counting sort,
// stable in position order) and one thread sums each touched row of dweight in increasing position
// order, in double. Rows of dweight that no id touches are 0. It returns a fresh (V, D) dweight;
// accumulation into a parameter's .grad happens in the autograd engine.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mom::kernels {

Tensor embedding_forward(const Tensor& ids, const Tensor& weight);
Tensor embedding_backward(const Tensor& dy, const Tensor& ids, int64_t V);

// CUDA versions (kernels/cuda/embedding.cu), called by the functions above after their checks (CUDA
// builds only). They check the id range on the device and read one flag back: a synchronisation.
namespace cuda {
Tensor embedding_forward(const Tensor& ids, const Tensor& weight);
Tensor embedding_backward(const Tensor& dy, const Tensor& ids, int64_t V);
}  // namespace cuda

}  // namespace mom::kernels

// Softmax and log-softmax over one dim, numerically stable (the row maximum is subtracted first).
//
//   softmax_forward(x, dim)              y_i = exp(x_i - m) / sum_j exp(x_j - m),  m = max_j x_j
//   softmax_backward(dy, y, dim)         dx_i = y_i * (dy_i - sum_j dy_j y_j)
//   log_softmax_forward(x, dim)          y_i = x_i - m - log(sum_j exp(x_j - m))
//   log_softmax_backward(dy, y, dim)     dx_i = dy_i - exp(y_i) * sum_j dy_j
//
// x, y, dy: any shape (rank >= 1), contiguous, one floating dtype; dim in [0, rank) (the autograd
// layer wraps negative dims). Seen as (outer, n, inner) with n = size(dim): a "row" is the n elements
// at stride inner. Row sums and maxima are taken in double, in index order.
// The forward saves nothing itself; the autograd function saves y (the output), which is all either
// backward needs. Nothing accumulates: every function returns a fresh tensor.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mom::kernels {

Tensor softmax_forward(const Tensor& x, int64_t dim);
Tensor softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim);
Tensor log_softmax_forward(const Tensor& x, int64_t dim);
Tensor log_softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim);

// CUDA versions, called by the functions above after their checks (CUDA builds only).
namespace cuda {
Tensor softmax_forward(const Tensor& x, int64_t dim);
Tensor softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim);
Tensor log_softmax_forward(const Tensor& x, int64_t dim);
Tensor log_softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim);
}  // namespace cuda

}  // namespace mom::kernels

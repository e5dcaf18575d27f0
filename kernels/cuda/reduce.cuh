// The sum reduction of kernels/cuda/reduce.cu, shared with sum_to_shape (kernels/cuda/elementwise.cu).
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mom::kernels::cuda {

// out = (sum of x over the dims d with reduced[d]) / divisor, in x's dtype. x: contiguous, f32 or f64,
// on a CUDA device, numel > 0, reduced.size() == x.dim(). out: contiguous, same dtype and device, its
// elements the kept dims of x in order (any size-1 dims around them). Deterministic (see reduce.cu).
void sum_reduce(const Tensor& x, const std::vector<bool>& reduced, const Tensor& out, double divisor);

}  // namespace mom::kernels::cuda

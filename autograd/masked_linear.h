// Differentiable modality-routed linear projection (math, shapes and the routing in
// kernels/masked_linear.h).
//
//   Routing routing = Routing::from_modalities(ids, M);   // once per batch, reused by every projection
//   Tensor y = masked_linear(x, routing, {w0, w1, w2}, {b0, b1, b2});
//
// x (T, In), weight: M tensors (Out, In), bias: none or M tensors (Out) -> y (T, Out), token t through
// expert m(t). Each expert is a separate tensor (a separate parameter), so an expert whose modality is
// absent from the batch gets no gradient: its .grad stays undefined, as for any unused parameter.
// Passing the same tensor for several modalities shares that expert; the engine sums its gradients.
//
// The node saves x, the weights (the inputs themselves, detached) and the Routing.
// masked_linear_split: see below.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "kernels/masked_linear.h"

namespace mom {

using kernels::Routing;

Tensor masked_linear(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                     const std::vector<Tensor>& bias = {});

// The general form: y's columns cut into parts of split[i] columns (1 to 4, summing to Out), equal to
// split(masked_linear(x, ...), split, 1) without the copy on CUDA, and the rows of x and of the parts
// each in token order or in the routing's grouped order (kernels::RowOrder; the gradients come in the
// same orders). An empty split is one part. One node for all the parts; a part without a gradient
// counts as zeros.
std::vector<Tensor> masked_linear_split(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                                        const std::vector<Tensor>& bias, const std::vector<int64_t>& split,
                                        kernels::RowOrder order = {});

}  // namespace mom

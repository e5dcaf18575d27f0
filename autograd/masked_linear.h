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
#pragma once

#include <vector>

#include "core/tensor.h"
#include "kernels/masked_linear.h"

namespace mom {

using kernels::Routing;

Tensor masked_linear(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                     const std::vector<Tensor>& bias = {});

}  // namespace mom

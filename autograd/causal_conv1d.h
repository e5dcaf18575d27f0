// Differentiable causal depthwise conv1d (math and shapes in kernels/causal_conv1d.h).
//
//   kernels::CausalConv1dParams p;   // the kernel's own parameters
//   p.x = x; p.weight = w; p.bias = b; p.silu = true;
//   auto [y, final_window] = causal_conv1d(p);
//
// x (B, L, E), weight (E, W) with 2 <= W <= 8, bias (E) optional, initial_window (B, W-1, E) optional
// -> out (B, L, E), final_window (B, W-1, E). Feeding one call's final_window as the next call's
// initial_window continues the sequence: chunked training and step-by-step inference (L = 1) give the
// same outputs and gradients as one call on the whole sequence. Gradients flow to x, weight, bias and
// initial_window, from both outputs.
//
// With p.doc_start ((B, L) bool, true at the first token of each document of a packed row), an
// output's window reads nothing from before its document: each document runs as if alone, the row's
// first one from initial_window, and final_window holds only the row's last document (zeros before it).
// initial_window gets its gradient from the first document only (kernels/causal_conv1d.h has the math).
// doc_start stays in token order with p.order, is not differentiable, and the node saves it.
//
// With p.order (a Routing over the B*L tokens), x and out hold their rows in the routing's grouped
// order (row inverse[b*L + t] holds token (b, t); kernels/causal_conv1d.h), and so do their gradients:
// the routed projections around the conv then need no row moves.
//
// The node saves x, weight, bias, initial_window and doc_start (the inputs themselves, detached) and a
// copy of the Routing (host vectors and tensor handles, no data copied), and recomputes the
// pre-activation in backward.
#pragma once

#include "core/tensor.h"
#include "kernels/causal_conv1d.h"

namespace mom {

struct CausalConv1dResult {
  Tensor out;           // (B, L, E)
  Tensor final_window;  // (B, W-1, E): the last W-1 inputs of each row
};

// p.order is read during the call only: the node keeps its own copy of the routing.
CausalConv1dResult causal_conv1d(const kernels::CausalConv1dParams& p);

}  // namespace mom

// Differentiable selective scan (math, shapes and precision in kernels/selective_scan.h).
//
//   kernels::SelectiveScanParams in;                                    // the kernel's own parameters
//   in.u = x; in.delta = dt; in.A = A; in.B_ssm = Bm; in.C_ssm = Cm;   // required
//   in.D = D; in.z = z; in.delta_bias = dt_bias;                        // optional
//   in.delta_softplus = true;
//   auto [out, last_state] = selective_scan(in);
//
// u, delta, z (B, L, E); A (E, N); B_ssm, C_ssm (B, L, N); D, delta_bias (E); initial_state (B, E, N);
// doc_start (B, L) bool -> out (B, L, E), last_state (B, E, N). Inputs may have any strides (they are
// made contiguous).
// Feeding one call's last_state as the next call's initial_state continues the sequence: chunked
// training gives the outputs of one call on the whole sequence, and gradients flow back through the
// chain. Gradients reach every input that requires one, from both outputs.
//
// With doc_start (true at the first token of each document of a packed row), no state and no gradient
// crosses a document boundary: each document runs as if alone, the row's first one from initial_state,
// and initial_state gets its gradient from the first document only (kernels/selective_scan.h has the
// math). doc_start is not differentiable; the node saves it with the inputs.
//
// The node saves the inputs themselves (detached, contiguous) and, on CUDA, the forward's chunk
// checkpoints (the state at the start of every chunk of time steps, (B, ceil(L / chunk), E, N) in the
// accumulation type: the size of u at N = 16), from which the backward recomputes the other states
// (kernels/cuda/selective_scan.cu). On the CPU nothing else is saved and the backward recomputes every
// state (kernels/selective_scan.h has its scratch memory).
#pragma once

#include "core/tensor.h"
#include "kernels/selective_scan.h"

namespace mom {

struct SelectiveScanResult {
  Tensor out;         // (B, L, E)
  Tensor last_state;  // (B, E, N)
};

// With a row order (in.order), the (B, L, .) tensors and their gradients have their rows in that
// routing's grouped order; the node keeps a copy of the routing for the backward.
SelectiveScanResult selective_scan(const kernels::SelectiveScanParams& in);

}  // namespace mom

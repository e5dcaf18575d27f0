// Differentiable selective scan (math, shapes and precision in kernels/selective_scan.h).
//
//   SelectiveScanInputs in;
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
#include "kernels/masked_linear.h"

namespace mom {

struct SelectiveScanInputs {
  Tensor u;              // (B, L, E)
  Tensor delta;          // (B, L, E)
  Tensor A;              // (E, N)
  Tensor B_ssm;          // (B, L, N)
  Tensor C_ssm;          // (B, L, N)
  Tensor D;              // (E)        optional skip weight
  Tensor z;              // (B, L, E)  optional gate: out = y * silu(z)
  Tensor delta_bias;     // (E)        optional
  Tensor initial_state;  // (B, E, N)  optional state before the first token (zeros when absent)
  Tensor doc_start;      // (B, L)     optional, bool: true at each document's first token; token order
  bool delta_softplus = false;
  // Optional: the (B, L, .) tensors and their gradients have their rows in this routing's grouped
  // order (kernels/selective_scan.h). The node keeps a copy for the backward.
  const kernels::Routing* order = nullptr;
};

struct SelectiveScanResult {
  Tensor out;         // (B, L, E)
  Tensor last_state;  // (B, E, N)
};

SelectiveScanResult selective_scan(const SelectiveScanInputs& inputs);

}  // namespace mom

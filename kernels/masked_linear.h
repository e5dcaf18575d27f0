// Modality-routed ("masked") linear projection: every token goes through its own modality's expert,
// and costs that one expert's FLOPs (never M dense GEMMs over all tokens).
//
// The tokens' Routing (kernels/routing.h) is computed once per batch and reused by every masked
// projection of every layer, forward and backward.
//
// masked_linear, with the experts given as M separate tensors (weight[m] (Out, In), bias[m] (Out)):
//     y[t, :] = weight[m(t)] @ x[t, :] + bias[m(t)]                                    x (T, In), y (T, Out)
// computed as: gather the rows of x into grouped order; one GEMM per modality on its contiguous block,
// writing that block of a grouped-order buffer; then move the rows to token order into y, adding the
// bias on the way (one (T, Out) scratch buffer; the moves use every OpenMP thread when OpenBLAS is its
// OpenMP build).
//
// Backward, from dy (T, Out); with dy_m and x_m the rows of modality m in grouped order:
//     dx_m        = dy_m @ weight[m]          (gather dy, one GEMM per modality, rows moved back)
//     dweight[m]  = dy_m^T @ x_m
//     dbias[m]    = column sums of dy_m       (rows summed in grouped order, in double)
// An expert with no token costs nothing and its dweight[m] and dbias[m] stay undefined, not zero, so
// that a parameter that took no part in the batch keeps an undefined grad (AdamW skips it).
//
// Why a list of M tensors and not one (M, Out, In) tensor: with one tensor an absent expert's slice of
// the gradient would have to be zeros; as M tensors (the published module's in_proj.0.weight,
// in_proj.1.weight, ...) each expert is its own parameter and its gradient can be undefined.
//
// The autograd function saves x and the weights (inputs, no extra memory) and the Routing; backward
// gathers x again. Every gradient is written (=); nothing accumulates into an input. The GEMMs are
// CBLAS (OpenBLAS) calls on the CPU and cuBLAS calls on CUDA (TF32 when kernels::allow_tf32()): for a
// fixed shape (and thread count, or GPU model) they give the same bits on every run. Inputs must be
// contiguous, on one device, of one floating dtype (f32 or f64); outputs are fresh. bfloat16 (mixed
// precision): x, the weights, dy, y, dx and dweight bf16, the biases and dbias float32; every bf16 output
// is its float32 value rounded once (the bias added before the rounding). The CPU computes it in float32
// on the widened inputs (the reference); CUDA runs bf16 GEMMs with float32 accumulation.
//
// On CUDA (kernels/cuda/masked_linear.cu): masked_linear needs routing.perm on x's device. As on the CPU the
// rows of y (and of dx) are moved to token order from a grouped-order buffer in one parallel pass. When
// the ids are already in modality order (perm_is_identity) the gathers and the scatter are skipped.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/routing.h"

namespace mom::kernels {


// x (T, In), weight: M tensors (Out, In), bias: empty or M tensors (Out) -> y (T, Out).
Tensor masked_linear_forward(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                             const std::vector<Tensor>& bias);

struct MaskedLinearGrads {
  Tensor dx;                    // (T, In); undefined unless need_dx
  std::vector<Tensor> dweight;  // M entries (Out, In); undefined for an absent expert or without need_dparams
  std::vector<Tensor> dbias;    // M entries (Out) likewise; empty when the forward had no bias
};

// dy (T, Out); x and weight as in the forward; has_bias: whether the forward had a bias.
MaskedLinearGrads masked_linear_backward(const Tensor& dy, const Tensor& x, const Routing& routing,
                                         const std::vector<Tensor>& weight, bool has_bias, bool need_dx,
                                         bool need_dparams);

// Where the rows of x (and dx) and of y (and dy) are: in token order (row t is token t) or in the
// routing's grouped order (row p is token perm[p]). The Mixture-of-Mamba block keeps its activations in
// grouped order between the projections (causal_conv1d and selective_scan read and write rows through
// routing.inverse), so only the block's input and output move rows.
struct RowOrder {
  bool x_grouped = false;
  bool y_grouped = false;
};

// The general form: y's columns cut into parts of split[i] columns (1 to 4 parts, summing to Out), the
// pieces of kernels::split(y, split, 1), and x's and y's rows in the given orders. A grouped side moves
// no rows at all; a token-order side is gathered or scattered as above. On CUDA the parts are written
// directly: by the scatter, or (grouped y) by one GEMM per part on the part's rows of the weights when
// that moves fewer bytes than a copy, else by one GEMM and a copy. On the CPU the parts are copies.
std::vector<Tensor> masked_linear_forward_split(const Tensor& x, const Routing& routing,
                                                const std::vector<Tensor>& weight, const std::vector<Tensor>& bias,
                                                const std::vector<int64_t>& split, RowOrder order = {});

// Its backward from the parts' gradients dy[i] (T, split[i]), all defined, rows in order.y_grouped's
// order; dx comes in x's order.
MaskedLinearGrads masked_linear_backward_split(const std::vector<Tensor>& dy, const Tensor& x, const Routing& routing,
                                               const std::vector<Tensor>& weight, bool has_bias, bool need_dx,
                                               bool need_dparams, RowOrder order = {});

// CUDA versions, called by the functions above after their checks (CUDA builds only): y in parts of
// split[i] columns (one part: y itself), dy the parts' gradients, all defined.
namespace cuda {
std::vector<Tensor> masked_linear_forward(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                                          const std::vector<Tensor>& bias, const std::vector<int64_t>& split,
                                          RowOrder order);
MaskedLinearGrads masked_linear_backward(const std::vector<Tensor>& dy, const Tensor& x, const Routing& routing,
                                         const std::vector<Tensor>& weight, bool has_bias, bool need_dx,
                                         bool need_dparams, RowOrder order);
}  // namespace cuda

}  // namespace mom::kernels

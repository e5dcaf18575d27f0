// Causal depthwise conv1d over the length of each sequence, channel-last, with an optional fused SiLU
// and a carried window of past inputs, so that chunked training and step-by-step inference continue a
// sequence exactly.
//
//   x               (B, L, E)     input, channel-last; L >= 1
//   weight          (E, W)        one filter per channel, 2 <= W <= 8
//   bias            (E)           optional
//   initial_window  (B, W-1, E)   optional: the W-1 inputs that precede t = 0 (zeros when absent)
//   doc_start       (B, L)        optional, bool: true at the first token of a document (packed rows)
//   y               (B, L, E)
//   final_window    (B, W-1, E)   the last W-1 inputs of each row, to be passed as the next call's
//                                 initial_window
//
// With xe the row extended to the left by the initial window, xe[b, s] for s in [-(W-1), L):
//     xe[b, s, e] = x[b, s, e]                      for s >= 0
//                 = initial_window[b, s + W-1, e]   for s < 0   (0 without an initial window)
//     pre[b, t, e] = bias[e] + sum_{k=0}^{W-1} weight[e, k] * xe[b, t - (W-1) + k, e]
//     y[b, t, e] = silu(pre) if silu else pre                    silu(v) = v * sigmoid(v)
//     final_window[b, j, e] = xe[b, L - (W-1) + j, e]           j in [0, W-1)
// When L < W-1 the final window reaches back into the initial window. Batch rows never mix.
//
// Document boundaries (doc_start defined; a row packs several documents): with start(b, t) the largest
// s in (0, t] with doc_start[b, s] (-infinity when there is none), output t reads nothing from before its
// document:
//     pre[b, t, e] = bias[e] + sum_k weight[e, k] * xd[b, t, t - (W-1) + k, e]
//     xd[b, t, s, e] = 0 if s < start(b, t), else xe[b, s, e]
// doc_start[b, 0] changes nothing: the row's first document reads the initial window (or zeros), every
// later one zeros. The final window keeps only the row's last document, so that it continues that
// document when fed to the next call:
//     final_window[b, j, e] = 0 if L - (W-1) + j < start(b, L-1), else xe[b, L - (W-1) + j, e]
// Every output of a packed row equals that of one call per document (the first with the row's initial
// window, the others without), bit for bit on the CPU: the taps before a start are skipped, as a call
// skips the absent initial window. Undefined doc_start means no boundaries (the same code path and bits).
// Where the next call's row begins a new document, its row of initial_window must be zero (a flag at
// t = 0 cuts nothing).
//
// Backward, given dy (B, L, E) and optionally dfinal_window (B, W-1, E) (absent = zeros):
//     dpre = dy * silu'(pre) (pre is recomputed from the saved inputs), or dy without silu
//     dxe[b, s, e] = sum_k weight[e, k] * dpre[b, s + (W-1) - k, e]  (terms with t in [0, L))
//                    + dfinal_window[b, s - L + (W-1), e]          (for s >= L - (W-1))
//     dx = dxe[s >= 0], dinitial_window = dxe[s < 0]
//     dweight[e, k] = sum_b sum_t dpre[b, t, e] * xe[b, t - (W-1) + k, e]
//     dbias[e]      = sum_b sum_t dpre[b, t, e]
// With doc_start it is the adjoint of the masked read: dxe[b, s] takes only the terms of outputs t with
// start(b, t) <= s (t in s's own document; s < 0 counts as the first document), dfinal_window only where
// the final window is not zeroed (the last document's positions), and dweight sums dpre * xd. So
// dinitial_window receives only from the row's first document. dx equals that of one call per document
// bit for bit; dweight and dbias are the documents' sums to rounding (one pass over each row's t).
//
// The forward saves nothing itself; the autograd function saves x, weight, bias, initial_window and
// doc_start (all inputs, no extra memory) and the backward recomputes pre. Every gradient is written (=), nothing
// accumulates into an input. Determinism: each output element is written by one thread; dweight and
// dbias sum over b then t in that fixed order, in double, whatever the thread count. The W-term sums
// run in the input type, starting from the bias, k = 0 .. W-1.
//
// Rows in grouped order (order != nullptr, a Routing over T = B*L tokens in row-major (b, t) order):
// the (b, t) row of x, y, dy and dx is stored at row order->inverse[b*L + t] of its (B*L, E) storage,
// the grouped order of the routed projections around the conv (kernels/masked_linear.h), so that they
// need no row moves. The tensors keep their (B, L, E) shapes; the windows, weight, bias and their
// gradients are unaffected. The results equal, bit for bit, the plain op on the un-permuted tensors,
// permuted afterwards (same arithmetic in the same order). order->inverse must be a permutation of
// [0, B*L) on x's device, as Routing::from_modalities builds it (not re-checked: that would need a
// device sync); a routing of another length or device is an error. doc_start is not reordered: it stays
// in token order, (b, t) at doc_start[b, t], like the routing's token index.
//
// Inputs must be contiguous, on one device, of one floating dtype (f32 or f64), except doc_start: bool,
// (B, L), contiguous, on x's device. Outputs are fresh; errors are mom::Error "[causal_conv1d] ...".
// bfloat16 (mixed precision): x, the windows, y, dy, dx and their window gradients bf16; weight, bias,
// dweight and dbias float32; the sums and SiLU in float32, each bf16 output rounded once. The CPU
// computes it as the float32 op on the widened inputs (the reference).
// The CUDA version (kernels/cuda/causal_conv1d.cu) runs the same math; its dweight and dbias sum
// per-tile partials in a fixed order instead (see there), equally deterministic. With doc_start its y and
// final_window equal one call per document bit for bit as well (the same taps read zeros), dx up to
// the sign of a zero (a skipped term, where one call per document adds a +0), dweight and dbias to
// rounding.
#pragma once

#include "core/tensor.h"
#include "kernels/routing.h"

namespace mom::kernels {

struct CausalConv1dOutput {
  Tensor y;             // (B, L, E)
  Tensor final_window;  // (B, W-1, E)
};

struct CausalConv1dGrads {
  Tensor dx;               // (B, L, E)
  Tensor dweight;          // (E, W)
  Tensor dbias;            // (E); undefined when the forward had no bias
  Tensor dinitial_window;  // (B, W-1, E); undefined when the forward had no initial window
};

// The op's parameters, taken by the kernels and by the autograd function (autograd/causal_conv1d.h)
// alike. bias, initial_window and doc_start may be undefined.
struct CausalConv1dParams {
  Tensor x;               // (B, L, E)
  Tensor weight;          // (E, W)
  Tensor bias;            // (E), optional
  Tensor initial_window;  // (B, W-1, E), optional: the inputs before t = 0 (zeros when absent)
  Tensor doc_start;       // (B, L) bool, optional: true at each document's first token, in token order
  bool silu = false;      // fused SiLU on the output
  // Optional: x, y and their gradients in this routing's grouped row order (null: the plain layout).
  // Only read during a call.
  const Routing* order = nullptr;
};

CausalConv1dOutput causal_conv1d_forward(const CausalConv1dParams& p);

// dfinal_window may be undefined (no gradient reached the final window). dy and dx are in p.order's
// grouped order, like x.
CausalConv1dGrads causal_conv1d_backward(const CausalConv1dParams& p, const Tensor& dy, const Tensor& dfinal_window);

// CUDA versions, called by the functions above after their checks (CUDA builds only).
namespace cuda {
CausalConv1dOutput causal_conv1d_forward(const CausalConv1dParams& p);
CausalConv1dGrads causal_conv1d_backward(const CausalConv1dParams& p, const Tensor& dy, const Tensor& dfinal_window);
}  // namespace cuda

}  // namespace mom::kernels

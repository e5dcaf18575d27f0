// Selective scan (the SSM of Mamba): a diagonal linear recurrence per (batch row, channel) whose step
// size, input and output projections change with every token.
//
// Inputs (channel-last; B batch, L length, E channels = d_inner, N state size):
//   u              (B, L, E)   input sequence
//   delta          (B, L, E)   step sizes before bias and softplus
//   A              (E, N)      diagonal state matrix per channel (negative in Mamba: A = -exp(A_log))
//   B_ssm          (B, L, N)   input projection of each token ("B" of the paper)
//   C_ssm          (B, L, N)   output projection of each token ("C" of the paper)
//   D              (E)         optional skip weight
//   z              (B, L, E)   optional gate
//   delta_bias     (E)         optional step-size bias
//   initial_state  (B, E, N)   optional state before the first token (zeros when absent)
//   doc_start      (B, L)      optional, bool: true at the first token of a document (packed rows)
//   delta_softplus             apply softplus to the step sizes
//
// Math, for every b, e, n and t = 0 .. L-1 (h_{-1} = initial_state or 0):
//   dt_t   = softplus(delta_t + delta_bias)   (or delta_t + delta_bias without delta_softplus;
//                                              softplus(x) = log(1 + exp(x)), x itself above 20, as PyTorch)
//   h_t[n] = exp(dt_t * A[n]) * h_{t-1}[n] + dt_t * B_t[n] * u_t
//   y_t    = sum_n C_t[n] * h_t[n] + D * u_t
//   out_t  = y_t * silu(z_t)                  (or y_t without z)
// Outputs: out (B, L, E) and last_state = h_{L-1} (B, E, N).
//
// Document boundaries (doc_start defined; a row packs several documents): a step t > 0 with
// doc_start[b, t] starts from a zero state instead of h_{t-1}, so no state crosses the boundary:
//   h_t[n] = exp(dt_t * A[n]) * 0 + dt_t * B_t[n] * u_t     (= dt_t * B_t[n] * u_t: the carry is cut)
// At t = 0 the state before the token is h_{-1} whatever doc_start[b, 0] says: the row's first document
// continues initial_state (or starts from zero without one), every later document starts from zero, and
// last_state = h_{L-1} is the state of the row's last document. So every output of a packed row equals
// that of one call per document (the first with the row's initial_state, the others without), bit for
// bit on the CPU: a start runs the same arithmetic as a call's first step. Undefined doc_start means no
// boundaries (the same code path and bits as a scan without documents). Feeding last_state to the next
// call continues the row's last document; where the next call's row begins a new document, its row of
// initial_state must be zero (a flag at t = 0 cuts nothing).
//
// Backward: given dout (B, L, E) and dlast_state (B, E, N) (either may be undefined, meaning zeros),
// returns a gradient for every defined input. With g_t = dL/dh_t (g_{L-1} starts at dlast_state),
// walking t from L-1 down to 0:
//   dy_t     = dout_t * silu(z_t);  dz_t = dout_t * y_t * silu'(z_t)
//   g_t     += dy_t * C_t                       dC_t   = sum_e dy_t * h_t
//   ddt_t    = sum_n g_t[n] * (A[n] * exp(dt_t A[n]) * h_{t-1}[n] + B_t[n] * u_t)
//   dA[n]    = sum_{b,t} g_t[n] * dt_t * exp(dt_t A[n]) * h_{t-1}[n]
//   dB_t     = sum_e g_t * dt_t * u_t            du_t   = dy_t * D + sum_n g_t[n] * dt_t * B_t[n]
//   dD       = sum_{b,t} dy_t * u_t              ddelta_t = ddt_t * softplus'(delta_t + delta_bias)
//   ddelta_bias = sum_{b,t} ddelta_t
//   g_{t-1}  = g_t * exp(dt_t * A)              dinitial_state = g_{-1}
// With doc_start, at a start t > 0 the terms with h_{t-1} (in ddt_t and dA) vanish, since h_{t-1} is
// taken as 0, and the gradient does not flow back across the boundary: g_{t-1} = 0 before step t-1 adds
// its own terms (dlast_state reaches only the row's last document). dinitial_state = g_{-1} therefore
// receives only from the row's first document. The per-token gradients (du, ddelta, dz, dB_ssm, dC_ssm)
// equal those of one call per document bit for bit on the CPU; dA, dD and ddelta_bias are the sums of
// the documents' own, to rounding (a row adds its terms over t in one pass, not document by document).
//
// Saved for the backward: the inputs (the autograd node keeps them) and, on CUDA, the state at the start
// of every time chunk (SelectiveScanOutput::checkpoints). On the CPU no h_t is stored; the
// backward recomputes the states of one (b, e) at a time into a per-thread scratch buffer of (L+2) x N
// accumulators (h_{-1} .. h_{L-1}, and a zero row: the h_{t-1} of a document's first step) plus L
// outputs y_t, with the same code as the forward, so the recomputed states equal the forward's bit for
// bit (68 KiB per thread at L = 1024, N = 16, float).
// Nothing accumulates into existing tensors: every gradient is a fresh tensor (=, not +=).
//
// Precision: state and every accumulation use acc_t = the wider of float32 and the input type (float
// for float32 inputs, as docs/design.md states for the CUDA kernel; double for float64). Because the state
// is stored in its own precision, a chunked forward (last_state fed back as initial_state) equals the
// unchunked one bit for bit.
//
// Parallelism and determinism (results do not depend on the number of threads):
//   forward: one task per (b, e) pair; each writes its own out[b, :, e] and last_state[b, e, :].
//   backward: one task per (b, channel group); a group is a fixed slice of the channels
//     (min(E, kScanChannelGroups) groups, independent of the thread count) walked in increasing e.
//     du, ddelta, dz and dinitial_state are written by the task that owns (b, e). dB and dC (summed over
//     e) are summed within a task into its own (L, N) partial, then over the groups in increasing group
//     order; dA, dD and ddelta_bias (summed over b and t) go to per-(b, e) partials, then are summed over b
//     in increasing b. Extra memory: 2 * G * B * L * N + B * E * (N + 2) accumulators (4.1 MiB at
//     B = 2, L = 1024, E = 512, N = 16, float).
//
// Inputs must be contiguous, on one device, of one floating dtype (float32 or float64), except doc_start:
// bool, (B, L), contiguous, on u's device. bfloat16 (mixed precision): u, delta, B_ssm, C_ssm, z, out and
// their gradients bf16; A, D, delta_bias, initial_state, last_state, dlast_state and their gradients
// float32 (the state and every sum are float32 whatever the input type). The CPU computes it as the
// float32 scan of the widened inputs, each bf16 output rounded once (the reference). Errors are mom::Error starting with "[selective_scan]". On
// CUDA (kernels/cuda/selective_scan.cu) the same API runs one thread group per channel; N is limited to
// 64 there. Its outputs with document boundaries equal one call per document to f32 rounding (the
// CPU's equality is bitwise).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "kernels/routing.h"

namespace mom::kernels {

// Every input of the scan, by name. Optional tensors are left undefined when absent.
struct SelectiveScanParams {
  Tensor u;              // (B, L, E)
  Tensor delta;          // (B, L, E)
  Tensor A;              // (E, N)
  Tensor B_ssm;          // (B, L, N)
  Tensor C_ssm;          // (B, L, N)
  Tensor D;              // (E)        optional
  Tensor z;              // (B, L, E)  optional
  Tensor delta_bias;     // (E)        optional
  Tensor initial_state;  // (B, E, N)  optional
  Tensor doc_start;      // (B, L)     optional, bool: true at each document's first token (see above)
  bool delta_softplus = false;
  // Optional row order of the sequence tensors: with it, the (b, t) row of u, delta, B_ssm, C_ssm, z,
  // out and of their gradients is row order->inverse[b*L + t] of its (B*L, .) storage (the routing's
  // grouped order, in which the Mixture-of-Mamba block keeps its activations). The routing must cover
  // the B*L tokens and be on u's device; it is used during the call only. doc_start is not reordered:
  // it stays in token order, (b, t) at doc_start[b, t], like the routing's token index.
  const Routing* order = nullptr;
};

struct SelectiveScanDims {
  int64_t B = 0, L = 0, E = 0, N = 0;
};

struct SelectiveScanOutput {
  Tensor out;         // (B, L, E)
  Tensor last_state;  // (B, E, N)
  // CUDA only, when the forward is asked to save them: the state at the start of every chunk of the
  // CUDA kernel's time chunks (B, ceil(L / chunk), E, N), in the accumulation type. Passed back to the
  // backward, they spare it a second forward pass (the CPU never makes them: its backward recomputes).
  Tensor checkpoints;
};

// One gradient per input; undefined exactly where the input is.
struct SelectiveScanGrads {
  Tensor du, ddelta, dA, dB_ssm, dC_ssm, dD, dz, ddelta_bias, dinitial_state;
};

// Number of channel groups of the backward's deterministic reduction over e (see the header comment).
constexpr int64_t kScanChannelGroups = 16;

// Validates every input (ranks, matching B/L/E/N, one floating dtype, doc_start's dtype and shape,
// contiguity, one device) and returns the dimensions. Throws mom::Error "[selective_scan] ...".
SelectiveScanDims check_selective_scan(const SelectiveScanParams& p);

// save_checkpoints: on CUDA, also return the chunk-start states for the backward (ignored on the CPU).
SelectiveScanOutput selective_scan_forward(const SelectiveScanParams& p, bool save_checkpoints = false);

// dout (B, L, E) and dlast_state (B, E, N) may be undefined (zero gradient). checkpoints: undefined, or
// the forward's (CUDA). dz_over_dout: dz may be written over dout, which the caller gives up (the
// autograd node does when it holds the only reference): each element of dout is read before dz is
// written there, by the same thread, so the backward needs no (B, L, E) buffer for dz (the block's
// peak memory during the scan's backward, 96 MiB at B=8 L=2048 E=1536 f32).
SelectiveScanGrads selective_scan_backward(const SelectiveScanParams& p, const Tensor& dout, const Tensor& dlast_state,
                                           const Tensor& checkpoints = Tensor(), bool dz_over_dout = false);

// CUDA versions, called by the functions above after their checks (CUDA builds only).
namespace cuda {
SelectiveScanOutput selective_scan_forward(const SelectiveScanParams& p, const SelectiveScanDims& d,
                                           bool save_checkpoints);
SelectiveScanGrads selective_scan_backward(const SelectiveScanParams& p, const SelectiveScanDims& d, const Tensor& dout,
                                           const Tensor& dlast_state, const Tensor& checkpoints, bool dz_over_dout);
}  // namespace cuda

}  // namespace mom::kernels

// Recurrent decoding: one token per row through the model, as a few fused kernels over a batch of B
// rows that each carry their own state. nn/decoder.h chains them into a whole-model step; on CUDA it
// captures that step once in a graph and replays it. Per layer:
//   decode_linear, Input::norm, conv   the residual row -> RMSNorm -> in_proj -> xz (B, 2E); then the
//                                      conv over xz's x and the window -> u (B, E), the window moved
//   decode_linear                      u -> x_proj -> dbc (B, R + 2N)
//   decode_ssm_step                    dt_proj, the scan's step, D, the gate -> y (B, E)
//   decode_linear, accumulate          y -> out_proj, added to the residual row
// so that a layer moves its weights once, its states once, and a few rows of activations; nothing
// allocates and nothing waits for the host (what a graph capture needs).
//
// Experts. A projection's weight is a stack (M, Out, In) and row b multiplies expert e_b = expert[b]
// (int32 (B), in [0, M)). An undefined expert means e_b = 0 for every row: a shared projection passes its
// weight as (1, Out, In). A row whose expert is out of range gets NaN outputs (the kernels never read
// outside the stack, and cannot throw from the device without a wait).
//
// decode_linear(x, weight, bias, expert, in, y, accumulate, conv):
//     y[b, o] (+)= sum_i W[e_b, o, i] v[b, i] + bias[e_b, o]          (+= with accumulate)
//   where v is the layer's input, x (B, In):
//     Input::plain   v = x
//     Input::norm    v[b, i] = x[b, i] rstd_b g[i], rstd_b = 1 / sqrt(mean_i x[b, i]^2 + eps)
//   With a conv (DecodeConv), the conv then runs over y's first E columns (the conv's new input, E =
//   the window's channels):
//     u[b, e] = silu(cb[e] + sum_{j<W-1} win[b, j, e] cw[e, j] + y[b, e] cw[e, W-1])
//   win the window (B, W-1, E) before the token (read as zeros in a row with start[b]), cw (E, W) the
//   conv weight, cb (E) its bias (or none); and the window moves one token:
//     win[b] = (win[b, 1:], y[b, :E])   (zeros before y's column when start[b])
// decode_ssm_step(xz, u, dbc, ...): for each row b and channel e,
//     z = xz[b, E + e], dt_low = dbc[b, :R], Bv = dbc[b, R:R+N], Cv = dbc[b, R+N:R+2N]
//     dt   = softplus(sum_r Wdt[e_b, e, r] dt_low[r] + bdt[e_b, e])
//     h[n] = exp(dt A[e, n]) h[n] + dt Bv[n] u[b, e],   A = -exp(A_log)   (h = 0 first when start[b])
//     y[b, e] = (sum_n Cv[n] h[n] + D[e] u[b, e]) silu(z)
// decode_embed(token, table, out): out[b] = table[token[b]]; an out-of-range id gives a NaN row.
// These are the equations of MambaBlock::forward for L = 1 (nn/mamba.h), with the dt bias inside
// dt_proj; nn/decoder.h's tests hold a step to the parallel forward.
//
// Dtypes: activations, states, biases, norm, conv, A_log and D in the model's dtype P, float32 or
// float64; weights in P, or bfloat16 beside float32 (widened in registers). The CUDA kernels sum in
// float32 for float32 and bfloat16, in float64 for float64; the CPU reference sums the projections
// (BLAS), dt_proj, the SSM state's update and C . h in P, the RMSNorm and the conv in float64. start:
// bool (B) or undefined; expert: int32 (B) or undefined.
// Every tensor contiguous and on one device; the outputs are written in place (y, u, window, state),
// never allocated. CPU and CUDA compute the same equations; their sums run in different orders.
#pragma once

#include "core/tensor.h"

namespace mom::kernels {

struct DecodeInput {
  enum class Kind { plain, norm };
  Kind kind = Kind::plain;
  Tensor norm_weight;  // (In), Kind::norm
  double eps = 1e-5;   // Kind::norm
};

struct DecodeConv {
  Tensor window;       // (B, W-1, E), updated
  Tensor conv_weight;  // (E, W)
  Tensor conv_bias;    // (E) or undefined
  Tensor start;        // (B) bool or undefined
  Tensor u;            // (B, E), written
};

struct DecodeSsm {
  Tensor xz;           // (B, 2E)
  Tensor u;            // (B, E)
  Tensor dbc;          // (B, R + 2N)
  Tensor state;        // (B, E, N), updated
  Tensor dt_weight;    // (M, E, R)
  Tensor dt_bias;      // (M, E)
  Tensor dt_expert;    // (B) int32, or undefined (expert 0)
  Tensor A_log;        // (E, N)
  Tensor D;            // (E)
  Tensor start;        // (B) bool or undefined
  Tensor y;            // (B, E), written
};

// workspace: on CUDA, more than 8 rows go through cuBLAS (the inputs staged, one GEMM per expert over
// every row, each row then taking its expert's product) in scratch memory: *workspace when it is large
// enough, else a new allocation put there (the caller keeps it for the next call, so that a graph
// replays with the same scratch), or a temporary one without a workspace. The CPU ignores it.
void decode_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& expert,
                   const DecodeInput& in, Tensor& y, bool accumulate, Tensor* workspace = nullptr,
                   const DecodeConv* conv = nullptr);
void decode_ssm_step(const DecodeSsm& s);
void decode_embed(const Tensor& token, const Tensor& table, Tensor& out);

// CUDA versions (kernels/cuda/decode.cu), called by the functions above after their checks (CUDA
// builds only); they only launch kernels on the device's stream.
namespace cuda {
void decode_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& expert,
                   const DecodeInput& in, Tensor& y, bool accumulate, Tensor* workspace, const DecodeConv* conv);
void decode_ssm_step(const DecodeSsm& s);
void decode_embed(const Tensor& token, const Tensor& table, Tensor& out);
}  // namespace cuda

}  // namespace mom::kernels

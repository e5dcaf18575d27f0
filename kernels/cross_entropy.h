// Fused cross-entropy over class logits: log-softmax, the pick of the target and the weighted mean in
// one pass, without materialising the (T, V) log-probabilities.
//
//   lse_t   = log sum_v exp(logits[t, v])                     (row maximum subtracted first)
//   nll_t   = lse_t - logits[t, target_t]
//   counted = { t : target_t != ignore_index },  w_t = weight[t] (1 without a weight)
//   loss    = sum_{t in counted} w_t nll_t / W,  W = sum_{t in counted} w_t;  loss = 0 when W = 0
//
//   dlogits[t, v] = dloss * w_t / W * (exp(logits[t, v] - lse_t) - [v == target_t])   for t counted,
//                   0 for ignored rows, and everywhere when W = 0.
//
// Shapes: logits (T, V) f32/f64/bf16 contiguous, V >= 1; targets (T) int32/int64 contiguous, each in
// [0, V) or equal to ignore_index (otherwise "[cross_entropy] target 9 at position 3 is out of range
// for 8 classes"); weight: undefined or (T), non-negative; weight, loss (), dloss () and lse in the
// accumulation dtype of logits (float32 for bf16 logits, the logits' dtype otherwise); dlogits in the
// dtype of logits. bf16 logits are computed as the float32 op on the widened logits, dlogits rounded
// once: the CPU widens the logits and runs its float32 op, the CUDA kernels read bf16 logits and write
// bf16 dlogits directly, computing in float32.
// The forward saves lse (T) (ignored rows hold their lse too); the backward
// recomputes W from targets and weight. The sums over t run serially in index order (in double), so
// results repeat bit for bit. Nothing accumulates: the backward returns a fresh dlogits.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mom::kernels {

struct CrossEntropyForward {
  Tensor loss;  // ()
  Tensor lse;   // (T)
};

CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                          const Tensor& weight);
Tensor cross_entropy_backward(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              int64_t ignore_index, const Tensor& weight);

// CUDA versions, called by the functions above after their checks (CUDA builds only). Both read back
// the first invalid token position (one synchronisation each) to throw the CPU's error message.
namespace cuda {
CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                          const Tensor& weight);
Tensor cross_entropy_backward(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              int64_t ignore_index, const Tensor& weight);
}  // namespace cuda

}  // namespace mom::kernels

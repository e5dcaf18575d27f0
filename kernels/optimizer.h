// Optimiser kernels: the fused AdamW update and the pieces of global-norm clipping.
//
// adamw_step (PyTorch's torch.optim.AdamW, one parameter, step t counted from 1):
//   p <- p - lr * weight_decay * p                    (decoupled decay)
//   m <- beta1 * m + (1 - beta1) * g
//   v <- beta2 * v + (1 - beta2) * g^2
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// p, m, v are updated in place (their versions bump); g is read. All four contiguous, same shape,
// dtype and device. One pass over the four arrays.
//
// sum_of_squares(g)      sum g^2 in double (for the global gradient norm)
// scale_inplace(g, s)    g <- s * g
#pragma once

#include "core/tensor.h"

namespace mom::kernels {

struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h);
double sum_of_squares(const Tensor& g);
void scale_inplace(const Tensor& g, double s);

// CUDA versions, called by the functions above after their checks (CUDA builds only).
namespace cuda {
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h);
double sum_of_squares(const Tensor& g);
void scale_inplace(const Tensor& g, double s);
}  // namespace cuda

}  // namespace mom::kernels

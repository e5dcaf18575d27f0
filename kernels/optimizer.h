// Optimiser kernels: the fused AdamW update and the pieces of global-norm clipping, for one tensor
// and for many tensors at once.
//
// adamw_step (PyTorch's torch.optim.AdamW, one parameter, step t counted from 1):
//   p <- p - lr * weight_decay * p                    (decoupled decay)
//   m <- beta1 * m + (1 - beta1) * g
//   v <- beta2 * v + (1 - beta2) * g^2
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// p, m, v are updated in place (their versions bump); g is read. All four contiguous, same shape,
// dtype and device. One pass over the four arrays; every element's update is computed in double,
// one rounded operation at a time in the order written above, so the CPU and the CUDA versions give
// the same bits.
//
// adamw_step_multi(p, g, m, v, steps, h): adamw_step(p[i], g[i], m[i], v[i], steps[i], h) for every i,
// with the same results. Each parameter keeps its own step count (its bias corrections). Every tensor
// on one device; f32 and f64 parameters may mix. On CUDA the whole list takes a few launches (up to
// 48 parameters each) instead of one per parameter; on the CPU it is the per-tensor loop.
//
// sum_of_squares(g)      sum g^2 in double (for the global gradient norm); a host value
// scale_inplace(g, s)    g <- T(double(g) * s)
//
// Clipping a list of gradients without a host round trip (the CUDA path reads nothing back):
//   sum_of_squares_multi(gs)                 () f64 on the gradients' device: sum over every g of sum g^2
//   clip_by_total_norm(gs, total_sq, max)    norm = sqrt(total_sq); when norm > max, every g <-
//                                            T(double(g) * max / (norm + 1e-6)); nothing is written
//                                            otherwise (NaN norms included). total_sq: () f64 on the
//                                            gradients' device; the decision is taken where it lives.
// On the CPU these add the per-tensor sums in list order and scale with scale_inplace: the same bits
// as summing sum_of_squares(g) on the host and scaling each g. On CUDA the sum is over fixed chunks
// of 16384 elements (per-chunk partials in double, then summed in chunk order), so it repeats bit for
// bit but may differ from the CPU's in the last bits.
#pragma once

#include <vector>

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
void adamw_step_multi(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                      const std::vector<Tensor>& v, const std::vector<int64_t>& steps, const AdamWHyper& h);
double sum_of_squares(const Tensor& g);
void scale_inplace(const Tensor& g, double s);
Tensor sum_of_squares_multi(const std::vector<Tensor>& gs);  // an empty list gives a CPU zero
void clip_by_total_norm(const std::vector<Tensor>& gs, const Tensor& total_sq, double max_norm);

// CUDA versions, called by the functions above after their checks (CUDA builds only).
namespace cuda {
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h);
void adamw_step_multi(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                      const std::vector<Tensor>& v, const std::vector<int64_t>& steps, const AdamWHyper& h);
double sum_of_squares(const Tensor& g);
void scale_inplace(const Tensor& g, double s);
Tensor sum_of_squares_multi(const std::vector<Tensor>& gs);
void clip_by_total_norm(const std::vector<Tensor>& gs, const Tensor& total_sq, double max_norm);
}  // namespace cuda

}  // namespace mom::kernels

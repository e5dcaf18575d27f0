// RMSNorm over the last dim, fused: one forward kernel and one backward kernel giving dx and dweight.
//
//   rstd_r = 1 / sqrt(mean_i x[r, i]^2 + eps)
//   y[r, i] = x[r, i] * rstd_r * weight[i]
//
//   s_r        = sum_i dy[r, i] * weight[i] * x[r, i]
//   dx[r, i]   = rstd_r * dy[r, i] * weight[i] - rstd_r^3 / D * x[r, i] * s_r
//   dweight[i] = sum_r dy[r, i] * x[r, i] * rstd_r
//
// Shapes: x (..., D) with rank >= 1, seen as rows r; weight (D); y, dy, dx (..., D); rstd (...), one
// value per row; all contiguous. eps >= 0. x, dx: float32, float64 or bfloat16; weight, dweight and
// rstd: x's accumulation dtype (float32 for bf16); y and dy: x's dtype, or bf16 beside a float32 x (the
// pre-norm of mixed precision: a float32 residual stream normalised into bf16 activations). A call with
// a bf16 tensor computes the float32 op on the widened inputs and rounds each bf16 output once: the CPU
// widens the bf16 tensors and runs its float32 op, the CUDA kernels read and write bf16 directly and
// compute in float32.
// The forward returns rstd, which the autograd function saves with x and weight for the backward.
// Row sums are taken in double. dweight sums over rows in row order (each column block owned by one
// thread), so results repeat bit for bit whatever the thread count. Nothing accumulates: the backward
// returns fresh dx and dweight.
#pragma once

#include "core/tensor.h"

namespace mom::kernels {

struct RmsNormForward {
  Tensor y;     // (..., D)
  Tensor rstd;  // (...)
};

struct RmsNormBackward {
  Tensor dx;       // (..., D)
  Tensor dweight;  // (D)
};

// y_dtype: x's dtype, or bf16 for a float32 x.
RmsNormForward rms_norm_forward(const Tensor& x, const Tensor& weight, double eps, DType y_dtype);
inline RmsNormForward rms_norm_forward(const Tensor& x, const Tensor& weight, double eps) {
  return rms_norm_forward(x, weight, eps, x.dtype());
}
RmsNormBackward rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd);

// CUDA versions, called by the functions above after their checks (CUDA builds only).
namespace cuda {
RmsNormForward rms_norm_forward(const Tensor& x, const Tensor& weight, double eps, DType y_dtype);
RmsNormBackward rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd);
}  // namespace cuda

}  // namespace mom::kernels

// CPU reference for kernels/rms_norm.h; the argument checks shared with the CUDA version
// (kernels/cuda/rms_norm.cu), which CUDA tensors go to after them.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/rms_norm.h"

namespace mom::kernels {

namespace {

constexpr const char* kOp = "rms_norm";
constexpr int64_t kColumnBlock = 64;  // columns of dweight owned by one thread at a time

void check_tensor(const Tensor& t, const char* name) {
  check_floating(t, kOp, name);
  check_contiguous(t, kOp, name);
}

// Checks x (..., D) and weight (D); returns D.
int64_t check_x_weight(const Tensor& x, const Tensor& weight) {
  check_compute(x, kOp, "x");
  check_contiguous(x, kOp, "x");
  MOM_CHECK(x.dim() >= 1, kOp, "x must have at least 1 dimension (..., D), got a scalar");
  check_tensor(weight, "weight");
  MOM_CHECK(weight.dim() == 1, kOp, "weight must have 1 dimension, got shape " << shape_str(weight.shape()));
  check_acc_dtype(weight, x, kOp, "weight", "x");
  check_same_device(weight, x, kOp, "weight", "x");
  const int64_t D = x.size(-1);
  MOM_CHECK(weight.size(0) == D, kOp, "weight has " << weight.size(0) << " elements, x has D = " << D);
  return D;
}

Shape row_shape(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 1); }

}  // namespace

RmsNormForward rms_norm_forward(const Tensor& x, const Tensor& weight, double eps, DType y_dtype) {
  const int64_t D = check_x_weight(x, weight);
  MOM_CHECK(eps >= 0, kOp, "eps must be >= 0, got " << eps);
  MOM_CHECK(y_dtype == x.dtype() || (y_dtype == DType::bf16 && x.dtype() == DType::f32), kOp,
            "y must be of x's dtype, or bfloat16 beside a float32 x; got " << dtype_name(y_dtype) << " for "
                                                                           << dtype_name(x.dtype()) << " x");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::rms_norm_forward(x, weight, eps, y_dtype);
#endif
  // bf16 on the CPU (the reference of the CUDA kernels): the float32 op on the widened x, y rounded once.
  if (x.dtype() == DType::bf16 || y_dtype != x.dtype()) {
    RmsNormForward f = rms_norm_forward(widen_bf16(x), weight, eps);
    return {f.y.to(y_dtype), f.rstd};
  }
  check_cpu(x, kOp, "x");
  RmsNormForward out{empty_like(x), empty(row_shape(x), x.dtype())};
  const int64_t rows = out.rstd.numel();
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    const scalar_t* wp = weight.data<scalar_t>();
    scalar_t* yp = out.y.data<scalar_t>();
    scalar_t* rp = out.rstd.data<scalar_t>();
#pragma omp parallel for schedule(static) if (rows * D > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      const scalar_t* xr = xp + r * D;
      scalar_t* yr = yp + r * D;
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const double rstd = 1.0 / std::sqrt(ss / static_cast<double>(D) + eps);
      rp[r] = static_cast<scalar_t>(rstd);
      for (int64_t i = 0; i < D; ++i) yr[i] = static_cast<scalar_t>(xr[i] * rstd * wp[i]);
    }
  });
  return out;
}

RmsNormBackward rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  const int64_t D = check_x_weight(x, weight);
  check_compute(dy, kOp, "dy");
  check_contiguous(dy, kOp, "dy");
  check_shape(dy, x.shape(), kOp, "dy");
  MOM_CHECK(dy.dtype() == x.dtype() || (dy.dtype() == DType::bf16 && x.dtype() == DType::f32), kOp,
            "dy must be of x's dtype, or bfloat16 beside a float32 x; got " << dtype_name(dy.dtype()) << " for "
                                                                            << dtype_name(x.dtype()) << " x");
  check_same_device(dy, x, kOp, "dy", "x");
  check_tensor(rstd, "rstd");
  check_shape(rstd, row_shape(x), kOp, "rstd");
  check_acc_dtype(rstd, x, kOp, "rstd", "x");
  check_same_device(rstd, x, kOp, "rstd", "x");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::rms_norm_backward(dy, x, weight, rstd);
#endif
  // bf16 on the CPU: the float32 op on the widened dy and x, dx rounded once to x's dtype.
  if (x.dtype() == DType::bf16 || dy.dtype() != x.dtype()) {
    RmsNormBackward b = rms_norm_backward(widen_bf16(dy), widen_bf16(x), weight, rstd);
    return {b.dx.to(x.dtype()), b.dweight};
  }
  check_cpu(x, kOp, "x");
  const int64_t rows = rstd.numel();
  RmsNormBackward out{empty_like(x), empty({D}, x.dtype())};
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    const scalar_t* wp = weight.data<scalar_t>();
    const scalar_t* gp = dy.data<scalar_t>();
    const scalar_t* rp = rstd.data<scalar_t>();
    scalar_t* dxp = out.dx.data<scalar_t>();
    scalar_t* dwp = out.dweight.data<scalar_t>();
    const bool parallel = rows * D > 32768;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      const scalar_t *xr = xp + r * D, *gr = gp + r * D;
      scalar_t* dxr = dxp + r * D;
      const double rs = static_cast<double>(rp[r]);
      double s = 0;
      for (int64_t i = 0; i < D; ++i) s += static_cast<double>(gr[i]) * wp[i] * xr[i];
      const double c = rs * rs * rs * s / static_cast<double>(D);
      for (int64_t i = 0; i < D; ++i) dxr[i] = static_cast<scalar_t>(rs * gr[i] * wp[i] - c * xr[i]);
    }
    const int64_t blocks = (D + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t i0 = b * kColumnBlock, i1 = std::min(D, i0 + kColumnBlock);
      double acc[kColumnBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const scalar_t *xr = xp + r * D, *gr = gp + r * D;
        const double rs = static_cast<double>(rp[r]);
        for (int64_t i = i0; i < i1; ++i) acc[i - i0] += static_cast<double>(gr[i]) * xr[i] * rs;
      }
      for (int64_t i = i0; i < i1; ++i) dwp[i] = static_cast<scalar_t>(acc[i - i0]);
    }
  });
  return out;
}

}  // namespace mom::kernels

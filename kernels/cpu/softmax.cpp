// CPU reference for kernels/softmax.h; the argument checks shared with the CUDA version
// (kernels/cuda/softmax.cu), which CUDA tensors go to after them.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/elementwise.h"
#include "kernels/softmax.h"

namespace mom::kernels {

namespace {

// x viewed as (outer, n, inner): row r = (o, k) holds the n elements base + i * inner.
struct Rows {
  int64_t outer, n, inner;
  int64_t count() const { return outer * inner; }
  int64_t base(int64_t r) const { return (r / inner) * n * inner + r % inner; }
};

Rows rows_of(const Tensor& x, int64_t dim, const char* op) {
  int64_t rank = x.dim();
  MOM_CHECK(rank >= 1, op, "x must have at least 1 dimension, got a scalar");
  MOM_CHECK(dim >= 0 && dim < rank, op, "dim " << dim << " is out of range for a tensor of " << rank << " dims");
  Rows r{1, x.size(dim), 1};
  for (int64_t d = 0; d < dim; ++d) r.outer *= x.size(d);
  for (int64_t d = dim + 1; d < rank; ++d) r.inner *= x.size(d);
  return r;
}

void check_input(const Tensor& x, const char* op, const char* name) {
  check_floating(x, op, name);
  check_contiguous(x, op, name);
}

void check_grad_pair(const Tensor& dy, const Tensor& y, const char* op) {
  check_input(y, op, "y");
  check_input(dy, op, "dy");
  check_shape(dy, y.shape(), op, "dy");
  check_same_dtype(dy, y, op, "dy", "y");
  check_same_device(dy, y, op, "dy", "y");
}

// log_output: y = log softmax(x), else y = softmax(x).
Tensor forward(const Tensor& x, int64_t dim, bool log_output, const char* op) {
  check_input(x, op, "x");
  Rows rows = rows_of(x, dim, op);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return log_output ? cuda::log_softmax_forward(x, dim) : cuda::softmax_forward(x, dim);
#endif
  check_cpu(x, op, "x");
  Tensor y = empty_like(x);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    const int64_t n = rows.n, st = rows.inner, count = rows.count();
#pragma omp parallel for schedule(static) if (x.numel() > 32768)
    for (int64_t r = 0; r < count; ++r) {
      const scalar_t* xr = xp + rows.base(r);
      scalar_t* yr = yp + rows.base(r);
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(xr[i * st]));
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(xr[i * st]) - m);
      if (log_output) {
        double lse = m + std::log(s);
        for (int64_t i = 0; i < n; ++i) yr[i * st] = static_cast<scalar_t>(static_cast<double>(xr[i * st]) - lse);
      } else {
        double inv = 1.0 / s;
        for (int64_t i = 0; i < n; ++i)
          yr[i * st] = static_cast<scalar_t>(std::exp(static_cast<double>(xr[i * st]) - m) * inv);
      }
    }
  });
  return y;
}

// log_output: y = log softmax(x) and dx = dy - exp(y) sum(dy); else dx = y (dy - sum(dy y)).
Tensor backward(const Tensor& dy, const Tensor& y, int64_t dim, bool log_output, const char* op) {
  check_grad_pair(dy, y, op);
  Rows rows = rows_of(y, dim, op);
#ifdef MOM_WITH_CUDA
  if (y.device().is_cuda())
    return log_output ? cuda::log_softmax_backward(dy, y, dim) : cuda::softmax_backward(dy, y, dim);
#endif
  check_cpu(y, op, "y");
  Tensor dx = empty_like(y);
  dispatch_float(y.dtype(), op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* yp = y.data<scalar_t>();
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
    const int64_t n = rows.n, st = rows.inner, count = rows.count();
#pragma omp parallel for schedule(static) if (y.numel() > 32768)
    for (int64_t r = 0; r < count; ++r) {
      const int64_t b = rows.base(r);
      const scalar_t *yr = yp + b, *gr = gp + b;
      scalar_t* dr = dp + b;
      double s = 0;
      if (log_output) {
        for (int64_t i = 0; i < n; ++i) s += static_cast<double>(gr[i * st]);
        for (int64_t i = 0; i < n; ++i)
          dr[i * st] = static_cast<scalar_t>(gr[i * st] - std::exp(static_cast<double>(yr[i * st])) * s);
      } else {
        for (int64_t i = 0; i < n; ++i) s += static_cast<double>(gr[i * st]) * yr[i * st];
        for (int64_t i = 0; i < n; ++i) dr[i * st] = static_cast<scalar_t>(yr[i * st] * (gr[i * st] - s));
      }
    }
  });
  return dx;
}

}  // namespace

Tensor softmax_forward(const Tensor& x, int64_t dim) { return forward(x, dim, false, "softmax"); }
Tensor softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim) { return backward(dy, y, dim, false, "softmax"); }
Tensor log_softmax_forward(const Tensor& x, int64_t dim) { return forward(x, dim, true, "log_softmax"); }
Tensor log_softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim) {
  return backward(dy, y, dim, true, "log_softmax");
}

}  // namespace mom::kernels

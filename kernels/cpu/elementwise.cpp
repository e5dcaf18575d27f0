// CPU reference for kernels/elementwise.h, plus the precondition checks shared by every kernel. Each
// public function checks its arguments, then runs the CUDA version (kernels/cuda/elementwise.cu) for
// CUDA tensors or the reference below for CPU ones.
#include <cmath>

#include "kernels/elementwise.h"

namespace mom::kernels {

// ---- shared checks ----

void check_defined(const Tensor& t, const char* op, const char* name) {
  MOM_CHECK(t.defined(), op, name << " is undefined");
}

void check_contiguous(const Tensor& t, const char* op, const char* name) {
  check_defined(t, op, name);
  MOM_CHECK(t.is_contiguous(), op, name << " must be contiguous (shape " << shape_str(t.shape())
                                        << ", strides " << shape_str(t.strides()) << "); call contiguous() first");
}

// float32 or float64, the dtypes the kernels are written for: bf16, floating for is_floating, is refused
// here until a kernel has a bf16 version.
void check_floating(const Tensor& t, const char* op, const char* name) {
  check_defined(t, op, name);
  MOM_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op,
            name << " must be float32 or float64, got " << dtype_name(t.dtype()));
}

void check_compute(const Tensor& t, const char* op, const char* name) {
  check_defined(t, op, name);
  MOM_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64 || t.dtype() == DType::bf16, op,
            name << " must be float32, float64 or bfloat16, got " << dtype_name(t.dtype()));
}

void check_acc_dtype(const Tensor& t, const Tensor& x, const char* op, const char* name_t, const char* name_x) {
  MOM_CHECK(t.dtype() == acc_dtype(x.dtype()), op,
            name_t << " must be " << dtype_name(acc_dtype(x.dtype())) << " beside " << dtype_name(x.dtype()) << " "
                   << name_x << ", got " << dtype_name(t.dtype()));
}

Tensor widen_bf16(const Tensor& t) { return t.defined() && t.dtype() == DType::bf16 ? t.to(DType::f32) : t; }

Tensor round_to(const Tensor& t, DType dtype) { return t.defined() && t.dtype() != dtype ? t.to(dtype) : t; }

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op, const char* name_a, const char* name_b) {
  MOM_CHECK(a.dtype() == b.dtype(), op,
            name_a << " is " << dtype_name(a.dtype()) << " but " << name_b << " is " << dtype_name(b.dtype()));
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* name_a, const char* name_b) {
  MOM_CHECK(a.device() == b.device(), op,
            name_a << " is on " << a.device().str() << " but " << name_b << " is on " << b.device().str());
}

void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* name) {
  check_defined(t, op, name);
  MOM_CHECK(t.shape() == expected, op,
            name << " has shape " << shape_str(t.shape()) << ", expected " << shape_str(expected));
}

void check_cpu(const Tensor& t, const char* op, const char* name) {
  MOM_CHECK(t.device().is_cpu(), op,
            name << " is on " << t.device().str() << "; the CUDA version of this op comes with the CUDA backend");
}

// ---- names ----

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::silu: return "silu";
    case UnaryOp::softplus: return "softplus";
    case UnaryOp::tanh: return "tanh";
  }
  return "?";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
  }
  return "?";
}

namespace {

template <typename T> T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

template <typename T> T softplus(T x) { return x > T(20) ? x : std::log1p(std::exp(x)); }

template <typename T> T unary_f(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return std::exp(x);
    case UnaryOp::log: return std::log(x);
    case UnaryOp::sqrt: return std::sqrt(x);
    case UnaryOp::sigmoid: return sigmoid(x);
    case UnaryOp::silu: return x * sigmoid(x);
    case UnaryOp::softplus: return softplus(x);
    case UnaryOp::tanh: return std::tanh(x);
  }
  return x;
}

// d f / d x given x and y = f(x).
template <typename T> T unary_df(UnaryOp op, T x, T y) {
  switch (op) {
    case UnaryOp::neg: return T(-1);
    case UnaryOp::exp: return y;
    case UnaryOp::log: return T(1) / x;
    case UnaryOp::sqrt: return T(0.5) / y;
    case UnaryOp::sigmoid: return y * (T(1) - y);
    case UnaryOp::silu: { T s = sigmoid(x); return s * (T(1) + x * (T(1) - s)); }
    case UnaryOp::softplus: return x > T(20) ? T(1) : sigmoid(x);
    case UnaryOp::tanh: return (T(1) - y) * (T(1) + y);  // 1 - y^2 without cancellation (and no FMA to differ on)
  }
  return T(0);
}

template <typename T> T binary_f(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
  }
  return a;
}

void check_unary_input(const Tensor& x, const char* op) {
  check_floating(x, op, "x");
  check_contiguous(x, op, "x");
}


}  // namespace

Tensor unary(UnaryOp op, const Tensor& x) {
  const char* name = unary_name(op);
  check_unary_input(x, name);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::unary(op, x);
#endif
  check_cpu(x, name, "x");
  Tensor y = empty_like(x);
  dispatch_float(x.dtype(), name, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) yp[i] = unary_f(op, xp[i]);
  });
  return y;
}

Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y) {
  const char* name = unary_name(op);
  check_unary_input(x, name);
  check_shape(dy, x.shape(), name, "dy");
  check_shape(y, x.shape(), name, "y");
  check_contiguous(dy, name, "dy");
  check_contiguous(y, name, "y");
  check_same_dtype(dy, x, name, "dy", "x");
  check_same_dtype(y, x, name, "y", "x");
  check_same_device(dy, x, name, "dy", "x");
  check_same_device(y, x, name, "y", "x");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::unary_backward(op, dy, x, y);
#endif
  check_cpu(x, name, "x");
  Tensor dx = empty_like(x);
  dispatch_float(x.dtype(), name, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    const scalar_t* yp = y.data<scalar_t>();
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
    int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) dp[i] = gp[i] * unary_df(op, xp[i], yp[i]);
  });
  return dx;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_compute(a, name, "a");
  check_compute(b, name, "b");
  check_same_dtype(a, b, name, "a", "b");
  check_same_device(a, b, name, "a", "b");
  check_contiguous(a, name, "a");
  check_contiguous(b, name, "b");
  // bf16 (the sum of two bf16 gradients of one activation): the float32 op, rounded once.
  if (a.dtype() == DType::bf16) return binary(op, widen_bf16(a), widen_bf16(b)).to(DType::bf16);
#ifdef MOM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::binary(op, a, b);
#endif
  check_cpu(a, name, "a");
  Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(out_shape, a.dtype());
  dispatch_float(a.dtype(), name, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* ap = a.data<scalar_t>();
    const scalar_t* bp = b.data<scalar_t>();
    scalar_t* op_ = out.data<scalar_t>();
    int64_t n = out.numel();
    if (a.shape() == b.shape()) {
#pragma omp parallel for schedule(static) if (n > 32768)
      for (int64_t i = 0; i < n; ++i) op_[i] = binary_f(op, ap[i], bp[i]);
      return;
    }
    // Rows of the innermost dim; each row's start offsets in a and b come from the outer index.
    size_t rank = out_shape.size();
    if (rank == 0 || n == 0) {
      if (n) op_[0] = binary_f(op, ap[0], bp[0]);
      return;
    }
    Shape sa = broadcast_strides(a.shape(), rank), sb = broadcast_strides(b.shape(), rank);
    int64_t inner = out_shape[rank - 1];
    int64_t rows = n / inner;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t rem = r, oa = 0, ob = 0;
      for (size_t d = rank - 1; d-- > 0;) {
        int64_t i = rem % out_shape[d];
        rem /= out_shape[d];
        oa += i * sa[d];
        ob += i * sb[d];
      }
      scalar_t* o = op_ + r * inner;
      int64_t ia = sa[rank - 1], ib = sb[rank - 1];
      for (int64_t j = 0; j < inner; ++j) o[j] = binary_f(op, ap[oa + j * ia], bp[ob + j * ib]);
    }
  });
  return out;
}

Tensor pow_scalar(const Tensor& x, double p) {
  check_unary_input(x, "pow");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::pow_scalar(x, p);
#endif
  check_cpu(x, "pow", "x");
  Tensor y = empty_like(x);
  dispatch_float(x.dtype(), "pow", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    scalar_t e = static_cast<scalar_t>(p);
    int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) yp[i] = std::pow(xp[i], e);
  });
  return y;
}

Tensor scale(const Tensor& x, double s) {
  check_unary_input(x, "scale");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::scale(x, s);
#endif
  check_cpu(x, "scale", "x");
  Tensor y = empty_like(x);
  dispatch_float(x.dtype(), "scale", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    scalar_t f = static_cast<scalar_t>(s);
    int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) yp[i] = xp[i] * f;
  });
  return y;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  check_floating(g, "sum_to_shape", "g");
  check_contiguous(g, "sum_to_shape", "g");
  if (g.shape() == shape) return g;
  MOM_CHECK(broadcast_shapes(shape, g.shape(), "sum_to_shape") == g.shape(), "sum_to_shape",
            "shape " << shape_str(shape) << " does not broadcast to " << shape_str(g.shape()));
#ifdef MOM_WITH_CUDA
  if (g.device().is_cuda()) return cuda::sum_to_shape(g, shape);
#endif
  check_cpu(g, "sum_to_shape", "g");
  size_t rank = g.shape().size();
  Shape st = broadcast_strides(shape, rank);
  Tensor out = zeros(shape, g.dtype());
  dispatch_float(g.dtype(), "sum_to_shape", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = g.data<scalar_t>();
    scalar_t* op_ = out.data<scalar_t>();
    const Shape& gs = g.shape();
    int64_t n = g.numel();
    // Serial on purpose: the summation order is fixed, so results repeat bit for bit.
    for (int64_t i = 0; i < n; ++i) {
      int64_t rem = i, o = 0;
      for (size_t d = rank; d-- > 0;) {
        o += (rem % gs[d]) * st[d];
        rem /= gs[d];
      }
      op_[o] += gp[i];
    }
  });
  return out;
}

}  // namespace mom::kernels

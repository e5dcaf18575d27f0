// CUDA versions of kernels/elementwise.h, called by the public functions (kernels/cpu/elementwise.cpp)
// after their argument checks. Same math as the CPU reference, evaluated in the input's type; f32 and
// f64. Same-shape maps run through map_kernel (16-byte vectors, grid-stride, 64-bit indices);
// broadcasting binaries index each operand through its own strides; sum_to_shape is the row/column
// reduction of kernels/cuda/reduce.cu (fixed partition and summation order, accumulated in double, no
// atomics).
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/cuda/strided.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/elementwise.h"

namespace mom::kernels::cuda {

namespace {

using ::mom::cuda::StridedLayout2;

__device__ inline float d_exp(float x) { return expf(x); }
__device__ inline double d_exp(double x) { return exp(x); }
__device__ inline float d_log(float x) { return logf(x); }
__device__ inline double d_log(double x) { return log(x); }
__device__ inline float d_log1p(float x) { return log1pf(x); }
__device__ inline double d_log1p(double x) { return log1p(x); }
__device__ inline float d_sqrt(float x) { return sqrtf(x); }
__device__ inline double d_sqrt(double x) { return sqrt(x); }
__device__ inline float d_tanh(float x) { return tanhf(x); }
__device__ inline double d_tanh(double x) { return tanh(x); }
__device__ inline float d_pow(float x, float p) { return powf(x, p); }
__device__ inline double d_pow(double x, double p) { return pow(x, p); }

template <typename T> __device__ inline T sigmoid(T x) { return T(1) / (T(1) + d_exp(-x)); }
template <typename T> __device__ inline T softplus(T x) { return x > T(20) ? x : d_log1p(d_exp(x)); }

template <UnaryOp Op, typename T> __device__ inline T unary_f(T x) {
  if constexpr (Op == UnaryOp::neg) return -x;
  else if constexpr (Op == UnaryOp::exp) return d_exp(x);
  else if constexpr (Op == UnaryOp::log) return d_log(x);
  else if constexpr (Op == UnaryOp::sqrt) return d_sqrt(x);
  else if constexpr (Op == UnaryOp::sigmoid) return sigmoid(x);
  else if constexpr (Op == UnaryOp::silu) return x * sigmoid(x);
  else if constexpr (Op == UnaryOp::softplus) return softplus(x);
  else return d_tanh(x);  // tanh
}

// The backward reads dy and the one tensor f' needs: x for log, silu, softplus; y for exp, sqrt,
// sigmoid, tanh; neither for neg.
constexpr bool backward_reads_x(UnaryOp op) {
  return op == UnaryOp::log || op == UnaryOp::silu || op == UnaryOp::softplus;
}

// f'(v), v being x or y as above (neg is handled apart).
template <UnaryOp Op, typename T> __device__ inline T unary_df(T v) {
  if constexpr (Op == UnaryOp::exp) return v;
  else if constexpr (Op == UnaryOp::log) return T(1) / v;
  else if constexpr (Op == UnaryOp::sqrt) return T(0.5) / v;
  else if constexpr (Op == UnaryOp::sigmoid) return v * (T(1) - v);
  else if constexpr (Op == UnaryOp::silu) {
    T s = sigmoid(v);
    return s * (T(1) + v * (T(1) - s));
  } else if constexpr (Op == UnaryOp::softplus) return v > T(20) ? T(1) : sigmoid(v);
  else return (T(1) - v) * (T(1) + v);  // tanh: 1 - y^2, as on the CPU (no cancellation, no FMA)
}

template <BinaryOp Op, typename T> __device__ inline T binary_f(T a, T b) {
  if constexpr (Op == BinaryOp::add) return a + b;
  else if constexpr (Op == BinaryOp::sub) return a - b;
  else if constexpr (Op == BinaryOp::mul) return a * b;
  else return a / b;  // div
}

template <UnaryOp Op> struct UnaryF {
  template <typename T> __device__ T operator()(const T (&x)[1]) const { return unary_f<Op>(x[0]); }
};

struct NegBackwardF {
  template <typename T> __device__ T operator()(const T (&x)[1]) const { return -x[0]; }
};

template <UnaryOp Op> struct UnaryBackwardF {  // x = {dy, x or y}
  template <typename T> __device__ T operator()(const T (&x)[2]) const { return x[0] * unary_df<Op>(x[1]); }
};

template <BinaryOp Op> struct BinaryF {
  template <typename T> __device__ T operator()(const T (&x)[2]) const { return binary_f<Op>(x[0], x[1]); }
};

// One operand is a single element, read from device memory (the same address for every thread).
template <BinaryOp Op, typename T> struct BinaryScalarF {
  const T* scalar;
  bool scalar_first;
  __device__ T operator()(const T (&x)[1]) const {
    T s = __ldg(scalar);
    return scalar_first ? binary_f<Op>(s, x[0]) : binary_f<Op>(x[0], s);
  }
};

template <typename T> struct PowF {
  T p;
  __device__ T operator()(const T (&x)[1]) const { return d_pow(x[0], p); }
};

template <typename T> struct ScaleF {
  T s;
  __device__ T operator()(const T (&x)[1]) const { return x[0] * s; }
};

// Calls f(std::integral_constant-like tag) with the op as a compile-time value.
template <UnaryOp Op> struct UnaryTag { static constexpr UnaryOp value = Op; };
template <BinaryOp Op> struct BinaryTag { static constexpr BinaryOp value = Op; };

template <typename F> void dispatch_unary(UnaryOp op, F&& f) {
  switch (op) {
    case UnaryOp::neg: return f(UnaryTag<UnaryOp::neg>{});
    case UnaryOp::exp: return f(UnaryTag<UnaryOp::exp>{});
    case UnaryOp::log: return f(UnaryTag<UnaryOp::log>{});
    case UnaryOp::sqrt: return f(UnaryTag<UnaryOp::sqrt>{});
    case UnaryOp::sigmoid: return f(UnaryTag<UnaryOp::sigmoid>{});
    case UnaryOp::silu: return f(UnaryTag<UnaryOp::silu>{});
    case UnaryOp::softplus: return f(UnaryTag<UnaryOp::softplus>{});
    case UnaryOp::tanh: return f(UnaryTag<UnaryOp::tanh>{});
  }
}

template <typename F> void dispatch_binary(BinaryOp op, F&& f) {
  switch (op) {
    case BinaryOp::add: return f(BinaryTag<BinaryOp::add>{});
    case BinaryOp::sub: return f(BinaryTag<BinaryOp::sub>{});
    case BinaryOp::mul: return f(BinaryTag<BinaryOp::mul>{});
    case BinaryOp::div: return f(BinaryTag<BinaryOp::div>{});
  }
}

// ---- broadcasting binary ----


template <BinaryOp Op, typename T, typename Index>
__global__ void broadcast_kernel(const T* a, const T* b, T* out, StridedLayout2 l, Index n) {
  const Index stride = Index(gridDim.x) * blockDim.x;
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t oa, ob;
    ::mom::cuda::offsets2(i, l, oa, ob);
    out[i] = binary_f<Op>(a[oa], b[ob]);
  }
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x) {
  Tensor y = empty_like(x);
  dispatch_float(x.dtype(), unary_name(op), [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    dispatch_unary(op, [&](auto op_tag) {
      Inputs<scalar_t, 1> in{{x.data<scalar_t>()}};
      launch_map(in, y.data<scalar_t>(), x.numel(), x.device().index, UnaryF<decltype(op_tag)::value>{});
    });
  });
  return y;
}

Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y) {
  Tensor dx = empty_like(x);
  dispatch_float(x.dtype(), unary_name(op), [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const int64_t n = x.numel();
    const int device = x.device().index;
    scalar_t* out = dx.data<scalar_t>();
    if (op == UnaryOp::neg) {
      launch_map(Inputs<scalar_t, 1>{{dy.data<scalar_t>()}}, out, n, device, NegBackwardF{});
      return;
    }
    dispatch_unary(op, [&](auto op_tag) {
      constexpr UnaryOp kOp = decltype(op_tag)::value;
      if constexpr (kOp != UnaryOp::neg) {
        const scalar_t* v = backward_reads_x(kOp) ? x.data<scalar_t>() : y.data<scalar_t>();
        launch_map(Inputs<scalar_t, 2>{{dy.data<scalar_t>(), v}}, out, n, device, UnaryBackwardF<kOp>{});
      }
    });
  });
  return dx;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(out_shape, a.dtype(), a.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  const int device = a.device().index;
  dispatch_float(a.dtype(), name, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* ap = a.data<scalar_t>();
    const scalar_t* bp = b.data<scalar_t>();
    scalar_t* op_ = out.data<scalar_t>();
    dispatch_binary(op, [&](auto op_tag) {
      constexpr BinaryOp kOp = decltype(op_tag)::value;
      if (a.numel() == n && b.numel() == n) {
        launch_map(Inputs<scalar_t, 2>{{ap, bp}}, op_, n, device, BinaryF<kOp>{});
      } else if (b.numel() == 1 && a.numel() == n) {
        launch_map(Inputs<scalar_t, 1>{{ap}}, op_, n, device, BinaryScalarF<kOp, scalar_t>{bp, false});
      } else if (a.numel() == 1 && b.numel() == n) {
        launch_map(Inputs<scalar_t, 1>{{bp}}, op_, n, device, BinaryScalarF<kOp, scalar_t>{ap, true});
      } else {
        // Output dims walked through each operand's strides (0 where it is broadcast).
        size_t rank = out_shape.size();
        StridedLayout2 l = ::mom::cuda::coalesce2(out_shape, broadcast_strides(a.shape(), rank),
                                                  broadcast_strides(b.shape(), rank), name);
        ::mom::cuda::DeviceGuard guard(device);
        cudaStream_t st = ::mom::cuda::stream(device);
        if (n <= INT32_MAX)
          broadcast_kernel<kOp, scalar_t, uint32_t><<<grid_for(n, device), kThreads, 0, st>>>(ap, bp, op_, l, uint32_t(n));
        else
          broadcast_kernel<kOp, scalar_t, uint64_t><<<grid_for(n, device), kThreads, 0, st>>>(ap, bp, op_, l, uint64_t(n));
        MOM_CUDA_CHECK_LAUNCH();
      }
    });
  });
  return out;
}

Tensor pow_scalar(const Tensor& x, double p) {
  Tensor y = empty_like(x);
  dispatch_float(x.dtype(), "pow", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    launch_map(Inputs<scalar_t, 1>{{x.data<scalar_t>()}}, y.data<scalar_t>(), x.numel(), x.device().index,
               PowF<scalar_t>{static_cast<scalar_t>(p)});
  });
  return y;
}

Tensor scale(const Tensor& x, double s) {
  Tensor y = empty_like(x);
  dispatch_float(x.dtype(), "scale", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    launch_map(Inputs<scalar_t, 1>{{x.data<scalar_t>()}}, y.data<scalar_t>(), x.numel(), x.device().index,
               ScaleF<scalar_t>{static_cast<scalar_t>(s)});
  });
  return y;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  Tensor out = empty(shape, g.dtype(), g.device());
  if (out.numel() == 0) return out;
  if (g.numel() == 0) return zeros(shape, g.dtype(), g.device());
  // g's dim d is summed when broadcasting made it: a leading dim, or a dim of size 1 in `shape`.
  const size_t rank = g.shape().size(), lead = rank - shape.size();
  std::vector<bool> reduced(rank);
  for (size_t d = 0; d < rank; ++d) reduced[d] = d < lead || shape[d - lead] != g.shape()[d];
  sum_reduce(g, reduced, out, 1.0);
  return out;
}

}  // namespace mom::kernels::cuda

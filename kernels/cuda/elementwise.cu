// CUDA versions of kernels/elementwise.h, called by the public functions (kernels/cpu/elementwise.cpp)
// after their argument checks. Same math as the CPU reference, evaluated in the input's type; f32 and
// f64. Same-shape maps run through map_kernel (16-byte vectors, grid-stride, 64-bit indices);
// broadcasting binaries index each operand through its own strides; sum_to_shape is a deterministic
// reduction (fixed partition and summation order, accumulated in double, no atomics).
#include <cmath>
#include <cstdint>

#include "core/cuda/strided.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"

namespace mom::kernels::cuda {

namespace {

using ::mom::cuda::kMaxDims;
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

// ---- sum_to_shape ----

// g's dims split into those kept in the output and those summed over, each innermost first and
// merged where contiguous. The output is row-major over the kept dims.
struct ReduceLayout {
  int kept_ndim = 0;
  int64_t kept_size[kMaxDims] = {};
  int64_t kept_stride[kMaxDims] = {};
  int red_ndim = 0;
  int64_t red_size[kMaxDims] = {};
  int64_t red_stride[kMaxDims] = {};
};

template <typename Index>
__device__ inline int64_t offset_of(Index i, int ndim, const int64_t (&size)[kMaxDims], const int64_t (&stride)[kMaxDims]) {
  int64_t off = 0;
#pragma unroll
  for (int d = 0; d < kMaxDims; ++d) {
    if (d < ndim) {
      Index s = static_cast<Index>(size[d]);
      off += int64_t(i % s) * stride[d];
      i /= s;
    }
  }
  return off;
}

// Many outputs: one thread per output sums its elements in order.
template <typename T, typename Index>
__global__ void sum_per_thread_kernel(const T* g, T* out, ReduceLayout l, Index out_n, Index red_n) {
  const Index stride = Index(gridDim.x) * blockDim.x;
  for (Index o = Index(blockIdx.x) * blockDim.x + threadIdx.x; o < out_n; o += stride) {
    const T* base = g + offset_of(o, l.kept_ndim, l.kept_size, l.kept_stride);
    double acc = 0;
    for (Index r = 0; r < red_n; ++r) acc += static_cast<double>(base[offset_of(r, l.red_ndim, l.red_size, l.red_stride)]);
    out[o] = static_cast<T>(acc);
  }
}

// Few outputs: block (o, c) sums chunk c of output o's elements into partial[o * chunks + c].
template <typename T, typename Index>
__global__ void sum_chunks_kernel(const T* g, double* partial, ReduceLayout l, Index red_n, Index chunk_len, Index chunks) {
  const Index o = Index(blockIdx.x) / chunks, c = Index(blockIdx.x) % chunks;
  const T* base = g + offset_of(o, l.kept_ndim, l.kept_size, l.kept_stride);
  const Index end = min(red_n, (c + 1) * chunk_len);
  double acc = 0;
  for (Index r = c * chunk_len + threadIdx.x; r < end; r += blockDim.x)
    acc += static_cast<double>(base[offset_of(r, l.red_ndim, l.red_size, l.red_stride)]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Block o sums output o's partials.
template <typename T>
__global__ void sum_partials_kernel(const double* partial, T* out, int64_t chunks) {
  const double* p = partial + int64_t(blockIdx.x) * chunks;
  double acc = 0;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) acc += p[c];
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<T>(acc);
}

void push_dim(int& ndim, int64_t (&size)[kMaxDims], int64_t (&stride)[kMaxDims], int64_t s, int64_t st,
              const Shape& g_shape, const Shape& shape) {
  if (ndim > 0 && stride[ndim - 1] * size[ndim - 1] == st) {
    size[ndim - 1] *= s;
    return;
  }
  MOM_CHECK(ndim < kMaxDims, "sum_to_shape",
            "reducing " << shape_str(g_shape) << " to " << shape_str(shape) << " needs more than " << kMaxDims
                        << " separate dims");
  size[ndim] = s;
  stride[ndim] = st;
  ++ndim;
}

ReduceLayout reduce_layout(const Shape& g_shape, const Shape& shape) {
  size_t rank = g_shape.size(), lead = rank - shape.size();
  Shape gs = contiguous_strides(g_shape);
  ReduceLayout l;
  for (size_t i = rank; i-- > 0;) {
    if (g_shape[i] == 1) continue;
    bool kept = i >= lead && shape[i - lead] == g_shape[i];
    if (kept)
      push_dim(l.kept_ndim, l.kept_size, l.kept_stride, g_shape[i], gs[i], g_shape, shape);
    else
      push_dim(l.red_ndim, l.red_size, l.red_stride, g_shape[i], gs[i], g_shape, shape);
  }
  return l;
}

// Above this many outputs, one thread per output fills the device.
constexpr int64_t kThreadPerOutputAbove = 32768;
// Elements per block in the two-pass path.
constexpr int64_t kChunk = kThreads * 16;

template <typename T, typename Index>
void launch_sum_to_shape(const T* g, T* out, const ReduceLayout& l, int64_t out_n, int64_t red_n, int device) {
  cudaStream_t st = ::mom::cuda::stream(device);
  if (out_n > kThreadPerOutputAbove) {
    sum_per_thread_kernel<T, Index><<<grid_for(out_n, device), kThreads, 0, st>>>(g, out, l, Index(out_n), Index(red_n));
    MOM_CUDA_CHECK_LAUNCH();
    return;
  }
  int64_t chunks = (red_n + kChunk - 1) / kChunk;
  Tensor partial = empty({out_n * chunks}, DType::f64, Device::cuda(device));
  double* pp = partial.data<double>();
  sum_chunks_kernel<T, Index><<<static_cast<unsigned>(out_n * chunks), kThreads, 0, st>>>(
      g, pp, l, Index(red_n), Index(kChunk), Index(chunks));
  MOM_CUDA_CHECK_LAUNCH();
  sum_partials_kernel<T><<<static_cast<unsigned>(out_n), kThreads, 0, st>>>(pp, out, chunks);
  MOM_CUDA_CHECK_LAUNCH();
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
  const int device = g.device().index;
  const int64_t out_n = shape_numel(shape);
  if (out_n == 0) return empty(shape, g.dtype(), g.device());
  const int64_t red_n = g.numel() / out_n;
  if (red_n == 0) return zeros(shape, g.dtype(), g.device());
  Tensor out = empty(shape, g.dtype(), g.device());
  ReduceLayout l = reduce_layout(g.shape(), shape);
  ::mom::cuda::DeviceGuard guard(device);
  dispatch_float(g.dtype(), "sum_to_shape", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    if (g.numel() <= INT32_MAX)
      launch_sum_to_shape<scalar_t, uint32_t>(g.data<scalar_t>(), out.data<scalar_t>(), l, out_n, red_n, device);
    else
      launch_sum_to_shape<scalar_t, uint64_t>(g.data<scalar_t>(), out.data<scalar_t>(), l, out_n, red_n, device);
  });
  return out;
}

}  // namespace mom::kernels::cuda

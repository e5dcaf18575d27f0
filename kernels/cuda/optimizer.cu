// CUDA versions of kernels/optimizer.h, called after the public functions' checks
// (kernels/cpu/optimizer.cpp).
//
// adamw_step: one pass over p, g, m, v (16-byte vectors when all four are aligned), each element's
// update computed in double exactly as the CPU reference writes it.
// sum_of_squares: deterministic two-pass reduction. Pass 1: a fixed number of blocks (a function of n
// only) each sum a grid-strided share of the elements in double, in groups of W = 16 / sizeof(T)
// (one vector load when aligned, W scalar loads otherwise: the same order either way); pass 2: one
// block sums the partials. The host reads the result, so this is a synchronisation point.
// scale_inplace: g <- T(double(g) * s), through map_kernel.
#include <cmath>
#include <cstdint>

#include "core/cuda/memory.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/optimizer.h"

namespace mom::kernels::cuda {

namespace {

struct AdamWScalars {
  double beta1, beta2, eps, step_size, bias2_sqrt, decay;
};

template <typename T> __device__ inline void adamw_element(T& p, T g, T& m, T& v, const AdamWScalars& s) {
  double gi = g;
  double mi = s.beta1 * m + (1.0 - s.beta1) * gi;
  double vi = s.beta2 * v + (1.0 - s.beta2) * gi * gi;
  double pi = p * s.decay;
  pi -= s.step_size * mi / (sqrt(vi) / s.bias2_sqrt + s.eps);
  m = static_cast<T>(mi);
  v = static_cast<T>(vi);
  p = static_cast<T>(pi);
}

template <typename T>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, int64_t n_vec, AdamWScalars s) {
  constexpr int W = Vec<T>::width;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < n_vec; i += stride) {
    Vec<T> pv = reinterpret_cast<const Vec<T>*>(p)[i];
    Vec<T> gv = reinterpret_cast<const Vec<T>*>(g)[i];
    Vec<T> mv = reinterpret_cast<const Vec<T>*>(m)[i];
    Vec<T> vv = reinterpret_cast<const Vec<T>*>(v)[i];
#pragma unroll
    for (int j = 0; j < W; ++j) adamw_element(pv.v[j], gv.v[j], mv.v[j], vv.v[j], s);
    reinterpret_cast<Vec<T>*>(p)[i] = pv;
    reinterpret_cast<Vec<T>*>(m)[i] = mv;
    reinterpret_cast<Vec<T>*>(v)[i] = vv;
  }
  for (int64_t i = n_vec * W + first; i < n; i += stride) adamw_element(p[i], g[i], m[i], v[i], s);
}

// Pass 1 of sum_of_squares: block b sums groups b*kThreads + t, + gridDim.x*kThreads, ...
template <typename T>
__global__ void sum_squares_kernel(const T* g, int64_t n, bool vectorised, double* partial) {
  constexpr int W = Vec<T>::width;
  const int64_t groups = (n + W - 1) / W;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double acc = 0;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < groups; k += stride) {
    if (vectorised && (k + 1) * W <= n) {
      Vec<T> x = reinterpret_cast<const Vec<T>*>(g)[k];
#pragma unroll
      for (int j = 0; j < W; ++j) acc += double(x.v[j]) * double(x.v[j]);
    } else {
      for (int64_t i = k * W; i < (k + 1) * W && i < n; ++i) acc += double(g[i]) * double(g[i]);
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const double* partial, int blocks, double* out) {
  double acc = 0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) acc += partial[b];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

// Pass-1 blocks: enough to fill an H200 several times over, and a function of n alone.
constexpr int64_t kMaxSumBlocks = 1024;

template <typename T> struct ScaleInPlaceF {
  double s;
  __device__ T operator()(const T (&x)[1]) const { return static_cast<T>(x[0] * s); }
};

}  // namespace

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h) {
  const int64_t n = p.numel();
  if (n == 0) return;
  const int device = p.device().index;
  AdamWScalars s;
  s.beta1 = h.beta1;
  s.beta2 = h.beta2;
  s.eps = h.eps;
  s.step_size = h.lr / (1.0 - std::pow(h.beta1, static_cast<double>(step)));
  s.bias2_sqrt = std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(step)));
  s.decay = 1.0 - h.lr * h.weight_decay;
  dispatch_float(p.dtype(), "adamw", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* pp = p.data<scalar_t>();
    const scalar_t* gp = g.data<scalar_t>();
    scalar_t* mp = m.data<scalar_t>();
    scalar_t* vp = v.data<scalar_t>();
    bool aligned = aligned16(pp) && aligned16(gp) && aligned16(mp) && aligned16(vp);
    int64_t n_vec = aligned ? n / Vec<scalar_t>::width : 0;
    int64_t work = n_vec + (n - n_vec * Vec<scalar_t>::width);
    ::mom::cuda::DeviceGuard guard(device);
    adamw_kernel<scalar_t><<<grid_for(work, device), kThreads, 0, ::mom::cuda::stream(device)>>>(pp, gp, mp, vp, n, n_vec, s);
    MOM_CUDA_CHECK_LAUNCH();
  });
}

double sum_of_squares(const Tensor& g) {
  const int64_t n = g.numel();
  if (n == 0) return 0.0;
  const int device = g.device().index;
  return dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = g.data<scalar_t>();
    const int64_t groups = (n + Vec<scalar_t>::width - 1) / Vec<scalar_t>::width;
    const int blocks = static_cast<int>(std::min<int64_t>(kMaxSumBlocks, (groups + kThreads - 1) / kThreads));
    Tensor partial = empty({blocks + 1}, DType::f64, g.device());
    double* pp = partial.data<double>();
    ::mom::cuda::DeviceGuard guard(device);
    cudaStream_t st = ::mom::cuda::stream(device);
    sum_squares_kernel<scalar_t><<<blocks, kThreads, 0, st>>>(gp, n, aligned16(gp), pp);
    MOM_CUDA_CHECK_LAUNCH();
    sum_partials_kernel<<<1, kThreads, 0, st>>>(pp, blocks, pp + blocks);
    MOM_CUDA_CHECK_LAUNCH();
    double result = 0;
    ::mom::cuda::copy_device_to_host(&result, pp + blocks, sizeof(double), device);
    return result;
  });
}

void scale_inplace(const Tensor& g, double s) {
  dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* gp = g.data<scalar_t>();
    launch_map(Inputs<scalar_t, 1>{{gp}}, gp, g.numel(), g.device().index, ScaleInPlaceF<scalar_t>{s});
  });
}

}  // namespace mom::kernels::cuda

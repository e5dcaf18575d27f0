// What the CUDA kernels of kernels/ share: launch sizes on the device's stream, 16-byte vectors, and
// map_kernel, the vectorised grid-stride loop behind every elementwise op.
//
// map_kernel(in, out, n, n_vec, f): out[i] = f({in[0][i], ..., in[K-1][i]}) for i < n. The first
// n_vec * W elements go through 16-byte vectors (W = 16 / sizeof(T): float4 or double2), the rest one
// by one; callers pass n_vec = 0 when any pointer is not 16-byte aligned. Indices are 64-bit. `out`
// may be one of the inputs (in-place): each element is read and written by the same thread.
#pragma once

#include <cstdint>

#include "core/cuda/stream.h"

namespace mom::kernels::cuda {

constexpr int kThreads = 256;

// Enough blocks to cover n threads' work, at most 32 per multiprocessor (a grid-stride loop does the rest).
inline unsigned grid_for(int64_t n, int device) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  int64_t cap = int64_t(::mom::cuda::multiprocessor_count(device)) * 32;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks < cap ? blocks : cap));
}

template <typename T> struct alignas(16) Vec {
  static constexpr int width = 16 / sizeof(T);
  T v[width];
};

template <typename T> inline bool aligned16(const T* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, int K> struct Inputs {
  const T* p[K];
};

template <typename T, int K, typename F>
__global__ void map_kernel(Inputs<T, K> in, T* out, int64_t n, int64_t n_vec, F f) {
  constexpr int W = Vec<T>::width;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < n_vec; i += stride) {
    Vec<T> a[K];
#pragma unroll
    for (int k = 0; k < K; ++k) a[k] = reinterpret_cast<const Vec<T>*>(in.p[k])[i];
    Vec<T> r;
#pragma unroll
    for (int j = 0; j < W; ++j) {
      T x[K];
#pragma unroll
      for (int k = 0; k < K; ++k) x[k] = a[k].v[j];
      r.v[j] = f(x);
    }
    reinterpret_cast<Vec<T>*>(out)[i] = r;
  }
  for (int64_t i = n_vec * W + first; i < n; i += stride) {
    T x[K];
#pragma unroll
    for (int k = 0; k < K; ++k) x[k] = in.p[k][i];
    out[i] = f(x);
  }
}

// Launches map_kernel on the device's stream, vectorised when every pointer is 16-byte aligned.
template <typename T, int K, typename F>
void launch_map(const Inputs<T, K>& in, T* out, int64_t n, int device, F f) {
  if (n == 0) return;
  bool aligned = aligned16(out);
  for (int k = 0; k < K; ++k) aligned = aligned && aligned16(in.p[k]);
  int64_t n_vec = aligned ? n / Vec<T>::width : 0;
  int64_t work = n_vec + (n - n_vec * Vec<T>::width);
  ::mom::cuda::DeviceGuard guard(device);
  map_kernel<T, K, F><<<grid_for(work, device), kThreads, 0, ::mom::cuda::stream(device)>>>(in, out, n, n_vec, f);
  MOM_CUDA_CHECK_LAUNCH();
}

// Block-wide sum of one double per thread (blockDim.x == kThreads), in a fixed order: the result
// depends only on the inputs' positions, never on timing. Valid in thread 0. Every thread of the
// block must call it.
__device__ inline double block_sum(double v) {
  __shared__ double shared[kThreads / 32];
  __syncthreads();  // a previous call's readers are done with `shared`
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? shared[threadIdx.x] : 0.0;
  if (warp == 0) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

}  // namespace mom::kernels::cuda

// Strided copy (with dtype conversion) and fill kernels: core/cuda/copy.h.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/cuda/copy.h"
#include "core/cuda/memory.h"
#include "core/cuda/stream.h"
#include "core/cuda/strided.cuh"

namespace mom::cuda {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n, int device) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  int64_t cap = int64_t(multiprocessor_count(device)) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, cap)));
}

template <typename D, typename S, typename Index>
__global__ void copy_kernel(D* dst, const S* src, StridedLayout2 l, Index n) {
  Index stride = Index(gridDim.x) * blockDim.x;
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t od, os;
    offsets2(i, l, od, os);
    dst[od] = static_cast<D>(src[os]);
  }
}

template <typename T, typename Index>
__global__ void fill_kernel(T* dst, StridedLayout2 l, Index n, T value) {
  Index stride = Index(gridDim.x) * blockDim.x;
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t od, unused;
    offsets2(i, l, od, unused);
    dst[od] = value;
  }
}

bool contiguous_1d(const StridedLayout2& l) {
  return l.ndim == 0 || (l.ndim == 1 && l.stride[0][0] == 1 && l.stride[1][0] == 1);
}

}  // namespace

void copy_strided(void* dst, DType dst_dtype, const Shape& dst_strides, const void* src, DType src_dtype,
                  const Shape& src_strides, const Shape& shape, int device) {
  const char* op = "Tensor::copy_";
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  StridedLayout2 l = coalesce2(shape, dst_strides, src_strides, op);
  if (dst_dtype == src_dtype && contiguous_1d(l)) {
    copy_device_to_device(dst, src, static_cast<size_t>(n) * dtype_size(dst_dtype), device);
    return;
  }
  cudaStream_t st = stream(device);
  DeviceGuard guard(device);
  unsigned grid = grid_for(n, device);
  dispatch_all(dst_dtype, op, [&](auto dtag) {
    using dst_t = MOM_TYPE(dtag);
    dispatch_all(src_dtype, op, [&](auto stag) {
      using src_t = MOM_TYPE(stag);
      auto* d = static_cast<dst_t*>(dst);
      auto* s = static_cast<const src_t*>(src);
      if (n <= INT32_MAX)
        copy_kernel<dst_t, src_t, uint32_t><<<grid, kThreads, 0, st>>>(d, s, l, static_cast<uint32_t>(n));
      else
        copy_kernel<dst_t, src_t, uint64_t><<<grid, kThreads, 0, st>>>(d, s, l, static_cast<uint64_t>(n));
      MOM_CUDA_CHECK_LAUNCH();
    });
  });
}

void fill(void* dst, DType dtype, const Shape& shape, const Shape& strides, double value, int device) {
  const char* op = "Tensor::fill_";
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  StridedLayout2 l = coalesce2(shape, strides, strides, op);
  if (value == 0.0 && !std::signbit(value) && contiguous_1d(l)) {
    memset_zero(dst, static_cast<size_t>(n) * dtype_size(dtype), device);
    return;
  }
  cudaStream_t st = stream(device);
  DeviceGuard guard(device);
  unsigned grid = grid_for(n, device);
  dispatch_all(dtype, op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    auto* d = static_cast<scalar_t*>(dst);
    scalar_t v = static_cast<scalar_t>(value);
    if (n <= INT32_MAX)
      fill_kernel<scalar_t, uint32_t><<<grid, kThreads, 0, st>>>(d, l, static_cast<uint32_t>(n), v);
    else
      fill_kernel<scalar_t, uint64_t><<<grid, kThreads, 0, st>>>(d, l, static_cast<uint64_t>(n), v);
    MOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mom::cuda

// Strided copy (with dtype conversion) and fill kernels: core/cuda/copy.h.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/cuda/copy.h"
#include "core/cuda/memory.h"
#include "core/cuda/stream.h"

namespace mom::cuda {

namespace {

constexpr int kMaxDims = 8;
constexpr int kThreads = 256;

// Dims stored innermost first: dim 0 varies fastest in logical order.
struct Layout2 {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t dst_stride[kMaxDims] = {};
  int64_t src_stride[kMaxDims] = {};
};

// Drops dims of size 1 and merges neighbours that are contiguous in both layouts; innermost first.
Layout2 coalesce(const Shape& shape, const Shape& dst_strides, const Shape& src_strides, const char* op) {
  Layout2 l;
  int64_t size[64], ds[64], ss[64];
  int n = 0;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    if (n > 0 && ds[n - 1] * size[n - 1] == dst_strides[i] && ss[n - 1] * size[n - 1] == src_strides[i]) {
      size[n - 1] *= shape[i];
      continue;
    }
    MOM_CHECK(n < 64, op, "too many dims: " << shape.size());
    size[n] = shape[i];
    ds[n] = dst_strides[i];
    ss[n] = src_strides[i];
    ++n;
  }
  MOM_CHECK(n <= kMaxDims, op, "strided layout of shape " << shape_str(shape) << " has " << n
                                   << " dims that cannot be merged; at most " << kMaxDims << " are supported");
  l.ndim = n;
  for (int d = 0; d < n; ++d) {
    l.size[d] = size[d];
    l.dst_stride[d] = ds[d];
    l.src_stride[d] = ss[d];
  }
  return l;
}

unsigned grid_for(int64_t n, int device) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  int64_t cap = int64_t(multiprocessor_count(device)) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, cap)));
}

// Index is uint32_t when every logical index fits, else uint64_t (the divisions are much cheaper).
template <typename D, typename S, typename Index>
__global__ void copy_kernel(D* dst, const S* src, Layout2 l, Index n) {
  Index stride = Index(gridDim.x) * blockDim.x;
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    Index rem = i;
    int64_t od = 0, os = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d < l.ndim) {
        Index size = static_cast<Index>(l.size[d]);
        Index k = rem % size;
        rem /= size;
        od += int64_t(k) * l.dst_stride[d];
        os += int64_t(k) * l.src_stride[d];
      }
    }
    dst[od] = static_cast<D>(src[os]);
  }
}

template <typename T, typename Index>
__global__ void fill_kernel(T* dst, Layout2 l, Index n, T value) {
  Index stride = Index(gridDim.x) * blockDim.x;
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    Index rem = i;
    int64_t od = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d < l.ndim) {
        Index size = static_cast<Index>(l.size[d]);
        od += int64_t(rem % size) * l.dst_stride[d];
        rem /= size;
      }
    }
    dst[od] = value;
  }
}

bool contiguous_1d(const Layout2& l) {
  return l.ndim == 0 || (l.ndim == 1 && l.dst_stride[0] == 1 && l.src_stride[0] == 1);
}

}  // namespace

void copy_strided(void* dst, DType dst_dtype, const Shape& dst_strides, const void* src, DType src_dtype,
                  const Shape& src_strides, const Shape& shape, int device) {
  const char* op = "Tensor::copy_";
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  Layout2 l = coalesce(shape, dst_strides, src_strides, op);
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
  Layout2 l = coalesce(shape, strides, strides, op);
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

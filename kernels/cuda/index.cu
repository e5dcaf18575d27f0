// CUDA versions of kernels/index.h, called by the public functions (kernels/cpu/index.cpp) after their
// argument checks.
//
// cat, split, index_select: copies of rows of bytes, in the widest unit (16, 8, 4, 2 or 1 bytes) that
// divides every row length and stride and aligns both pointers; one thread per unit, 64-bit (or, when
// every offset fits, 32-bit) indices. Any dtype. gather: one thread per output element, copied by the
// element's size (1, 2, 4 or 8 bytes), its x offset from a strided walk of the index's shape.
//
// Out-of-range indices: each kernel that reads indices reports the bad positions (kernels/cuda/
// bad_index.cuh) and skips them; the host reads the first one back, a synchronisation, and raises the
// CPU's error with the same message.
//
// Backwards, deterministic and without floating-point atomics; both add repeated indices in ascending
// position order, as the CPU does, so both give the CPU's bits:
//   index_select_backward: the positions i are sorted by index[i] with CUB's radix sort, which is
//     stable (equal keys keep ascending positions); seg[j] = the first sorted position with key >= j
//     (a binary search per j); then one thread per element of dx sums its run dy[o, pos, c] in order,
//     in double (as the CPU), and writes it once (0 for rows no index names).
//   gather_backward: fibers along dim (one per combination of the other coordinates) write disjoint
//     fibers of dx. Short fibers (at most 16 positions): one thread per fiber walks it in order adding
//     into dx, in the dtype (as the CPU). Longer ones: the positions are sorted (stably) by the dx
//     element they feed, and one thread per run of equal targets sums it in order and writes it once.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <type_traits>

#include "core/cuda/strided.cuh"
#include "kernels/cuda/bad_index.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/index.h"

namespace mom::kernels::cuda {

namespace {

using ::mom::cuda::StridedLayout2;

// Fibers of gather_backward of at most this many positions are walked by one thread each.
constexpr int64_t kFiberWalkMaxLen = 16;

int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= s[i];
  return n;
}

// ---- copies in units of U bytes ----

template <int U> struct UnitOf;
template <> struct UnitOf<1> { using type = uint8_t; };
template <> struct UnitOf<2> { using type = uint16_t; };
template <> struct UnitOf<4> { using type = uint32_t; };
template <> struct UnitOf<8> { using type = uint64_t; };
template <> struct UnitOf<16> { using type = uint4; };
template <int U> using Unit = typename UnitOf<U>::type;

template <int U> struct UnitTag { static constexpr int value = U; };

template <typename F> void dispatch_unit(int unit, F&& f) {
  switch (unit) {
    case 16: return f(UnitTag<16>{});
    case 8: return f(UnitTag<8>{});
    case 4: return f(UnitTag<4>{});
    case 2: return f(UnitTag<2>{});
    default: return f(UnitTag<1>{});
  }
}

// The widest unit dividing every size and aligning every pointer.
int unit_for(std::initializer_list<int64_t> sizes, std::initializer_list<const void*> ptrs) {
  for (int u : {16, 8, 4, 2}) {
    bool ok = true;
    for (int64_t s : sizes) ok = ok && s % u == 0;
    for (const void* p : ptrs) ok = ok && reinterpret_cast<uintptr_t>(p) % u == 0;
    if (ok) return u;
  }
  return 1;
}

// Calls f(Index{}) with uint32_t when every index and offset stays below `bound`'s 32-bit range.
template <typename F> void with_index(int64_t bound, F&& f) {
  if (bound <= INT32_MAX) f(uint32_t{});
  else f(uint64_t{});
}

// dst[o * dst_stride + u] = src[o * src_stride + u] for o < rows, u < row_units (in units).
template <typename V, typename Index>
__global__ void copy_rows_kernel(V* dst, const V* src, Index rows, Index row_units, Index dst_stride, Index src_stride) {
  const Index total = rows * row_units, stride = Index(gridDim.x) * blockDim.x;
  for (Index q = Index(blockIdx.x) * blockDim.x + threadIdx.x; q < total; q += stride) {
    const Index o = q / row_units, u = q - o * row_units;
    dst[o * dst_stride + u] = src[o * src_stride + u];
  }
}

// Copies `rows` rows of `bytes` bytes from src (rows src_stride bytes apart) to dst (dst_stride apart).
void copy_rows(char* dst, int64_t dst_stride, const char* src, int64_t src_stride, int64_t rows, int64_t bytes,
               int device) {
  if (rows == 0 || bytes == 0) return;
  const int unit = unit_for({bytes, dst_stride, src_stride}, {dst, src});
  const int64_t bound = rows * std::max(dst_stride, src_stride) / unit;
  dispatch_unit(unit, [&](auto unit_tag) {
    constexpr int U = decltype(unit_tag)::value;
    using V = Unit<U>;
    with_index(bound, [&](auto index_tag) {
      using Index = decltype(index_tag);
      copy_rows_kernel<V, Index><<<grid_for(rows * (bytes / U), device), kThreads, 0, ::mom::cuda::stream(device)>>>(
          reinterpret_cast<V*>(dst), reinterpret_cast<const V*>(src), Index(rows), Index(bytes / U),
          Index(dst_stride / U), Index(src_stride / U));
      MOM_CUDA_CHECK_LAUNCH();
    });
  });
}

// ---- index validation ----

template <typename I>
__global__ void find_bad_kernel(const I* idx, int64_t count, int64_t size, BadIndexReport bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const int64_t v = idx[i];
    if (v < 0 || v >= size) bad(i);
  }
}

// Throws the CPU's error for the first bad position reported to `bad`, if any (a host synchronisation).
void throw_if_bad(const BadIndex& bad, const Tensor& index, int64_t dim, int64_t size, const char* op) {
  const int64_t first = bad.first();
  if (first >= 0)
    MOM_THROW(op, "index " << index_value_at(index, first) << " is out of range for dim " << dim << " of size "
                           << size);
}

// ---- index_select ----

// y[o, i, u] = x[o, idx[i], u], rows of row_units units; idx already validated.
template <typename V, typename I, typename Index>
__global__ void index_select_kernel(V* y, const V* x, const I* idx, Index outer, Index count, Index n, Index row_units) {
  const Index total = outer * count * row_units, stride = Index(gridDim.x) * blockDim.x;
  for (Index q = Index(blockIdx.x) * blockDim.x + threadIdx.x; q < total; q += stride) {
    const Index u = q % row_units, t = q / row_units;
    const Index i = t % count, o = t / count;
    y[q] = x[(o * n + Index(idx[i])) * row_units + u];
  }
}

// ---- gather ----

template <int E> struct ElementOf;
template <> struct ElementOf<1> { using type = uint8_t; };
template <> struct ElementOf<2> { using type = uint16_t; };
template <> struct ElementOf<4> { using type = uint32_t; };
template <> struct ElementOf<8> { using type = uint64_t; };

// y[p] = x[x offset of p's other coordinates + idx[p] * x_step]; l walks index's shape (stride 0 for
// dim in x's layout).
template <typename E, typename I, typename Index>
__global__ void gather_kernel(E* y, const E* x, const I* idx, StridedLayout2 l, Index n, int64_t x_step, int64_t size,
                              BadIndexReport bad) {
  const Index stride = Index(gridDim.x) * blockDim.x;
  for (Index p = Index(blockIdx.x) * blockDim.x + threadIdx.x; p < n; p += stride) {
    const int64_t k = idx[p];
    if (k < 0 || k >= size) {
      bad(p);
      continue;
    }
    int64_t o_index, o_x;
    ::mom::cuda::offsets2(p, l, o_index, o_x);
    y[p] = x[o_x + k * x_step];
  }
}

// The walk of index's shape with x's strides, dim d contributing 0 (its coordinate comes from index).
StridedLayout2 gather_layout(const Shape& index_shape, const Shape& x_shape, int64_t d, const char* op) {
  Shape xs = contiguous_strides(x_shape);
  xs[d] = 0;
  return ::mom::cuda::coalesce2(index_shape, contiguous_strides(index_shape), xs, op);
}

// ---- sorting positions by key ----

// Stable sort of (key, value) pairs by the low `bits` bits of the key (CUB's radix sort is stable:
// equal keys keep their input order).
void sort_pairs(const unsigned long long* keys_in, unsigned long long* keys_out, const int64_t* vals_in,
                int64_t* vals_out, int64_t n, int64_t max_key, Device device) {
  int bits = 1;
  while (bits < 64 && (static_cast<uint64_t>(max_key) >> bits) != 0) ++bits;
  cudaStream_t st = ::mom::cuda::stream(device.index);
  size_t temp_bytes = 0;
  MOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, vals_in, vals_out, n, 0, bits, st));
  Tensor temp = empty({static_cast<int64_t>(std::max<size_t>(temp_bytes, 1))}, DType::u8, device);
  MOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, keys_in, keys_out, vals_in, vals_out, n,
                                                 0, bits, st));
}

unsigned long long* as_keys(const Tensor& t) { return reinterpret_cast<unsigned long long*>(t.data<int64_t>()); }

__device__ inline int64_t lower_bound(const unsigned long long* a, int64_t n, unsigned long long v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// ---- index_select_backward ----

// keys[i] = idx[i], vals[i] = i; bad indices reported (their key is 0: the sort never runs then).
template <typename I>
__global__ void index_keys_kernel(const I* idx, int64_t count, int64_t size, unsigned long long* keys, int64_t* vals,
                                  BadIndexReport bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const int64_t k = idx[i];
    const bool ok = k >= 0 && k < size;
    if (!ok) bad(i);
    keys[i] = ok ? static_cast<unsigned long long>(k) : 0ull;
    vals[i] = i;
  }
}

// seg[j] = first sorted position whose key is >= j, for j <= n.
__global__ void segment_starts_kernel(const unsigned long long* keys, int64_t count, int64_t* seg, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j <= n; j += stride)
    seg[j] = lower_bound(keys, count, static_cast<unsigned long long>(j));
}

// dx[o, j, c] = sum over k in [seg[j], seg[j+1]) of dy[o, pos[k], c], in double, in order.
template <typename T>
__global__ void index_select_backward_kernel(T* dx, const T* dy, const int64_t* seg, const int64_t* pos, int64_t outer,
                                             int64_t n, int64_t inner, int64_t count) {
  const int64_t total = outer * n * inner, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < total; q += stride) {
    const int64_t c = q % inner, t = q / inner;
    const int64_t j = t % n, o = t / n;
    double acc = 0;
    for (int64_t k = seg[j]; k < seg[j + 1]; ++k) acc += static_cast<double>(dy[(o * count + pos[k]) * inner + c]);
    dx[q] = static_cast<T>(acc);
  }
}

// ---- gather_backward ----

// One thread per fiber q: dx[bx + idx[p] * x_step] += dy[p] for p = bi + j * i_step, j ascending.
// Fibers write disjoint fibers of dx (dx starts at zero).
template <typename T, typename I>
__global__ void gather_backward_fibers_kernel(T* dx, const T* dy, const I* idx, StridedLayout2 lf, int64_t fibers,
                                              int64_t len, int64_t i_step, int64_t x_step, int64_t size,
                                              BadIndexReport bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < fibers; q += stride) {
    int64_t bi, bx;
    ::mom::cuda::offsets2(q, lf, bi, bx);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t p = bi + j * i_step, k = idx[p];
      if (k < 0 || k >= size) {
        bad(p);
        continue;
      }
      dx[bx + k * x_step] += dy[p];
    }
  }
}

// keys[p] = the dx element that position p feeds, vals[p] = p; bad indices reported.
template <typename I>
__global__ void gather_keys_kernel(const I* idx, StridedLayout2 l, int64_t n, int64_t x_step, int64_t size,
                                   unsigned long long* keys, int64_t* vals, BadIndexReport bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < n; p += stride) {
    const int64_t k = idx[p];
    int64_t o_index, o_x;
    ::mom::cuda::offsets2(p, l, o_index, o_x);
    const bool ok = k >= 0 && k < size;
    if (!ok) bad(p);
    keys[p] = ok ? static_cast<unsigned long long>(o_x + k * x_step) : 0ull;
    vals[p] = p;
  }
}

// The first sorted position of each run of equal keys sums the run in order (in the dtype, as the
// CPU) and writes its dx element once.
template <typename T>
__global__ void gather_backward_runs_kernel(T* dx, const T* dy, const unsigned long long* keys, const int64_t* pos,
                                            int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s < n; s += stride) {
    const unsigned long long key = keys[s];
    if (s > 0 && keys[s - 1] == key) continue;
    T acc = T(0);
    for (int64_t t = s; t < n && keys[t] == key; ++t) acc += dy[pos[t]];
    dx[key] = acc;
  }
}

}  // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  const Shape& ref = xs[0].shape();
  const int64_t d = wrap_dim(dim, xs[0].dim(), "cat");
  Shape out_shape = ref;
  out_shape[d] = 0;
  for (const Tensor& x : xs) out_shape[d] += x.shape()[d];
  Tensor y = empty(out_shape, xs[0].dtype(), xs[0].device());
  const int device = y.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  const int64_t es = static_cast<int64_t>(dtype_size(y.dtype()));
  const int64_t outer = prod(ref, 0, d), inner = prod(ref, d + 1, ref.size());
  const int64_t row = out_shape[d] * inner * es;
  int64_t at = 0;
  for (const Tensor& x : xs) {
    const int64_t bytes = x.shape()[d] * inner * es;
    copy_rows(static_cast<char*>(y.raw_data()) + at, row, static_cast<const char*>(x.raw_data()), bytes, outer, bytes,
              device);
    at += bytes;
  }
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const Shape& shape = x.shape();
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  const int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  const int64_t outer = prod(shape, 0, d), inner = prod(shape, d + 1, shape.size());
  const int64_t row = shape[d] * inner * es;
  int64_t at = 0;
  std::vector<Tensor> pieces;
  for (int64_t s : sizes) {
    Shape ps = shape;
    ps[d] = s;
    Tensor p = empty(ps, x.dtype(), x.device());
    const int64_t bytes = s * inner * es;
    copy_rows(static_cast<char*>(p.raw_data()), bytes, static_cast<const char*>(x.raw_data()) + at, row, outer, bytes,
              device);
    at += bytes;
    pieces.push_back(p);
  }
  return pieces;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const Shape& shape = x.shape();
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  const Tensor idx = index.contiguous();
  const int64_t count = idx.numel(), n = shape[d];
  Shape out_shape = shape;
  out_shape[d] = count;
  Tensor y = empty(out_shape, x.dtype(), x.device());
  cudaStream_t st = ::mom::cuda::stream(device);
  if (count > 0) {
    BadIndex bad(x.device());
    dispatch_index(idx.dtype(), "index_select", [&](auto tag) {
      using index_t = MOM_TYPE(tag);
      find_bad_kernel<index_t><<<grid_for(count, device), kThreads, 0, st>>>(idx.data<index_t>(), count, n, bad.report());
      MOM_CUDA_CHECK_LAUNCH();
    });
    throw_if_bad(bad, idx, d, n, "index_select");
  }
  if (y.numel() == 0) return y;
  const int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  const int64_t outer = prod(shape, 0, d), inner = prod(shape, d + 1, shape.size());
  const int unit = unit_for({inner * es}, {x.raw_data(), y.raw_data()});
  const int64_t row_units = inner * es / unit;
  dispatch_unit(unit, [&](auto unit_tag) {
    using V = Unit<decltype(unit_tag)::value>;
    dispatch_index(idx.dtype(), "index_select", [&](auto tag) {
      using index_t = MOM_TYPE(tag);
      with_index(outer * std::max(count, n) * row_units, [&](auto index_tag) {
        using Index = decltype(index_tag);
        index_select_kernel<V, index_t, Index><<<grid_for(y.numel() * es / unit, device), kThreads, 0, st>>>(
            static_cast<V*>(y.raw_data()), static_cast<const V*>(x.raw_data()), idx.data<index_t>(), Index(outer),
            Index(count), Index(n), Index(row_units));
        MOM_CUDA_CHECK_LAUNCH();
      });
    });
  });
  return y;
}

Tensor index_select_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim) {
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(x_shape.size()), "index_select");
  const int device = dy.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  const Tensor idx = index.contiguous();
  const int64_t count = idx.numel(), n = x_shape[d];
  if (count == 0) return zeros(x_shape, dy.dtype(), dy.device());
  cudaStream_t st = ::mom::cuda::stream(device);
  Tensor keys = empty({count}, DType::i64, dy.device()), vals = empty({count}, DType::i64, dy.device());
  BadIndex bad(dy.device());
  dispatch_index(idx.dtype(), "index_select", [&](auto tag) {
    using index_t = MOM_TYPE(tag);
    index_keys_kernel<index_t><<<grid_for(count, device), kThreads, 0, st>>>(idx.data<index_t>(), count, n,
                                                                              as_keys(keys), vals.data<int64_t>(),
                                                                              bad.report());
    MOM_CUDA_CHECK_LAUNCH();
  });
  throw_if_bad(bad, idx, d, n, "index_select");
  Tensor dx = empty(x_shape, dy.dtype(), dy.device());
  if (dx.numel() == 0) return dx;
  Tensor sorted_keys = empty({count}, DType::i64, dy.device()), sorted_pos = empty({count}, DType::i64, dy.device());
  sort_pairs(as_keys(keys), as_keys(sorted_keys), vals.data<int64_t>(), sorted_pos.data<int64_t>(), count, n - 1,
             dy.device());
  Tensor seg = empty({n + 1}, DType::i64, dy.device());
  segment_starts_kernel<<<grid_for(n + 1, device), kThreads, 0, st>>>(as_keys(sorted_keys), count, seg.data<int64_t>(), n);
  MOM_CUDA_CHECK_LAUNCH();
  const int64_t outer = prod(x_shape, 0, d), inner = prod(x_shape, d + 1, x_shape.size());
  dispatch_float(dy.dtype(), "index_select", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    index_select_backward_kernel<scalar_t><<<grid_for(dx.numel(), device), kThreads, 0, st>>>(
        dx.data<scalar_t>(), dy.data<scalar_t>(), seg.data<int64_t>(), sorted_pos.data<int64_t>(), outer, n, inner, count);
    MOM_CUDA_CHECK_LAUNCH();
  });
  return dx;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  const Tensor idx = index.contiguous();
  Tensor y = empty(idx.shape(), x.dtype(), x.device());
  const int64_t n = y.numel();
  if (n == 0) return y;
  const int64_t size = x.shape()[d], x_step = contiguous_strides(x.shape())[d];
  StridedLayout2 l = gather_layout(idx.shape(), x.shape(), d, "gather");
  BadIndex bad(x.device());
  const int es = static_cast<int>(dtype_size(x.dtype()));
  auto launch = [&](auto element_tag) {
    using E = typename ElementOf<decltype(element_tag)::value>::type;
    dispatch_index(idx.dtype(), "gather", [&](auto tag) {
      using index_t = MOM_TYPE(tag);
      with_index(n, [&](auto index_tag) {
        using Index = decltype(index_tag);
        gather_kernel<E, index_t, Index><<<grid_for(n, device), kThreads, 0, ::mom::cuda::stream(device)>>>(
            static_cast<E*>(y.raw_data()), static_cast<const E*>(x.raw_data()), idx.data<index_t>(), l, Index(n), x_step,
            size, bad.report());
        MOM_CUDA_CHECK_LAUNCH();
      });
    });
  };
  if (es == 1) launch(UnitTag<1>{});
  else if (es == 2) launch(UnitTag<2>{});
  else if (es == 4) launch(UnitTag<4>{});
  else launch(UnitTag<8>{});
  throw_if_bad(bad, idx, d, size, "gather");
  return y;
}

Tensor gather_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim) {
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(x_shape.size()), "gather");
  const int device = dy.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  const Tensor idx = index.contiguous();
  const int64_t n = idx.numel(), size = x_shape[d];
  const Shape xs = contiguous_strides(x_shape);
  const int64_t x_step = xs[d];
  Tensor dx = zeros(x_shape, dy.dtype(), dy.device());
  if (n == 0) return dx;
  cudaStream_t st = ::mom::cuda::stream(device);
  BadIndex bad(dy.device());
  const Shape& is = idx.shape();
  const int64_t len = is[d];
  if (len <= kFiberWalkMaxLen) {
    // The fibers: index's dims other than d, walked with index's and x's strides.
    Shape other, other_i, other_x;
    const Shape istr = contiguous_strides(is);
    for (size_t e = 0; e < is.size(); ++e) {
      if (static_cast<int64_t>(e) == d) continue;
      other.push_back(is[e]);
      other_i.push_back(istr[e]);
      other_x.push_back(xs[e]);
    }
    StridedLayout2 lf = ::mom::cuda::coalesce2(other, other_i, other_x, "gather");
    const int64_t fibers = n / len, i_step = istr[d];
    dispatch_float(dy.dtype(), "gather", [&](auto ftag) {
      using scalar_t = MOM_TYPE(ftag);
      dispatch_index(idx.dtype(), "gather", [&](auto tag) {
        using index_t = MOM_TYPE(tag);
        gather_backward_fibers_kernel<scalar_t, index_t><<<grid_for(fibers, device), kThreads, 0, st>>>(
            dx.data<scalar_t>(), dy.data<scalar_t>(), idx.data<index_t>(), lf, fibers, len, i_step, x_step, size,
            bad.report());
        MOM_CUDA_CHECK_LAUNCH();
      });
    });
    throw_if_bad(bad, idx, d, size, "gather");
    return dx;
  }
  Tensor keys = empty({n}, DType::i64, dy.device()), vals = empty({n}, DType::i64, dy.device());
  StridedLayout2 l = gather_layout(is, x_shape, d, "gather");
  dispatch_index(idx.dtype(), "gather", [&](auto tag) {
    using index_t = MOM_TYPE(tag);
    gather_keys_kernel<index_t><<<grid_for(n, device), kThreads, 0, st>>>(idx.data<index_t>(), l, n, x_step, size,
                                                                          as_keys(keys), vals.data<int64_t>(),
                                                                          bad.report());
    MOM_CUDA_CHECK_LAUNCH();
  });
  throw_if_bad(bad, idx, d, size, "gather");
  Tensor sorted_keys = empty({n}, DType::i64, dy.device()), sorted_pos = empty({n}, DType::i64, dy.device());
  sort_pairs(as_keys(keys), as_keys(sorted_keys), vals.data<int64_t>(), sorted_pos.data<int64_t>(), n, dx.numel() - 1,
             dy.device());
  dispatch_float(dy.dtype(), "gather", [&](auto ftag) {
    using scalar_t = MOM_TYPE(ftag);
    gather_backward_runs_kernel<scalar_t><<<grid_for(n, device), kThreads, 0, st>>>(
        dx.data<scalar_t>(), dy.data<scalar_t>(), as_keys(sorted_keys), sorted_pos.data<int64_t>(), n);
    MOM_CUDA_CHECK_LAUNCH();
  });
  return dx;
}

}  // namespace mom::kernels::cuda

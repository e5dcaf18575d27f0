// CPU reference for kernels/index.h, the argument checks shared by both devices, and the dispatch of
// CUDA tensors to kernels/cuda/index.cu (after the checks; index values are checked where they live).
#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/index.h"

namespace mom::kernels {

namespace {

int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= s[i];
  return n;
}

// Everything about the index but its values: defined, an integer dtype, on `data`'s device.
void check_index(const Tensor& index, const Tensor& data, const char* op, const char* data_name) {
  check_defined(index, op, "index");
  MOM_CHECK(index.dtype() == DType::i32 || index.dtype() == DType::i64, op,
            "index must be int32 or int64, got " << dtype_name(index.dtype()));
  check_same_device(index, data, op, "index", data_name);
}

// The index values (of a checked CPU index) as int64, each checked against [0, size).
std::vector<int64_t> load_index(const Tensor& index, int64_t size, int64_t dim, const char* op) {
  std::vector<int64_t> v = index.to_vector<int64_t>();
  for (int64_t i : v)
    MOM_CHECK(i >= 0 && i < size, op, "index " << i << " is out of range for dim " << dim << " of size " << size);
  return v;
}

// Copies rows of `bytes` bytes: for o < outer, dst[o * dst_stride + dst_off] <- src[o * src_stride + src_off].
void copy_rows(char* dst, int64_t dst_stride, const char* src, int64_t src_stride, int64_t outer, int64_t bytes) {
#pragma omp parallel for schedule(static) if (outer * bytes > (1 << 20) && outer > 1)
  for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * dst_stride, src + o * src_stride, bytes);
}

// gather's view of index: fibers along `dim` (one per combination of the other coordinates), each
// reading (or writing) one fiber of x.
struct Fibers {
  Shape sizes, x_strides, i_strides;  // the dims other than dim
  int64_t count = 1, len = 0, x_step = 0, i_step = 0;

  Fibers(const Shape& index_shape, const Shape& x_shape, int64_t dim) {
    Shape xs = contiguous_strides(x_shape), is = contiguous_strides(index_shape);
    for (size_t e = 0; e < index_shape.size(); ++e) {
      if (static_cast<int64_t>(e) == dim) continue;
      sizes.push_back(index_shape[e]);
      x_strides.push_back(xs[e]);
      i_strides.push_back(is[e]);
      count *= index_shape[e];
    }
    len = index_shape[dim];
    x_step = xs[dim];
    i_step = is[dim];
  }

  // Start offsets of fiber q in x and in index.
  void base(int64_t q, int64_t& bx, int64_t& bi) const {
    bx = bi = 0;
    for (size_t e = sizes.size(); e-- > 0;) {
      int64_t c = q % sizes[e];
      q /= sizes[e];
      bx += c * x_strides[e];
      bi += c * i_strides[e];
    }
  }
};

void check_gather_shapes(const Shape& x_shape, const Tensor& index, int64_t d, const char* op) {
  MOM_CHECK(index.dim() == static_cast<int64_t>(x_shape.size()), op,
            "index has " << index.dim() << " dims, x " << shape_str(x_shape) << " has " << x_shape.size());
  for (size_t e = 0; e < x_shape.size(); ++e)
    MOM_CHECK(static_cast<int64_t>(e) == d || index.shape()[e] <= x_shape[e], op,
              "index " << shape_str(index.shape()) << " is larger than x " << shape_str(x_shape) << " in dim " << e);
}

}  // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  MOM_CHECK(!xs.empty(), "cat", "needs at least one tensor");
  for (size_t i = 0; i < xs.size(); ++i) {
    std::string name = "xs[" + std::to_string(i) + "]";
    check_contiguous(xs[i], "cat", name.c_str());
    check_same_dtype(xs[i], xs[0], "cat", name.c_str(), "xs[0]");
    check_same_device(xs[i], xs[0], "cat", name.c_str(), "xs[0]");
  }
  const Shape& ref = xs[0].shape();
  int64_t d = wrap_dim(dim, xs[0].dim(), "cat");
  Shape out_shape = ref;
  out_shape[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Shape& s = xs[i].shape();
    bool fits = s.size() == ref.size();
    for (size_t e = 0; fits && e < s.size(); ++e) fits = static_cast<int64_t>(e) == d || s[e] == ref[e];
    MOM_CHECK(fits, "cat",
              "xs[" << i << "] has shape " << shape_str(s) << ", which differs from xs[0] " << shape_str(ref)
                    << " in a dim other than " << d);
    out_shape[d] += s[d];
  }
#ifdef MOM_WITH_CUDA
  if (xs[0].device().is_cuda()) return cuda::cat(xs, dim);
#endif
  check_cpu(xs[0], "cat", "xs[0]");
  Tensor y = empty(out_shape, xs[0].dtype());
  int64_t es = static_cast<int64_t>(dtype_size(y.dtype()));
  int64_t outer = prod(ref, 0, d), inner = prod(ref, d + 1, ref.size());
  int64_t row = out_shape[d] * inner * es, at = 0;
  for (const Tensor& x : xs) {
    int64_t bytes = x.shape()[d] * inner * es;
    if (bytes > 0)
      copy_rows(static_cast<char*>(y.raw_data()) + at, row, static_cast<const char*>(x.raw_data()), bytes, outer, bytes);
    at += bytes;
  }
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_contiguous(x, "split", "x");
  int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    MOM_CHECK(s >= 0, "split", "sizes must not be negative, got " << shape_str(sizes));
    total += s;
  }
  MOM_CHECK(total == x.size(d), "split",
            "sizes " << shape_str(sizes) << " sum to " << total << " but dim " << d << " of x " << shape_str(x.shape())
                     << " has size " << x.size(d));
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::split(x, sizes, dim);
#endif
  check_cpu(x, "split", "x");
  const Shape& shape = x.shape();
  int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  int64_t outer = prod(shape, 0, d), inner = prod(shape, d + 1, shape.size());
  int64_t row = shape[d] * inner * es, at = 0;
  std::vector<Tensor> pieces;
  for (int64_t s : sizes) {
    Shape ps = shape;
    ps[d] = s;
    Tensor p = empty(ps, x.dtype());
    int64_t bytes = s * inner * es;
    if (bytes > 0)
      copy_rows(static_cast<char*>(p.raw_data()), bytes, static_cast<const char*>(x.raw_data()) + at, row, outer, bytes);
    at += bytes;
    pieces.push_back(p);
  }
  return pieces;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_contiguous(x, "index_select", "x");
  int64_t d = wrap_dim(dim, x.dim(), "index_select");
  check_defined(index, "index_select", "index");
  MOM_CHECK(index.dim() == 1, "index_select", "index must be 1-D, got shape " << shape_str(index.shape()));
  check_index(index, x, "index_select", "x");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::index_select(x, dim, index);
#endif
  check_cpu(x, "index_select", "x");
  const Shape& shape = x.shape();
  std::vector<int64_t> idx = load_index(index, shape[d], d, "index_select");
  Shape out_shape = shape;
  out_shape[d] = static_cast<int64_t>(idx.size());
  Tensor y = empty(out_shape, x.dtype());
  int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  int64_t outer = prod(shape, 0, d), inner = prod(shape, d + 1, shape.size()), n = shape[d];
  int64_t count = static_cast<int64_t>(idx.size()), bytes = inner * es;
  const char* xp = static_cast<const char*>(x.raw_data());
  char* yp = static_cast<char*>(y.raw_data());
#pragma omp parallel for schedule(static) if (outer * count * bytes > (1 << 20))
  for (int64_t t = 0; t < outer * count; ++t) {
    int64_t o = t / count, i = t % count;
    std::memcpy(yp + t * bytes, xp + (o * n + idx[i]) * bytes, bytes);
  }
  return y;
}

Tensor index_select_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim) {
  check_floating(dy, "index_select", "dy");
  check_contiguous(dy, "index_select", "dy");
  int64_t d = wrap_dim(dim, static_cast<int64_t>(x_shape.size()), "index_select");
  int64_t n = x_shape[d];
  check_index(index, dy, "index_select", "dy");
  int64_t count = index.numel();
  Shape dy_shape = x_shape;
  dy_shape[d] = count;
  check_shape(dy, dy_shape, "index_select", "dy");
#ifdef MOM_WITH_CUDA
  if (dy.device().is_cuda()) return cuda::index_select_backward(dy, index, x_shape, dim);
#endif
  check_cpu(dy, "index_select", "dy");
  std::vector<int64_t> idx = load_index(index, n, d, "index_select");
  // Positions grouped by target row, in ascending order within a group (a stable counting sort).
  std::vector<int64_t> start(n + 1, 0), order(count);
  for (int64_t v : idx) ++start[v + 1];
  for (int64_t j = 0; j < n; ++j) start[j + 1] += start[j];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < count; ++i) order[fill[idx[i]]++] = i;
  Tensor dx = zeros(x_shape, dy.dtype());
  int64_t outer = prod(x_shape, 0, d), inner = prod(x_shape, d + 1, x_shape.size());
  dispatch_float(dy.dtype(), "index_select", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
#pragma omp parallel if (outer * count * inner > 32768)
    {
      std::vector<double> acc(inner);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < outer * n; ++t) {
        int64_t o = t / n, j = t % n;
        if (start[j] == start[j + 1]) continue;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = start[j]; k < start[j + 1]; ++k) {
          const scalar_t* src = gp + (o * count + order[k]) * inner;
          for (int64_t c = 0; c < inner; ++c) acc[c] += src[c];
        }
        scalar_t* dst = dp + t * inner;
        for (int64_t c = 0; c < inner; ++c) dst[c] = static_cast<scalar_t>(acc[c]);
      }
    }
  });
  return dx;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_contiguous(x, "gather", "x");
  int64_t d = wrap_dim(dim, x.dim(), "gather");
  check_defined(index, "gather", "index");
  check_gather_shapes(x.shape(), index, d, "gather");
  check_index(index, x, "gather", "x");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::gather(x, dim, index);
#endif
  check_cpu(x, "gather", "x");
  std::vector<int64_t> idx = load_index(index, x.size(d), d, "gather");
  Tensor y = empty(index.shape(), x.dtype());
  if (y.numel() == 0) return y;
  Fibers f(index.shape(), x.shape(), d);
  dispatch_all(x.dtype(), "gather", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
#pragma omp parallel for schedule(static) if (y.numel() > 32768)
    for (int64_t q = 0; q < f.count; ++q) {
      int64_t bx, bi;
      f.base(q, bx, bi);
      for (int64_t j = 0; j < f.len; ++j) {
        int64_t p = bi + j * f.i_step;
        yp[p] = xp[bx + idx[p] * f.x_step];
      }
    }
  });
  return y;
}

Tensor gather_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim) {
  check_floating(dy, "gather", "dy");
  check_contiguous(dy, "gather", "dy");
  int64_t d = wrap_dim(dim, static_cast<int64_t>(x_shape.size()), "gather");
  check_defined(index, "gather", "index");
  check_gather_shapes(x_shape, index, d, "gather");
  check_shape(dy, index.shape(), "gather", "dy");
  check_index(index, dy, "gather", "dy");
#ifdef MOM_WITH_CUDA
  if (dy.device().is_cuda()) return cuda::gather_backward(dy, index, x_shape, dim);
#endif
  check_cpu(dy, "gather", "dy");
  std::vector<int64_t> idx = load_index(index, x_shape[d], d, "gather");
  Tensor dx = zeros(x_shape, dy.dtype());
  if (dy.numel() == 0) return dx;
  // Fibers of index write disjoint fibers of dx: one thread per fiber, ascending positions within it.
  Fibers f(index.shape(), x_shape, d);
  dispatch_float(dy.dtype(), "gather", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
#pragma omp parallel for schedule(static) if (dy.numel() > 32768)
    for (int64_t q = 0; q < f.count; ++q) {
      int64_t bx, bi;
      f.base(q, bx, bi);
      for (int64_t j = 0; j < f.len; ++j) {
        int64_t p = bi + j * f.i_step;
        dp[bx + idx[p] * f.x_step] += gp[p];
      }
    }
  });
  return dx;
}

}  // namespace mom::kernels

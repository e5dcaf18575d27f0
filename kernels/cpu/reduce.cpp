// CPU reference for kernels/reduce.h, the argument checks shared by both devices, and the dispatch of
// CUDA tensors to kernels/cuda/reduce.cu (after the checks).
#include <algorithm>
#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/reduce.h"

namespace mom::kernels {

std::vector<int64_t> all_dims(int64_t ndim) {
  std::vector<int64_t> dims(ndim);
  for (int64_t d = 0; d < ndim; ++d) dims[d] = d;
  return dims;
}

namespace {

constexpr int64_t kColumnBlock = 1024;  // kept columns one task sums at a time
constexpr int64_t kTotalBlock = 65536;  // elements per partial of a total (fixed: results repeat)

void check_input(const Tensor& x, const char* op) {
  check_floating(x, op, "x");
  check_contiguous(x, op, "x");
}

// reduced[d] is true for every dim of `dims` (wrapped; a repeated dim is an error).
std::vector<bool> reduced_mask(int64_t ndim, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(ndim, false);
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, ndim, op);
    MOM_CHECK(!mask[w], op, "dim " << d << " appears twice in the reduced dims");
    mask[w] = true;
  }
  return mask;
}

Shape reduced_shape(const Shape& shape, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!mask[d]) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// A contiguous x seen as groups of adjacent dims of one kind (kept or reduced), size-1 dims dropped:
// outer kept groups, the reduced groups, and the trailing kept group (stride 1) as `inner`.
struct ReducePlan {
  Shape outer_sizes, outer_strides;
  Shape red_sizes, red_strides;
  int64_t inner = 1;
  int64_t rows = 1;   // product of outer_sizes
  int64_t count = 1;  // reduced elements per output element
};

ReducePlan make_plan(const Shape& shape, const std::vector<bool>& mask) {
  struct Group { int64_t size, stride; bool reduced; };
  std::vector<Group> groups;
  Shape st = contiguous_strides(shape);
  ReducePlan p;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (mask[d]) p.count *= shape[d];
    if (shape[d] == 1) continue;
    if (!groups.empty() && groups.back().reduced == mask[d]) {
      groups.back().size *= shape[d];
      groups.back().stride = st[d];
    } else {
      groups.push_back({shape[d], st[d], static_cast<bool>(mask[d])});
    }
  }
  if (!groups.empty() && !groups.back().reduced) {
    p.inner = groups.back().size;
    groups.pop_back();
  }
  for (const Group& g : groups) {
    if (g.reduced) {
      p.red_sizes.push_back(g.size);
      p.red_strides.push_back(g.stride);
    } else {
      p.outer_sizes.push_back(g.size);
      p.outer_strides.push_back(g.stride);
      p.rows *= g.size;
    }
  }
  return p;
}

// Calls f(offset) for every combination of reduced indices, in row-major order.
template <typename F> void for_each_reduced(const ReducePlan& p, F&& f) {
  size_t r = p.red_sizes.size();
  if (r == 0) {
    f(int64_t{0});
    return;
  }
  int64_t outer = 1;
  for (size_t g = 0; g + 1 < r; ++g) outer *= p.red_sizes[g];
  int64_t last_n = p.red_sizes[r - 1], last_s = p.red_strides[r - 1];
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, off = 0;
    for (size_t g = r - 1; g-- > 0;) {
      off += (rem % p.red_sizes[g]) * p.red_strides[g];
      rem /= p.red_sizes[g];
    }
    for (int64_t j = 0; j < last_n; ++j) f(off + j * last_s);
  }
}

int64_t row_offset(const ReducePlan& p, int64_t row) {
  int64_t off = 0;
  for (size_t g = p.outer_sizes.size(); g-- > 0;) {
    off += (row % p.outer_sizes[g]) * p.outer_strides[g];
    row /= p.outer_sizes[g];
  }
  return off;
}

// Sum of n contiguous elements in double: fixed blocks summed in parallel, partials added in order.
template <typename T> double total(const T* x, int64_t n) {
  int64_t blocks = (n + kTotalBlock - 1) / kTotalBlock;
  std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static) if (n > 4 * kTotalBlock)
  for (int64_t b = 0; b < blocks; ++b) {
    double s = 0;
    for (int64_t i = b * kTotalBlock, e = std::min(n, i + kTotalBlock); i < e; ++i) s += x[i];
    partial[b] = s;
  }
  double s = 0;
  for (double v : partial) s += v;
  return s;
}

// y[kept] = (sum over reduced of x) / divisor. Each (row, column block) task owns its outputs.
template <typename T> void reduce_sum(const T* x, T* y, const ReducePlan& p, double divisor) {
  if (p.rows == 1 && p.inner == 1 && p.red_sizes.size() == 1 && p.red_strides[0] == 1) {
    y[0] = static_cast<T>(total(x, p.count) / divisor);
    return;
  }
  if (p.inner == 1) {
    // The last dim is reduced: one running sum per output element.
#pragma omp parallel for schedule(static) if (p.rows * p.count > 32768)
    for (int64_t row = 0; row < p.rows; ++row) {
      const T* base = x + row_offset(p, row);
      double s = 0;
      for_each_reduced(p, [&](int64_t off) { s += base[off]; });
      y[row] = static_cast<T>(s / divisor);
    }
    return;
  }
  int64_t nblk = (p.inner + kColumnBlock - 1) / kColumnBlock;
  int64_t tasks = p.rows * nblk;
  int64_t work = p.rows * p.inner * p.count;
#pragma omp parallel if (work > 32768)
  {
    std::vector<double> acc(std::min(kColumnBlock, p.inner));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      int64_t row = t / nblk;
      int64_t c0 = (t % nblk) * kColumnBlock, width = std::min(kColumnBlock, p.inner - c0);
      const T* base = x + row_offset(p, row) + c0;
      std::fill(acc.begin(), acc.begin() + width, 0.0);
      for_each_reduced(p, [&](int64_t off) {
        const T* src = base + off;
        for (int64_t c = 0; c < width; ++c) acc[c] += src[c];
      });
      T* dst = y + row * p.inner + c0;
      for (int64_t c = 0; c < width; ++c) dst[c] = static_cast<T>(acc[c] / divisor);
    }
  }
}

Tensor sum_or_mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool is_mean) {
  const char* op = is_mean ? "mean" : "sum";
  check_input(x, op);
  std::vector<bool> mask = reduced_mask(x.dim(), dims, op);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return is_mean ? cuda::mean(x, dims, keepdim) : cuda::sum(x, dims, keepdim);
#endif
  check_cpu(x, op, "x");
  Shape out_shape = reduced_shape(x.shape(), mask, keepdim);
  ReducePlan p = make_plan(x.shape(), mask);
  double divisor = is_mean ? static_cast<double>(p.count) : 1.0;
  if (x.numel() == 0) return full(out_shape, is_mean ? NAN : 0.0, x.dtype());
  Tensor y = empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    reduce_sum(x.data<scalar_t>(), y.data<scalar_t>(), p, divisor);
  });
  return y;
}

// dx = dy / divisor, broadcast from the reduced shape back to x_shape.
Tensor broadcast_back(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool keepdim,
                      bool is_mean) {
  const char* op = is_mean ? "mean" : "sum";
  check_floating(dy, op, "dy");
  check_contiguous(dy, op, "dy");
  std::vector<bool> mask = reduced_mask(static_cast<int64_t>(x_shape.size()), dims, op);
  check_shape(dy, reduced_shape(x_shape, mask, keepdim), op, "dy");
#ifdef MOM_WITH_CUDA
  if (dy.device().is_cuda())
    return is_mean ? cuda::mean_backward(dy, x_shape, dims, keepdim) : cuda::sum_backward(dy, x_shape, dims, keepdim);
#endif
  check_cpu(dy, op, "dy");
  double divisor = is_mean ? static_cast<double>(make_plan(x_shape, mask).count) : 1.0;
  Shape st = contiguous_strides(reduced_shape(x_shape, mask, true));
  for (size_t d = 0; d < x_shape.size(); ++d)
    if (mask[d]) st[d] = 0;
  Tensor dx = empty(x_shape, dy.dtype());
  int64_t n = dx.numel();
  if (n == 0) return dx;
  dispatch_float(dy.dtype(), op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
    size_t rank = x_shape.size();
    if (rank == 0) {
      dp[0] = static_cast<scalar_t>(gp[0] / divisor);
      return;
    }
    int64_t inner = x_shape[rank - 1], rows = n / inner, inner_stride = st[rank - 1];
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t rem = r, o = 0;
      for (size_t d = rank - 1; d-- > 0;) {
        o += (rem % x_shape[d]) * st[d];
        rem /= x_shape[d];
      }
      scalar_t* dst = dp + r * inner;
      for (int64_t j = 0; j < inner; ++j) dst[j] = static_cast<scalar_t>(gp[o + j * inner_stride] / divisor);
    }
  });
  return dx;
}

// NaN wins over numbers (it propagates); among numbers only a strictly larger value wins, so the
// first maximum is kept.
template <typename T> bool beats(T v, T best) { return v > best || (std::isnan(v) && !std::isnan(best)); }

// Everything about the indices but their values, which each device checks where they live.
void check_indices(const Tensor& indices, const Tensor& dy, const Shape& shape, const char* op) {
  check_contiguous(indices, op, "indices");
  check_same_device(indices, dy, op, "indices", "dy");
  MOM_CHECK(indices.dtype() == DType::i64, op, "indices must be int64, got " << dtype_name(indices.dtype()));
  check_shape(indices, shape, op, "indices");
}

void check_index_values(const Tensor& indices, int64_t bound, const char* op) {
  for (int64_t v : indices.to_vector<int64_t>())
    MOM_CHECK(v >= 0 && v < bound, op, "index " << v << " is out of range for a dim of size " << bound);
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_or_mean(x, dims, keepdim, false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_or_mean(x, dims, keepdim, true);
}

Tensor sum_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool keepdim) {
  return broadcast_back(dy, x_shape, dims, keepdim, false);
}

Tensor mean_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool keepdim) {
  return broadcast_back(dy, x_shape, dims, keepdim, true);
}

MaxResult max(const Tensor& x, int64_t dim, bool keepdim) {
  check_input(x, "max");
  int64_t d = wrap_dim(dim, x.dim(), "max");
  const Shape& shape = x.shape();
  int64_t n = shape[d];
  MOM_CHECK(n > 0, "max", "dim " << dim << " of x " << shape_str(shape) << " is empty; it has no maximum");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::max(x, dim, keepdim);
#endif
  check_cpu(x, "max", "x");
  std::vector<bool> mask(shape.size(), false);
  mask[d] = true;
  Shape out_shape = reduced_shape(shape, mask, keepdim);
  MaxResult r{empty(out_shape, x.dtype()), empty(out_shape, DType::i64)};
  int64_t outer = shape_numel(Shape(shape.begin(), shape.begin() + d));
  int64_t inner = shape_numel(Shape(shape.begin() + d + 1, shape.end()));
  int64_t m = outer * inner;
  dispatch_float(x.dtype(), "max", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    scalar_t* vp = r.values.data<scalar_t>();
    int64_t* ip = r.indices.data<int64_t>();
#pragma omp parallel for schedule(static) if (m * n > 32768)
    for (int64_t q = 0; q < m; ++q) {
      const scalar_t* src = xp + (q / inner) * n * inner + q % inner;
      scalar_t best = src[0];
      int64_t arg = 0;
      for (int64_t j = 1; j < n; ++j)
        if (beats(src[j * inner], best)) {
          best = src[j * inner];
          arg = j;
        }
      vp[q] = best;
      ip[q] = arg;
    }
  });
  return r;
}

Tensor max_backward(const Tensor& dy, const Tensor& indices, const Shape& x_shape, int64_t dim, bool keepdim) {
  check_floating(dy, "max", "dy");
  check_contiguous(dy, "max", "dy");
  int64_t d = wrap_dim(dim, static_cast<int64_t>(x_shape.size()), "max");
  std::vector<bool> mask(x_shape.size(), false);
  mask[d] = true;
  Shape out_shape = reduced_shape(x_shape, mask, keepdim);
  check_shape(dy, out_shape, "max", "dy");
  int64_t n = x_shape[d];
  check_indices(indices, dy, out_shape, "max");
#ifdef MOM_WITH_CUDA
  if (dy.device().is_cuda()) return cuda::max_backward(dy, indices, x_shape, dim, keepdim);
#endif
  check_cpu(dy, "max", "dy");
  check_index_values(indices, n, "max");
  int64_t inner = shape_numel(Shape(x_shape.begin() + d + 1, x_shape.end()));
  int64_t m = dy.numel();
  Tensor dx = zeros(x_shape, dy.dtype());
  dispatch_float(dy.dtype(), "max", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    const int64_t* ip = indices.data<int64_t>();
    scalar_t* dp = dx.data<scalar_t>();
#pragma omp parallel for schedule(static) if (m > 32768)
    for (int64_t q = 0; q < m; ++q) dp[(q / inner) * n * inner + ip[q] * inner + q % inner] = gp[q];
  });
  return dx;
}

MaxResult max_all(const Tensor& x) {
  check_input(x, "max");
  int64_t n = x.numel();
  MOM_CHECK(n > 0, "max", "x " << shape_str(x.shape()) << " is empty; it has no maximum");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::max_all(x);
#endif
  check_cpu(x, "max", "x");
  MaxResult r{empty({}, x.dtype()), empty({}, DType::i64)};
  dispatch_float(x.dtype(), "max", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    int64_t blocks = (n + kTotalBlock - 1) / kTotalBlock;
    std::vector<int64_t> arg(blocks);
#pragma omp parallel for schedule(static) if (n > 4 * kTotalBlock)
    for (int64_t b = 0; b < blocks; ++b) {
      int64_t best = b * kTotalBlock;
      for (int64_t i = best + 1, e = std::min(n, best + kTotalBlock); i < e; ++i)
        if (beats(xp[i], xp[best])) best = i;
      arg[b] = best;
    }
    int64_t best = arg[0];
    for (int64_t b = 1; b < blocks; ++b)
      if (beats(xp[arg[b]], xp[best])) best = arg[b];
    r.values.data<scalar_t>()[0] = xp[best];
    r.indices.data<int64_t>()[0] = best;
  });
  return r;
}

Tensor max_all_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape) {
  check_floating(dy, "max", "dy");
  check_shape(dy, {}, "max", "dy");
  check_indices(index, dy, {}, "max");
#ifdef MOM_WITH_CUDA
  if (dy.device().is_cuda()) return cuda::max_all_backward(dy, index, x_shape);
#endif
  check_cpu(dy, "max", "dy");
  check_index_values(index, shape_numel(x_shape), "max");
  Tensor dx = zeros(x_shape, dy.dtype());
  dispatch_float(dy.dtype(), "max", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    dx.data<scalar_t>()[index.data<int64_t>()[0]] = dy.data<scalar_t>()[0];
  });
  return dx;
}

}  // namespace mom::kernels

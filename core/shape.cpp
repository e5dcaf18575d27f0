#include "core/shape.h"

#include <sstream>

#include "core/error.h"

namespace mom {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  bool any_zero = false;
  for (int64_t s : shape) {
    if (s > 0) {
      MOM_CHECK(!__builtin_mul_overflow(n, s, &n), "shape",
                "shape " << shape_str(shape) << " is too large: its sizes multiply past 2^63 - 1");
    } else {
      MOM_CHECK(s == 0, "shape", "negative size " << s << " in shape " << shape_str(shape));
      any_zero = true;
    }
  }
  return any_zero ? 0 : n;
}

Shape contiguous_strides(const Shape& shape) {
  shape_numel(shape);  // the checks; the product of the sizes below then fits
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  MOM_CHECK(d >= 0 && d < ndim, op, "dim " << dim << " is out of range for a tensor of " << ndim << " dims");
  return d;
}

Shape broadcast_strides(const Shape& in_shape, size_t rank) {
  Shape st = contiguous_strides(in_shape);
  Shape out(rank, 0);
  size_t lead = rank - in_shape.size();
  for (size_t i = 0; i < in_shape.size(); ++i) out[lead + i] = in_shape[i] == 1 ? 0 : st[i];
  return out;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MOM_CHECK(da == db || da == 1 || db == 1, op,
              "shapes " << shape_str(a) << " and " << shape_str(b) << " cannot broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace mom

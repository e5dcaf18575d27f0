#include "core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <new>
#include <sstream>

#include "core/grad_mode.h"
#ifdef MOM_WITH_CUDA
#include "core/cuda/copy.h"
#include "core/cuda/memory.h"
#endif

namespace mom {

namespace {

std::shared_ptr<TensorImpl> make_impl(std::shared_ptr<Storage> storage, Shape shape, Shape strides,
                                      int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = dtype;
  return impl;
}

// Calls f(src_offset) for every element in logical (row-major) order.
template <typename F>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t offset, F&& f) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  size_t nd = shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t off = offset;
  for (int64_t i = 0; i < n; ++i) {
    f(off);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

// Sizes >= 0 ("[op] ..."), and an element count that fits int64 ("[shape] ...", from shape_numel).
void check_shape(const Shape& shape, const char* op) {
  for (int64_t s : shape) MOM_CHECK(s >= 0, op, "negative size in shape " << shape_str(shape));
  shape_numel(shape);
}

}  // namespace

// ---- metadata ----

#define MOM_IMPL_CHECK(op) MOM_CHECK(impl_ != nullptr, op, "tensor is undefined")

const Shape& Tensor::shape() const { MOM_IMPL_CHECK("Tensor::shape"); return impl_->shape; }
const Shape& Tensor::strides() const { MOM_IMPL_CHECK("Tensor::strides"); return impl_->strides; }
int64_t Tensor::offset() const { MOM_IMPL_CHECK("Tensor::offset"); return impl_->offset; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "Tensor::size")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { MOM_IMPL_CHECK("Tensor::dtype"); return impl_->dtype; }
Device Tensor::device() const { MOM_IMPL_CHECK("Tensor::device"); return impl_->storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { MOM_IMPL_CHECK("Tensor::storage"); return impl_->storage; }

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  const Shape& st = strides();
  if (shape_numel(sh) == 0) return true;
  int64_t expected = 1;
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  MOM_IMPL_CHECK("Tensor::raw_data");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

// ---- autograd fields ----

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  MOM_IMPL_CHECK("Tensor::set_requires_grad");
  MOM_CHECK(!impl_->grad_fn, "Tensor::set_requires_grad",
            "only leaf tensors can change requires_grad; call detach() first");
  MOM_CHECK(!requires_grad || is_floating(impl_->dtype), "Tensor::set_requires_grad",
            "only floating tensors can require grad, got " << dtype_name(impl_->dtype));
  impl_->requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const { return impl_ && !impl_->grad_fn; }
Tensor Tensor::grad() const { MOM_IMPL_CHECK("Tensor::grad"); return Tensor(impl_->grad); }
void Tensor::set_grad(const Tensor& g) { MOM_IMPL_CHECK("Tensor::set_grad"); impl_->grad = g.impl_; }
void Tensor::zero_grad() { MOM_IMPL_CHECK("Tensor::zero_grad"); impl_->grad.reset(); }
const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const { MOM_IMPL_CHECK("Tensor::grad_fn"); return impl_->grad_fn; }
int Tensor::output_nr() const { MOM_IMPL_CHECK("Tensor::output_nr"); return impl_->output_nr; }

void Tensor::set_grad_fn(std::shared_ptr<autograd::Node> fn, int output_nr) {
  MOM_IMPL_CHECK("Tensor::set_grad_fn");
  impl_->grad_fn = std::move(fn);
  impl_->output_nr = output_nr;
  impl_->requires_grad = impl_->grad_fn != nullptr;
}

int64_t Tensor::version() const { return storage()->version(); }
void Tensor::bump_version() const { storage()->bump_version(); }
const std::string& Tensor::name() const { MOM_IMPL_CHECK("Tensor::name"); return impl_->name; }
Tensor& Tensor::set_name(std::string name) { MOM_IMPL_CHECK("Tensor::set_name"); impl_->name = std::move(name); return *this; }

// ---- views ----

void Tensor::check_view_allowed(const char* op) const {
  MOM_CHECK(impl_ != nullptr, op, "tensor is undefined");
  MOM_CHECK(!(impl_->requires_grad && GradMode::is_enabled()), op,
            "tensor requires grad: use the differentiable mom::" << (op + 8)
                << "(...) from autograd/ops.h, or detach() first");
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  constexpr const char* op = "Tensor::as_strided";
  check_view_allowed(op);
  MOM_CHECK(shape.size() == strides.size(), op, "shape and strides differ in length");
  check_shape(shape, op);
  MOM_CHECK(offset >= 0, op, "offset " << offset << " is negative");
  for (int64_t st : strides) MOM_CHECK(st >= 0, op, "negative stride in " << shape_str(strides));
  // Every element must lie in the storage: offset + sum (size - 1) * stride < the storage's elements.
  const int64_t capacity = static_cast<int64_t>(impl_->storage->nbytes() / dtype_size(impl_->dtype));
  if (shape_numel(shape) > 0) {
    int64_t last = offset;
    bool overflow = false;
    for (size_t i = 0; i < shape.size(); ++i) {
      int64_t step = 0;
      overflow = overflow || __builtin_mul_overflow(shape[i] - 1, strides[i], &step) ||
                 __builtin_add_overflow(last, step, &last);
    }
    MOM_CHECK(!overflow && last < capacity, op,
              "shape " << shape_str(shape) << " with strides " << shape_str(strides) << " at offset " << offset
                       << " reaches past the storage's " << capacity << " elements");
  } else {
    MOM_CHECK(offset <= capacity, op, "offset " << offset << " is past the storage's " << capacity << " elements");
  }
  return Tensor(make_impl(impl_->storage, shape, strides, offset, impl_->dtype));
}

namespace {
// Resolves one -1 in a requested shape against numel.
Shape infer_shape(const Shape& requested, int64_t numel, const char* op) {
  Shape out = requested, known_sizes = requested;
  int64_t infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      MOM_CHECK(infer < 0, op, "only one dimension can be -1 in " << shape_str(requested));
      infer = static_cast<int64_t>(i);
      known_sizes[i] = 1;
    } else {
      MOM_CHECK(out[i] >= 0, op, "invalid size in shape " << shape_str(requested));
    }
  }
  const int64_t known = shape_numel(known_sizes);  // throws [shape] when the sizes overflow
  if (infer >= 0) {
    MOM_CHECK(known != 0 && numel % known == 0, op,
              "shape " << shape_str(requested) << " is invalid for " << numel << " elements");
    out[infer] = numel / known;
  }
  MOM_CHECK(shape_numel(out) == numel, op,
            "shape " << shape_str(requested) << " is invalid for " << numel << " elements");
  return out;
}
}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  check_view_allowed("Tensor::view");
  Shape s = infer_shape(shape, numel(), "Tensor::view");
  MOM_CHECK(is_contiguous(), "Tensor::view", "tensor is not contiguous; use reshape or contiguous()");
  return Tensor(make_impl(impl_->storage, s, contiguous_strides(s), impl_->offset, impl_->dtype));
}

Tensor Tensor::reshape(const Shape& shape) const {
  check_view_allowed("Tensor::reshape");
  Shape s = infer_shape(shape, numel(), "Tensor::reshape");
  Tensor base = is_contiguous() ? *this : contiguous();
  return Tensor(make_impl(base.impl_->storage, s, contiguous_strides(s), base.impl_->offset, impl_->dtype));
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  check_view_allowed("Tensor::transpose");
  std::vector<int64_t> dims(dim());
  for (int64_t i = 0; i < dim(); ++i) dims[i] = i;
  std::swap(dims[wrap_dim(d0, dim(), "Tensor::transpose")], dims[wrap_dim(d1, dim(), "Tensor::transpose")]);
  return permute(dims);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  check_view_allowed("Tensor::permute");
  int64_t nd = dim();
  MOM_CHECK(static_cast<int64_t>(dims.size()) == nd, "Tensor::permute",
            "got " << dims.size() << " dims for a tensor of " << nd);
  std::vector<bool> seen(nd, false);
  Shape shape(nd), strides(nd);
  for (int64_t i = 0; i < nd; ++i) {
    int64_t d = wrap_dim(dims[i], nd, "Tensor::permute");
    MOM_CHECK(!seen[d], "Tensor::permute", "dim " << d << " repeated");
    seen[d] = true;
    shape[i] = impl_->shape[d];
    strides[i] = impl_->strides[d];
  }
  return Tensor(make_impl(impl_->storage, shape, strides, impl_->offset, impl_->dtype));
}

Tensor Tensor::narrow(int64_t dim_, int64_t start, int64_t length) const {
  check_view_allowed("Tensor::narrow");
  int64_t d = wrap_dim(dim_, dim(), "Tensor::narrow");
  MOM_CHECK(start >= 0 && length >= 0 && start <= impl_->shape[d] && length <= impl_->shape[d] - start,
            "Tensor::narrow", "start " << start << " and length " << length << " are out of bounds for dim " << d
                                       << " of size " << impl_->shape[d]);
  Shape shape = impl_->shape;
  shape[d] = length;
  return Tensor(make_impl(impl_->storage, shape, impl_->strides, impl_->offset + start * impl_->strides[d], impl_->dtype));
}

Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end, int64_t step) const {
  check_view_allowed("Tensor::slice");
  int64_t d = wrap_dim(dim_, dim(), "Tensor::slice");
  MOM_CHECK(step >= 1, "Tensor::slice", "step must be positive, got " << step);
  int64_t n = impl_->shape[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = impl_->shape, strides = impl_->strides;
  shape[d] = end == start ? 0 : (end - start - 1) / step + 1;
  // A step so large that stride * step overflows leaves at most one element, whose stride is never used.
  if (__builtin_mul_overflow(strides[d], step, &strides[d])) strides[d] = impl_->strides[d];
  return Tensor(make_impl(impl_->storage, shape, strides, impl_->offset + start * impl_->strides[d], impl_->dtype));
}

Tensor Tensor::squeeze(int64_t dim_) const {
  check_view_allowed("Tensor::squeeze");
  int64_t d = wrap_dim(dim_, dim(), "Tensor::squeeze");
  if (impl_->shape[d] != 1) return Tensor(make_impl(impl_->storage, impl_->shape, impl_->strides, impl_->offset, impl_->dtype));
  Shape shape = impl_->shape, strides = impl_->strides;
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return Tensor(make_impl(impl_->storage, shape, strides, impl_->offset, impl_->dtype));
}

Tensor Tensor::unsqueeze(int64_t dim_) const {
  check_view_allowed("Tensor::unsqueeze");
  int64_t d = wrap_dim(dim_, dim() + 1, "Tensor::unsqueeze");
  Shape shape = impl_->shape, strides = impl_->strides;
  int64_t st = d < dim() ? impl_->shape[d] * impl_->strides[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, st);
  return Tensor(make_impl(impl_->storage, shape, strides, impl_->offset, impl_->dtype));
}

Tensor Tensor::expand(const Shape& shape) const {
  check_view_allowed("Tensor::expand");
  int64_t nd = static_cast<int64_t>(shape.size());
  MOM_CHECK(nd >= dim(), "Tensor::expand", "cannot expand " << shape_str(impl_->shape) << " to " << shape_str(shape));
  Shape out(nd), strides(nd);
  for (int64_t i = nd; i-- > 0;) {
    int64_t j = i - (nd - dim());
    int64_t src = j >= 0 ? impl_->shape[j] : 1;
    int64_t want = shape[i] == -1 ? src : shape[i];
    MOM_CHECK(want >= 0 && (src == want || src == 1), "Tensor::expand",
              "cannot expand " << shape_str(impl_->shape) << " to " << shape_str(shape));
    out[i] = want;
    strides[i] = (j >= 0 && src == want) ? impl_->strides[j] : 0;
  }
  shape_numel(out);  // throws [shape] when the expanded sizes overflow
  return Tensor(make_impl(impl_->storage, out, strides, impl_->offset, impl_->dtype));
}

// ---- copies ----

Tensor Tensor::contiguous() const {
  MOM_IMPL_CHECK("Tensor::contiguous");
  if (is_contiguous()) return *this;
  check_view_allowed("Tensor::contiguous");
  return clone();
}

Tensor Tensor::clone() const {
  MOM_IMPL_CHECK("Tensor::clone");
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType dtype_) const {
  MOM_IMPL_CHECK("Tensor::to");
  if (dtype_ == dtype()) return *this;
  Tensor out = empty(shape(), dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device device_) const {
  MOM_IMPL_CHECK("Tensor::to");
  if (device_ == device()) return *this;
#ifdef MOM_WITH_CUDA
  Tensor src = is_contiguous() ? *this : clone();  // a strided source is packed on its own device
  Tensor out = empty(shape(), dtype(), device_);
  size_t nbytes = static_cast<size_t>(numel()) * dtype_size(dtype());
  if (device().is_cpu())
    cuda::copy_host_to_device(out.raw_data(), src.raw_data(), nbytes, device_.index);
  else if (device_.is_cpu())
    cuda::copy_device_to_host(out.raw_data(), src.raw_data(), nbytes, device().index);
  else
    cuda::copy_between_devices(out.raw_data(), device_.index, src.raw_data(), device().index, nbytes);
  return out;
#else
  MOM_THROW("Tensor::to", "built without CUDA: cannot copy to " << device_.str());
#endif
}

Tensor Tensor::detach() const {
  MOM_IMPL_CHECK("Tensor::detach");
  return Tensor(make_impl(impl_->storage, impl_->shape, impl_->strides, impl_->offset, impl_->dtype));
}

Tensor& Tensor::copy_(const Tensor& src) {
  MOM_IMPL_CHECK("Tensor::copy_");
  MOM_CHECK(src.defined(), "Tensor::copy_", "source is undefined");
  MOM_CHECK(src.shape() == shape(), "Tensor::copy_",
            "shape " << shape_str(src.shape()) << " does not match " << shape_str(shape()));
  MOM_CHECK(src.device() == device(), "Tensor::copy_",
            "copies between devices go through to(Device); got " << src.device().str() << " -> " << device().str());
  bump_version();
  if (device().is_cuda()) {
#ifdef MOM_WITH_CUDA
    // A source that shares this storage is read in full before any element is written.
    Tensor from = src.storage() == storage() ? src.clone() : src;
    cuda::copy_strided(raw_data(), dtype(), strides(), from.raw_data(), from.dtype(), from.strides(), shape(),
                       device().index);
    return *this;
#endif
  }
  char* dst_base = static_cast<char*>(impl_->storage->data());
  const char* src_base = static_cast<const char*>(src.impl_->storage->data());
  if (dtype() == src.dtype() && is_contiguous() && src.is_contiguous()) {
    std::memmove(raw_data(), src.raw_data(), static_cast<size_t>(numel()) * dtype_size(dtype()));
    return *this;
  }
  std::vector<int64_t> dst_offsets;
  dst_offsets.reserve(numel());
  for_each_offset(shape(), strides(), offset(), [&](int64_t o) { dst_offsets.push_back(o); });
  dispatch_all(dtype(), "Tensor::copy_", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    using dst_t = scalar_t;
    dst_t* d = reinterpret_cast<dst_t*>(dst_base);
    dispatch_all(src.dtype(), "Tensor::copy_", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
      const scalar_t* s = reinterpret_cast<const scalar_t*>(src_base);
      size_t i = 0;
      for_each_offset(src.shape(), src.strides(), src.offset(),
                      [&](int64_t o) { d[dst_offsets[i++]] = static_cast<dst_t>(s[o]); });
    });
  });
  return *this;
}

Tensor& Tensor::fill_(double value) {
  MOM_IMPL_CHECK("Tensor::fill_");
  bump_version();
  if (device().is_cuda()) {
#ifdef MOM_WITH_CUDA
    cuda::fill(raw_data(), dtype(), shape(), strides(), value, device().index);
    return *this;
#endif
  }
  dispatch_all(dtype(), "Tensor::fill_", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* d = static_cast<scalar_t*>(impl_->storage->data());
    scalar_t v = static_cast<scalar_t>(value);
    for_each_offset(shape(), strides(), offset(), [&](int64_t o) { d[o] = v; });
  });
  return *this;
}

// ---- values ----

double Tensor::item() const {
  MOM_IMPL_CHECK("Tensor::item");
  MOM_CHECK(numel() == 1, "Tensor::item", "tensor has " << numel() << " elements, item() needs exactly one");
  Tensor t = device().is_cpu() ? *this : detach().to(Device::cpu());
  return dispatch_all(t.dtype(), "Tensor::item", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    return static_cast<double>(static_cast<const scalar_t*>(t.raw_data())[0]);
  });
}

template <typename T> std::vector<T> Tensor::to_vector() const {
  MOM_IMPL_CHECK("Tensor::to_vector");
  Tensor t = device().is_cpu() ? *this : detach().to(Device::cpu());
  std::vector<T> out;
  out.reserve(t.numel());
  dispatch_all(t.dtype(), "Tensor::to_vector", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* s = static_cast<const scalar_t*>(t.impl_->storage->data());
    for_each_offset(t.shape(), t.strides(), t.offset(), [&](int64_t o) { out.push_back(static_cast<T>(s[o])); });
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;

// ---- printing, in PyTorch's style ----

namespace {

struct Formatter {
  bool floating = false;
  bool sci = false;
  bool int_valued = true;
  int width = 1;

  std::string format(double v) const {
    std::ostringstream os;
    if (!floating) {
      os << static_cast<long long>(v);
    } else if (std::isnan(v)) {
      os << "nan";
    } else if (std::isinf(v)) {
      os << (v > 0 ? "inf" : "-inf");
    } else if (sci) {
      os << std::scientific << std::setprecision(4) << v;
    } else if (int_valued) {
      os << std::fixed << std::setprecision(0) << v << ".";
    } else {
      os << std::fixed << std::setprecision(4) << v;
    }
    return os.str();
  }
};

constexpr int64_t kSummarizeAbove = 1000;
constexpr int64_t kEdgeItems = 3;

void print_rec(std::ostringstream& os, const std::vector<double>& vals, const Shape& shape, size_t d,
               int64_t base, const Formatter& fmt, int indent, bool summarize) {
  int64_t n = shape[d];
  int64_t inner = 1;
  for (size_t k = d + 1; k < shape.size(); ++k) inner *= shape[k];
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - kEdgeItems;
    }
    if (d + 1 == shape.size()) {
      std::string s = fmt.format(vals[base + i]);
      os << std::string(fmt.width - s.size(), ' ') << s;
    } else {
      print_rec(os, vals, shape, d + 1, base + i * inner, fmt, indent + 1, summarize);
    }
    if (i + 1 < n) {
      if (d + 1 == shape.size()) os << ", ";
      else os << "," << std::string(shape.size() - d - 1, '\n') << std::string(indent + 1, ' ');
    }
  }
  os << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> vals = to_vector<double>();
  Formatter fmt;
  fmt.floating = is_floating(dtype());
  double max_abs = 0, min_abs = INFINITY;
  for (double v : vals) {
    if (!std::isfinite(v)) continue;
    if (v != std::floor(v)) fmt.int_valued = false;
    max_abs = std::max(max_abs, std::fabs(v));
    if (v != 0) min_abs = std::min(min_abs, std::fabs(v));
  }
  fmt.sci = fmt.floating && !fmt.int_valued && (max_abs >= 1e8 || (min_abs < 1e-4) || max_abs / min_abs > 1e3);
  if (fmt.floating && fmt.int_valued && max_abs >= 1e8) fmt.sci = true, fmt.int_valued = false;
  for (double v : vals) fmt.width = std::max<int>(fmt.width, static_cast<int>(fmt.format(v).size()));
  std::ostringstream os;
  os << "tensor(";
  if (numel() == 0) {
    os << "[]";
  } else if (dim() == 0) {
    os << fmt.format(vals[0]);
  } else {
    print_rec(os, vals, shape(), 0, 0, fmt, 7, numel() > kSummarizeAbove);
  }
  if (dtype() != DType::f32 && dtype() != DType::i64) os << ", dtype=" << dtype_name(dtype());
  if (device().is_cuda()) os << ", device='" << device().str() << "'";
  if (impl_->grad_fn) os << ", grad_fn=<" << "Node" << ">";
  else if (impl_->requires_grad) os << ", requires_grad=True";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

// ---- factories ----

Tensor empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "empty");
  int64_t nbytes = 0;
  MOM_CHECK(!__builtin_mul_overflow(shape_numel(shape), static_cast<int64_t>(dtype_size(dtype)), &nbytes), "tensor",
            "a " << dtype_name(dtype) << " tensor of shape " << shape_str(shape)
                 << " would take more than 2^63 - 1 bytes");
  std::shared_ptr<Storage> storage;
  try {
    storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), device);
  } catch (const std::bad_alloc&) {
    MOM_THROW("storage", "out of host memory: asked for " << nbytes << " bytes");
  }
  return Tensor(make_impl(std::move(storage), shape, contiguous_strides(shape), 0, dtype));
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor arange(int64_t start, int64_t end, int64_t step, DType dtype) {
  MOM_CHECK(step != 0, "arange", "step must be non-zero");
  // ceil((end - start) / step) in 128 bits: the difference of two int64 can overflow 64.
  const __int128 span = static_cast<__int128>(end) - start;
  const __int128 count = step > 0 ? (span + step - 1) / step : (span + step + 1) / step;
  MOM_CHECK(count <= std::numeric_limits<int64_t>::max(), "arange",
            "[" << start << ", " << end << ") in steps of " << step << " has more than 2^63 - 1 values");
  const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, "arange", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* d = t.data<scalar_t>();
    // Stepping a running value: each value lies in [start, end), where i * step alone may not.
    int64_t v = start;
    for (int64_t i = 0; i < n; ++i) {
      d[i] = static_cast<scalar_t>(v);
      if (i + 1 < n) v += step;
    }
  });
  return t;
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, double lo, double hi) {
  Tensor t = empty(shape, dtype);
  dispatch_float(dtype, "rand", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* d = t.data<scalar_t>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<scalar_t>(lo + (hi - lo) * gen.uniform());
  });
  return t;
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, double mean, double std) {
  Tensor t = empty(shape, dtype);
  dispatch_float(dtype, "randn", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* d = t.data<scalar_t>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<scalar_t>(mean + std * gen.normal());
  });
  return t;
}

Tensor randint(const Shape& shape, int64_t lo, int64_t hi, Generator& gen, DType dtype) {
  MOM_CHECK(hi > lo, "randint", "empty range [" << lo << ", " << hi << ")");
  Tensor t = empty(shape, dtype);
  dispatch_index(dtype, "randint", [&](auto tag) {
    using index_t = MOM_TYPE(tag);
    index_t* d = t.data<index_t>();
    for (int64_t i = 0; i < t.numel(); ++i)
      d[i] = static_cast<index_t>(lo + static_cast<int64_t>(gen.randint(static_cast<uint64_t>(hi - lo))));
  });
  return t;
}

template <typename T> Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  MOM_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector",
            values.size() << " values do not fill shape " << shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>());
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&);
template Tensor from_vector<bf16>(const std::vector<bf16>&, const Shape&);

Tensor scalar_tensor(double value, DType dtype) { return full({}, value, dtype); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }

}  // namespace mom

// Tensor: a cheap handle (shared ownership) to a TensorImpl holding storage, shape, strides, offset,
// dtype, device and the autograd fields (requires_grad, grad, grad_fn). Copies of a Tensor are the same
// tensor; views are new TensorImpls that share the Storage (and so its version counter).
//
// The view methods here (view, reshape, transpose, permute, narrow, ...) move no gradient: they are
// the data-level operations the autograd functions are built on. Called on a tensor that requires
// grad while grad mode is on, they throw and point to the differentiable mom::reshape(...) etc. in
// autograd/ops.h, so a gradient is never silently dropped. detach() is the explicit escape.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/shape.h"
#include "core/storage.h"

namespace mom {

namespace autograd { class Node; }

struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // Metadata.
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;

  // Typed pointer to element 0 (storage + offset). Checks the dtype.
  template <typename T> T* data() const;
  void* raw_data() const;  // storage + offset, untyped

  // Autograd fields.
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward writes it
  void set_grad(const Tensor& g);
  void zero_grad();     // back to undefined, as PyTorch's set_to_none
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  int output_nr() const;
  void set_grad_fn(std::shared_ptr<autograd::Node> fn, int output_nr);
  int64_t version() const;
  void bump_version() const;  // every in-place write calls this
  const std::string& name() const;
  Tensor& set_name(std::string name);

  // Data-level views (see the header comment).
  Tensor view(const Shape& shape) const;     // needs compatible strides (contiguous)
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy; one -1 allowed
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;  // stride 0 on broadcast dims
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;

  // Copies.
  Tensor contiguous() const;  // itself when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor detach() const;      // same storage, no autograd history, requires_grad false

  // In-place writes (bump the version).
  // Same shape; src may be strided; the dtype converted as static_cast does, to and from bf16 by the
  // rounding of core/bf16.h (the same on both devices).
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);  // value cast to the dtype (to bf16: rounded once, from the double)

  // Values.
  double item() const;  // one element, as double
  // Logical order, any strides; T is float, double, int32_t, int64_t, uint8_t or bf16, and each element
  // is cast to it as copy_ casts (a bf16 tensor's values are exact as float or double).
  template <typename T> std::vector<T> to_vector() const;
  std::string str() const;  // printed like PyTorch

 private:
  std::shared_ptr<TensorImpl> impl_;
  void check_view_allowed(const char* op) const;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  int output_nr = 0;
  std::string name;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Factories. Memory of empty() is uninitialised.
Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
Tensor arange(int64_t start, int64_t end, int64_t step = 1, DType dtype = DType::i64);
Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::f32, double lo = 0.0, double hi = 1.0);
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32, double mean = 0.0, double std = 1.0);
Tensor randint(const Shape& shape, int64_t lo, int64_t hi, Generator& gen, DType dtype = DType::i64);
template <typename T> Tensor from_vector(const std::vector<T>& values, const Shape& shape);
Tensor scalar_tensor(double value, DType dtype = DType::f32);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);

// ---- template definitions ----

template <typename T> T* Tensor::data() const {
  MOM_CHECK(defined(), "Tensor::data", "tensor is undefined");
  MOM_CHECK(dtype() == dtype_of<T>(), "Tensor::data",
            "tensor has dtype " << dtype_name(dtype()) << ", asked for " << dtype_name(dtype_of<T>()));
  return static_cast<T*>(raw_data());
}

}  // namespace mom

// Reduction kernels: sum and mean over a set of dims, max over one dim (with the argmax the backward
// needs) and max over all elements.
//
//   sum(x, dims, keepdim)           y[kept] = sum over the reduced dims of x
//   mean(x, dims, keepdim)          y[kept] = sum(...) / count, count = product of the reduced sizes
//   sum_backward(dy, x_shape, ...)  dx = dy broadcast back over the reduced dims
//   mean_backward(dy, x_shape, ...) dx = dy broadcast back over the reduced dims, divided by count
//   max(x, dim, keepdim)            values[kept] = max_j x[.., j, ..], indices = the first such j (int64)
//   max_backward(dy, indices, ...)  dx = zeros(x_shape) with dx[.., indices, ..] = dy
//   max_all(x)                      values () = max of every element, indices () = its flat index
//   max_all_backward(dy, index, ..) dx = zeros(x_shape) with dx.flat[index] = dy
//
// Shapes: x (any shape); dims may be negative, in any order, without repeats; every dim listed is
// reduced, and an empty list reduces nothing (as NumPy), so the total is sum(x, {0, 1, ..., n-1}).
// keepdim keeps the reduced dims with size 1. mean over no element is NaN, as 0 / 0. max prefers
// the first maximum on ties and treats NaN as the largest value (it propagates); max over an
// empty dim is an error.
// Accumulation is in double for f32 and f64, in a fixed order (each output element is summed by one
// thread; the total is summed in fixed blocks whose partials are added in order), so results repeat
// bit for bit whatever the thread count.
// The forward of max saves the indices for its backward; sum and mean save nothing but the shape.
// Inputs must be contiguous tensors of one floating dtype (indices int64) on one device; outputs are
// fresh, on that device. Nothing accumulates: every function returns a new tensor.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mom::kernels {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor sum_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool keepdim);
Tensor mean_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool keepdim);

struct MaxResult {
  Tensor values;   // x's dtype
  Tensor indices;  // int64, same shape as values
};
MaxResult max(const Tensor& x, int64_t dim, bool keepdim);
Tensor max_backward(const Tensor& dy, const Tensor& indices, const Shape& x_shape, int64_t dim, bool keepdim);
MaxResult max_all(const Tensor& x);
Tensor max_all_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape);

// The dims of a tensor of `ndim` dims, in order: {0, 1, ..., ndim - 1}.
std::vector<int64_t> all_dims(int64_t ndim);

// CUDA versions, called by the functions above after their checks (CUDA builds only). Same results:
// sums in double in an order fixed by the shapes (bit for bit from run to run, not bit for bit with
// the CPU), max and every backward exactly the CPU's. An out-of-range index is found on the device
// and raises the CPU's error after one host synchronisation (kernels/cuda/reduce.cu).
namespace cuda {
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor sum_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool keepdim);
Tensor mean_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool keepdim);
MaxResult max(const Tensor& x, int64_t dim, bool keepdim);
Tensor max_backward(const Tensor& dy, const Tensor& indices, const Shape& x_shape, int64_t dim, bool keepdim);
MaxResult max_all(const Tensor& x);
Tensor max_all_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape);
}  // namespace cuda

}  // namespace mom::kernels

// Copy and index kernels: concatenation and its inverse, index_select and gather with their
// scatter-add backwards.
//
//   cat(xs, dim)                     y = [x_0, x_1, ...] along dim; every x_i has the shape of the others
//                                    except along dim
//   split(x, sizes, dim)             pieces of sizes[i] along dim (the sizes sum to x.size(dim)); copies
//   index_select(x, dim, index)      y[.., i, ..] = x[.., index[i], ..]      index (I) -> y has size I along dim
//   index_select_backward(dy, index, x_shape, dim)
//                                    dx = zeros(x_shape); dx[.., index[i], ..] += dy[.., i, ..]
//   gather(x, dim, index)            y[p] = x[p with its dim coordinate replaced by index[p]]  (torch.gather)
//                                    index has x's rank; index.size(d) <= x.size(d) for d != dim; y has
//                                    index's shape
//   gather_backward(dy, index, x_shape, dim)
//                                    dx = zeros(x_shape); dx[p with dim coordinate index[p]] += dy[p]
//
// Dims may be negative. Indices are int32 or int64 in [0, size) (an index out of range is an error,
// never a wrap-around). The backwards add repeated indices in ascending order of position, each output
// element summed by one thread, so they repeat bit for bit. The forwards of index_select and gather
// save the index for their backward; cat and split save only the sizes.
// Inputs must be contiguous tensors on one device (x, dy of one floating dtype for the backwards; cat,
// split, index_select and gather take any dtype; the index may be strided); outputs are fresh and
// contiguous, on that device. Nothing accumulates into an argument.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mom::kernels {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_select_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim);

// CUDA versions, called by the functions above after their checks (CUDA builds only). Same results,
// bit for bit (copies, and backwards that add in the CPU's order and precision). Index values are
// checked on the device; an out-of-range one raises the CPU's error after one host synchronisation
// (kernels/cuda/index.cu).
namespace cuda {
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_select_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape, int64_t dim);
}  // namespace cuda

}  // namespace mom::kernels

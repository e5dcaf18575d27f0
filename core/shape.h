// Shape helpers. A Shape is the list of sizes, outermost first; strides count elements.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mom {

using Shape = std::vector<int64_t>;

// The number of elements. Throws "[shape] ..." when a size is negative or when the sizes, a size of 0
// counted as 1, multiply past 2^63 - 1: such a shape has no int64 element count or contiguous strides
// (so (0, 2^62, 2^62) is refused too, although it holds no element).
int64_t shape_numel(const Shape& shape);
// Row-major strides (a size of 0 counted as 1); throws as shape_numel does.
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(2, 3)"

// Wraps a possibly negative dim into [0, ndim); throws [op] when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// Strides of a contiguous tensor of shape `in_shape` seen from a broadcast result of rank `rank`:
// 0 on the dims broadcasting expanded (leading dims, and dims of size 1).
Shape broadcast_strides(const Shape& in_shape, size_t rank);

// NumPy broadcasting of two shapes; throws [op] when they cannot broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace mom

// A logical index walked through two strided layouts at once, on the device: what strided copies
// (destination, source) and broadcasting binaries (operand a, operand b) both need.
//
// coalesce2 drops dims of size 1 and merges neighbours contiguous in both layouts, innermost first
// (dim 0 varies fastest in logical order); at most kMaxDims dims may remain. offsets2 turns logical
// index i into the element offsets of the two layouts.
#pragma once

#include <cstdint>

#include "core/error.h"
#include "core/shape.h"

namespace mom::cuda {

constexpr int kMaxDims = 8;

struct StridedLayout2 {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[2][kMaxDims] = {};
};

// Throws "[op] <shape> has N dims that cannot be merged; at most 8 are supported".
inline StridedLayout2 coalesce2(const Shape& shape, const Shape& strides0, const Shape& strides1, const char* op) {
  StridedLayout2 l;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    int d = l.ndim - 1;
    if (d >= 0 && l.stride[0][d] * l.size[d] == strides0[i] && l.stride[1][d] * l.size[d] == strides1[i]) {
      l.size[d] *= shape[i];
      continue;
    }
    MOM_CHECK(l.ndim < kMaxDims, op, "strided layout of shape " << shape_str(shape)
                                         << " has more than " << kMaxDims << " dims that cannot be merged");
    l.size[l.ndim] = shape[i];
    l.stride[0][l.ndim] = strides0[i];
    l.stride[1][l.ndim] = strides1[i];
    ++l.ndim;
  }
  return l;
}

// Index is uint32_t when every logical index fits (its divisions are much cheaper), else uint64_t.
template <typename Index>
__device__ inline void offsets2(Index i, const StridedLayout2& l, int64_t& o0, int64_t& o1) {
  o0 = 0;
  o1 = 0;
#pragma unroll
  for (int d = 0; d < kMaxDims; ++d) {
    if (d < l.ndim) {
      Index size = static_cast<Index>(l.size[d]);
      Index k = i % size;
      i /= size;
      o0 += int64_t(k) * l.stride[0][d];
      o1 += int64_t(k) * l.stride[1][d];
    }
  }
}

}  // namespace mom::cuda

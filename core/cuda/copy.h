// Device-side copies and fills over strided layouts: the CUDA half of Tensor::copy_ / fill_ (and so of
// contiguous(), clone() and to(DType)). Plain C++ interface, CUDA builds only.
//
// copy_strided: dst[i] = cast<dst_dtype>(src[i]) for every logical index i of `shape`, where dst and
// src point at element 0 of their views and each has its own element strides. Any pair of dtypes
// (the casts of static_cast, as the CPU path). Dims of size 1 are dropped and dims that are
// contiguous in both layouts are merged first; more than 8 dims left after that is an error.
// fill: every element of the strided view gets `value` cast to `dtype`.
// Both run asynchronously on the device's stream.
#pragma once

#include "core/dtype.h"
#include "core/shape.h"

namespace mom::cuda {

void copy_strided(void* dst, DType dst_dtype, const Shape& dst_strides, const void* src, DType src_dtype,
                  const Shape& src_strides, const Shape& shape, int device);
void fill(void* dst, DType dtype, const Shape& shape, const Shape& strides, double value, int device);

}  // namespace mom::cuda

// Matrix products through CBLAS (sgemm / dgemm) on the CPU.
//
//   matmul(a, b, ta, tb)   c = op(a) @ op(b),  op(t) = t with its last two dims swapped when the flag is
//                          set (CBLAS reads the stored matrix transposed; nothing is copied)
//       op(a): (..., M, K)   op(b): (..., K, N)   c: (broadcast(batch a, batch b), M, N)
//   matmul_backward(dc, a, b, ta, tb)
//       d op(a) = dc @ op(b)^T      d op(b) = op(a)^T @ dc
//       returned in the layout a and b are stored in (da has a's shape, db has b's shape), summed over
//       the batch dims that broadcasting expanded.
//
// a and b have at least 2 dims; batch dims broadcast as NumPy's. A batched a times a 2-D b (the
// projection of every token, x (B, L, In) @ W^T) runs as one GEMM over all B*L rows, and so does its
// weight gradient. The forward saves a and b (as stored) for the backward; nothing accumulates:
// every function returns fresh contiguous tensors. Inputs must be contiguous CPU tensors of one
// floating dtype. With OpenBLAS at a fixed thread count the results repeat bit for bit.
#pragma once

#include "core/tensor.h"

namespace mom::kernels {

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

struct MatmulGrads {
  Tensor da;  // undefined unless asked for
  Tensor db;
};
MatmulGrads matmul_backward(const Tensor& dc, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b,
                            bool need_a = true, bool need_b = true);

}  // namespace mom::kernels

// Matrix products: CBLAS (sgemm / dgemm) on the CPU, cuBLAS on CUDA devices.
//
//   matmul(a, b, ta, tb)   c = op(a) @ op(b),  op(t) = t with its last two dims swapped when the flag is
//                          set (the BLAS reads the stored matrix transposed; nothing is copied)
//       op(a): (..., M, K)   op(b): (..., K, N)   c: (broadcast(batch a, batch b), M, N)
//   matmul(a, b, ta, tb, bias)   c = op(a) @ op(b) + bias on every row: bias (N), b 2-D, a not
//                          transposed (the projection x @ W^T + b of nn::Linear). On CUDA the GEMM adds
//                          it in its epilogue; its gradient is sum_to_shape(dc, {N}).
//   matmul_backward(dc, a, b, ta, tb)
//       d op(a) = dc @ op(b)^T      d op(b) = op(a)^T @ dc
//       returned in the layout a and b are stored in (da has a's shape, db has b's shape), summed over
//       the batch dims that broadcasting expanded.
//
// a and b have at least 2 dims; batch dims broadcast as NumPy's. A batched a times a 2-D b (the
// projection of every token, x (B, L, In) @ W^T) runs as one GEMM over all B*L rows, and so does its
// weight gradient. The forward saves a and b (as stored) for the backward; nothing accumulates:
// every function returns fresh contiguous tensors. Inputs must be contiguous tensors of one floating
// dtype (bias: its accumulation dtype, see below) on one device. With OpenBLAS at a fixed thread count, and with cuBLAS on one GPU model (one
// stream, atomics off), the results repeat bit for bit.
//
// bfloat16 (mixed precision): a, b (and dc) bf16, bias float32; c, da and db bf16, each the float32
// accumulation (plus the bias) rounded once. The CPU computes it as the float32 product of the widened
// operands (the reference); CUDA runs cuBLAS GEMMs on bf16 operands with float32 accumulation.
//
// TF32 (CUDA, float32 only): off by default, so float32 products are full float32 GEMMs, as on the CPU.
// set_allow_tf32(true) lets cuBLAS round the inputs of float32 GEMMs to TF32 (10-bit mantissa, about
// 1e-3 relative error per product) on tensor cores, several times faster on sm_80 and later: the switch
// of torch.backends.cuda.matmul.allow_tf32. It is global, read at each GEMM (masked_linear's too);
// float64 is never affected, and neither is the CPU.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mom::kernels {

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false,
              const Tensor& bias = Tensor());

struct MatmulGrads {
  Tensor da;  // undefined unless asked for
  Tensor db;
};
MatmulGrads matmul_backward(const Tensor& dc, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b,
                            bool need_a = true, bool need_b = true);

void set_allow_tf32(bool allow);
bool allow_tf32();

// Shared by the CPU and CUDA versions (shapes already checked by matmul):
// the shape of op(a) @ op(b), checking that the shapes fit ("[matmul] ..." otherwise);
Shape matmul_output_shape(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b);
// for every output batch index (row-major over `batch`), the index of the matrix of an operand with
// batch dims `in` (broadcast: size-1 and missing dims repeat).
std::vector<int64_t> matmul_batch_index_map(const Shape& in, const Shape& batch);

// CUDA versions, called by the functions above after their checks (CUDA builds only). cuda::matmul
// expects a non-empty product (K >= 1); the public matmul returns the empty and K = 0 cases itself.
namespace cuda {
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, const Tensor& bias);
MatmulGrads matmul_backward(const Tensor& dc, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b,
                            bool need_a, bool need_b);
}  // namespace cuda

}  // namespace mom::kernels

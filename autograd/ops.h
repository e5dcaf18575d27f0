// The differentiable functions of the foundation. Each computes with kernels/ and, when an input
// requires grad and grad mode is on, records a Node whose backward calls the matching backward kernel.
// They accept any strides (inputs are made contiguous before the kernel) and any mix of shapes that
// NumPy broadcasting allows for the binary ops. Dims may be negative (counted from the end).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mom {

// ---- elementwise (autograd/elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);  // threshold 20, as PyTorch
Tensor tanh(const Tensor& x);
Tensor mul(const Tensor& x, double s);
Tensor add(const Tensor& x, double s);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator*(const Tensor& x, double s) { return mul(x, s); }
inline Tensor operator*(double s, const Tensor& x) { return mul(x, s); }
inline Tensor operator+(const Tensor& x, double s) { return add(x, s); }

// ---- reductions (autograd/reduce.cpp) ----
Tensor sum(const Tensor& x);                                                  // all elements -> ()
// Reduces every dim listed (any order, no repeats); an empty list reduces nothing, as NumPy.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor max(const Tensor& x);                                                  // all elements -> ()
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);               // values; the gradient goes to the first maximum

// ---- matmul (autograd/matmul.cpp) ----
// (M, K) @ (K, N) -> (M, N); batched (..., M, K) @ (..., K, N) with broadcast batch dims; CBLAS on CPU.
// An input that is a transpose of contiguous data (transpose(w, 0, 1)) is read with a CBLAS flag, not copied.
Tensor matmul(const Tensor& a, const Tensor& b);
// x @ weight^T + bias: x (..., In), weight (Out, In), bias (Out) or undefined (none). One product, the
// bias added on its rows (by the GEMM's epilogue on CUDA); the same values as add(matmul(...), bias).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- shape and index ops (autograd/shape_ops.cpp) ----
// reshape ... expand return views sharing x's storage (reshape of a non-contiguous x copies);
// contiguous, cat, split, index_select and gather return fresh contiguous copies.
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor contiguous(const Tensor& x);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: 1-D int32/int64
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // torch.gather semantics

// ---- fused nn ops (autograd/nn_ops.cpp) ----
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

struct CrossEntropyOptions {
  int64_t ignore_index = -100;  // targets equal to this are not counted
  Tensor weight;                // optional (T) per-token weight or 0/1 mask, float
};
// logits (T, V), targets (T) int32/int64 -> () : sum_t w_t * (-log softmax(logits_t)[target_t]) / sum_t w_t
// over counted tokens (w_t = 1 without a weight). No counted token gives 0 with a zero gradient.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opts = {});

// ids (...) int32/int64, weight (V, D) -> (..., D)
Tensor embedding(const Tensor& ids, const Tensor& weight);

// x (..., D), weight (D): y = x / sqrt(mean(x^2) + eps) * weight
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);
// The same with y of dtype y_dtype: x's own, or bf16 beside a float32 x (mixed precision's pre-norm: the
// float32 residual stream normalised into bf16 activations; dx is float32).
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, DType y_dtype);

// ---- dtype (autograd/shape_ops.cpp) ----
// x converted to dtype (floating to floating; bf16 rounds to nearest even); the gradient is converted
// back to x's dtype. x itself when it has that dtype already.
Tensor cast(const Tensor& x, DType dtype);

}  // namespace mom

// Elementwise kernels: unary maps, binary ops with NumPy broadcasting, and the reduction of a
// broadcast gradient back to its input's shape.
//
//   unary(op, x)                    y = f(x)                              x: any shape, contiguous
//   unary_backward(op, dy, x, y)    dx = dy * f'(x)   (y = f(x), used where f' is cheapest from y)
//   binary(op, a, b)                out = a op b, out shape = broadcast(a.shape, b.shape)
//   pow_scalar(x, p)                x^p
//   scale(x, s)                     s * x
//   sum_to_shape(g, shape)          sums g over the dims that broadcasting expanded to reach g's shape
//
// softplus(x) = log(1 + exp(x)), and x itself above the threshold 20 (as PyTorch).
// Inputs must be contiguous, on one device, of one floating dtype (float32 or float64; binary also takes
// bf16, computed in float32 and rounded once); outputs are fresh and contiguous.
// Nothing accumulates: every function returns a new tensor.
#pragma once

#include "core/tensor.h"

namespace mom::kernels {

enum class UnaryOp { neg, exp, log, sqrt, sigmoid, silu, softplus, tanh };
enum class BinaryOp { add, sub, mul, div };

const char* unary_name(UnaryOp op);
const char* binary_name(BinaryOp op);

Tensor unary(UnaryOp op, const Tensor& x);
Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor pow_scalar(const Tensor& x, double p);
Tensor scale(const Tensor& x, double s);
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }

// CUDA versions, called by the functions above after their checks (CUDA builds only).
namespace cuda {
Tensor unary(UnaryOp op, const Tensor& x);
Tensor unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor pow_scalar(const Tensor& x, double p);
Tensor scale(const Tensor& x, double s);
Tensor sum_to_shape(const Tensor& g, const Shape& shape);
}  // namespace cuda

// Shared precondition checks for kernels (used by every op family).
void check_defined(const Tensor& t, const char* op, const char* name);
void check_contiguous(const Tensor& t, const char* op, const char* name);
void check_floating(const Tensor& t, const char* op, const char* name);  // float32 or float64 (not bf16)
// float32, float64 or bfloat16: the activations of the ops with a bf16 version (matmul, masked_linear,
// causal_conv1d, selective_scan, rms_norm, cross_entropy).
void check_compute(const Tensor& t, const char* op, const char* name);
// t is of x's accumulation dtype (acc_dtype): float32 beside a bf16 x, x's own dtype otherwise.
void check_acc_dtype(const Tensor& t, const Tensor& x, const char* op, const char* name_t, const char* name_x);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op, const char* name_a, const char* name_b);
void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* name_a, const char* name_b);
void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* name);
void check_cpu(const Tensor& t, const char* op, const char* name);

// The bf16 reference of the ops above, on the CPU: every bf16 input widened to float32 (exactly), the
// float32 kernel, every bf16 output rounded once to nearest even. The CUDA bf16 kernels are checked
// against it.
Tensor widen_bf16(const Tensor& t);           // bf16 -> float32; any other dtype (or undefined) as it is
Tensor round_to(const Tensor& t, DType dtype);  // t cast to dtype when it differs; undefined stays undefined

}  // namespace mom::kernels

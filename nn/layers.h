// The basic layers: Linear, ModalityLinear, Embedding, RMSNorm, CausalConv1d.
// Initialisation follows PyTorch's defaults (Linear and Conv1d: U(+-1/sqrt(fan_in)) for weight and
// bias) unless the Mamba block overrides it; every constructor takes the Generator it draws from.
#pragma once

#include <vector>

#include "autograd/causal_conv1d.h"
#include "autograd/masked_linear.h"
#include "core/random.h"
#include "nn/module.h"

namespace mom::nn {

// y = x W^T + b over the last dim. weight (Out, In), bias (Out) optional. x (..., In) -> (..., Out).
// A bf16 x multiplies a bf16 copy of a float32 weight (weight_for); the bias stays float32.
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Generator& gen, DType dtype = DType::f32);
  Tensor forward(const Tensor& x) const;
  // The output's columns in parts of split[i] (summing to Out): split(forward(x), split, -1), computed
  // as one product per part with the part's rows of the weight when that moves fewer bytes than the
  // copy that cuts the output (parts wider than the input, as in_proj's x and z).
  std::vector<Tensor> forward_split(const Tensor& x, const std::vector<int64_t>& split) const;
  Tensor weight, bias;
};

// M experts, token t through expert m(t) (masked_linear over a Routing). Children are named
// "0".."M-1", each holding weight (Out, In) and bias (Out): the published module's
// local_experts_in_proj.1.weight layout. M = 1 computes what Linear computes.
class ModalityLinear : public Module {
 public:
  ModalityLinear(int64_t in, int64_t out, int64_t M, bool bias, Generator& gen, DType dtype = DType::f32);
  Tensor forward(const Tensor& x, const Routing& routing) const;  // x (T, In) -> (T, Out)
  // The output's columns in parts of split[i] (masked_linear_split).
  std::vector<Tensor> forward_split(const Tensor& x, const Routing& routing, const std::vector<int64_t>& split,
                                    kernels::RowOrder order = {}) const;
  std::vector<std::shared_ptr<Linear>> experts;
};

class Embedding : public Module {
 public:
  Embedding(int64_t V, int64_t D, Generator& gen, DType dtype = DType::f32);  // N(0, 0.02), as mamba
  Tensor forward(const Tensor& ids) const;  // ids (...) -> (..., D)
  Tensor weight;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t D, double eps = 1e-5, DType dtype = DType::f32);  // weight = 1
  Tensor forward(const Tensor& x) const;
  // y of dtype y_dtype: x's own, or bf16 beside a float32 x (mixed precision's pre-norm).
  Tensor forward(const Tensor& x, DType y_dtype) const;
  Tensor weight;
  double eps;
};

// Depthwise causal conv over L, weight stored as (E, 1, W) like PyTorch's Conv1d(groups=E).
class CausalConv1d : public Module {
 public:
  CausalConv1d(int64_t E, int64_t W, bool bias, Generator& gen, DType dtype = DType::f32);
  // x (B, L, E); window (B, W-1, E) or undefined; returns the output and the final window.
  // order: the rows of x and of the output in that routing's grouped order (causal_conv1d's order).
  // doc_start (B, L) bool or undefined: document starts in token order (causal_conv1d's doc_start).
  CausalConv1dResult forward(const Tensor& x, const Tensor& window, bool silu, const Routing* order = nullptr,
                             const Tensor& doc_start = Tensor()) const;
  Tensor weight, bias;
};

// The weight a product with x uses: w as it is, or its bf16 copy (cast, differentiable) when x is bf16
// and w float32: mixed precision keeps float32 master weights and multiplies in bf16.
Tensor weight_for(const Tensor& w, const Tensor& x);

// U(lo, hi) of the given shape (used by the initialisers).
Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype);

}  // namespace mom::nn

#include "nn/layers.h"

#include <cmath>

#include "autograd/ops.h"

namespace mom::nn {

Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype) {
  return rand(shape, gen, dtype, lo, hi);
}

Tensor weight_for(const Tensor& w, const Tensor& x) {
  return x.dtype() == DType::bf16 && w.dtype() == DType::f32 ? cast(w, DType::bf16) : w;
}

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator& gen, DType dtype) {
  double k = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", uniform({out, in}, -k, k, gen, dtype));
  if (with_bias) bias = register_parameter("bias", uniform({out}, -k, k, gen, dtype), /*weight_decay=*/false);
}

Tensor Linear::forward(const Tensor& x) const {
  MOM_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "Linear",
            "input has " << (x.dim() ? x.size(-1) : 0) << " features, the layer expects " << weight.size(1));
  Shape out_shape = x.shape();
  out_shape.back() = weight.size(0);
  return reshape(linear(reshape(x, {-1, weight.size(1)}), weight_for(weight, x), bias), out_shape);
}

std::vector<Tensor> Linear::forward_split(const Tensor& x, const std::vector<int64_t>& split) const {
  MOM_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "Linear",
            "input has " << (x.dim() ? x.size(-1) : 0) << " features, the layer expects " << weight.size(1));
  int64_t total = 0;
  for (int64_t n : split) {
    MOM_CHECK(n >= 1, "Linear", "split sizes must be positive, got " << n);
    total += n;
  }
  MOM_CHECK(total == weight.size(0), "Linear", "split sizes sum to " << total << ", the layer has " << weight.size(0)
                                                                     << " outputs");
  // One product per part reads x once more per extra part; one product and a split copy read and
  // write y once more. Whichever moves fewer bytes.
  const int64_t extra_reads = (static_cast<int64_t>(split.size()) - 1) * weight.size(1);
  if (extra_reads >= 2 * weight.size(0)) return mom::split(forward(x), split, -1);
  Shape out_shape = x.shape();
  const Tensor rows = reshape(x, {-1, weight.size(1)}), w = weight_for(weight, x);
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t n : split) {
    Tensor y = linear(rows, narrow(w, 0, start, n), bias.defined() ? narrow(bias, 0, start, n) : Tensor());
    out_shape.back() = n;
    parts.push_back(reshape(y, out_shape));
    start += n;
  }
  return parts;
}

ModalityLinear::ModalityLinear(int64_t in, int64_t out, int64_t M, bool bias, Generator& gen, DType dtype) {
  MOM_CHECK(M >= 1, "ModalityLinear", "needs at least one expert, got " << M);
  for (int64_t m = 0; m < M; ++m)
    experts.push_back(register_module(std::to_string(m), std::make_shared<Linear>(in, out, bias, gen, dtype)));
}

Tensor ModalityLinear::forward(const Tensor& x, const Routing& routing) const {
  return forward_split(x, routing, {})[0];  // no split, token order: masked_linear
}

std::vector<Tensor> ModalityLinear::forward_split(const Tensor& x, const Routing& routing,
                                                  const std::vector<int64_t>& split, kernels::RowOrder order) const {
  MOM_CHECK(routing.num_modalities == static_cast<int64_t>(experts.size()), "ModalityLinear",
            "routing is over " << routing.num_modalities << " modalities, the layer has " << experts.size()
                               << " experts");
  std::vector<Tensor> w, b;
  for (const auto& e : experts) {
    w.push_back(weight_for(e->weight, x));
    if (e->bias.defined()) b.push_back(e->bias);
  }
  return masked_linear_split(x, routing, w, b, split, order);
}

Embedding::Embedding(int64_t V, int64_t D, Generator& gen, DType dtype) {
  weight = register_parameter("weight", randn({V, D}, gen, dtype, 0.0, 0.02), /*weight_decay=*/false);
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(ids, weight); }

RMSNorm::RMSNorm(int64_t D, double eps_, DType dtype) : eps(eps_) {
  weight = register_parameter("weight", ones({D}, dtype), /*weight_decay=*/false);
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight, eps); }

Tensor RMSNorm::forward(const Tensor& x, DType y_dtype) const { return rms_norm(x, weight, eps, y_dtype); }

CausalConv1d::CausalConv1d(int64_t E, int64_t W, bool with_bias, Generator& gen, DType dtype) {
  double k = 1.0 / std::sqrt(static_cast<double>(W));  // fan_in = (in_channels / groups) * W = W
  weight = register_parameter("weight", uniform({E, 1, W}, -k, k, gen, dtype));
  if (with_bias) bias = register_parameter("bias", uniform({E}, -k, k, gen, dtype), /*weight_decay=*/false);
}

CausalConv1dResult CausalConv1d::forward(const Tensor& x, const Tensor& window, bool silu, const Routing* order,
                                         const Tensor& doc_start) const {
  return causal_conv1d({x, reshape(weight, {weight.size(0), weight.size(2)}), bias, window, doc_start, silu, order});
}

}  // namespace mom::nn

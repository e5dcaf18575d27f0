// Differentiable masked_linear and its gradient-check cases.
#include "autograd/masked_linear.h"

#include <string>

#include "autograd/function_util.h"
#include "autograd/grad_perturbation.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;

namespace {

// Inputs in order: x, weight[0 .. M), bias[0 .. M) (when given). Outputs: y, or its column parts.
struct MaskedLinearBackward : Node {
  Routing routing;
  SavedTensor x;
  std::vector<SavedTensor> weight;
  bool has_bias = false;
  kernels::RowOrder order;
  std::string name() const override { return "masked_linear"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    std::vector<Tensor> w;
    for (const SavedTensor& s : weight) w.push_back(s.unpack(*this));
    bool need_dparams = false;
    for (size_t i = 1; i < next_edges.size(); ++i) need_dparams = need_dparams || next_edges[i].valid();
    std::vector<Tensor> dy;  // a part without a gradient counts as zeros
    for (size_t i = 0; i < outputs.size(); ++i) dy.push_back(kernel_input(grad_or_zeros(g, i)));
    kernels::MaskedLinearGrads grads = kernels::masked_linear_backward_split(
        dy, x.unpack(*this), routing, w, has_bias, next_edges[0].valid(), need_dparams, order);
    std::vector<Tensor> result{grads.dx};
    result.insert(result.end(), grads.dweight.begin(), grads.dweight.end());
    if (has_bias) result.insert(result.end(), grads.dbias.begin(), grads.dbias.end());
    if (autograd::grad_perturbation_active()) {  // test-only
      std::vector<const char*> names(result.size(), "weight");
      names[0] = "x";
      for (size_t i = 1 + w.size(); i < names.size(); ++i) names[i] = "bias";
      autograd::perturb_grads("masked_linear", names.data(), result);
    }
    return result;
  }
  void release_saved() override {
    x.reset();
    for (SavedTensor& s : weight) s.reset();
  }
};

}  // namespace

std::vector<Tensor> masked_linear_split(const Tensor& x_in, const Routing& routing,
                                        const std::vector<Tensor>& weight_in, const std::vector<Tensor>& bias_in,
                                        const std::vector<int64_t>& split, kernels::RowOrder order) {
  Tensor x = kernel_input(x_in);
  std::vector<Tensor> weight, bias;
  for (const Tensor& w : weight_in) weight.push_back(kernel_input(w));
  for (const Tensor& b : bias_in) bias.push_back(kernel_input(b));
  const bool plain = split.empty() && !order.x_grouped && !order.y_grouped;
  const int64_t out = weight.empty() ? 0 : weight[0].size(0);
  const std::vector<int64_t> parts = split.empty() ? std::vector<int64_t>{out} : split;
  std::vector<Tensor> ys = plain ? std::vector<Tensor>{kernels::masked_linear_forward(x, routing, weight, bias)}
                                 : kernels::masked_linear_forward_split(x, routing, weight, bias, parts, order);
  std::vector<Tensor> inputs{x_in};
  inputs.insert(inputs.end(), weight_in.begin(), weight_in.end());
  inputs.insert(inputs.end(), bias_in.begin(), bias_in.end());
  if (needs_grad(inputs)) {
    auto node = make_node<MaskedLinearBackward>(inputs);
    node->routing = routing;
    node->x = SavedTensor(x);
    for (const Tensor& w : weight) node->weight.emplace_back(w);
    node->has_bias = !bias.empty();
    node->order = order;
    std::vector<Tensor*> outs;
    for (Tensor& y : ys) outs.push_back(&y);
    set_history(node, outs);
  }
  return ys;
}

Tensor masked_linear(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                     const std::vector<Tensor>& bias) {
  return masked_linear_split(x, routing, weight, bias, {})[0];
}

// ---- gradient-check cases ----

namespace autograd {

namespace {

struct LinearCase {
  const char* variant;
  std::vector<int32_t> ids;
  int64_t M, In, Out;
  bool bias;
  std::vector<int64_t> split;  // masked_linear_split's parts; empty: masked_linear
  kernels::RowOrder order;
};

}  // namespace

void add_masked_linear_gradcheck_cases(std::vector<GradcheckCase>& cases) {
  // Inputs: x, ids (passed through, not checked), weight[0..M), bias[0..M). An absent modality's
  // expert gets no gradient, which gradcheck reads as zeros and finite differences confirm. The last
  // case is checked by random projections, the others by the full Jacobian.
  static const LinearCase shapes[] = {
      {"T=4 In=3 Out=2 M=1, bias", {0, 0, 0, 0}, 1, 3, 2, true, {}, {}},
      {"T=5 In=3 Out=4 M=3, bias", {2, 0, 2, 1, 0}, 3, 3, 4, true, {}, {}},
      {"T=5 In=2 Out=3 M=3 absent 1, bias", {0, 2, 2, 0, 2}, 3, 2, 3, true, {}, {}},
      {"T=4 In=4 Out=3 M=2", {1, 1, 0, 1}, 2, 4, 3, false, {}, {}},
      {"T=13 In=5 Out=7 M=3, bias", {1, 0, 2, 2, 0, 1, 1, 0, 2, 1, 0, 0, 2}, 3, 5, 7, true, {}, {}},
      {"T=7 In=3 Out=7 M=3, split 2+1+4, bias", {2, 0, 1, 1, 0, 2, 0}, 3, 3, 7, true, {2, 1, 4}, {}},
      {"T=6 In=4 Out=8 M=2 sorted, split 4+4", {0, 0, 0, 1, 1, 1}, 2, 4, 8, false, {4, 4}, {}},
      {"T=7 In=2 Out=6 M=3, split 3+3, y grouped, bias", {1, 2, 0, 0, 2, 1, 2}, 3, 2, 6, true, {3, 3}, {false, true}},
      {"T=7 In=5 Out=3 M=3, split 1+2, x and y grouped", {1, 2, 0, 0, 2, 1, 2}, 3, 5, 3, false, {1, 2}, {true, true}},
      {"T=6 In=3 Out=4 M=2, x grouped, bias", {1, 0, 1, 1, 0, 0}, 2, 3, 4, true, {}, {true, false}},
  };
  for (const LinearCase& c : shapes) {
    const bool general = !c.split.empty() || c.order.x_grouped || c.order.y_grouped;
    cases.push_back({general ? "masked_linear_split" : "masked_linear", c.variant, [c, general](Generator& gen) {
                       const int64_t T = static_cast<int64_t>(c.ids.size());
                       GradcheckProblem p;
                       p.inputs = {randn({T, c.In}, gen, DType::f64), from_vector<int32_t>(c.ids, {T})};
                       p.names = {"x", "ids"};
                       for (int64_t m = 0; m < c.M; ++m) {
                         p.inputs.push_back(randn({c.Out, c.In}, gen, DType::f64));
                         p.names.push_back("weight[" + std::to_string(m) + "]");
                       }
                       for (int64_t m = 0; c.bias && m < c.M; ++m) {
                         p.inputs.push_back(randn({c.Out}, gen, DType::f64));
                         p.names.push_back("bias[" + std::to_string(m) + "]");
                       }
                       const int64_t M = c.M;
                       const bool has_bias = c.bias;
                       const std::vector<int64_t> split = c.split;
                       const kernels::RowOrder order = c.order;
                       p.fn = [M, has_bias, split, order, general](const std::vector<Tensor>& in) {
                         std::vector<Tensor> weight(in.begin() + 2, in.begin() + 2 + M), bias;
                         if (has_bias) bias.assign(in.begin() + 2 + M, in.end());
                         Routing routing = Routing::from_modalities(in[1], M);
                         if (general) return masked_linear_split(in[0], routing, weight, bias, split, order);
                         return std::vector<Tensor>{masked_linear(in[0], routing, weight, bias)};
                       };
                       return p;
                     }});
  }
}

}  // namespace autograd
}  // namespace mom

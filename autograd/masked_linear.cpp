// Differentiable masked_linear and its gradient-check cases.
#include "autograd/masked_linear.h"

#include <string>

#include "autograd/function_util.h"
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

// Inputs in order: x, weight[0 .. M), bias[0 .. M) (when given). One output: y.
struct MaskedLinearBackward : Node {
  Routing routing;
  SavedTensor x;
  std::vector<SavedTensor> weight;
  bool has_bias = false;
  std::string name() const override { return "masked_linear"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    std::vector<Tensor> w;
    for (const SavedTensor& s : weight) w.push_back(s.unpack(*this));
    bool need_dparams = false;
    for (size_t i = 1; i < next_edges.size(); ++i) need_dparams = need_dparams || next_edges[i].valid();
    kernels::MaskedLinearGrads grads = kernels::masked_linear_backward(
        kernel_input(g[0]), x.unpack(*this), routing, w, has_bias, next_edges[0].valid(), need_dparams);
    std::vector<Tensor> result{grads.dx};
    result.insert(result.end(), grads.dweight.begin(), grads.dweight.end());
    if (has_bias) result.insert(result.end(), grads.dbias.begin(), grads.dbias.end());
    return result;
  }
  void release_saved() override {
    x.reset();
    for (SavedTensor& s : weight) s.reset();
  }
};

}  // namespace

Tensor masked_linear(const Tensor& x_in, const Routing& routing, const std::vector<Tensor>& weight_in,
                     const std::vector<Tensor>& bias_in) {
  Tensor x = kernel_input(x_in);
  std::vector<Tensor> weight, bias;
  for (const Tensor& w : weight_in) weight.push_back(kernel_input(w));
  for (const Tensor& b : bias_in) bias.push_back(kernel_input(b));
  Tensor y = kernels::masked_linear_forward(x, routing, weight, bias);
  std::vector<Tensor> inputs{x_in};
  inputs.insert(inputs.end(), weight_in.begin(), weight_in.end());
  inputs.insert(inputs.end(), bias_in.begin(), bias_in.end());
  if (needs_grad(inputs)) {
    auto node = make_node<MaskedLinearBackward>(inputs);
    node->routing = routing;
    node->x = SavedTensor(x);
    for (const Tensor& w : weight) node->weight.emplace_back(w);
    node->has_bias = !bias.empty();
    set_history(node, {&y});
  }
  return y;
}

// ---- gradient-check cases ----

namespace autograd {

namespace {

struct LinearCase {
  const char* variant;
  std::vector<int32_t> ids;
  int64_t M, In, Out;
  bool bias;
};

}  // namespace

void add_masked_linear_gradcheck_cases(std::vector<GradcheckCase>& cases) {
  // Inputs: x, ids (passed through, not checked), weight[0..M), bias[0..M). An absent modality's
  // expert gets no gradient, which gradcheck reads as zeros and finite differences confirm. The last
  // case is checked by random projections, the others by the full Jacobian.
  static const LinearCase shapes[] = {
      {"T=4 In=3 Out=2 M=1, bias", {0, 0, 0, 0}, 1, 3, 2, true},
      {"T=5 In=3 Out=4 M=3, bias", {2, 0, 2, 1, 0}, 3, 3, 4, true},
      {"T=5 In=2 Out=3 M=3 absent 1, bias", {0, 2, 2, 0, 2}, 3, 2, 3, true},
      {"T=4 In=4 Out=3 M=2", {1, 1, 0, 1}, 2, 4, 3, false},
      {"T=13 In=5 Out=7 M=3, bias", {1, 0, 2, 2, 0, 1, 1, 0, 2, 1, 0, 0, 2}, 3, 5, 7, true},
  };
  for (const LinearCase& c : shapes) {
    cases.push_back({"masked_linear", c.variant, [c](Generator& gen) {
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
                       p.fn = [M, has_bias](const std::vector<Tensor>& in) {
                         std::vector<Tensor> weight(in.begin() + 2, in.begin() + 2 + M), bias;
                         if (has_bias) bias.assign(in.begin() + 2 + M, in.end());
                         Routing routing = Routing::from_modalities(in[1], M);
                         return std::vector<Tensor>{masked_linear(in[0], routing, weight, bias)};
                       };
                       return p;
                     }});
  }
}

}  // namespace autograd
}  // namespace mom

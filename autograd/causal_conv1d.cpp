// Differentiable causal_conv1d and its gradient-check cases.
#include "autograd/causal_conv1d.h"

#include <optional>
#include <string>

#include "autograd/function_util.h"
#include "autograd/grad_perturbation.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "kernels/causal_conv1d.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;

namespace {

// The node's inputs, in the order of make_node and of the gradients apply returns, and its outputs.
enum ConvInput : size_t { kX, kWeight, kBias, kInitialWindow, kNumConvInputs };
enum ConvOutput : size_t { kY, kFinalWindow };

struct CausalConv1dBackward : Node {
  bool silu;
  std::optional<kernels::Routing> order;  // the forward's grouped row order, if any
  SavedTensor x, weight, bias, initial_window;
  SavedTensor doc_start;  // not an input of make_node: no gradient
  CausalConv1dBackward(bool s, const kernels::Routing* o) : silu(s) {
    if (o) order = *o;
  }
  std::string name() const override { return "causal_conv1d"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    // dy (zeros when only the final window got a gradient) is in x's row order, like out.
    const kernels::CausalConv1dParams p{x.unpack(*this),         weight.unpack(*this),     bias.unpack(*this),
                                        initial_window.unpack(*this), doc_start.unpack(*this), silu,
                                        order ? &*order : nullptr};
    kernels::CausalConv1dGrads grads =
        kernels::causal_conv1d_backward(p, kernel_input(grad_or_zeros(g, kY)), kernel_input(g[kFinalWindow]));
    std::vector<Tensor> result(kNumConvInputs);
    result[kX] = grads.dx;
    result[kWeight] = grads.dweight;
    result[kBias] = grads.dbias;
    result[kInitialWindow] = grads.dinitial_window;
    static const char* const names[kNumConvInputs] = {"x", "weight", "bias", "initial_window"};
    autograd::perturb_grads("causal_conv1d", names, result);  // test-only; off: one relaxed load
    return result;
  }
  void release_saved() override {
    x.reset();
    weight.reset();
    bias.reset();
    initial_window.reset();
    doc_start.reset();
    order.reset();
  }
};

}  // namespace

CausalConv1dResult causal_conv1d(const kernels::CausalConv1dParams& in) {
  kernels::CausalConv1dParams p = in;  // the kernels take detached, contiguous tensors
  for (Tensor* t : {&p.x, &p.weight, &p.bias, &p.initial_window, &p.doc_start}) *t = kernel_input(*t);
  kernels::CausalConv1dOutput fwd = kernels::causal_conv1d_forward(p);
  CausalConv1dResult result{fwd.y, fwd.final_window};
  std::vector<Tensor> inputs(kNumConvInputs);  // in ConvInput order
  inputs[kX] = in.x;
  inputs[kWeight] = in.weight;
  inputs[kBias] = in.bias;
  inputs[kInitialWindow] = in.initial_window;
  if (needs_grad(inputs)) {
    auto node = make_node<CausalConv1dBackward>(inputs, in.silu, in.order);
    node->x = SavedTensor(p.x);
    node->weight = SavedTensor(p.weight);
    node->bias = SavedTensor(p.bias);
    node->initial_window = SavedTensor(p.initial_window);
    node->doc_start = SavedTensor(p.doc_start);
    set_history(node, {&result.out, &result.final_window});
  }
  return result;
}

// ---- gradient-check cases ----

namespace autograd {

namespace {

struct ConvCase {
  int64_t B, L, E, W;
  bool bias, initial_window, silu;
};

std::string conv_variant(const ConvCase& c) {
  std::string v = "B=" + std::to_string(c.B) + " L=" + std::to_string(c.L) + " E=" + std::to_string(c.E) +
                  " W=" + std::to_string(c.W);
  if (c.bias) v += ", bias";
  if (c.initial_window) v += ", init";
  if (c.silu) v += ", silu";
  return v;
}

// A case's problem: x, weight, bias and initial_window (drawn in that order), then with `grouped`
// modality ids (an input, so that the routing is built on the device the inputs are moved to: x and out
// in its grouped row order) and with `docs` document starts (gradcheck_doc_starts).
GradcheckProblem conv_problem(const ConvCase& c, bool grouped, bool docs, Generator& gen) {
  constexpr int64_t M = 3;
  GradcheckProblem p;
  p.inputs = {randn({c.B, c.L, c.E}, gen, DType::f64), randn({c.E, c.W}, gen, DType::f64, 0, 0.5),
              c.bias ? randn({c.E}, gen, DType::f64) : Tensor(),
              c.initial_window ? randn({c.B, c.W - 1, c.E}, gen, DType::f64) : Tensor()};
  p.names = {"x", "weight", "bias", "initial_window"};
  if (grouped) {
    p.inputs.push_back(randint({c.B * c.L}, 0, M, gen));
    p.names.push_back("ids");
  }
  if (docs) {
    p.inputs.push_back(gradcheck_doc_starts(c.B, c.L));
    p.names.push_back("doc_start");
  }
  p.fn = [silu = c.silu, grouped, docs](const std::vector<Tensor>& in) {
    std::optional<kernels::Routing> routing;
    if (grouped) routing = kernels::Routing::from_modalities(in[4], M);
    CausalConv1dResult r = causal_conv1d(
        {in[0], in[1], in[2], in[3], docs ? in.back() : Tensor(), silu, routing ? &*routing : nullptr});
    return std::vector<Tensor>{r.out, r.final_window};
  };
  return p;
}

}  // namespace

void add_causal_conv1d_gradcheck_cases(std::vector<GradcheckCase>& cases) {
  // Tiny shapes get the full Jacobian; the larger ones random projections. L < W-1 makes the final
  // window reach back into the initial window; L = 1 is one step of recurrent inference.
  static const std::vector<ConvCase> shapes = {
      {2, 5, 3, 4, true, true, true},   {1, 1, 3, 4, true, true, true},   {2, 2, 3, 4, true, true, false},
      {1, 3, 2, 8, true, true, true},   {2, 7, 3, 2, false, false, true}, {2, 6, 5, 4, false, true, false},
      {2, 13, 7, 4, true, true, true},  {3, 11, 6, 8, true, false, true}, {1, 9, 5, 2, true, true, true},
  };
  // x and out in the grouped row order of a routing over the B*L tokens, from random modality ids.
  static const std::vector<ConvCase> grouped = {{2, 6, 3, 4, true, true, true}, {3, 5, 2, 3, false, false, false}};
  // Packed rows (gradcheck_doc_starts: length-1 documents, boundaries at 0 and L-1, a whole-row
  // document), with documents shorter than the window (W = 8), L < W-1 (the final window zeroed before
  // the last document, the initial window's gradient from the first one only), and grouped rows.
  static const std::vector<ConvCase> documents = {{2, 6, 2, 4, true, true, true},  {3, 13, 5, 4, true, true, true},
                                                  {3, 11, 4, 8, true, true, false}, {3, 2, 3, 4, true, true, true},
                                                  {3, 9, 3, 2, false, true, true},  {2, 10, 3, 3, false, false, true}};
  static const std::vector<ConvCase> grouped_documents = {{3, 7, 3, 4, true, true, true}};
  struct Family {
    const std::vector<ConvCase>* shapes;
    bool grouped, docs;
    const char* suffix;
  };
  for (const Family& f : {Family{&shapes, false, false, ""}, Family{&grouped, true, false, ", grouped rows"},
                          Family{&documents, false, true, ", docs"},
                          Family{&grouped_documents, true, true, ", grouped rows, docs"}})
    for (const ConvCase& c : *f.shapes)
      cases.push_back({"causal_conv1d", conv_variant(c) + f.suffix, [c, g = f.grouped, d = f.docs](Generator& gen) {
                         return conv_problem(c, g, d, gen);
                       }});
}

}  // namespace autograd
}  // namespace mom

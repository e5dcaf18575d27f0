// Differentiable elementwise ops: unary maps and broadcasting binary ops.
#include "autograd/function_util.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/elementwise.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;
using kernels::BinaryOp;
using kernels::UnaryOp;

namespace {

struct UnaryBackward : Node {
  UnaryOp op;
  SavedTensor x, y;
  explicit UnaryBackward(UnaryOp o) : op(o) {}
  std::string name() const override { return kernels::unary_name(op); }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {kernels::unary_backward(op, kernel_input(g[0]), x.unpack(*this), y.unpack(*this))};
  }
  void release_saved() override { x.reset(); y.reset(); }
};

Tensor record_unary(UnaryOp op, const Tensor& x_in) {
  Tensor x = kernel_input(x_in);
  Tensor y = kernels::unary(op, x);
  if (needs_grad({x_in})) {
    auto node = make_node<UnaryBackward>({x_in}, op);
    node->x = SavedTensor(x);
    node->y = SavedTensor(y);
    set_history(node, {&y});
  }
  return y;
}

struct BinaryBackward : Node {
  BinaryOp op;
  SavedTensor a, b;  // saved only where the op's gradient needs them (mul, div)
  explicit BinaryBackward(BinaryOp o) : op(o) {}
  std::string name() const override { return kernels::binary_name(op); }
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    Tensor g = kernel_input(grads[0]);
    const Shape& sa = inputs[0].shape;
    const Shape& sb = inputs[1].shape;
    bool need_a = next_edges[0].valid(), need_b = next_edges[1].valid();
    Tensor ga, gb;
    switch (op) {
      case BinaryOp::add:
        if (need_a) ga = kernels::sum_to_shape(g, sa);
        if (need_b) gb = kernels::sum_to_shape(g, sb);
        break;
      case BinaryOp::sub:
        if (need_a) ga = kernels::sum_to_shape(g, sa);
        if (need_b) gb = kernels::sum_to_shape(kernels::unary(UnaryOp::neg, g), sb);
        break;
      case BinaryOp::mul:
        if (need_a) ga = kernels::sum_to_shape(kernels::mul(g, b.unpack(*this)), sa);
        if (need_b) gb = kernels::sum_to_shape(kernels::mul(g, a.unpack(*this)), sb);
        break;
      case BinaryOp::div: {
        Tensor bv = b.unpack(*this);
        Tensor g_over_b = kernels::div(g, bv);
        if (need_a) ga = kernels::sum_to_shape(g_over_b, sa);
        // d(a/b)/db = -a / b^2 = -(a/b) / b
        if (need_b)
          gb = kernels::sum_to_shape(kernels::unary(UnaryOp::neg, kernels::mul(g_over_b, kernels::div(a.unpack(*this), bv))), sb);
        break;
      }
    }
    return {ga, gb};
  }
  void release_saved() override { a.reset(); b.reset(); }
};

Tensor record_binary(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  Tensor a = kernel_input(a_in), b = kernel_input(b_in);
  Tensor out = kernels::binary(op, a, b);
  if (needs_grad({a_in, b_in})) {
    auto node = make_node<BinaryBackward>({a_in, b_in}, op);
    if (op == BinaryOp::mul || op == BinaryOp::div) {
      node->a = SavedTensor(a);
      node->b = SavedTensor(b);
    }
    set_history(node, {&out});
  }
  return out;
}

struct PowBackward : Node {
  double p;
  SavedTensor x;
  explicit PowBackward(double e) : p(e) {}
  std::string name() const override { return "pow"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor xv = x.unpack(*this);
    return {kernels::mul(kernel_input(g[0]), kernels::scale(kernels::pow_scalar(xv, p - 1.0), p))};
  }
  void release_saved() override { x.reset(); }
};

struct ScaleBackward : Node {
  double s;
  explicit ScaleBackward(double f) : s(f) {}
  std::string name() const override { return "mul_scalar"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {kernels::scale(kernel_input(g[0]), s)}; }
};

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return record_binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return record_binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return record_binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return record_binary(BinaryOp::div, a, b); }
Tensor neg(const Tensor& x) { return record_unary(UnaryOp::neg, x); }
Tensor exp(const Tensor& x) { return record_unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return record_unary(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return record_unary(UnaryOp::sqrt, x); }
Tensor sigmoid(const Tensor& x) { return record_unary(UnaryOp::sigmoid, x); }
Tensor silu(const Tensor& x) { return record_unary(UnaryOp::silu, x); }
Tensor softplus(const Tensor& x) { return record_unary(UnaryOp::softplus, x); }
Tensor tanh(const Tensor& x) { return record_unary(UnaryOp::tanh, x); }

Tensor pow(const Tensor& x_in, double p) {
  Tensor x = kernel_input(x_in);
  Tensor y = kernels::pow_scalar(x, p);
  if (needs_grad({x_in})) {
    auto node = make_node<PowBackward>({x_in}, p);
    node->x = SavedTensor(x);
    set_history(node, {&y});
  }
  return y;
}

Tensor mul(const Tensor& x_in, double s) {
  Tensor y = kernels::scale(kernel_input(x_in), s);
  if (needs_grad({x_in})) set_history(make_node<ScaleBackward>({x_in}, s), {&y});
  return y;
}

Tensor add(const Tensor& x, double s) { return add(x, full({}, s, x.dtype(), x.device())); }

// ---- gradient-check cases ----

namespace autograd {

void add_elementwise_gradcheck_cases(std::vector<GradcheckCase>& cases) {
  struct U { const char* op; Tensor (*f)(const Tensor&); double lo, hi; };
  // log and sqrt need positive inputs; the others take any real input.
  static const U unaries[] = {
      {"neg", &mom::neg, -2, 2},         {"exp", &mom::exp, -2, 2},          {"log", &mom::log, 0.5, 3},
      {"sqrt", &mom::sqrt, 0.5, 3},      {"sigmoid", &mom::sigmoid, -3, 3}, {"silu", &mom::silu, -3, 3},
      {"softplus", &mom::softplus, -3, 3}, {"tanh", &mom::tanh, -2, 2}};
  for (const U& u : unaries) {
    cases.push_back({u.op, "(3, 4)", [u](Generator& gen) {
                       GradcheckProblem p;
                       p.inputs = {rand({3, 4}, gen, DType::f64, u.lo, u.hi)};
                       p.names = {"x"};
                       p.fn = [u](const std::vector<Tensor>& in) { return std::vector<Tensor>{u.f(in[0])}; };
                       return p;
                     }});
  }
  cases.push_back({"softplus", "above threshold 20", [](Generator& gen) {
                     GradcheckProblem p;
                     p.inputs = {rand({5}, gen, DType::f64, 21, 25)};
                     p.names = {"x"};
                     p.fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{softplus(in[0])}; };
                     return p;
                   }});
  cases.push_back({"pow", "p = 2.5", [](Generator& gen) {
                     GradcheckProblem p;
                     p.inputs = {rand({2, 3}, gen, DType::f64, 0.5, 2)};
                     p.names = {"x"};
                     p.fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{pow(in[0], 2.5)}; };
                     return p;
                   }});
  struct B { const char* op; Tensor (*f)(const Tensor&, const Tensor&); };
  static const B binaries[] = {{"add", &mom::add}, {"sub", &mom::sub}, {"mul", &mom::mul}, {"div", &mom::div}};
  for (const B& b : binaries) {
    cases.push_back({b.op, "(2, 3) . (2, 3)", [b](Generator& gen) {
                       GradcheckProblem p;
                       p.inputs = {randn({2, 3}, gen, DType::f64), rand({2, 3}, gen, DType::f64, 0.5, 2)};
                       p.names = {"a", "b"};
                       p.fn = [b](const std::vector<Tensor>& in) { return std::vector<Tensor>{b.f(in[0], in[1])}; };
                       return p;
                     }});
    cases.push_back({b.op, "broadcast (3, 1, 4) . (2, 1)", [b](Generator& gen) {
                       GradcheckProblem p;
                       p.inputs = {randn({3, 1, 4}, gen, DType::f64), rand({2, 1}, gen, DType::f64, 0.5, 2)};
                       p.names = {"a", "b"};
                       p.fn = [b](const std::vector<Tensor>& in) { return std::vector<Tensor>{b.f(in[0], in[1])}; };
                       return p;
                     }});
  }
  cases.push_back({"mul", "same input twice (x * x)", [](Generator& gen) {
                     GradcheckProblem p;
                     p.inputs = {randn({4}, gen, DType::f64)};
                     p.names = {"x"};
                     p.fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{mul(in[0], in[0])}; };
                     return p;
                   }});
  cases.push_back({"mul_scalar", "(3,)", [](Generator& gen) {
                     GradcheckProblem p;
                     p.inputs = {randn({3}, gen, DType::f64)};
                     p.names = {"x"};
                     p.fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * -1.5 + 2.0}; };
                     return p;
                   }});
}

}  // namespace autograd
}  // namespace mom

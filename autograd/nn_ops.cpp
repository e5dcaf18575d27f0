// Differentiable fused nn ops: softmax, log_softmax, cross_entropy, embedding, rms_norm. Each runs one
// forward kernel and, when grad is needed, records a Node whose backward runs the op's own backward
// kernel (see kernels/softmax.h, cross_entropy.h, embedding.h, rms_norm.h for the math and what is saved).
// Gradients flow to: softmax/log_softmax x; cross_entropy logits (not targets, not the weight, which
// is a constant); embedding weight (not ids); rms_norm x and weight.
#include "autograd/function_util.h"
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/rms_norm.h"
#include "kernels/softmax.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;

namespace {

// softmax and log_softmax: both backward kernels need only the output y.
struct SoftmaxBackward : Node {
  bool log_output;
  int64_t dim;
  SavedTensor y;
  SoftmaxBackward(bool log, int64_t d) : log_output(log), dim(d) {}
  std::string name() const override { return log_output ? "log_softmax" : "softmax"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor dy = kernel_input(g[0]);
    Tensor yv = y.unpack(*this);
    return {log_output ? kernels::log_softmax_backward(dy, yv, dim) : kernels::softmax_backward(dy, yv, dim)};
  }
  void release_saved() override { y.reset(); }
};

Tensor record_softmax(const Tensor& x_in, int64_t dim, bool log_output) {
  const char* op = log_output ? "log_softmax" : "softmax";
  MOM_CHECK(x_in.defined(), op, "x is undefined");
  MOM_CHECK(x_in.dim() >= 1, op, "x must have at least 1 dimension, got a scalar");
  const int64_t d = wrap_dim(dim, x_in.dim(), op);
  Tensor x = kernel_input(x_in);
  Tensor y = log_output ? kernels::log_softmax_forward(x, d) : kernels::softmax_forward(x, d);
  if (needs_grad({x_in})) {
    auto node = make_node<SoftmaxBackward>({x_in}, log_output, d);
    node->y = SavedTensor(y);
    set_history(node, {&y});
  }
  return y;
}

struct CrossEntropyBackward : Node {
  int64_t ignore_index;
  SavedTensor logits, targets, lse, weight;
  explicit CrossEntropyBackward(int64_t ignore) : ignore_index(ignore) {}
  std::string name() const override { return "cross_entropy"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {kernels::cross_entropy_backward(kernel_input(g[0]), logits.unpack(*this), targets.unpack(*this),
                                            lse.unpack(*this), ignore_index, weight.unpack(*this))};
  }
  void release_saved() override { logits.reset(); targets.reset(); lse.reset(); weight.reset(); }
};

struct EmbeddingBackward : Node {
  SavedTensor ids;
  std::string name() const override { return "embedding"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {kernels::embedding_backward(kernel_input(g[0]), ids.unpack(*this), inputs[0].shape[0])};
  }
  void release_saved() override { ids.reset(); }
};

struct RmsNormBackwardNode : Node {
  SavedTensor x, weight, rstd;
  std::string name() const override { return "rms_norm"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    kernels::RmsNormBackward r =
        kernels::rms_norm_backward(kernel_input(g[0]), x.unpack(*this), weight.unpack(*this), rstd.unpack(*this));
    return {r.dx, r.dweight};
  }
  void release_saved() override { x.reset(); weight.reset(); rstd.reset(); }
};

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return record_softmax(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return record_softmax(x, dim, true); }

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets_in, const CrossEntropyOptions& opts) {
  MOM_CHECK(!(opts.weight.defined() && opts.weight.requires_grad() && GradMode::is_enabled()), "cross_entropy",
            "weight is a constant and gets no gradient; pass weight.detach()");
  Tensor logits = kernel_input(logits_in), targets = kernel_input(targets_in), weight = kernel_input(opts.weight);
  kernels::CrossEntropyForward f = kernels::cross_entropy_forward(logits, targets, opts.ignore_index, weight);
  Tensor loss = f.loss;
  if (needs_grad({logits_in})) {
    auto node = make_node<CrossEntropyBackward>({logits_in}, opts.ignore_index);
    node->logits = SavedTensor(logits);
    node->targets = SavedTensor(targets);
    node->lse = SavedTensor(f.lse);
    node->weight = SavedTensor(weight);
    set_history(node, {&loss});
  }
  return loss;
}

Tensor embedding(const Tensor& ids_in, const Tensor& weight_in) {
  Tensor ids = kernel_input(ids_in), weight = kernel_input(weight_in);
  Tensor y = kernels::embedding_forward(ids, weight);
  if (needs_grad({weight_in})) {
    auto node = make_node<EmbeddingBackward>({weight_in});
    node->ids = SavedTensor(ids);
    set_history(node, {&y});
  }
  return y;
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight_in, double eps) {
  return rms_norm(x_in, weight_in, eps, x_in.dtype());
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight_in, double eps, DType y_dtype) {
  Tensor x = kernel_input(x_in), weight = kernel_input(weight_in);
  kernels::RmsNormForward f = kernels::rms_norm_forward(x, weight, eps, y_dtype);
  Tensor y = f.y;
  if (needs_grad({x_in, weight_in})) {
    auto node = make_node<RmsNormBackwardNode>({x_in, weight_in});
    node->x = SavedTensor(x);
    node->weight = SavedTensor(weight);
    node->rstd = SavedTensor(f.rstd);
    set_history(node, {&y});
  }
  return y;
}

// ---- gradient-check cases ----

namespace autograd {

namespace {

GradcheckProblem one_input(Tensor x, const char* name, std::function<Tensor(const Tensor&)> f) {
  GradcheckProblem p;
  p.inputs = {std::move(x)};
  p.names = {name};
  p.fn = [f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0])}; };
  return p;
}

void add_softmax_cases(std::vector<GradcheckCase>& cases) {
  struct S { const char* op; Tensor (*f)(const Tensor&, int64_t); };
  static const S ops[] = {{"softmax", &mom::softmax}, {"log_softmax", &mom::log_softmax}};
  for (const S& s : ops) {
    cases.push_back({s.op, "(3, 5), dim -1", [s](Generator& gen) {
                       return one_input(randn({3, 5}, gen, DType::f64, 0, 2), "x",
                                        [s](const Tensor& x) { return s.f(x, -1); });
                     }});
    cases.push_back({s.op, "(2, 4, 3), dim 1", [s](Generator& gen) {
                       return one_input(randn({2, 4, 3}, gen, DType::f64, 0, 2), "x",
                                        [s](const Tensor& x) { return s.f(x, 1); });
                     }});
  }
}

void add_cross_entropy_cases(std::vector<GradcheckCase>& cases) {
  cases.push_back({"cross_entropy", "T=5 V=7", [](Generator& gen) {
                     Tensor targets = randint({5}, 0, 7, gen, DType::i64);
                     return one_input(randn({5, 7}, gen, DType::f64, 0, 2), "logits",
                                      [targets](const Tensor& l) { return cross_entropy(l, targets.to(l.device())); });
                   }});
  cases.push_back({"cross_entropy", "T=6 V=5, ignore_index -1 (2 rows)", [](Generator& gen) {
                     Tensor targets = from_vector<int32_t>({3, 0, -1, 4, -1, 1}, {6});
                     CrossEntropyOptions opts;
                     opts.ignore_index = -1;
                     return one_input(randn({6, 5}, gen, DType::f64, 0, 2), "logits",
                                      [targets, opts](const Tensor& l) {
                                        return cross_entropy(l, targets.to(l.device()), opts);
                                      });
                   }});
  cases.push_back({"cross_entropy", "T=6 V=5, weight, mask 0 at 1", [](Generator& gen) {
                     Tensor targets = randint({6}, 0, 5, gen, DType::i64);
                     CrossEntropyOptions opts;
                     opts.weight = from_vector<double>({0.5, 0.0, 2.0, 1.0, 1.5, 0.25}, {6});
                     return one_input(randn({6, 5}, gen, DType::f64, 0, 2), "logits",
                                      [targets, opts](const Tensor& l) {
                                        CrossEntropyOptions o = opts;  // the weight on the logits' device and dtype
                                        o.weight = opts.weight.to(l.dtype()).to(l.device());
                                        return cross_entropy(l, targets.to(l.device()), o);
                                      });
                   }});
}

void add_embedding_and_rms_norm_cases(std::vector<GradcheckCase>& cases) {
  cases.push_back({"embedding", "ids (2, 3) with repeats, V=5 D=4", [](Generator& gen) {
                     GradcheckProblem p;
                     p.inputs = {from_vector<int64_t>({1, 3, 1, 4, 3, 1}, {2, 3}), randn({5, 4}, gen, DType::f64)};
                     p.names = {"ids", "weight"};
                     p.fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{embedding(in[0], in[1])}; };
                     return p;
                   }});
  cases.push_back({"rms_norm", "x (2, 3, 5), eps 1e-5", [](Generator& gen) {
                     GradcheckProblem p;
                     p.inputs = {randn({2, 3, 5}, gen, DType::f64), rand({5}, gen, DType::f64, 0.5, 1.5)};
                     p.names = {"x", "weight"};
                     p.fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{rms_norm(in[0], in[1])}; };
                     return p;
                   }});
}

}  // namespace

void add_nn_ops_gradcheck_cases(std::vector<GradcheckCase>& cases) {
  add_softmax_cases(cases);
  add_cross_entropy_cases(cases);
  add_embedding_and_rms_norm_cases(cases);
}

}  // namespace autograd
}  // namespace mom

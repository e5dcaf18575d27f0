#include "autograd/node.h"

#include "core/grad_mode.h"
#include "kernels/elementwise.h"

namespace mom::autograd {

Node::~Node() {
  // Free long chains iteratively: a node that is the last owner of its producers hands their edges to
  // this loop before it dies, so a 10,000-node chain does not recurse 10,000 destructors deep.
  std::vector<std::shared_ptr<Node>> stack;
  for (Edge& e : next_edges)
    if (e.node) stack.push_back(std::move(e.node));
  next_edges.clear();
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1) {
      for (Edge& e : n->next_edges)
        if (e.node) stack.push_back(std::move(e.node));
      n->next_edges.clear();
    }
  }
}

Tensor Node::grad_or_zeros(const std::vector<Tensor>& grad_outputs, size_t i) const {
  if (i < grad_outputs.size() && grad_outputs[i].defined()) return grad_outputs[i];
  MOM_CHECK(i < outputs.size(), name(), "internal: no metadata for output " << i);
  return zeros(outputs[i].shape, outputs[i].dtype, outputs[i].device);
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grad_outputs) {
  Tensor g = grad_outputs.at(0);
  if (!g.defined()) return {};
  MOM_CHECK(g.shape() == leaf_->shape, "backward",
            "gradient of shape " << shape_str(g.shape()) << " for a leaf of shape " << shape_str(leaf_->shape));
  // A fresh tensor every time: gradients are never shared between leaves, so an in-place change of
  // one .grad (clipping) cannot reach another.
  Tensor sum = leaf_->grad ? kernels::add(Tensor(leaf_->grad).contiguous(), g.contiguous()) : g.clone();
  leaf_->grad = sum.impl_ptr();
  return {};
}

}  // namespace mom::autograd

namespace mom::autograd {

SavedTensor::SavedTensor(const Tensor& t) : was_defined_(t.defined()) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::unpack(const Node& node) const {
  MOM_CHECK(!released_, node.name(),
            "the saved tensors of this graph were freed by an earlier backward; pass retain_graph=true "
            "to backward through it twice");
  if (!was_defined_) return Tensor();
  MOM_CHECK(tensor_.version() == version_, node.name(),
            "a tensor saved for backward was modified in place (version " << version_ << ", now "
                << tensor_.version() << "); clone it before changing it");
  return tensor_;
}

void SavedTensor::reset() {
  tensor_ = Tensor();
  released_ = true;
}

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.output_nr()};
  return {std::make_shared<AccumulateGrad>(t.impl_ptr()), 0};
}

void set_history(const std::shared_ptr<Node>& node, std::initializer_list<Tensor*> outputs) {
  set_history(node, std::vector<Tensor*>(outputs));
}

void set_history(const std::shared_ptr<Node>& node, const std::vector<Tensor*>& outputs) {
  node->outputs.clear();
  int nr = 0;
  for (Tensor* t : outputs) {
    node->outputs.push_back(TensorMeta{t->shape(), t->dtype(), t->device()});
    t->set_grad_fn(node, nr++);
  }
}

Tensor take_owned(std::vector<Tensor>& grad_outputs, size_t i) {
  Tensor& g = grad_outputs[i];
  if (!g.defined() || !g.is_contiguous() || g.impl_ptr().use_count() != 1 || g.impl()->storage.use_count() != 1)
    return Tensor();
  Tensor owned = std::move(g);
  g = Tensor();
  return owned;
}

}  // namespace mom::autograd

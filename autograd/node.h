// The autograd graph: a Node per recorded op, with edges to the nodes that produced its inputs.
//
// Writing a differentiable function (record_unary in autograd/elementwise.cpp; every op family of
// autograd/ follows the same pattern):
//     Tensor y = kernels::unary(UnaryOp::exp, x);                // compute, no graph
//     if (needs_grad({x})) {
//       auto node = make_node<UnaryBackward>({x}, UnaryOp::exp);  // edges to x's producer (or its leaf)
//       node->y = SavedTensor(y);                                // saved tensors are detached + versioned
//       set_history(node, {&y});                                 // y.grad_fn = node
//     }
// A Node's apply() receives one gradient per output (undefined when none reached that output; use
// grad_or_zeros) and returns one gradient per input, in the order given to make_node, undefined
// where that input needs none. Backward runs with grad mode off: no double backward.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mom::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null: this input needs no gradient
  int input_nr = 0;            // which output of `node` this edge feeds
  bool valid() const { return node != nullptr; }
};

struct TensorMeta {
  Shape shape;
  DType dtype;
  Device device;
};

class Node {
 public:
  virtual ~Node();
  // The op's name, used in error messages: "[exp] ...".
  virtual std::string name() const = 0;
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) = 0;
  // Drops saved tensors once backward has used them (unless retain_graph).
  virtual void release_saved() {}

  // Gradient of output i, or zeros of that output's shape when none arrived.
  Tensor grad_or_zeros(const std::vector<Tensor>& grad_outputs, size_t i) const;

  std::vector<Edge> next_edges;   // one per input
  std::vector<TensorMeta> outputs;  // one per output, set by set_history
  std::vector<TensorMeta> inputs;   // one per input, for shape checks of returned gradients
};

// Owned gradients. The engine moves a node's incoming gradients into apply() and keeps no reference
// to them. One that nothing else references either (not a root gradient the caller holds, not a
// retained or shared one, not a view) belongs to the node, which may write a result over its memory:
// take_owned(grad_outputs, i) returns gradient i and leaves its slot undefined when it is the node's
// own and contiguous, and returns an undefined tensor (the slot untouched) otherwise.
Tensor take_owned(std::vector<Tensor>& grad_outputs, size_t i);

// Accumulates an incoming gradient into a leaf's .grad (out of place: a new tensor each time, so a
// gradient tensor is never shared between two leaves).
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::string name() const override { return "accumulate_grad"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) override;
  TensorImpl* leaf() const { return leaf_.get(); }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// A tensor saved for backward: detached (no cycle through its grad_fn) and stamped with its
// storage's version, so that an in-place change before backward is an error, not a wrong gradient.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  Tensor unpack(const Node& node) const;
  void reset();
  bool defined() const { return was_defined_; }

 private:
  Tensor tensor_;
  int64_t version_ = 0;
  bool was_defined_ = false;
  bool released_ = false;
};

// True when grad mode is on and any defined input requires grad.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// The edge a gradient for `t` flows along: its grad_fn, a fresh AccumulateGrad for a leaf that
// requires grad, or an empty edge.
Edge gradient_edge(const Tensor& t);

template <typename NodeT, typename... Args>
std::shared_ptr<NodeT> make_node(const std::vector<Tensor>& inputs, Args&&... args) {
  auto node = std::make_shared<NodeT>(std::forward<Args>(args)...);
  node->next_edges.reserve(inputs.size());
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    node->next_edges.push_back(gradient_edge(t));
    node->inputs.push_back(t.defined() ? TensorMeta{t.shape(), t.dtype(), t.device()} : TensorMeta{});
  }
  return node;
}

// Makes `node` the grad_fn of each output (output i gets output_nr i).
void set_history(const std::shared_ptr<Node>& node, std::initializer_list<Tensor*> outputs);
void set_history(const std::shared_ptr<Node>& node, const std::vector<Tensor*>& outputs);

}  // namespace mom::autograd
